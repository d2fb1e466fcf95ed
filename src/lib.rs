//! museum keeps every uploaded object safe in three S3-compatible buckets.

pub mod accounts;
pub mod api;
pub mod cleanup;
pub mod cli;
pub mod config;
pub mod cors;
pub mod db;
pub mod doctor;
pub mod events;
pub mod import;
pub mod metrics;
pub mod ops;
pub mod primary;
pub mod reconcile;
pub mod replication;
pub mod scrub;
pub mod startup;
pub mod status;
pub mod storage;
pub mod telemetry;
pub mod throttle;
pub mod time;
