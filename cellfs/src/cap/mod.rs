//! Capabilities: signed, scoped, time-bound tokens. See cap(3).

pub mod device;
pub mod rights;
pub mod scope;
pub mod state;
pub mod token;

pub use device::CapDev;
pub use rights::{Right, Rights};
pub use state::{CapCmd, CapOp, Caps};
pub use token::{CapError, Claims, Grant, NodeKey, PublicKey, Token};

pub use crate::hex::encode as hex;
