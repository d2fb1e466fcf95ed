-- The multipart upload an attempt started on a copy's target, recorded before any
-- part is sent, so that the next attempt aborts it if this one dies half-way.
ALTER TABLE object_copies ADD COLUMN upload_id TEXT;
