-- Tokens may expire (NULL: never); revoking every token of a user looks them up by user.
ALTER TABLE tokens ADD COLUMN expires_at BIGINT;
CREATE INDEX tokens_user_id ON tokens (user_id);

-- One row per user museum knows: the bytes its recorded objects hold (file and
-- thumbnail, dropping when they are deleted), and its own storage quota (NULL: the
-- configured default). Reports lock the row while they check and raise the usage.
CREATE TABLE users (
    user_id     BIGINT PRIMARY KEY NOT NULL,
    usage_bytes BIGINT NOT NULL DEFAULT 0,
    quota_bytes BIGINT
);
INSERT INTO users (user_id, usage_bytes)
    SELECT user_id, SUM(size) FROM objects WHERE deleted_at IS NULL GROUP BY user_id;
INSERT INTO users (user_id, usage_bytes)
    SELECT DISTINCT user_id, 0 FROM tokens WHERE user_id NOT IN (SELECT user_id FROM users);
