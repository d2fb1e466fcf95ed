-- One row per running museum process (an instance) and its heartbeat. Copy leases
-- are held by an instance's workers (object_copies.lease_owner is
-- `<instance>/<worker>`), so when an instance stops beating, the others return its
-- copies to the queue at once instead of waiting for the leases to lapse.
CREATE TABLE instances (
    name         TEXT PRIMARY KEY NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
