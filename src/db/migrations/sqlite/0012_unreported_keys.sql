-- Each user's unreported keys are counted before more are issued
-- (quota.max-unreported-keys).
CREATE INDEX temp_objects_user_expires_at ON temp_objects (user_id, expires_at);
