//! A 9P2000.L client (to be built).
