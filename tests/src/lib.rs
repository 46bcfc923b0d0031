//! Harness for Cell0's integration tests: start nodes, mount them, run tools.
