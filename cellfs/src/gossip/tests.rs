//! The engine's own checks: each reason a datagram is dropped, and two
//! nodes finding each other, suspecting and leaving.

use alloc::vec;
use alloc::vec::Vec;

use super::*;

const SWARM: [u8; 16] = [5; 16];

fn key(id: u64) -> NodeKey {
    NodeKey::from_seed(&[id as u8; 32])
}

fn node(id: u64, boot: u64) -> Gossip {
    Gossip::new(id, key(id), boot, GossipConfig::new(SWARM), id, 0)
}

fn members(ids: &[u64]) -> Vec<Admitted> {
    ids.iter()
        .map(|&id| Admitted {
            id,
            key: key(id).public(),
        })
        .collect()
}

/// A datagram from member 2 to member 1 as 2 would send it.
fn from_two() -> Vec<u8> {
    let mut two = node(2, 10);
    two.set_members(&members(&[1, 2]), 0);
    let mut out = Vec::new();
    two.take_outgoing(&mut out);
    out.into_iter().find(|(to, _)| *to == 1).unwrap().1
}

fn one() -> Gossip {
    let mut one = node(1, 10);
    one.set_members(&members(&[1, 2]), 0);
    one
}

#[test]
fn accepts_a_signed_datagram_once() {
    let mut one = one();
    let packet = from_two();
    one.handle(&packet, 1);
    assert_eq!(one.view().counters.received, 1);
    assert_eq!(one.view().members[&2].last_seen_ms, Some(1));
    one.handle(&packet, 2);
    assert_eq!(one.view().counters.dropped_replay, 1);
    assert_eq!(one.view().counters.received, 1);
}

#[test]
fn drops_malformed() {
    let mut one = one();
    one.handle(b"short", 1);
    let mut packet = from_two();
    packet[0] = 0;
    one.handle(&packet, 1);
    assert_eq!(one.view().counters.dropped_malformed, 2);
}

#[test]
fn drops_foreign_before_checking_the_signature() {
    let mut one = one();
    let mut packet = from_two();
    packet[5] ^= 1; // the swarm id (the signature is now wrong too)
    one.handle(&packet, 1);
    assert_eq!(one.view().counters.dropped_foreign, 1);
    assert_eq!(one.view().counters.dropped_bad_signature, 0);
}

#[test]
fn drops_unknown_senders() {
    let mut one = node(1, 10);
    one.set_members(&members(&[1, 3]), 0);
    one.handle(&from_two(), 1);
    assert_eq!(one.view().counters.dropped_unknown, 1);
}

#[test]
fn drops_bad_signatures() {
    let mut one = one();
    let mut packet = from_two();
    let last = packet.len() - 1;
    packet[last] ^= 1;
    one.handle(&packet, 1);
    let mut packet = from_two();
    packet[envelope::HEADER] ^= 1;
    one.handle(&packet, 1);
    assert_eq!(one.view().counters.dropped_bad_signature, 2);
    // Another member's key does not pass either.
    let mut one = node(1, 10);
    let mut wrong = members(&[1, 2]);
    wrong[1].key = key(9).public();
    one.set_members(&wrong, 0);
    one.handle(&from_two(), 1);
    assert_eq!(one.view().counters.dropped_bad_signature, 1);
}

#[test]
fn drops_an_earlier_boot() {
    let mut one = one();
    let mut two = node(2, 20);
    two.set_members(&members(&[1, 2]), 0);
    let mut out = Vec::new();
    two.take_outgoing(&mut out);
    one.handle(&out[0].1, 1);
    one.handle(&from_two(), 1); // boot 10 < 20
    assert_eq!(one.view().counters.dropped_replay, 1);
}

/// Deliver every datagram between `nodes` (ids 1..) until quiet, ticking
/// each at `now`.
fn exchange(nodes: &mut [Gossip], now: u64, cut: &[u64]) {
    loop {
        let mut moved = false;
        for i in 0..nodes.len() {
            nodes[i].tick(now);
            let mut out = Vec::new();
            nodes[i].take_outgoing(&mut out);
            for (to, packet) in out {
                moved = true;
                if cut.contains(&to) || cut.contains(&(i as u64 + 1)) {
                    continue;
                }
                nodes[to as usize - 1].handle(&packet, now);
            }
        }
        if !moved {
            break;
        }
    }
}

#[test]
fn three_find_each_other_then_one_dies_then_one_leaves() {
    let ids = [1, 2, 3];
    let mut nodes: Vec<Gossip> = ids.iter().map(|&id| node(id, 10)).collect();
    for n in &mut nodes {
        n.set_members(&members(&ids), 0);
    }
    let mut now = 0;
    while now < 3_000 {
        exchange(&mut nodes, now, &[]);
        now += 10;
    }
    let mut events = Vec::new();
    nodes[0].take_events(&mut events);
    assert_eq!(events, vec![GossipEvent::Alive(2), GossipEvent::Alive(3)]);
    assert!(nodes[0].view().members[&2].rtt_us.is_some());
    // 3 stops answering.
    while now < 10_000 {
        exchange(&mut nodes, now, &[3]);
        now += 10;
    }
    assert_eq!(nodes[0].view().members[&3].state, Liveness::Dead);
    assert_eq!(nodes[1].view().members[&3].state, Liveness::Dead);
    nodes[0].take_events(&mut events);
    assert!(events.contains(&GossipEvent::Dead(3)), "{events:?}");
    // 2 leaves.
    nodes[1].leave(now);
    exchange(&mut nodes, now, &[3]);
    assert_eq!(nodes[0].view().members[&2].state, Liveness::Left);
    while now < 20_000 {
        exchange(&mut nodes, now, &[3]);
        now += 10;
    }
    assert_eq!(nodes[0].view().members[&2].state, Liveness::Left);
    events.clear();
    nodes[0].take_events(&mut events);
    assert!(events.contains(&GossipEvent::Left(2)), "{events:?}");
    assert!(!events.contains(&GossipEvent::Dead(2)), "{events:?}");
}

#[test]
fn liveness_display() {
    use alloc::string::ToString;
    assert_eq!(Liveness::Suspect.to_string(), "suspect");
    assert_eq!(Liveness::Left.to_string(), "left");
}
