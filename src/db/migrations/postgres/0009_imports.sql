-- `museum import`: one row per file brought in, by user and path under the folder
-- imported. The key is chosen (and issued in temp_objects) before any byte is sent;
-- object_id is set once the object is recorded. A row without one is an import
-- that was cut short: the next run links it if the object was recorded, else sends
-- the file again under a new key.
CREATE TABLE imports (
    user_id    BIGINT NOT NULL,
    path       TEXT NOT NULL,
    size       BIGINT NOT NULL,
    mtime      BIGINT NOT NULL,
    object_key TEXT NOT NULL,
    object_id  BIGINT,
    PRIMARY KEY (user_id, path)
);
