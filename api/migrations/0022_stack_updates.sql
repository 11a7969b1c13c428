-- Stack updates (issue 15): each row an admin's `ouro stack:update` (or the schedule's,
-- `OURO_STACK_UPDATE_SECONDS`): the run stack rebuilt with Debian's latest updates and every
-- app released onto it. The latest row is the stack dynos run on; its id (the ms since the
-- epoch when it was asked for, growing) names the images the runner makes for it.
CREATE TABLE stack_updates (
    id            TEXT PRIMARY KEY,
    requested_ms  BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE INDEX stack_updates_requested ON stack_updates (requested_ms);
