//! What the agent tests share beyond the harness (`cell0-tests`): the
//! node's owner running `cell0` verbs and making agents.

#![allow(dead_code)] // Each test file uses a different part.

pub mod owner;
