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

use alloc::string::String;

/// Lower-case hex of `bytes` (keys and hashes in text files).
pub fn hex(bytes: &[u8]) -> String {
    crate::proof::boot::hex(bytes)
}
