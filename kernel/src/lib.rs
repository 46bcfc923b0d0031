//! Cell0's bare-metal x86_64 kernel.
//!
//! Not built yet: the kernel that boots under QEMU and serves `cellfs` over
//! 9P on TCP is issue 3. This crate exists so the workspace has its final
//! shape and so the core is checked to link into a `no_std` crate.
#![no_std]

pub use cellfs;
