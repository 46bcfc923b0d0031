//! The 9P service: the main loop that moves bytes between the TCP
//! sockets and the `cellfs` core.
//!
//! One loop, no threads: poll the interface; for each socket, accept a
//! new client (`Server::connect`), read what arrived, cut it into 9P
//! frames (the 4-byte little-endian size prefix) and hand each to the
//! core; let the core answer parked requests (`Server::poll`); queue
//! every reply for its connection and write as much as each socket takes.
//! A reply that does not fit waits in the connection's pending buffer;
//! while that buffer is large the connection's requests are not read
//! (back-pressure), and a client that lets it grow past [`MAX_PENDING`]
//! is disconnected, as the hosted node does. The socket pool grows and
//! shrinks so that [`iface::LISTENERS`] sockets are always listening
//! (smoltcp has no accept queue). When idle for a while the
//! CPU halts until the next timer tick, so an idle kernel costs little
//! and a busy one answers without waiting for a tick.

use alloc::vec::Vec;

use cellfs::{ConnId, MemLog, Outbox, Server};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{self, State};

use crate::net::iface::{self, Network};
use crate::timer::{self, KernelClock};

/// The core as the kernel runs it: RAM log (durability none), kernel clock.
pub type KernelServer = Server<MemLog, KernelClock>;

/// Reply bytes a connection may have waiting before its requests stop
/// being read.
const PAUSE_READING: usize = 4 << 20;
/// Reply bytes after which a client that does not read is dropped.
const MAX_PENDING: usize = 16 << 20;
/// Ticks to keep polling without halting after the last activity.
const SPIN_TICKS: u64 = 20;

/// One socket of the pool and the client on it, if any.
struct Slot {
    handle: SocketHandle,
    conn: Option<Conn>,
}

/// A connected client.
struct Conn {
    id: ConnId,
    /// Received bytes not yet cut into frames.
    inbuf: Vec<u8>,
    /// Replies not yet taken by the socket, from `sent` on.
    pending: Vec<u8>,
    sent: usize,
    /// The core or the loop gave up on this connection.
    closing: bool,
}

impl Conn {
    fn waiting(&self) -> usize {
        self.pending.len() - self.sent
    }
}

/// Serve until the machine stops.
pub fn run(net: &mut Network, server: &mut KernelServer) -> ! {
    let mut out = Outbox::new();
    let mut slots: Vec<Slot> = net
        .handles
        .iter()
        .map(|&handle| Slot { handle, conn: None })
        .collect();
    let mut last_busy = timer::ticks();
    loop {
        let mut busy = net.poll();
        for slot in &mut slots {
            let sock = net.sockets.get_mut::<tcp::Socket>(slot.handle);
            busy |= receive(sock, &mut slot.conn, server, &mut out);
        }
        server.poll(&mut out);
        busy |= !out.is_empty();
        deliver(&mut slots, &mut out);
        for slot in &mut slots {
            let sock = net.sockets.get_mut::<tcp::Socket>(slot.handle);
            busy |= transmit(sock, &mut slot.conn, server, &mut out);
        }
        // Disconnects may have produced replies for other connections.
        if !out.is_empty() {
            deliver(&mut slots, &mut out);
        }
        busy |= keep_listening(net, &mut slots);
        if busy {
            // Push what was queued now rather than on the next turn.
            net.poll();
            last_busy = timer::ticks();
        } else if timer::ticks().saturating_sub(last_busy) > SPIN_TICKS {
            // Nothing for a while: sleep until the next tick (1 ms).
            x86_64::instructions::interrupts::enable_and_hlt();
        }
    }
}

/// Keep [`iface::LISTENERS`] sockets listening: recycle closed ones, add
/// sockets while under [`iface::MAX_SOCKETS`], and drop closed ones
/// beyond what is needed (freeing their buffers). Whether anything
/// changed.
fn keep_listening(net: &mut Network, slots: &mut Vec<Slot>) -> bool {
    let mut changed = false;
    let mut listening = 0;
    for slot in slots.iter() {
        let sock = net.sockets.get_mut::<tcp::Socket>(slot.handle);
        match sock.state() {
            State::Listen => listening += 1,
            // Both sides are done; free the socket now instead of after
            // the TIME-WAIT delay.
            State::TimeWait if slot.conn.is_none() => sock.abort(),
            _ => {}
        }
    }
    let mut i = 0;
    while i < slots.len() {
        let sock = net.sockets.get_mut::<tcp::Socket>(slots[i].handle);
        if slots[i].conn.is_none() && sock.state() == State::Closed {
            changed = true;
            if listening < iface::LISTENERS {
                sock.listen(iface::PORT)
                    .expect("port 564 is a valid listen endpoint");
                listening += 1;
            } else {
                net.sockets.remove(slots[i].handle);
                slots.swap_remove(i);
                continue;
            }
        }
        i += 1;
    }
    while listening < iface::LISTENERS && slots.len() < iface::MAX_SOCKETS {
        let handle = net.sockets.add(iface::listener());
        slots.push(Slot { handle, conn: None });
        listening += 1;
        changed = true;
    }
    changed
}

/// Accept, read and handle requests on one socket; whether anything
/// happened.
fn receive(
    sock: &mut tcp::Socket<'_>,
    slot: &mut Option<Conn>,
    server: &mut KernelServer,
    out: &mut Outbox,
) -> bool {
    if slot.is_none() && matches!(sock.state(), State::Established | State::CloseWait) {
        *slot = Some(Conn {
            id: server.connect(),
            inbuf: Vec::new(),
            pending: Vec::new(),
            sent: 0,
            closing: false,
        });
    }
    let Some(c) = slot.as_mut() else {
        return false;
    };
    let mut busy = false;
    while sock.can_recv() && c.waiting() < PAUSE_READING && !c.closing {
        let got = sock.recv(|buf| {
            c.inbuf.extend_from_slice(buf);
            (buf.len(), buf.len())
        });
        if !matches!(got, Ok(n) if n > 0) {
            break;
        }
        busy = true;
    }
    let mut at = 0;
    while !c.closing {
        match ninep::frame::frame_len(&c.inbuf[at..], server.frame_limit(c.id)) {
            Ok(Some(n)) => {
                server.handle(c.id, &c.inbuf[at..at + n], out);
                at += n;
            }
            Ok(None) => break,
            Err(e) => {
                crate::println!("9p: closing connection {}: {e}", c.id.0);
                c.closing = true;
            }
        }
    }
    c.inbuf.drain(..at);
    busy
}

/// Queue every reply in `out` for its connection and mark the ones the
/// core closed.
fn deliver(slots: &mut [Slot], out: &mut Outbox) {
    let find = |slots: &mut [Slot], id: ConnId| -> Option<usize> {
        slots
            .iter()
            .position(|s| s.conn.as_ref().is_some_and(|c| c.id == id))
    };
    for (id, frame) in out.frames() {
        let Some(i) = find(slots, id) else { continue };
        let c = slots[i].conn.as_mut().expect("found above");
        if c.waiting() + frame.len() > MAX_PENDING {
            crate::println!(
                "9p: connection {} is not reading its replies; closing it",
                id.0
            );
            c.closing = true;
        } else {
            c.pending.extend_from_slice(frame);
        }
    }
    for &id in out.closes() {
        if let Some(i) = find(slots, id) {
            slots[i].conn.as_mut().expect("found above").closing = true;
        }
    }
    out.clear();
}

/// Write pending replies, close and recycle; whether anything happened.
fn transmit(
    sock: &mut tcp::Socket<'_>,
    slot: &mut Option<Conn>,
    server: &mut KernelServer,
    out: &mut Outbox,
) -> bool {
    let mut busy = false;
    if let Some(c) = slot.as_mut() {
        while c.waiting() > 0 && sock.can_send() {
            match sock.send_slice(&c.pending[c.sent..]) {
                Ok(n) if n > 0 => {
                    c.sent += n;
                    busy = true;
                }
                _ => break,
            }
        }
        if c.sent == c.pending.len() {
            c.pending.clear();
            c.sent = 0;
        } else if c.sent > (1 << 20) {
            c.pending.drain(..c.sent);
            c.sent = 0;
        }
        let state = sock.state();
        // The peer closed its side and everything it sent was handled, or
        // the connection is gone (reset, timed out).
        let peer_done = !matches!(state, State::Established | State::CloseWait)
            || (state == State::CloseWait && !sock.can_recv() && c.waiting() == 0);
        if peer_done || (c.closing && c.waiting() == 0) {
            server.disconnect(c.id, out);
            if matches!(state, State::Established | State::CloseWait) {
                // Our FIN goes after the replies already in the socket.
                sock.close();
            } else {
                sock.abort();
            }
            *slot = None;
            busy = true;
        }
    }
    busy
}
