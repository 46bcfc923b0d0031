//! The TCP transport between nodes (being written).
