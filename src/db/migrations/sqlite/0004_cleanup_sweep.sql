-- When the cleanup sweep took an expired key: from then on a report cannot commit
-- it, and the row stays until the bucket confirms the bytes are gone, so a bucket
-- that is down during the sweep only delays the removal to a later sweep.
ALTER TABLE temp_objects ADD COLUMN swept_at BIGINT;
