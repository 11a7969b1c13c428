-- Log drains (issue 7): each app's lines are forwarded to these URLs (syslog+tcp://, https://)
-- in RFC 5424 framing. The URL is the drain's identity within an app.
CREATE TABLE log_drains (
    id          TEXT PRIMARY KEY,
    app_id      TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (app_id, url)
);
