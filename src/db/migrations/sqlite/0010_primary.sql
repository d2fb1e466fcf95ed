-- Settings an operator changes at run time, for every instance: `primary` is the
-- hot primary `museum primary move` switched to, which wins over
-- s3.hot_storage.primary while that bucket is configured.
CREATE TABLE museum_settings (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
