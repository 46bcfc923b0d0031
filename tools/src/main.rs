//! The `cell0` command.
fn main() {}
