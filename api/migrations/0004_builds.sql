-- Builds: one per accepted `git push` to main or master. `source_blob` is the blob store key
-- (`SHA256:<hex>`) of `git archive --format=tar.gz <source_commit>`; `source_size` its bytes.
-- Status is `pending`, `succeeded` or `failed`; nothing runs builds yet.
CREATE TABLE builds (
    id             TEXT PRIMARY KEY,
    app_id         TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    status         TEXT NOT NULL,
    source_commit  TEXT NOT NULL,
    source_ref     TEXT NOT NULL,
    source_blob    TEXT NOT NULL,
    source_size    BIGINT NOT NULL,
    output         TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);

CREATE INDEX builds_app ON builds (app_id, created_at);

-- At most one pending build per app: a newer push supersedes the pending one (see store.rs).
CREATE UNIQUE INDEX builds_one_pending ON builds (app_id) WHERE status = 'pending';
