//! What operators see: Prometheus metrics, operator events, and log output.

pub mod events;
pub mod metrics;
pub mod telemetry;
