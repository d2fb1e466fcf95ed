//! Integration tests: the real app on random ports against real S3 servers and real
//! databases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod binary;
mod browser;
mod cleanup;
mod clients;
mod config;
mod embedded;
mod ente;
mod events;
mod faults;
mod garage;
mod helpers;
mod hostile;
mod import;
mod jwt;
mod leases;
mod lifecycle;
mod limits;
mod metrics;
mod openapi;
mod operations;
mod primary;
mod process;
mod reconcile;
mod reliability;
mod replication;
mod s3port;
mod scrub;
mod soak;
mod sqlite_durability;
mod tamper;
mod uploads;
