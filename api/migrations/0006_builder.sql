-- Builds run as one-off dynos of the `ouro-builder` system app: a one-off may mount volumes
-- (the per-app build cache) and reach the API (`api_access` 0/1).
ALTER TABLE one_off_dynos ADD COLUMN mounts TEXT NOT NULL DEFAULT '[]';
ALTER TABLE one_off_dynos ADD COLUMN api_access BIGINT NOT NULL DEFAULT 0;
-- The release a successful build made.
ALTER TABLE builds ADD COLUMN release_version BIGINT;
-- An app's buildpacks (`ouro buildpacks:set/add`), a JSON list of names or URLs; empty means
-- detect.
ALTER TABLE apps ADD COLUMN buildpacks TEXT NOT NULL DEFAULT '[]';
