-- SNI endpoints: TLS certificates of apps. `hostnames` is a JSON array of the leaf's SAN DNS
-- names; `certificate_chain` and `private_key` are PEM. The private key is only ever read back
-- for the dyno runner's desired state.
CREATE TABLE certificates (
    id                 TEXT PRIMARY KEY,
    app_id             TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    hostnames          TEXT NOT NULL,
    expires_at         TEXT NOT NULL,
    certificate_chain  TEXT NOT NULL,
    private_key        TEXT NOT NULL,
    created_at         TEXT NOT NULL
);

CREATE INDEX certificates_app ON certificates (app_id);
