-- Scrub: when each tier of an object was last found intact (milliseconds). The
-- bucket the report put an object in has no copy row until a restore, so its date
-- lives with the object.
ALTER TABLE object_copies ADD COLUMN verified_at BIGINT;
ALTER TABLE objects ADD COLUMN verified_at BIGINT;
-- When a scrub found no intact tier of the object left anywhere (NULL: not lost).
ALTER TABLE objects ADD COLUMN lost_at BIGINT;
CREATE INDEX objects_lost_at ON objects (lost_at);

-- Live copies (0: a report queued them) are claimed before background ones
-- (1: backfill, scrub, a primary move), whatever their age.
ALTER TABLE object_copies ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;
DROP INDEX object_copies_due;
CREATE INDEX object_copies_due ON object_copies (state, priority, next_attempt_at);

-- Long background jobs (the scrub), one row each: where the current pass is, who
-- runs it (a lease, as for copies), and what the pass found so far. A job that
-- stops is resumed from `cursor` by whoever takes the lease next.
CREATE TABLE jobs (
    name             TEXT PRIMARY KEY NOT NULL,
    cursor           BIGINT NOT NULL DEFAULT 0,
    pass_started_at  BIGINT,
    pass_finished_at BIGINT,
    lease_owner      TEXT,
    lease_until      BIGINT,
    checked          BIGINT NOT NULL DEFAULT 0,
    healed           BIGINT NOT NULL DEFAULT 0,
    lost             BIGINT NOT NULL DEFAULT 0
);
