-- Self-upgrades: a build of the platform's source app `ouro` rolls its slug to the components
-- (`ouro-api`, then `ouro-router`), one step at a time; the row lets a new API process resume.
CREATE TABLE upgrades (
    id          TEXT PRIMARY KEY,
    slug_id     TEXT NOT NULL,
    state       TEXT NOT NULL,
    step        BIGINT NOT NULL,
    message     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
