//! Uploads beyond the HTTP handlers: the cleanup of expired upload keys, and
//! `museum import`.

pub mod cleanup;
pub mod import;
