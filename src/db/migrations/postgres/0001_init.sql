-- Access tokens, stored as SHA-256 hashes of the token text.
CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id    BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Object keys issued for upload and not yet reported.
CREATE TABLE temp_objects (
    object_key    TEXT PRIMARY KEY NOT NULL,
    user_id       BIGINT NOT NULL,
    bucket_id     TEXT NOT NULL,
    declared_size BIGINT,
    declared_md5  TEXT,
    expected_etag TEXT,
    upload_id     TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX temp_objects_expires_at ON temp_objects (expires_at);

-- Verified, reported objects. bucket_id is the bucket that holds the source copy.
CREATE TABLE objects (
    id         BIGSERIAL PRIMARY KEY,
    object_key TEXT NOT NULL UNIQUE,
    user_id    BIGINT NOT NULL,
    bucket_id  TEXT NOT NULL,
    size       BIGINT NOT NULL,
    md5        TEXT,
    etag       TEXT,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE INDEX objects_user_id ON objects (user_id);
