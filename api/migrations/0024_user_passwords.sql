-- Users with passwords (issue 16): an admin adds a user (`ouro users:add`), who sets a password
-- with a one-time invitation code (`ouro login --invitation CODE`) and logs in with it (`ouro
-- login -i`: email and password make a token). Only argon2id hashes (PHC strings) and the
-- SHA-256 of codes are stored. A user with no password logs in with tokens only, as before.
ALTER TABLE users ADD COLUMN password_hash TEXT;
CREATE TABLE user_invitations (
    code_sha256  TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at   TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX user_invitations_user ON user_invitations (user_id);
