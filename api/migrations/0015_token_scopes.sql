-- A token may be scoped: `runner` reads the desired state, reports dynos and fetches slugs,
-- nothing else (issue 6). NULL: everything its user may do.
ALTER TABLE tokens ADD COLUMN scope TEXT;
