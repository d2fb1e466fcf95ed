//! Passes over every object: the scrub (and `verify`, its one-shot), reconcile, the
//! primary move, and where each object stands.

pub mod primary;
pub mod reconcile;
pub mod scrub;
pub mod status;
