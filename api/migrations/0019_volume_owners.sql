-- Which app owns each named volume (issue 15): recorded when a service first mounts it, so
-- that no other app can mount it, whatever its name; it goes with its app. Volumes mounted
-- before this table are claimed by their apps when the API starts.
CREATE TABLE volume_owners (
    volume      TEXT PRIMARY KEY,
    app_id      TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    created_at  TEXT NOT NULL
);
CREATE INDEX volume_owners_app ON volume_owners (app_id);
