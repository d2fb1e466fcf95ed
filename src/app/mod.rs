//! The process's front end: start-up and shutdown (`startup`), the command line
//! (`cli`) and the replication commands (`ops`).

pub mod cli;
pub mod ops;
pub mod startup;
