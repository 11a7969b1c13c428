-- Add-ons. A provider is an HTTP service speaking the provision/deprovision contract
-- (ARCHITECTURE.md, "Add-ons"); its password is generated here and sent on every call, so it
-- is kept in clear (like TLS keys: an open exception). An add-on belongs to one app and may be
-- attached to others; each attachment sets <NAME>_<KEY> config vars on its app.
CREATE TABLE addon_providers (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    url         TEXT NOT NULL,
    password    TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE addons (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL UNIQUE,
    app_id                TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    provider_id           TEXT NOT NULL REFERENCES addon_providers (id),
    plan                  TEXT NOT NULL,
    state                 TEXT NOT NULL,
    provider_resource_id  TEXT NOT NULL,
    config                TEXT NOT NULL,
    created_at            TEXT NOT NULL
);

CREATE TABLE addon_attachments (
    id          TEXT PRIMARY KEY,
    addon_id    TEXT NOT NULL REFERENCES addons (id) ON DELETE CASCADE,
    app_id      TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (app_id, name)
);
