//! The virtio-net card as a `smoltcp` device.
//!
//! The card is reached through the PCI ECAM window (virtio-drivers 0.7
//! reads configuration space through memory), whose base the q35
//! chipset's PCIEXBAR register holds, and driven by polling: the main
//! loop asks for received frames, and a send waits for the card to take
//! the frame (QEMU does so at once).

use core::cell::RefCell;

use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;
use virtio_drivers::device::net::{RxBuffer, VirtIONet};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{Cam, DeviceFunction, PciRoot};

use super::hal::KernelHal;
use crate::pci::{self, Location};

/// Descriptors per virtqueue.
pub const QUEUE_SIZE: usize = 64;
/// Bytes of each receive buffer: a virtio-net header and an Ethernet frame.
const RX_BUF: usize = 2048;
/// The largest Ethernet frame sent or received (no jumbo frames).
const MTU: usize = 1514;

type Net = VirtIONet<KernelHal, PciTransport, QUEUE_SIZE>;

/// The card, ready for `smoltcp`.
pub struct NetDevice {
    net: RefCell<Net>,
}

/// Why the card could not be brought up.
#[derive(Debug)]
pub enum NetError {
    /// Not a q35 machine: no ECAM window is enabled.
    NoEcam,
    /// The PCI transport refused the function.
    Transport(virtio_drivers::transport::pci::VirtioPciError),
    /// The driver failed to set up the queues.
    Driver(virtio_drivers::Error),
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NetError::NoEcam => f.write_str(
                "no PCI ECAM window: run QEMU with -machine q35 (virtio-drivers reaches PCI configuration through memory)",
            ),
            NetError::Transport(e) => write!(f, "virtio PCI transport: {e}"),
            NetError::Driver(e) => write!(f, "virtio-net driver: {e}"),
        }
    }
}

/// The q35 PCIEXBAR (host bridge 00:00.0, offset 0x60): the ECAM base if
/// enabled. Only the 256 MiB size (what SeaBIOS sets) is accepted.
fn ecam_base() -> Option<u64> {
    let host = Location {
        bus: 0,
        device: 0,
        function: 0,
    };
    let low = pci::read(host, 0x60);
    let high = pci::read(host, 0x64);
    let enabled = low & 1 != 0;
    let size_256m = (low >> 1) & 3 == 0;
    (enabled && size_256m).then(|| ((u64::from(high) << 32) | u64::from(low)) & 0xF_F000_0000)
}

impl NetDevice {
    /// Drive the virtio-net function at `at`.
    pub fn new(at: Location) -> Result<NetDevice, NetError> {
        let base = ecam_base().ok_or(NetError::NoEcam)?;
        crate::paging::map_mmio(base, u64::from(Cam::Ecam.size())).map_err(|_| NetError::NoEcam)?;
        // SAFETY: `base` is the ECAM window the chipset decodes, mapped
        // uncached above; nothing else in the kernel uses it.
        let mut root = unsafe { PciRoot::new(base as *mut u8, Cam::Ecam) };
        let df = DeviceFunction {
            bus: at.bus,
            device: at.device,
            function: at.function,
        };
        let transport =
            PciTransport::new::<KernelHal>(&mut root, df).map_err(NetError::Transport)?;
        let net = Net::new(transport, RX_BUF).map_err(NetError::Driver)?;
        Ok(NetDevice {
            net: RefCell::new(net),
        })
    }

    /// The card's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.net.borrow().mac_address()
    }
}

/// A received frame, handed back to the card when consumed or dropped.
pub struct Rx<'a> {
    buf: Option<RxBuffer>,
    net: &'a RefCell<Net>,
}

/// Permission to send one frame.
pub struct Tx<'a> {
    net: &'a RefCell<Net>,
}

impl Device for NetDevice {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        let buf = self.net.get_mut().receive().ok()?;
        Some((
            Rx {
                buf: Some(buf),
                net: &self.net,
            },
            Tx { net: &self.net },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_>> {
        self.net
            .get_mut()
            .can_send()
            .then_some(Tx { net: &self.net })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps.max_burst_size = Some(QUEUE_SIZE / 2);
        caps
    }
}

impl RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let buf = self.buf.as_ref().expect("a token is consumed once");
        f(buf.packet())
        // `drop` hands the buffer back.
    }
}

impl Drop for Rx<'_> {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            // A failure here means the queue is corrupt; the receive side
            // would then stall, which the next boot fixes.
            let _ = self.net.borrow_mut().recycle_rx_buffer(buf);
        }
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut net = self.net.borrow_mut();
        let mut tx = net.new_tx_buffer(len);
        let r = f(tx.packet_mut());
        // A send fails only if the queue is full, which `transmit`
        // checked; a lost frame is retransmitted by TCP anyway.
        let _ = net.send(tx);
        r
    }
}
