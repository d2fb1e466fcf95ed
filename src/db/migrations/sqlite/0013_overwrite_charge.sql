-- The bytes past its recorded size that an object's upload bucket was found holding
-- (an overwrite through its still-valid upload URL after the report), charged to
-- its user's usage until the object is deleted.
ALTER TABLE objects ADD COLUMN overwrite_bytes BIGINT NOT NULL DEFAULT 0;
