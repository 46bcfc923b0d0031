//! Segment-file storage for the replica (being written).
