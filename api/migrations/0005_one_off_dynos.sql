-- One-off dynos (`ouro run:detached`): desired until the dyno runner reports them finished.
CREATE TABLE one_off_dynos (
    id            TEXT PRIMARY KEY,
    app_id        TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    number        BIGINT NOT NULL,
    command       TEXT NOT NULL,
    size          TEXT NOT NULL,
    env           TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    finished_at   TEXT,
    reason        TEXT,
    UNIQUE (app_id, number)
);
