-- When a live copy was reported late (the copy_late event), so that it is reported
-- once: by the watch that finds it still unverified past replication.late-after,
-- or when it is verified late.
ALTER TABLE object_copies ADD COLUMN late_at BIGINT;
