//! The hosted node's write-ahead log: the [`cellfs::Log`] of a node alone.
//!
//! One file, `DATA/wal/log`, holds every committed command as a record
//! `len[4] crc32[4] payload[len]` (little-endian; the checksum covers the
//! length bytes and the payload). A writer thread does group commit: it
//! takes every proposal waiting, writes them with one `write`, calls
//! `fdatasync`, and only then reports them committed, so a command is
//! applied (and its request answered) only once it is on disk.
//!
//! At open the file is replayed. A torn last record (a crash mid-write) is
//! detected by its length running past the end or its checksum failing, and
//! is cut off. A bad record with more data after it is corruption, not a
//! torn write: the node refuses to start and names the file and offset.
//!
//! If a write or fsync fails the node stops (fail-stop): it cannot promise
//! durability any more, and nothing unacknowledged is lost by stopping.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, bail};
use cellfs::{Commit, Entry, Index, Log, LogError, ProposalId};

/// Bytes before each payload: len[4] crc32[4].
const HEADER: usize = 8;
/// Largest record accepted on replay (commands are far smaller; anything
/// larger is damage).
const MAX_RECORD: usize = 64 << 20;
/// Most proposals waiting for the disk before `propose` says Full.
const MAX_PENDING: usize = 65_536;

/// Called by the writer thread after each batch reaches the disk.
pub type Notify = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Queues {
    /// Proposed, not yet durable.
    pending: Vec<Entry>,
    /// Durable, not yet taken by the server (replayed entries come first).
    committed: VecDeque<Entry>,
    /// Set by `close`: write what is pending, then stop.
    closing: bool,
    /// Index of the last durable entry.
    durable: Index,
    /// Entries found at open (nobody here proposed them).
    replayed: Index,
}

struct Shared {
    q: Mutex<Queues>,
    /// Wakes the writer when proposals arrive.
    work: Condvar,
    /// Wakes `close` when the writer has drained.
    drained: Condvar,
}

/// The write-ahead log of one hosted node.
pub struct Wal {
    shared: Arc<Shared>,
    next: Index,
    writer: Option<JoinHandle<()>>,
}

/// What replay found, for the node's start-up message.
#[derive(Debug, Default, Clone, Copy)]
pub struct Replay {
    /// Records replayed.
    pub entries: u64,
    /// Bytes of a torn last record that were cut off.
    pub torn_bytes: u64,
}

impl Wal {
    /// Open (creating if needed) the log under `dir`, replay it, and start
    /// the writer thread, which calls `notify` after each durable batch.
    pub fn open(dir: &Path, notify: Notify) -> anyhow::Result<(Wal, Replay)> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("log");
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let (entries, good_len, replay) = read_records(&mut file, &path)?;
        if replay.torn_bytes > 0 {
            file.set_len(good_len)
                .with_context(|| format!("truncating torn tail of {}", path.display()))?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::End(0))?;
        let next = entries.len() as Index;
        let shared = Arc::new(Shared {
            q: Mutex::new(Queues {
                committed: entries.into(),
                durable: next,
                replayed: next,
                ..Queues::default()
            }),
            work: Condvar::new(),
            drained: Condvar::new(),
        });
        let w = shared.clone();
        let writer = std::thread::Builder::new()
            .name("cell0-wal".into())
            .spawn(move || writer(w, file, path, notify))
            .context("starting the log writer")?;
        Ok((
            Wal {
                shared,
                next,
                writer: Some(writer),
            },
            replay,
        ))
    }

    /// Write whatever is pending, wait for it to be durable, and stop the
    /// writer. Proposals after this fail.
    pub fn close(&mut self) {
        {
            let mut q = self.shared.q.lock().unwrap_or_else(|e| e.into_inner());
            q.closing = true;
            self.shared.work.notify_all();
            while !q.pending.is_empty() {
                q = self
                    .shared
                    .drained
                    .wait(q)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

impl Log for Wal {
    fn propose(&mut self, data: Vec<u8>) -> Result<ProposalId, LogError> {
        let mut q = self.shared.q.lock().map_err(|_| LogError::Closed)?;
        if q.closing {
            return Err(LogError::Closed);
        }
        if q.pending.len() >= MAX_PENDING {
            return Err(LogError::Full);
        }
        self.next += 1;
        q.pending.push(Entry {
            index: self.next,
            term: 1,
            origin: 0,
            data,
        });
        self.shared.work.notify_one();
        Ok(self.next)
    }

    fn take_committed(&mut self, out: &mut Vec<Commit>) {
        if let Ok(mut q) = self.shared.q.lock() {
            let replayed = q.replayed;
            out.extend(q.committed.drain(..).map(|entry| Commit::Entry {
                proposal: (entry.index > replayed).then_some(entry.index),
                entry,
            }));
        }
    }
}

/// The writer thread: group commit until closed.
fn writer(shared: Arc<Shared>, mut file: File, path: PathBuf, notify: Notify) {
    let mut buf = Vec::new();
    loop {
        let batch = {
            let mut q = shared.q.lock().unwrap_or_else(|e| e.into_inner());
            while q.pending.is_empty() && !q.closing {
                q = shared.work.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            if q.pending.is_empty() {
                shared.drained.notify_all();
                return;
            }
            std::mem::take(&mut q.pending)
        };
        buf.clear();
        for e in &batch {
            encode_record(&e.data, &mut buf);
        }
        if let Err(e) = file.write_all(&buf).and_then(|()| file.sync_data()) {
            // Fail-stop: acknowledged entries are on disk; nothing in this
            // batch was acknowledged.
            eprintln!(
                "cell0: log write to {} failed: {e}; stopping the node",
                path.display()
            );
            std::process::exit(70);
        }
        {
            let mut q = shared.q.lock().unwrap_or_else(|e| e.into_inner());
            q.durable = batch.last().map_or(q.durable, |e| e.index);
            q.committed.extend(batch);
            if q.pending.is_empty() {
                shared.drained.notify_all();
            }
        }
        notify();
    }
}

/// Append one record for `payload` to `out`.
pub fn encode_record(payload: &[u8], out: &mut Vec<u8>) {
    let len = (payload.len() as u32).to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    out.extend_from_slice(&len);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(payload);
}

/// Read every record of `file`. Returns the entries, the length of the good
/// prefix, and what was found; a corrupt record that is not the last one is
/// an error naming the file and byte offset.
fn read_records(file: &mut File, path: &Path) -> anyhow::Result<(Vec<Entry>, u64, Replay)> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    let mut entries = Vec::new();
    let mut at = 0usize;
    let torn = loop {
        let rest = &bytes[at..];
        if rest.is_empty() {
            break None;
        }
        // A crash can leave a zero-filled tail after the last full write.
        if rest.len() < HEADER || rest.iter().all(|&b| b == 0) {
            break Some("incomplete header or zero fill");
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let end = HEADER + len;
        if end > rest.len() {
            break Some("record runs past the end");
        }
        if len > MAX_RECORD {
            bail!(
                "{}: corrupt record at byte {at}: length {len} is impossible",
                path.display()
            );
        }
        let payload = &rest[HEADER..end];
        let mut h = crc32fast::Hasher::new();
        h.update(&rest[..4]);
        h.update(payload);
        if h.finalize() != crc {
            if end == rest.len() {
                break Some("checksum mismatch");
            }
            bail!(
                "{}: corrupt record at byte {at} (checksum mismatch, {} more bytes follow); \
                 refusing to start rather than lose committed commands: move the file aside to start empty",
                path.display(),
                rest.len() - end
            );
        }
        entries.push(Entry {
            index: entries.len() as Index + 1,
            term: 1,
            origin: 0,
            data: payload.to_vec(),
        });
        at += end;
    };
    let torn_bytes = (bytes.len() - at) as u64;
    if let Some(why) = torn {
        eprintln!(
            "cell0: {}: dropping a torn last record at byte {at} ({why}, {torn_bytes} bytes)",
            path.display()
        );
    }
    let replay = Replay {
        entries: entries.len() as u64,
        torn_bytes,
    };
    Ok((entries, at as u64, replay))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn open(dir: &Path) -> (Wal, Replay, Vec<Entry>) {
        let (mut wal, replay) = Wal::open(dir, Box::new(|| {})).unwrap();
        let mut got = Vec::new();
        wal.take_committed(&mut got);
        (wal, replay, entries(got))
    }

    fn wait_committed(wal: &mut Wal, n: usize) -> Vec<Entry> {
        let mut got = Vec::new();
        for _ in 0..2000 {
            wal.take_committed(&mut got);
            if got.len() >= n {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        entries(got)
    }

    fn entries(commits: Vec<Commit>) -> Vec<Entry> {
        commits
            .into_iter()
            .filter_map(|c| match c {
                Commit::Entry { entry, .. } => Some(entry),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn proposals_commit_in_order_and_replay() {
        let dir = tempfile::tempdir().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let (mut wal, _) = Wal::open(
            dir.path(),
            Box::new(move || {
                c.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .unwrap();
        for i in 0..100u32 {
            assert_eq!(
                wal.propose(i.to_le_bytes().to_vec()).unwrap(),
                u64::from(i) + 1
            );
        }
        let got = wait_committed(&mut wal, 100);
        assert_eq!(got.len(), 100);
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, e)| e.index == i as u64 + 1 && e.data == (i as u32).to_le_bytes())
        );
        assert!(calls.load(Ordering::SeqCst) >= 1);
        drop(wal);
        let (mut wal, replay, got) = open(dir.path());
        assert_eq!(
            (replay.entries, replay.torn_bytes, got.len()),
            (100, 0, 100)
        );
        assert_eq!(
            wal.propose(vec![9]).unwrap(),
            101,
            "indexes continue after replay"
        );
    }

    #[test]
    fn a_torn_tail_is_dropped_at_every_cut() {
        let mut whole = Vec::new();
        encode_record(b"first", &mut whole);
        let keep = whole.len();
        encode_record(b"second record", &mut whole);
        for cut in keep..whole.len() {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path()).unwrap();
            std::fs::write(dir.path().join("log"), &whole[..cut]).unwrap();
            let (_wal, replay, got) = open(dir.path());
            assert_eq!(got.len(), 1, "cut at {cut}");
            assert_eq!(got[0].data, b"first");
            assert_eq!(replay.torn_bytes, (cut - keep) as u64);
            assert_eq!(
                std::fs::metadata(dir.path().join("log")).unwrap().len(),
                keep as u64
            );
        }
        // A flipped bit in the last record is a torn write too.
        let dir = tempfile::tempdir().unwrap();
        let mut bad = whole.clone();
        *bad.last_mut().unwrap() ^= 1;
        std::fs::write(dir.path().join("log"), &bad).unwrap();
        let (_wal, _, got) = open(dir.path());
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn corruption_in_the_middle_is_an_error_naming_file_and_offset() {
        let mut bytes = Vec::new();
        encode_record(b"one", &mut bytes);
        let second = bytes.len();
        encode_record(b"two", &mut bytes);
        encode_record(b"three", &mut bytes);
        bytes[second + HEADER] ^= 0xff;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("log"), &bytes).unwrap();
        let err = Wal::open(dir.path(), Box::new(|| {}))
            .err()
            .expect("corruption refused")
            .to_string();
        assert!(err.contains("log: corrupt record at byte 11"), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join("log")).unwrap(),
            bytes,
            "nothing was truncated"
        );
    }

    #[test]
    fn close_makes_pending_durable() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), Box::new(|| {})).unwrap();
        for i in 0..1000u32 {
            wal.propose(i.to_le_bytes().to_vec()).unwrap();
        }
        wal.close();
        assert_eq!(wal.propose(vec![1]), Err(LogError::Closed));
        drop(wal);
        let (_wal, replay, _) = open(dir.path());
        assert_eq!(replay.entries, 1000);
    }
}
