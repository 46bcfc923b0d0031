//! Networking: the virtio-net card (through the `virtio-drivers` crate)
//! and TCP/IP (through `smoltcp`).

pub mod hal;
pub mod iface;
pub mod virtio;
