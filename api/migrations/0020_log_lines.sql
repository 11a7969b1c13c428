-- The log journal (issue 15): each app's recent log lines, so that `ouro logs` shows them
-- after the API restarts or upgrades itself. Kept by app name, as the hub keeps them (they
-- outlive redeploys); trimmed to the last 1,500 per app; `writer` is the API process that
-- took the line (during a handover each reads what the other wrote). Ids are UUIDv7: they
-- sort by time.
CREATE TABLE log_lines (
    id      TEXT PRIMARY KEY,
    app     TEXT NOT NULL,
    writer  TEXT NOT NULL,
    line    TEXT NOT NULL
);
CREATE INDEX log_lines_app ON log_lines (app, id);
