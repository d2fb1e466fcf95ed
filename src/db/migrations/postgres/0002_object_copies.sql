-- One row per (object, target bucket): the replication queue and its results.
-- state: pending | copying | done | failed
CREATE TABLE object_copies (
    object_id       BIGINT NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
    bucket_id       TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    lease_owner     TEXT,
    copied_at       BIGINT,
    verified_size   BIGINT,
    verified_etag   TEXT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (object_id, bucket_id)
);
CREATE INDEX object_copies_due ON object_copies (state, next_attempt_at);
CREATE INDEX object_copies_leases ON object_copies (state, lease_until);
CREATE INDEX objects_deleted_at ON objects (deleted_at);
