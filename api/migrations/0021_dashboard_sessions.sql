-- Dashboard sessions (issue 15), in SQL so that they outlive an API restart and are shared by
-- the two API processes of a self-upgrade's handover. A session is found by the SHA-256 of its
-- cookie's random id (hex); the id itself is never stored. It stands for the token it was made
-- with (its id and stored SHA-256: the session ends when the token goes) and carries the CSRF
-- value its forms send back. Expired rows are deleted at each login.
CREATE TABLE dashboard_sessions (
    id_sha256      TEXT PRIMARY KEY,
    token_id       TEXT NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    token_sha256   TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    csrf           TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL
);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);
