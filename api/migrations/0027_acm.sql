-- Automatic certificates (issue 16, Heroku's ACM): an app with `acm` on gets a certificate for
-- each custom domain from an ACME server (Let's Encrypt by default), renewed well before it
-- expires. `acm_domains` keeps each domain's status as `ouro certs:auto` shows it; a pending
-- HTTP-01 challenge is a row of `acme_challenges` (the router answers it); an issued
-- certificate is a row of `certificates` with `acm_hostname` set (its key sealed as any).
-- `acme_accounts` keeps the platform's account key (sealed) per ACME directory.
ALTER TABLE apps ADD COLUMN acm INTEGER NOT NULL DEFAULT 0;
ALTER TABLE certificates ADD COLUMN acm_hostname TEXT;
CREATE TABLE acm_domains (
    app_id      TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    hostname    TEXT NOT NULL,
    status      TEXT NOT NULL,
    reason      TEXT,
    refresh     INTEGER NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (app_id, hostname)
);
CREATE TABLE acme_challenges (
    token              TEXT PRIMARY KEY,
    app_id             TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    hostname           TEXT NOT NULL,
    key_authorization  TEXT NOT NULL,
    created_at         TEXT NOT NULL
);
CREATE INDEX acme_challenges_app ON acme_challenges (app_id);
CREATE TABLE acme_accounts (
    directory   TEXT PRIMARY KEY,
    key_sealed  TEXT NOT NULL,
    kid         TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
