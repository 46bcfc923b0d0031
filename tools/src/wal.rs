//! The hosted write-ahead log (to be built).
