-- The stable reason code of a copy's last error (source_missing, source_changed,
-- target_refused, unavailable, checksum_mismatch, interrupted, restoring, other),
-- shown to the object's owner in place of last_error, which keeps the full error
-- chain for operators. Rows from before it have none and read as `other`.
ALTER TABLE object_copies ADD COLUMN error_code TEXT;
