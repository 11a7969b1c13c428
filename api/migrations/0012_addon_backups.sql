-- Backups of an add-on's data (pg_dump custom format, from its provider), kept in the blob
-- store under their SHA-256. Named b001, b002, … per add-on, as Heroku names them.
CREATE TABLE addon_backups (
    id          TEXT PRIMARY KEY,
    addon_id    TEXT NOT NULL REFERENCES addons (id) ON DELETE CASCADE,
    number      BIGINT NOT NULL,
    blob        TEXT NOT NULL,
    size        BIGINT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (addon_id, number)
);
