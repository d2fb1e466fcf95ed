//! museum keeps every uploaded object safe in three S3-compatible buckets.
//!
//! The modules stand in three groups, and a layout test holds them to it: a module
//! imports only its own group and those below it, never one above, and nothing
//! imports in a circle.

// Front ends: the HTTP API, the commands and their start-up. Nothing imports them.
pub mod api;
pub mod cli;
pub mod doctor;
pub mod ops;
pub mod startup;

// Features: they own their rules and their background work, and call down.
pub mod accounts;
pub mod cleanup;
pub mod import;
pub mod primary;
pub mod reconcile;
pub mod replication;
pub mod scrub;
pub mod status;

// Infrastructure: the one job runner, the database, the S3 client and server,
// configuration, metrics, logs and time. It imports no feature.
pub mod config;
pub mod cors;
pub mod db;
pub mod events;
pub mod jobs;
pub mod metrics;
pub mod storage;
pub mod telemetry;
pub mod throttle;
pub mod time;
