//! A nemesis harness in the manner of Jepsen: a real cluster under faults,
//! clients recording every operation, and a linearizability checker.

pub mod history;
pub mod linear;
pub mod model;
