-- Teams (issue 16, Heroku's `teams` and `members`): users in a team with a role (admin or
-- member); apps made in a team (`apps:create --team`) belong to it. A team admin may do anything
-- to the team's apps and manages its members; a member may view, deploy and operate them.
-- `apps.owner_id` of a team app names who made it and grants nothing by itself.
CREATE TABLE teams (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);
CREATE TABLE team_members (
    team_id     TEXT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members (user_id);
ALTER TABLE apps ADD COLUMN team_id TEXT REFERENCES teams (id);
