//! The simulated swarm: members (each a real `Gossip` on its own drifting
//! clock), the network between them (delay, loss, partitions) and what the
//! checks need (every event with its global time).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use cellfs::cap::NodeKey;
use cellfs::gossip::{Admitted, Gossip, GossipConfig, GossipEvent};

use super::rng::Rng;

/// The swarm id of every simulated member.
pub const SWARM: [u8; 16] = *b"gossip-sim-swarm";

/// One simulated member.
pub struct Node {
    /// Its engine (None: crashed).
    pub gossip: Option<Gossip>,
    /// Its clock rate (1 ± 1 %).
    rate: f64,
    /// Its clock's reading at global time 0.
    offset: u64,
    /// How many times it has booted.
    boots: u64,
}

impl Node {
    /// Its clock at global time `t`.
    pub fn local(&self, t: u64) -> u64 {
        // As `World::run_until` computes it from `clocks`.
        self.offset + (t as f64 * self.rate) as u64
    }
}

/// A datagram in flight: (due, order) → (from, to, bytes).
type Flight = Reverse<(u64, u64, u64, u64, Vec<u8>)>;

/// The world of one seed.
pub struct World {
    /// The generator that decides everything.
    pub rng: Rng,
    /// Member id → member.
    pub nodes: BTreeMap<u64, Node>,
    /// The admitted members.
    pub admitted: Vec<Admitted>,
    /// Global time, ms.
    pub now: u64,
    /// Datagram loss probability.
    pub loss: f64,
    /// Members cut off from the rest (and the rest from them).
    pub cut: BTreeSet<u64>,
    /// Every event: (global ms, observer, event).
    pub events: Vec<(u64, u64, GossipEvent)>,
    /// Real ed25519 signatures (else the simulation-only unsigned engine).
    signed: bool,
    in_flight: BinaryHeap<Flight>,
    sent: u64,
    /// Print every event as it happens.
    pub trace: bool,
    /// The members' ids (cached).
    ids: Vec<u64>,
    /// Per member (as `ids`): its next deadline on its clock.
    wake: Vec<u64>,
    /// Per member (as `ids`): its clock's rate and offset.
    clocks: Vec<(f64, u64)>,
}

fn key(id: u64) -> NodeKey {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&id.to_le_bytes());
    seed[8] = 0xc0;
    NodeKey::from_seed(&seed)
}

/// The admitted record of member `id`.
pub fn admitted(id: u64) -> Admitted {
    Admitted {
        id,
        key: key(id).public(),
    }
}

impl World {
    /// A world of members `ids`, none started yet.
    pub fn new(seed: u64, signed: bool, loss: f64, ids: &[u64]) -> World {
        let mut rng = Rng::new(seed);
        let mut nodes = BTreeMap::new();
        for &id in ids {
            let rate = 1.0 + (rng.unit() * 2.0 - 1.0) * 0.01;
            let offset = rng.below(1_000_000);
            nodes.insert(
                id,
                Node {
                    gossip: None,
                    rate,
                    offset,
                    boots: 0,
                },
            );
        }
        World {
            rng,
            nodes,
            admitted: ids.iter().map(|&id| admitted(id)).collect(),
            now: 0,
            loss,
            cut: BTreeSet::new(),
            events: Vec::new(),
            signed,
            in_flight: BinaryHeap::new(),
            sent: 0,
            trace: false,
            ids: Vec::new(),
            wake: Vec::new(),
            clocks: Vec::new(),
        }
    }

    /// Add member `id` (not started) with its own clock.
    pub fn add(&mut self, id: u64) {
        let rate = 1.0 + (self.rng.unit() * 2.0 - 1.0) * 0.01;
        let offset = self.rng.below(1_000_000);
        self.nodes.insert(
            id,
            Node {
                gossip: None,
                rate,
                offset,
                boots: 0,
            },
        );
    }

    /// Start (or restart, with a new boot) member `id`, admitting the
    /// current member list.
    pub fn start(&mut self, id: u64) {
        let seed = self.rng.next();
        let node = self.nodes.get_mut(&id).expect("a member");
        node.boots += 1;
        let local = node.local(self.now);
        // Boots grow from run to run, as unix ms at start do.
        let boot = 1_000_000_000 + node.boots * 1_000_000 + self.now;
        let config = GossipConfig::new(SWARM);
        let mut g = if self.signed {
            Gossip::new(id, key(id), boot, config, seed, local)
        } else {
            Gossip::new_unsigned_for_simulation(id, boot, config, seed, local)
        };
        g.set_members(&self.admitted, local);
        node.gossip = Some(g);
        self.drain(id);
    }

    /// Rebuild the per-member vectors after a member is added.
    fn index(&mut self) {
        if self.ids.len() != self.nodes.len() {
            self.ids = self.nodes.keys().copied().collect();
            self.wake = vec![0; self.ids.len()];
            self.clocks = self.nodes.values().map(|n| (n.rate, n.offset)).collect();
        }
    }

    /// Member `id` stops.
    pub fn crash(&mut self, id: u64) {
        if let Some(n) = self.nodes.get_mut(&id) {
            n.gossip = None;
        }
    }

    /// Whether `id` is running.
    pub fn running(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.gossip.is_some())
    }

    /// Admit `ids` on every running member.
    pub fn set_members(&mut self, ids: &[u64]) {
        self.admitted = ids.iter().map(|&id| admitted(id)).collect();
        let running: Vec<u64> = self.running_ids();
        for id in running {
            let node = self.nodes.get_mut(&id).expect("a member");
            let local = node.local(self.now);
            if let Some(g) = node.gossip.as_mut() {
                g.set_members(&self.admitted, local);
            }
            self.drain(id);
        }
    }

    /// The running members.
    pub fn running_ids(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.gossip.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    /// Take member `id`'s datagrams into the network and its events into
    /// the record.
    fn drain(&mut self, id: u64) {
        let mut out = Vec::new();
        let mut events = Vec::new();
        let mut wake = u64::MAX;
        if let Some(g) = self.nodes.get_mut(&id).and_then(|n| n.gossip.as_mut()) {
            g.take_outgoing(&mut out);
            g.take_events(&mut events);
            wake = g.next_deadline().unwrap_or(u64::MAX);
        }
        self.index();
        if let Ok(k) = self.ids.binary_search(&id) {
            self.wake[k] = wake;
        }
        for e in events {
            if self.trace {
                println!("{:>7} ms  n{id}: {e:?}", self.now);
            }
            self.events.push((self.now, id, e));
        }
        for (to, bytes) in out {
            self.sent += 1;
            if self.rng.unit() < self.loss {
                continue;
            }
            let delay = 1 + self.rng.below(20);
            self.in_flight
                .push(Reverse((self.now + delay, self.sent, id, to, bytes)));
        }
    }

    /// Run until global time `until`, in steps of `STEP` ms.
    pub fn run_until(&mut self, until: u64) {
        const STEP: u64 = 2;
        while self.now < until {
            self.now += STEP;
            while let Some(Reverse((due, ..))) = self.in_flight.peek() {
                if *due > self.now {
                    break;
                }
                let Some(Reverse((_, _, from, to, bytes))) = self.in_flight.pop() else {
                    break;
                };
                if self.cut.contains(&from) != self.cut.contains(&to) {
                    continue;
                }
                let now = self.now;
                let Some(node) = self.nodes.get_mut(&to) else {
                    continue;
                };
                let local = node.local(now);
                if let Some(g) = node.gossip.as_mut() {
                    g.handle(&bytes, local);
                    self.drain(to);
                }
            }
            self.index();
            for k in 0..self.ids.len() {
                let (rate, offset) = self.clocks[k];
                if self.wake[k] > offset + (self.now as f64 * rate) as u64 {
                    continue;
                }
                let id = self.ids[k];
                let node = self.nodes.get_mut(&id).expect("a member");
                let local = node.local(self.now);
                let Some(g) = node.gossip.as_mut() else {
                    continue;
                };
                if self.wake[k] <= local {
                    g.tick(local);
                    self.drain(id);
                }
            }
        }
    }
}
