//! The replica under test, as the simulator drives it.

use cellfs::raft::{MemStorage, Member, Options, Replica, Rpc, Storage};

use crate::SimLog;

impl SimLog for Replica<MemStorage> {
    type Disk = MemStorage;

    fn sim_open(
        id: u64,
        ids: &[u64],
        seed: u64,
        snapshot_every: u64,
        disk: Option<MemStorage>,
        now_ms: u64,
    ) -> Self {
        let mut opts = Options::new(id);
        opts.seed = seed;
        opts.snapshot_every = snapshot_every;
        // Small counts are there to snapshot often; the default count
        // keeps the size rule too, as a node does.
        opts.snapshot_by_size = snapshot_every >= 10_000;
        let members: Vec<Member> = ids
            .iter()
            .map(|&i| Member {
                id: i,
                addr: format!("sim:{i}"),
                key: [i as u8; 32],
            })
            .collect();
        Replica::open(opts, &members, disk.unwrap_or_default(), now_ms, true)
            .expect("MemStorage does not fail")
    }

    fn sim_receive(&mut self, from: u64, bytes: &[u8]) {
        let msg = Rpc::decode(bytes).expect("a message the replica encoded decodes");
        self.receive(from, msg);
    }

    fn sim_tick(&mut self, now_ms: u64) {
        self.tick(now_ms);
    }

    fn sim_take_messages(&mut self, out: &mut Vec<(u64, Vec<u8>)>) {
        let mut msgs = Vec::new();
        self.take_messages(&mut msgs);
        out.extend(msgs.into_iter().map(|(to, m)| (to, m.encode())));
    }

    fn sim_crash(&mut self) -> MemStorage {
        let mut disk = self.storage().clone();
        disk.crash();
        disk
    }

    fn sim_log(&mut self) -> (u64, Vec<(u64, u64, Vec<u8>)>) {
        let loaded = self.storage_mut().load().expect("MemStorage loads");
        let snap = loaded.snapshot.as_ref().map_or(0, |(m, _)| m.index);
        let entries = loaded
            .entries
            .iter()
            .map(|s| {
                let body = postcard::to_allocvec(&s.body).expect("bodies encode");
                (s.index, s.term, body)
            })
            .collect();
        (snap, entries)
    }

    fn sim_describe(bytes: &[u8]) -> String {
        match Rpc::decode(bytes) {
            Some(Rpc::Forward { seq, data }) => {
                format!("Forward seq {seq} {:?}", cellfs::Command::decode(&data))
            }
            Some(m) => {
                let s = format!("{m:?}");
                s.chars().take(60).collect()
            }
            None => String::from("undecodable"),
        }
    }

    fn sim_failed(&self) -> Option<String> {
        self.failed().map(|e| e.to_string())
    }

    fn sim_lease_ms(&self) -> u64 {
        self.lease_ms()
    }

    fn sim_lease_over(&self, peer: u64) -> bool {
        self.lease_over(peer)
    }
}
