-- One schema for SQLite and PostgreSQL: only types and syntax both accept.
-- Ids are UUID strings, times are RFC 3339 UTC strings (fixed width, so they sort),
-- JSON documents are TEXT.

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    email       TEXT NOT NULL UNIQUE,
    admin       BIGINT NOT NULL,  -- 0 or 1: the Any driver reads no SQLite booleans
    created_at  TEXT NOT NULL
);

-- A token is `ouro_<id>_<secret>`; only the SHA-256 of the secret is stored.
CREATE TABLE tokens (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    description    TEXT NOT NULL,
    secret_sha256  TEXT NOT NULL,
    created_at     TEXT NOT NULL
);

CREATE TABLE apps (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    owner_id            TEXT NOT NULL REFERENCES users (id),
    -- Highest release version handed out; bumped first in every release transaction,
    -- which also serialises concurrent releases of one app.
    release_seq         BIGINT NOT NULL,
    current_release_id  TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    released_at         TEXT
);

CREATE TABLE slugs (
    id                  TEXT PRIMARY KEY,
    app_id              TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    process_types       TEXT NOT NULL,
    commit_sha          TEXT,
    commit_description  TEXT,
    expected_checksum   TEXT,
    -- Set once, when the tar.gz is uploaded: `SHA256:<hex>`, the blob store's key.
    checksum            TEXT,
    size                BIGINT,
    stack               TEXT NOT NULL,
    created_at          TEXT NOT NULL
);

CREATE TABLE releases (
    id           TEXT PRIMARY KEY,
    app_id       TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    version      BIGINT NOT NULL,
    slug_id      TEXT REFERENCES slugs (id),
    config       TEXT NOT NULL,
    description  TEXT NOT NULL,
    status       TEXT NOT NULL,
    actor        TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    UNIQUE (app_id, version)
);

CREATE TABLE formations (
    id            TEXT PRIMARY KEY,
    app_id        TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    process_type  TEXT NOT NULL,
    quantity      BIGINT NOT NULL,
    size          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (app_id, process_type)
);

-- Ids are UUIDv7, so ordering by id is ordering by time.
CREATE TABLE audit_events (
    id          TEXT PRIMARY KEY,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    app_name    TEXT,
    status      BIGINT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX audit_events_app_name ON audit_events (app_name);
