//! PCI enumeration through configuration mechanism #1 (ports 0xCF8 and
//! 0xCFC), which QEMU's i440fx and q35 machines both offer.

use alloc::vec::Vec;
use core::fmt;

use x86_64::instructions::port::Port;

const CONFIG_ADDRESS: u16 = 0xCF8;
const CONFIG_DATA: u16 = 0xCFC;
/// The vendor id of Red Hat's virtio devices.
const VIRTIO_VENDOR: u16 = 0x1AF4;

/// Where a function sits on the bus.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Bus number.
    pub bus: u8,
    /// Device number, 0 to 31.
    pub device: u8,
    /// Function number, 0 to 7.
    pub function: u8,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// One PCI function found on the bus.
#[derive(Clone, Copy)]
pub struct Function {
    /// Its address.
    pub at: Location,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Class code (high byte) and subclass (low byte).
    pub class: u16,
}

impl Function {
    /// Whether this is a virtio network device (legacy id 0x1000 or
    /// modern id 0x1041).
    pub fn is_virtio_net(&self) -> bool {
        self.vendor == VIRTIO_VENDOR && matches!(self.device, 0x1000 | 0x1041)
    }
}

/// Read the 32-bit configuration register at `offset` of `at`.
pub fn read(at: Location, offset: u8) -> u32 {
    let address = 0x8000_0000
        | (u32::from(at.bus) << 16)
        | (u32::from(at.device) << 11)
        | (u32::from(at.function) << 8)
        | u32::from(offset & 0xFC);
    // SAFETY: the PCI configuration ports; selecting an address and
    // reading its data touches no memory. One CPU, interrupts do not use
    // these ports, so the pair is not interleaved with another access.
    unsafe {
        Port::<u32>::new(CONFIG_ADDRESS).write(address);
        Port::<u32>::new(CONFIG_DATA).read()
    }
}

/// Every function on buses 0 to 255 (a brute-force scan: under QEMU it
/// takes well under a millisecond of real time per bus).
pub fn scan() -> Vec<Function> {
    let mut found = Vec::new();
    for bus in 0..=255u8 {
        for device in 0..32u8 {
            let first = Location {
                bus,
                device,
                function: 0,
            };
            if read(first, 0) & 0xFFFF == 0xFFFF {
                continue;
            }
            // Header type bit 7: the device has more than one function.
            let multi = (read(first, 0x0C) >> 16) & 0x80 != 0;
            for function in 0..if multi { 8 } else { 1 } {
                let at = Location {
                    bus,
                    device,
                    function,
                };
                let id = read(at, 0);
                if id & 0xFFFF == 0xFFFF {
                    continue;
                }
                found.push(Function {
                    at,
                    vendor: id as u16,
                    device: (id >> 16) as u16,
                    class: (read(at, 0x08) >> 16) as u16,
                });
            }
        }
    }
    found
}
