-- Apps shared with users (issue 16, Heroku's `access`): each row a collaborator of an app with
-- the permissions they have on it (a comma list of view, deploy, operate, manage; view always).
-- The owner and admins need no row. Removed with the app and with the user.
CREATE TABLE collaborators (
    app_id       TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    permissions  TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (app_id, user_id)
);
CREATE INDEX collaborators_user ON collaborators (user_id);
