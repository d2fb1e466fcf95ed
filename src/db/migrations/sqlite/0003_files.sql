-- A client's file record, in Ente's sense: one object (the file), its thumbnail
-- object, and the opaque fields the client sent with its report (collection,
-- encrypted key, nonces, decryption headers, metadata), kept verbatim as JSON.
-- id is the file object's id in objects, so /files/{id} names both.
CREATE TABLE files (
    id            BIGINT PRIMARY KEY NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
    owner_id      BIGINT NOT NULL,
    thumbnail_id  BIGINT REFERENCES objects (id) ON DELETE SET NULL,
    attributes    TEXT NOT NULL,
    updation_time BIGINT NOT NULL
);
CREATE INDEX files_thumbnail_id ON files (thumbnail_id);
