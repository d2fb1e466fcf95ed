//! Integration tests: the real app on random ports against real S3 servers and real
//! databases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod binary;
mod browser;
mod clients;
mod config;
mod ente;
mod faults;
mod helpers;
mod hostile;
mod operations;
mod reliability;
mod replication;
mod soak;
mod uploads;
