-- A one-off may run on a slug that is not the app's current release yet: the release phase
-- (`release:` in the Procfile) runs on the new slug before its release is made.
ALTER TABLE one_off_dynos ADD COLUMN slug_id TEXT;
