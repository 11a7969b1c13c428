-- Custom domains of apps (the default `<app>.<platform domain>` is implied, not stored).
CREATE TABLE domains (
    id          TEXT PRIMARY KEY,
    app_id      TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    hostname    TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

-- Restart requests: dynos started before `requested_at_ms` whose name matches `target`
-- (`*`, a process type, or a dyno like `web.1`) are replaced by the dyno runner.
CREATE TABLE dyno_restarts (
    app_id           TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    target           TEXT NOT NULL,
    requested_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (app_id, target)
);
