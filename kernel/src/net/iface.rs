//! TCP/IP on the card: a `smoltcp` interface with a static address and a
//! pool of TCP sockets listening on the 9P port. smoltcp has no accept
//! queue: a socket that takes a connection stops listening, and a SYN
//! that finds no listening socket is reset. So the serving loop keeps
//! [`LISTENERS`] sockets listening at all times, adding one for each
//! that is taken, up to [`MAX_SOCKETS`] (which bounds connections,
//! including those still closing).

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address};

use super::virtio::NetDevice;

/// The address QEMU's user networking expects its guest at.
pub const ADDRESS: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);
/// Prefix length of the guest network.
pub const PREFIX: u8 = 24;
/// QEMU's user-network gateway.
pub const GATEWAY: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);
/// The 9P port.
pub const PORT: u16 = 564;
/// Sockets kept listening: how many clients may arrive at once.
pub const LISTENERS: usize = 16;
/// Sockets in all (connected, closing and listening).
pub const MAX_SOCKETS: usize = 32;
/// Bytes of each socket's receive and send buffers.
pub const SOCKET_BUF: usize = 256 * 1024;

/// The interface, the card and the sockets.
pub struct Network {
    /// The smoltcp interface.
    pub iface: Interface,
    /// The card.
    pub device: NetDevice,
    /// Every socket.
    pub sockets: SocketSet<'static>,
    /// The sockets made at start, all listening.
    pub handles: Vec<SocketHandle>,
}

/// The time smoltcp is given: the kernel's monotonic clock.
pub fn now() -> Instant {
    Instant::from_micros((crate::timer::monotonic_nanos() / 1000) as i64)
}

/// A fresh socket listening on [`PORT`].
pub fn listener() -> tcp::Socket<'static> {
    let rx = tcp::SocketBuffer::new(vec![0; SOCKET_BUF]);
    let tx = tcp::SocketBuffer::new(vec![0; SOCKET_BUF]);
    let mut s = tcp::Socket::new(rx, tx);
    // Replies are whole messages; send them at once.
    s.set_nagle_enabled(false);
    s.listen(PORT).expect("port 564 is a valid listen endpoint");
    s
}

impl Network {
    /// Bring the interface up on `device` with the static address.
    pub fn new(mut device: NetDevice, seed: u64) -> Network {
        let mac = EthernetAddress(device.mac());
        let mut config = Config::new(HardwareAddress::Ethernet(mac));
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut device, now());
        iface.update_ip_addrs(|addrs| {
            addrs
                .push(IpCidr::new(ADDRESS.into(), PREFIX))
                .expect("room for one address");
        });
        iface
            .routes_mut()
            .add_default_ipv4_route(GATEWAY)
            .expect("room for one route");
        let mut sockets = SocketSet::new(Vec::new());
        let handles = (0..LISTENERS).map(|_| sockets.add(listener())).collect();
        Network {
            iface,
            device,
            sockets,
            handles,
        }
    }

    /// Move frames between the card and the sockets; whether anything
    /// may have changed.
    pub fn poll(&mut self) -> bool {
        self.iface.poll(now(), &mut self.device, &mut self.sockets) != PollResult::None
    }
}
