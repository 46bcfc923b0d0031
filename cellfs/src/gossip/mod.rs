//! The swarm's gossip membership engine: SWIM (through the `foca` crate)
//! with Lifeguard's local health multiplier, inside a signed, replay-proof
//! envelope, admitting only the members the committed state lists.
//!
//! Like the rest of `cellfs` it does no I/O, owns no thread and reads no
//! clock: the caller hands it datagrams ([`Gossip::handle`]) and the time
//! (`now_ms`, monotonic milliseconds, at every call), fires its timers
//! ([`Gossip::tick`] at [`Gossip::next_deadline`]), sends what
//! [`Gossip::take_outgoing`] gives to the members' addresses, and reads
//! what changed from [`Gossip::take_events`] and [`Gossip::view`].
//!
//! What foca gives: direct and indirect probes, suspicion and refutation
//! by incarnation, dissemination piggybacked on every datagram plus
//! periodic gossip, and automatic rejoin of a node falsely declared dead
//! (its identity is renewed, see `identity.rs`).
//!
//! Lifeguard (Dadgar et al., "Lifeguard: Local Health Awareness for More
//! Accurate Failure Detection", 2018) has three parts; only the first is
//! here:
//! - the local health multiplier (`lifeguard.rs`): it stretches this
//!   node's probe timers and its suspect→dead timer;
//! - not the dynamic suspicion timeout (shortened as independent
//!   suspicions of the same member arrive): foca keeps its suspicion
//!   bookkeeping private, so the timeout here is the fixed `suspect_ms`;
//! - not buddy system (telling a suspect of its suspicion first): foca
//!   chooses what a datagram carries.
//!
//! Determinism: the same construction arguments and the same sequence of
//! calls give the same datagrams, events and view (the PRNG is seeded by
//! the caller).

mod config;
pub mod envelope;
mod identity;
mod lifeguard;
mod rng;
mod runtime;
mod view;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use foca::{
    Codec, Foca, Member, Message, NoCustomBroadcast, OwnedNotification, PostcardCodec, State,
};

pub use config::GossipConfig;
pub use envelope::Dropped;
pub use view::{Counters, GossipEvent, Liveness, Observed, View};

use crate::cap::NodeKey;
use envelope::{Kind, Seal, Signing, Window};
use identity::Ident;
use rng::SplitMix;
use runtime::{Due, Io};

/// A member admitted by the committed state: the only senders accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// Its member id.
    pub id: u64,
    /// Its node key (ed25519 public key) that signs its datagrams.
    pub key: [u8; 32],
}

/// How many members never heard from are announced to at once (at
/// admission and at each housekeeping round): the replies (foca's feeds)
/// carry the rest of the swarm, so announcing to all of a large swarm at
/// once would only multiply traffic.
const ANNOUNCE_FANOUT: usize = 8;

/// A ping not answered within this long is forgotten (for the RTT).
const PING_MEMORY_MS: u64 = 10_000;

/// One node's gossip engine.
pub struct Gossip {
    me: u64,
    boot: u64,
    config: GossipConfig,
    signing: Signing,
    foca: Foca<Ident, PostcardCodec, SplitMix, NoCustomBroadcast>,
    io: Io,
    rng: SplitMix,
    admitted: BTreeMap<u64, [u8; 32]>,
    windows: BTreeMap<u64, Window>,
    seq: u64,
    view: View,
    /// Per member of the view (same keys): whether foca has listed it since
    /// its admission (heard of it, directly or through others).
    known: BTreeMap<u64, bool>,
    /// foca's table as the view last saw it, in foca's order.
    table: Vec<(Ident, Liveness, u16)>,
    /// Member → the boot of its process that said goodbye.
    left: BTreeMap<u64, u64>,
    /// (probed member, probe number) → when the ping left.
    pings: BTreeMap<(u64, u8), u64>,
    outgoing: Vec<(u64, Vec<u8>)>,
    events: Vec<GossipEvent>,
    leaving: bool,
    /// A membership change foca notified (or a goodbye) not yet in the
    /// view.
    dirty: bool,
    /// Rows of foca's table that changed (kept to reuse its allocation).
    changed: Vec<(Ident, Liveness, u16)>,
    /// foca's table sorted by id (kept to reuse its allocation).
    sorted: Vec<(Ident, Liveness, u16)>,
    /// How many members of the view foca had not listed at that time.
    unheard: usize,
}

impl core::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Gossip")
            .field("me", &self.me)
            .field("boot", &self.boot)
            .field("view", &self.view)
            .finish_non_exhaustive()
    }
}

impl Gossip {
    /// The engine of member `id`, signing with `key`. `boot` distinguishes
    /// this process's datagrams from an earlier run's (pass unix ms at
    /// start: it must grow from run to run); `seed` seeds the PRNG.
    pub fn new(
        id: u64,
        key: NodeKey,
        boot: u64,
        config: GossipConfig,
        seed: u64,
        now_ms: u64,
    ) -> Gossip {
        Gossip::with_signing(
            id,
            Signing::Ed25519(alloc::boxed::Box::new(key)),
            boot,
            config,
            seed,
            now_ms,
        )
    }

    /// An engine that neither signs nor checks signatures, for the
    /// deterministic simulation only (signing every datagram of hundreds of
    /// seeds of a hundred members would take minutes). Never use it on a
    /// network: any datagram naming an admitted sender is believed.
    #[cfg(feature = "simulation")]
    pub fn new_unsigned_for_simulation(
        id: u64,
        boot: u64,
        config: GossipConfig,
        seed: u64,
        now_ms: u64,
    ) -> Gossip {
        Gossip::with_signing(
            id,
            Signing::SimulationOnlyUnsigned,
            boot,
            config,
            seed,
            now_ms,
        )
    }

    fn with_signing(
        id: u64,
        signing: Signing,
        boot: u64,
        config: GossipConfig,
        seed: u64,
        now_ms: u64,
    ) -> Gossip {
        let me = Ident { id, boot, bump: 0 };
        let foca = Foca::new(me, config.foca(), SplitMix::new(seed), PostcardCodec);
        let mut io = Io::default();
        io.now_ms = now_ms;
        io.schedule(now_ms + config.probe_period_ms, Due::Housekeeping);
        Gossip {
            me: id,
            boot,
            config,
            signing,
            foca,
            io,
            rng: SplitMix::new(seed ^ 0x6a09_e667_f3bc_c908),
            admitted: BTreeMap::new(),
            windows: BTreeMap::new(),
            seq: 0,
            view: View::default(),
            known: BTreeMap::new(),
            table: Vec::new(),
            left: BTreeMap::new(),
            pings: BTreeMap::new(),
            outgoing: Vec::new(),
            events: Vec::new(),
            leaving: false,
            dirty: true,
            changed: Vec::new(),
            sorted: Vec::new(),
            unheard: 0,
        }
    }

    /// The committed member list (including this node). New members are
    /// announced to (a few at a time; the rest hear of this node from
    /// them); removed ones are declared down to foca and dropped from the
    /// view. Datagrams from ids not in it are dropped and counted.
    pub fn set_members(&mut self, members: &[Admitted], now_ms: u64) {
        self.io.now_ms = now_ms;
        let next: BTreeMap<u64, [u8; 32]> = members.iter().map(|m| (m.id, m.key)).collect();
        let removed: Vec<u64> = self
            .admitted
            .keys()
            .filter(|id| !next.contains_key(id))
            .copied()
            .collect();
        for id in &removed {
            self.view.members.remove(id);
            self.windows.remove(id);
            self.known.remove(id);
            self.left.remove(id);
        }
        let gone: Vec<Member<Ident>> = self
            .foca
            .iter_membership_state()
            .filter(|m| removed.contains(&m.id().id) && m.state() != State::Down)
            .map(|m| Member::new(*m.id(), m.incarnation(), State::Down))
            .collect();
        if !gone.is_empty() {
            let _ = self.foca.apply_many(gone.into_iter(), false, &mut self.io);
        }
        let mut fresh = Vec::new();
        for id in next.keys().copied().filter(|&id| id != self.me) {
            if let alloc::collections::btree_map::Entry::Vacant(e) = self.view.members.entry(id) {
                e.insert(Observed::admitted(now_ms));
                self.known.insert(id, false);
                fresh.push(id);
            }
        }
        self.admitted = next;
        self.dirty = true;
        self.announce_some(fresh);
        self.settle(now_ms);
    }

    /// A datagram received (from any address: identity comes from the
    /// signed envelope).
    pub fn handle(&mut self, packet: &[u8], now_ms: u64) {
        self.io.now_ms = now_ms;
        if let Err(drop) = self.accept(packet, now_ms) {
            let c = &mut self.view.counters;
            match drop {
                Dropped::Malformed => c.dropped_malformed += 1,
                Dropped::Foreign => c.dropped_foreign += 1,
                Dropped::Unknown => c.dropped_unknown += 1,
                Dropped::BadSignature => c.dropped_bad_signature += 1,
                Dropped::Replay => c.dropped_replay += 1,
            }
        }
        self.settle(now_ms);
    }

    /// Fire every timer due at `now_ms`.
    pub fn tick(&mut self, now_ms: u64) {
        self.io.now_ms = now_ms;
        while let Some(due) = self.io.pop_due(now_ms) {
            match due {
                // foca's errors from a timer are stale timers or a node
                // that left: nothing to do about them.
                Due::Foca(timer) => {
                    let _ = self.foca.handle_timer(timer, &mut self.io);
                }
                Due::Housekeeping => self.housekeeping(now_ms),
                Due::Recheck(ident, incarnation, last) => {
                    self.recheck(ident, incarnation, last, now_ms);
                }
            }
            // Before the next timer, so Lifeguard's score is current when
            // it schedules.
            self.absorb(now_ms);
        }
        self.settle(now_ms);
    }

    /// When [`Gossip::tick`] should next be called (None: nothing
    /// scheduled).
    pub fn next_deadline(&self) -> Option<u64> {
        self.io.timers.keys().next().map(|&(at, _)| at)
    }

    /// Datagrams to send: (destination member id, bytes). The caller maps
    /// ids to UDP addresses.
    pub fn take_outgoing(&mut self, out: &mut Vec<(u64, Vec<u8>)>) {
        out.append(&mut self.outgoing);
    }

    /// What happened since the last call, in order.
    pub fn take_events(&mut self, out: &mut Vec<GossipEvent>) {
        out.append(&mut self.events);
    }

    /// This node's observed view.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Say goodbye: every admitted member is told directly, twice (a
    /// datagram may be lost), and marks this node `left`. A member that
    /// misses both finds it dead. foca is not asked to spread the departure:
    /// it would spread it as a death, which could overtake the goodbye.
    /// The engine is silent afterwards.
    pub fn leave(&mut self, now_ms: u64) {
        if self.leaving {
            return;
        }
        self.io.now_ms = now_ms;
        self.absorb(now_ms);
        let ids: Vec<u64> = self.view.members.keys().copied().collect();
        for _ in 0..2 {
            for &id in &ids {
                self.seal_to(id, Kind::Goodbye, &[]);
            }
        }
        self.leaving = true;
        // Nothing left to fire.
        self.io.timers.clear();
        self.settle(now_ms);
    }

    /// Check a datagram and hand its payload on.
    fn accept(&mut self, packet: &[u8], now_ms: u64) -> Result<(), Dropped> {
        let e = envelope::open(packet)?;
        if e.swarm != self.config.swarm {
            return Err(Dropped::Foreign);
        }
        if e.sender == self.me {
            // Our own datagram reflected back is no peer's.
            return Err(Dropped::Unknown);
        }
        let key = self.admitted.get(&e.sender).ok_or(Dropped::Unknown)?;
        if !e.verify(key, &self.signing) {
            return Err(Dropped::BadSignature);
        }
        self.windows
            .entry(e.sender)
            .or_default()
            .accept(e.boot, e.seq)?;
        let c = &mut self.view.counters;
        c.received += 1;
        c.received_bytes += packet.len() as u64;
        if let Some(o) = self.view.members.get_mut(&e.sender) {
            o.last_seen_ms = Some(now_ms);
        }
        if self.left.get(&e.sender).is_some_and(|&b| e.boot > b) {
            // A new run of a member that left.
            self.left.remove(&e.sender);
        }
        match e.kind {
            Kind::Goodbye => {
                self.left.insert(e.sender, e.boot);
                self.dirty = true;
                Ok(())
            }
            Kind::Swim if self.leaving => Ok(()),
            Kind::Swim => {
                // The signed sender must be the one foca's header names,
                // or a member could speak for another.
                let mut payload = e.payload;
                let header: foca::Header<Ident> = PostcardCodec
                    .decode_header(&mut payload)
                    .map_err(|_| Dropped::Malformed)?;
                if header.src.id != e.sender || header.src.boot != e.boot {
                    return Err(Dropped::Malformed);
                }
                match self.foca.handle_data(e.payload, &mut self.io) {
                    Err(
                        foca::Error::Decode(_)
                        | foca::Error::MalformedPacket
                        | foca::Error::DataTooBig
                        | foca::Error::DataFromOurselves,
                    ) => Err(Dropped::Malformed),
                    _ => Ok(()),
                }
            }
        }
    }

    /// Announce to up to [`ANNOUNCE_FANOUT`] of `ids`, chosen at random.
    fn announce_some(&mut self, mut ids: Vec<u64>) {
        if self.leaving {
            return;
        }
        while ids.len() > ANNOUNCE_FANOUT {
            let at = (self.rng.next() % ids.len() as u64) as usize;
            ids.swap_remove(at);
        }
        for id in ids {
            // foca accepts an announce addressed to any identity of the
            // receiver's id; its boot is not known yet.
            let _ = self.foca.announce(
                Ident {
                    id,
                    boot: 0,
                    bump: 0,
                },
                &mut self.io,
            );
        }
    }

    /// The engine's own periodic work.
    fn housekeeping(&mut self, now_ms: u64) {
        let silent: Vec<u64> = self
            .known
            .iter()
            .filter(|(_, known)| !**known)
            .map(|(&id, _)| id)
            .collect();
        if !silent.is_empty() {
            // Time their silence (see `sync_view`).
            self.dirty = true;
        }
        self.announce_some(silent);
        self.pings.retain(|_, &mut at| at + PING_MEMORY_MS > now_ms);
        self.io
            .schedule(now_ms + self.config.probe_period_ms, Due::Housekeeping);
    }

    /// A suspicion heard of has lasted past the time its prober had to
    /// condemn it (foca times suspicions only at the prober, so a node that
    /// missed both the verdict and the refutation would hold it suspect for
    /// ever). First ask the suspect itself (an announce: a live one answers,
    /// and its answer carries its incarnation); if that is not answered
    /// either, declare it dead here and spread it, as SWIM has every member
    /// that hears a suspicion do.
    fn recheck(&mut self, ident: Ident, incarnation: u16, last: bool, now_ms: u64) {
        let still = self.foca.iter_membership_state().any(|m| {
            *m.id() == ident && m.state() == State::Suspect && m.incarnation() == incarnation
        });
        if !still || self.leaving {
            return;
        }
        if last {
            let down = Member::new(ident, incarnation, State::Down);
            let _ = self
                .foca
                .apply_many(core::iter::once(down), true, &mut self.io);
        } else {
            let _ = self.foca.announce(ident, &mut self.io);
            let at = now_ms + self.io.health.scale(self.config.suspect_ms);
            self.io.schedule(at, Due::Recheck(ident, incarnation, true));
        }
    }

    /// Seal what foca sent, read its notifications, and bring the view up
    /// to date. foca does not notify suspicions, so its table is compared
    /// with the copy taken last time, and only the rows that changed are
    /// looked at; the whole table after a membership change foca notified,
    /// a goodbye, a row added or moved, or (at housekeeping) while a member
    /// is unheard of, whose silence is timed there.
    fn settle(&mut self, now_ms: u64) {
        self.absorb(now_ms);
        if self.dirty || !self.sync_changes(now_ms) {
            self.dirty = false;
            self.sync_view(now_ms);
        }
    }

    /// Bring the view up to date from the rows of foca's table that changed
    /// since the last copy; false if the table's shape changed (a full
    /// comparison is needed).
    fn sync_changes(&mut self, now_ms: u64) -> bool {
        let rows = self.foca.iter_membership_state();
        if rows.len() != self.table.len() {
            return false;
        }
        let mut changed = core::mem::take(&mut self.changed);
        changed.clear();
        for (row, m) in self.table.iter_mut().zip(rows) {
            if row.0.id != m.id().id {
                self.changed = changed;
                return false;
            }
            let now = (*m.id(), liveness(m.state()), m.incarnation());
            if *row != now {
                *row = now;
                changed.push(now);
            }
        }
        for &(ident, state, incarnation) in &changed {
            self.apply_row(ident, state, incarnation, now_ms);
        }
        self.changed = changed;
        true
    }

    /// Member `ident.id` is in foca's table as `state` at `incarnation`.
    fn apply_row(&mut self, ident: Ident, state: Liveness, incarnation: u16, now_ms: u64) {
        let id = ident.id;
        let (Some(o), Some(known)) = (self.view.members.get_mut(&id), self.known.get_mut(&id))
        else {
            return;
        };
        o.incarnation = u64::from(incarnation);
        let first = !*known;
        if first {
            *known = true;
            self.unheard = self.unheard.saturating_sub(1);
        }
        let state = if self.left.get(&id) == Some(&ident.boot) {
            Liveness::Left
        } else {
            state
        };
        if change(&mut self.events, id, o, state, first, now_ms) {
            self.suspected(ident, incarnation, now_ms);
        }
    }

    /// `ident` just became suspect here: recheck it once its prober's
    /// verdict is overdue.
    fn suspected(&mut self, ident: Ident, incarnation: u16, now_ms: u64) {
        let wait = self.config.suspect_ms + self.config.probe_period_ms;
        let at = now_ms + self.io.health.scale(wait);
        self.io
            .schedule(at, Due::Recheck(ident, incarnation, false));
    }

    /// Seal what foca sent and read its notifications (Lifeguard, RTT).
    fn absorb(&mut self, now_ms: u64) {
        let sent = core::mem::take(&mut self.io.sent);
        // A node that left says nothing more.
        if !self.leaving {
            for (to, payload) in sent {
                self.seal_to(to.id, Kind::Swim, &payload);
            }
        }
        let notes = core::mem::take(&mut self.io.notes);
        for note in notes {
            match note {
                OwnedNotification::DataSent(h) => {
                    let incarnation = u64::from(h.src_incarnation);
                    if h.src.bump == self.foca.identity().bump
                        && incarnation > self.view.incarnation
                    {
                        // Only a suspicion of this node raises it.
                        self.io.health.refuting();
                    }
                    self.view.incarnation = incarnation;
                    if let Message::Ping(n) = h.message {
                        self.pings.insert((h.dst.id, n), now_ms);
                    }
                }
                OwnedNotification::DataReceived(h) => {
                    let answered = match h.message {
                        Message::Ack(n) => self.pings.remove(&(h.src.id, n)).inspect(|&at| {
                            if let Some(o) = self.view.members.get_mut(&h.src.id) {
                                o.rtt_us = Some(now_ms.saturating_sub(at) * 1000);
                            }
                        }),
                        Message::ForwardedAck {
                            origin,
                            probe_number,
                        } => self.pings.remove(&(origin.id, probe_number)),
                        _ => None,
                    };
                    if answered.is_some() {
                        self.io.health.probe_answered();
                    }
                }
                OwnedNotification::ProbeFailed(_, _) => self.io.health.probe_failed(),
                OwnedNotification::MemberUp(_)
                | OwnedNotification::MemberDown(_)
                | OwnedNotification::Rename(..)
                | OwnedNotification::Rejoin(_)
                | OwnedNotification::Active
                | OwnedNotification::Idle
                | OwnedNotification::Defunct => self.dirty = true,
            }
        }
        self.view.health = self.io.health.score();
    }

    /// Seal `payload` to member `to`, if it is a peer.
    fn seal_to(&mut self, to: u64, kind: Kind, payload: &[u8]) {
        if to == self.me || !self.admitted.contains_key(&to) {
            return;
        }
        self.seq += 1;
        let packet = Seal {
            kind,
            swarm: self.config.swarm,
            sender: self.me,
            boot: self.boot,
            seq: self.seq,
            payload,
        }
        .seal(&self.signing);
        let c = &mut self.view.counters;
        c.sent += 1;
        c.sent_bytes += packet.len() as u64;
        self.outgoing.push((to, packet));
    }

    /// Bring each member's liveness up to date from foca's table and the
    /// goodbyes, and record the changes as events: the full comparison,
    /// one pass over both sorted by id.
    fn sync_view(&mut self, now_ms: u64) {
        // A member never heard of is dead after twice the time a silent
        // member takes to be found dead, plus 10 ms a member (a large
        // swarm's news of a join takes longer to reach everyone).
        let silent_for = 2 * (self.config.probe_period_ms + self.config.suspect_ms)
            + 10 * self.view.members.len() as u64;
        self.table.clear();
        self.table.extend(
            self.foca
                .iter_membership_state()
                .map(|m| (*m.id(), liveness(m.state()), m.incarnation())),
        );
        let mut table = core::mem::take(&mut self.sorted);
        table.clear();
        table.extend_from_slice(&self.table);
        table.sort_unstable_by_key(|t| t.0.id);
        let mut suspects = Vec::new();
        let mut rows = table.iter().peekable();
        let members = self.view.members.iter_mut().zip(self.known.values_mut());
        for ((&id, o), known) in members {
            while rows.next_if(|t| t.0.id < id).is_some() {}
            let left = if self.left.is_empty() {
                None
            } else {
                self.left.get(&id).copied()
            };
            let (state, first) = match rows.next_if(|t| t.0.id == id) {
                Some(&(ident, state, incarnation)) => {
                    let boot = ident.boot;
                    o.incarnation = u64::from(incarnation);
                    let first = !*known;
                    *known = true;
                    let state = if left == Some(boot) {
                        Liveness::Left
                    } else {
                        state
                    };
                    (state, first)
                }
                None if left.is_some() => (Liveness::Left, false),
                None if !*known
                    && o.state == Liveness::Alive
                    && now_ms >= o.since_ms + silent_for =>
                {
                    (Liveness::Dead, false)
                }
                None => (o.state, false),
            };
            if change(&mut self.events, id, o, state, first, now_ms) {
                suspects.push(rows_id_of(&table, id));
            }
        }
        for (ident, incarnation) in suspects.into_iter().flatten() {
            self.suspected(ident, incarnation, now_ms);
        }
        self.unheard = self.known.values().filter(|k| !**k).count();
        self.sorted = table;
    }
}

/// foca's state as a liveness.
fn liveness(state: State) -> Liveness {
    match state {
        State::Alive => Liveness::Alive,
        State::Suspect => Liveness::Suspect,
        State::Down => Liveness::Dead,
    }
}

/// foca's identity and incarnation of member `id` in the sorted `table`.
fn rows_id_of(table: &[(Ident, Liveness, u16)], id: u64) -> Option<(Ident, u16)> {
    let at = table.binary_search_by_key(&id, |t| t.0.id).ok()?;
    Some((table[at].0, table[at].2))
}

/// Move `o` to `state`, recording the event(s) the change means. `first`:
/// the member was just heard of for the first time. Whether it just
/// became suspect.
fn change(
    events: &mut Vec<GossipEvent>,
    id: u64,
    o: &mut Observed,
    state: Liveness,
    first: bool,
    now_ms: u64,
) -> bool {
    use Liveness::*;
    let old = o.state;
    if old == state && !first {
        return false;
    }
    match (old, state) {
        (_, Dead) if old != Dead => events.push(GossipEvent::Dead(id)),
        (_, Left) if old != Left => events.push(GossipEvent::Left(id)),
        (Suspect, Alive) => events.push(GossipEvent::Refuted(id)),
        (Alive | Dead | Left, Alive) if first || old != Alive => {
            events.push(GossipEvent::Alive(id));
        }
        (Alive | Dead | Left, Suspect) => {
            if first || old != Alive {
                events.push(GossipEvent::Alive(id));
            }
            events.push(GossipEvent::Suspect(id));
        }
        _ => {}
    }
    if old != state {
        o.state = state;
        o.since_ms = now_ms;
    }
    state == Suspect && old != Suspect
}

#[cfg(test)]
mod tests;
