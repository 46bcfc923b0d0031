//! The swarm's gossip over UDP, beside 9P: one task drives the core's
//! [`cellfs::gossip::Gossip`] with the datagrams it receives and a timer,
//! sends what it asks to send, and hands the node's server what it sees
//! (a [`Vantage`]) and the lines `/events` gets. See swarm(3).
//!
//! Who may gossip is committed: the task reads the swarm's members from
//! the server (their gossip addresses and keys) and gives the engine that
//! list, so a node that did not join is never heard.

mod loss;

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use cellfs::cap::NodeKey;
use cellfs::gossip::{Admitted, Gossip, GossipConfig, GossipEvent};
use cellfs::vantage::{Me, Vantage};
use tokio::net::UdpSocket;

pub use loss::Loss;

/// What the committed state says of the swarm, as the task needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// The swarm's id, once founded.
    pub swarm: Option<[u8; 16]>,
    /// Every member that has not left: id, key, gossip address.
    pub members: Vec<(u64, [u8; 32], String)>,
    /// Whether this node's committed record says it left.
    pub left: bool,
}

/// How the task reaches the node's server: give it the vantage and the
/// event lines, get back the committed swarm (under the server's lock,
/// for as long as the call).
pub trait Exchange: Send + 'static {
    /// Hand over what this node sees; return what is committed.
    fn exchange(&mut self, vantage: Vantage, lines: Vec<String>) -> Committed;
}

/// How often the task hands its view to the server and reads the
/// committed members, with nothing else happening.
const SYNC: Duration = Duration::from_millis(100);

/// The largest datagram the task takes.
const MAX_DATAGRAM: usize = 64 * 1024;

/// Run the gossip of node `me` on `sock` until the process ends.
pub async fn run(
    sock: UdpSocket,
    me: Me,
    key: NodeKey,
    mut ex: impl Exchange,
    loss: Loss,
    cut: crate::node::cut::Cut,
) {
    let start = Instant::now();
    let now = || start.elapsed().as_millis() as u64;
    let boot = crate::identity::now_ms();
    let seed = u64::from_le_bytes(key.public()[..8].try_into().unwrap_or_default()) ^ boot;
    let mut gossip: Option<Gossip> = None;
    let mut admitted: Vec<(u64, [u8; 32], String)> = Vec::new();
    let mut addrs: BTreeMap<u64, SocketAddr> = BTreeMap::new();
    let mut left = false;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut events: Vec<GossipEvent> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let mut sync = tokio::time::interval(SYNC);
    sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut loss = loss;
    loop {
        let deadline = gossip
            .as_ref()
            .and_then(Gossip::next_deadline)
            .map(|d| start + Duration::from_millis(d))
            .unwrap_or_else(|| Instant::now() + SYNC);
        let synced = tokio::select! {
            r = sock.recv_from(&mut buf) => {
                if let (Ok((n, _from)), Some(g)) = (r, gossip.as_mut())
                    && !cut.is_cut()
                {
                    g.handle(&buf[..n], now());
                }
                false
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                if let Some(g) = gossip.as_mut() {
                    g.tick(now());
                }
                false
            }
            _ = sync.tick() => true,
        };
        if let Some(g) = gossip.as_mut() {
            g.take_outgoing(&mut out);
            for (to, bytes) in out.drain(..) {
                if let Some(addr) = addrs.get(&to)
                    && !loss.drop_one()
                    && !cut.is_cut()
                {
                    let _ = sock.send_to(&bytes, addr).await;
                }
            }
            g.take_events(&mut events);
            lines.extend(events.drain(..).map(|e| line(&e)));
        }
        if !synced && lines.is_empty() {
            continue;
        }
        let vantage = Vantage {
            me: Some(me.clone()),
            view: gossip
                .as_ref()
                .map(|g| g.view().clone())
                .unwrap_or_default(),
            now_ms: now(),
        };
        let committed =
            tokio::task::block_in_place(|| ex.exchange(vantage, std::mem::take(&mut lines)));
        let Some(swarm) = committed.swarm else {
            continue;
        };
        let g = gossip.get_or_insert_with(|| {
            Gossip::new(
                me.id,
                key.clone(),
                boot,
                GossipConfig::new(swarm),
                seed,
                now(),
            )
        });
        if committed.members != admitted {
            admitted = committed.members;
            addrs = admitted
                .iter()
                .filter_map(|(id, _, a)| Some((*id, resolve(a)?)))
                .collect();
            let list: Vec<Admitted> = admitted
                .iter()
                .map(|(id, key, _)| Admitted { id: *id, key: *key })
                .collect();
            g.set_members(&list, now());
        }
        if committed.left && !left {
            left = true;
            g.leave(now());
        }
    }
}

/// The `/events` line for a gossip event.
fn line(e: &GossipEvent) -> String {
    match e {
        GossipEvent::Alive(id) => format!("alive node={id}"),
        GossipEvent::Suspect(id) => format!("suspect node={id}"),
        GossipEvent::Refuted(id) => format!("refuted node={id}"),
        GossipEvent::Dead(id) => format!("dead node={id}"),
        GossipEvent::Left(id) => format!("left node={id}"),
    }
}

/// `HOST:PORT` as a socket address (the first the resolver gives).
fn resolve(addr: &str) -> Option<SocketAddr> {
    addr.to_socket_addrs().ok()?.next()
}
