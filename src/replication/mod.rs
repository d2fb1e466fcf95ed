//! Replication from the hot primary to the cold and glacier tiers. Not built yet:
//! objects are recorded with the bucket that holds them, so copies can be queued
//! for every recorded object once the replicator lands.
