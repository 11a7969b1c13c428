-- Tokens with a life cycle (issue 16, Heroku's authorizations): `expires_at` (NULL: never,
-- the tokens made before) after which the token is refused, and `updated_at`, when its secret
-- was last regenerated (`authorizations:rotate`). A revoked token's row is deleted.
ALTER TABLE tokens ADD COLUMN expires_at TEXT;
ALTER TABLE tokens ADD COLUMN updated_at TEXT;
