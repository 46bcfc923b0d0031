//! Cell0's agent runner: starts agent processes sandboxed to the namespace
//! their capability allows, supervises and restarts them.
//!
//! Not built yet: the runner is issue 7. The crate exists so the workspace
//! has its final shape.
