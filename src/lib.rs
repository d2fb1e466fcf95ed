//! museum keeps every uploaded object safe in three S3-compatible buckets.
//!
//! The modules stand in three groups, and a layout test holds them to it: a module
//! imports only its own group and those below it, never one above, and nothing
//! imports in a circle.

// Front ends: the HTTP API, and the process (start-up, the command line and its
// commands). Nothing imports them.
pub mod api;
pub mod app;

// Features: they own their rules and their background work, and call down.
pub mod accounts;
pub mod doctor;
pub mod maintenance;
pub mod replication;
pub mod uploads;

// Infrastructure: the one job runner, the database, the S3 client and server,
// configuration, what operators see (metrics, events, logs), CORS, pacing and time.
// It imports no feature.
pub mod config;
pub mod cors;
pub mod db;
pub mod jobs;
pub mod observe;
pub mod storage;
pub mod throttle;
pub mod time;
