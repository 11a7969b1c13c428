-- Attached one-off dynos (`ouro run`, issue 7): the runner attaches to the container and
-- bridges it to the caller through the API; `tty` gives it a terminal; `time_to_live_seconds`
-- stops it after that long (NULL: no limit, for builds and the release phase).
ALTER TABLE one_off_dynos ADD COLUMN attach BIGINT NOT NULL DEFAULT 0;
ALTER TABLE one_off_dynos ADD COLUMN tty BIGINT NOT NULL DEFAULT 0;
ALTER TABLE one_off_dynos ADD COLUMN time_to_live_seconds BIGINT;
