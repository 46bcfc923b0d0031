//! Segment-file storage for the replica: the hosted [`Storage`].
//!
//! Layout under the node's directory:
//!
//! - `log/NNNNNNNNNNNNNNNNNNNN.seg`: the log, in segments named by the index
//!   of their first entry (20 digits, so names sort as indexes do). Each
//!   holds consecutive entries as records `len[4] crc32[4] payload[len]`
//!   (little-endian; the checksum covers the length bytes and the payload;
//!   the payload is the postcard encoding of a [`Stored`]). A new segment
//!   starts once the current one has reached the segment size, so whole
//!   segments can be deleted when a snapshot covers them.
//! - `hardstate`: one such record holding the postcard [`HardState`],
//!   replaced atomically (temporary file, fsync, rename, directory fsync).
//! - `snapshot`: `magic[8] meta_len[4] data_len[8] crc32[4] meta data`, the
//!   checksum covering everything after the magic, replaced atomically.
//!
//! Appends go straight to the segment files and become durable at
//! [`Storage::sync`], which fdatasyncs every segment written since the
//! last one, writes the hard state if it changed, and fsyncs the
//! directories if files were created or deleted. Steps that a crash could
//! otherwise leave as a hole in the middle of the log are made durable at
//! once instead: a full segment is synced before the next one is created,
//! and dropping entries (an append that overwrites) deletes later segments
//! one by one, newest first, syncing the directory after each, before it
//! truncates the segment that holds the last kept entry.
//!
//! At open the segments are replayed. A torn last record of the last
//! segment (a crash mid-write) is cut off and reported on stderr. A bad
//! record anywhere else, or a hole in the indexes, is corruption: the node
//! refuses to start, naming the file and byte offset, rather than lose
//! committed entries by guessing.

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use cellfs::Index;
use cellfs::raft::{HardState, Loaded, SnapshotMeta, Storage, StorageError, StorageUsage, Stored};

/// Size at which a segment is closed and a new one begun: large enough
/// that segment files stay few, small enough that a snapshot soon frees
/// whole files.
#[allow(dead_code)]
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// Bytes before each payload: len[4] crc32[4].
const HEADER: usize = 8;
/// Largest record accepted (on append and on replay; entries are far
/// smaller, so anything larger read back is damage).
const MAX_RECORD: usize = 64 << 20;
/// First bytes of the snapshot file, so a file of another kind is named
/// as such rather than as a checksum failure.
const SNAP_MAGIC: &[u8; 8] = b"c0snap1\n";
/// Bytes of the snapshot header after the magic: meta_len[4] data_len[8] crc32[4].
const SNAP_HEADER: usize = 16;
/// The end of every message that stops a node from starting.
const REFUSE: &str = "refusing to start rather than lose committed entries";

/// One segment file.
struct Segment {
    /// Index of its first entry (also its name).
    first: Index,
    path: PathBuf,
    /// Open for appending (and truncation).
    file: File,
    /// Bytes written to it.
    len: u64,
    /// Entries in it.
    count: u64,
}

/// A replica's log, hard state and snapshot in files under one directory,
/// so that what the replica synced survives a crash of the process or the
/// machine.
#[allow(dead_code)]
pub struct SegmentStore {
    dir: PathBuf,
    log_dir: PathBuf,
    segment_bytes: u64,
    /// The segment files, by first index; together they hold consecutive
    /// entries (some of the first one's may be covered by the snapshot).
    segments: Vec<Segment>,
    /// The end offset, within its segment, of every entry on disk, from
    /// `segments[0].first` on: where to cut when dropping entries.
    ends: VecDeque<u64>,
    /// Term and vote as last saved (written to disk at the next sync when
    /// `hard_dirty`).
    hard: HardState,
    hard_dirty: bool,
    /// Segment fsyncs so far.
    syncs: u64,
    /// The last index the snapshot covers (0 without one).
    snap_index: Index,
    /// Segments (by first index) written since the last sync.
    dirty: BTreeSet<Index>,
    /// Files were created or deleted in `log/` since the last sync.
    log_dir_dirty: bool,
    /// Set by a failed write: what is on disk may no longer match the
    /// index, so every later call fails (the node stops).
    failed: Option<String>,
    /// What open read, for the first `load`, so the log is read once.
    cached: Option<Loaded>,
    /// The records of an append, kept between appends for its capacity.
    buf: Vec<u8>,
    /// A snapshot being written on a thread of its own (see
    /// [`SegmentStore::settle`]).
    writing: Option<Writing>,
}

/// A snapshot file being written in the background.
struct Writing {
    /// The last index it covers.
    index: Index,
    /// The writer: done when its file is durable in place.
    thread: std::thread::JoinHandle<Result<(), StorageError>>,
}

/// Numbers about the store, for status output.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Segment files.
    pub segments: usize,
    /// Bytes in the segment files.
    pub bytes: u64,
    /// The first entry kept after the snapshot (`last_index + 1` when no
    /// entry is kept).
    pub first_index: Index,
    /// The last entry, or the snapshot's last index when no entry is kept.
    pub last_index: Index,
}

/// Everything read from disk at recovery, before it replaces the store's
/// state.
struct Recovered {
    segments: Vec<Segment>,
    ends: VecDeque<u64>,
    hard: HardState,
    snap_index: Index,
    loaded: Loaded,
}

#[allow(dead_code)]
impl SegmentStore {
    /// Open the store in `dir` (created if missing) with segments of
    /// [`SEGMENT_BYTES`], reading and checking everything in it so that a
    /// damaged store stops the node here, before it takes part in
    /// anything.
    pub fn open(dir: &Path) -> Result<SegmentStore, StorageError> {
        Self::open_with(dir, SEGMENT_BYTES)
    }

    /// [`SegmentStore::open`] with another segment size, so tests can
    /// roll segments over without writing 64 MiB.
    pub fn open_with(dir: &Path, segment_bytes: u64) -> Result<SegmentStore, StorageError> {
        let log_dir = dir.join("log");
        if !log_dir.is_dir() {
            fs::create_dir_all(&log_dir).map_err(|e| io_err(&log_dir, "creating", &e))?;
            sync_dir(dir)?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        for stale in ["hardstate.tmp", "snapshot.tmp"] {
            let p = dir.join(stale);
            if p.exists() {
                fs::remove_file(&p).map_err(|e| io_err(&p, "removing", &e))?;
            }
        }
        let mut store = SegmentStore {
            dir: dir.to_path_buf(),
            log_dir,
            segment_bytes: segment_bytes.max(1),
            segments: Vec::new(),
            ends: VecDeque::new(),
            hard: HardState::default(),
            hard_dirty: false,
            syncs: 0,
            snap_index: 0,
            dirty: BTreeSet::new(),
            log_dir_dirty: false,
            failed: None,
            cached: None,
            buf: Vec::new(),
            writing: None,
        };
        let loaded = store.recover()?;
        store.cached = Some(loaded);
        Ok(store)
    }

    /// Numbers for status output: how much log is kept and in how many
    /// files.
    pub fn stats(&self) -> StoreStats {
        let last_index = self
            .disk_last()
            .map_or(self.snap_index, |l| l.max(self.snap_index));
        let first_index = match (self.disk_first(), self.disk_last()) {
            (Some(f), Some(l)) if l > self.snap_index => f.max(self.snap_index.saturating_add(1)),
            _ => last_index.saturating_add(1),
        };
        StoreStats {
            segments: self.segments.len(),
            bytes: self.segments.iter().map(|s| s.len).sum(),
            first_index,
            last_index,
        }
    }

    fn disk_first(&self) -> Option<Index> {
        self.segments.first().map(|s| s.first)
    }

    fn disk_last(&self) -> Option<Index> {
        let first = self.disk_first()?;
        if self.ends.is_empty() {
            return None;
        }
        Some(first + self.ends.len() as u64 - 1)
    }

    fn check(&self) -> Result<(), StorageError> {
        match &self.failed {
            Some(why) => Err(StorageError(format!(
                "storage in {} failed earlier ({why}); restart the node",
                self.dir.display()
            ))),
            None => Ok(()),
        }
    }

    /// Remember a failure so no later call builds on a half-done write.
    fn poison<T>(&mut self, r: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Err(e) = &r {
            self.failed = Some(e.0.clone());
        }
        r
    }

    /// Read the store from disk, cut a torn tail, delete segments that
    /// hold nothing needed, and replace the in-memory index.
    fn recover(&mut self) -> Result<Loaded, StorageError> {
        let r = read_all(&self.dir, &self.log_dir)?;
        let hard = if self.hard_dirty { self.hard } else { r.hard };
        self.segments = r.segments;
        self.ends = r.ends;
        self.hard = hard;
        self.snap_index = r.snap_index;
        let firsts: BTreeSet<Index> = self.segments.iter().map(|s| s.first).collect();
        self.dirty.retain(|f| firsts.contains(f));
        Ok(Loaded { hard, ..r.loaded })
    }

    /// Delete the segments from position `from` on, newest first, syncing
    /// the directory after each so a crash can only leave a prefix of
    /// them (never a hole).
    fn remove_segments_from(&mut self, from: usize) -> Result<(), StorageError> {
        while self.segments.len() > from {
            let Some(seg) = self.segments.pop() else {
                break;
            };
            let keep = self.ends.len().saturating_sub(seg.count as usize);
            self.ends.truncate(keep);
            self.dirty.remove(&seg.first);
            drop(seg.file);
            fs::remove_file(&seg.path).map_err(|e| io_err(&seg.path, "removing", &e))?;
            sync_dir(&self.log_dir)?;
        }
        Ok(())
    }

    /// Drop every entry on disk after `after`, which is on disk.
    fn truncate_after(&mut self, after: Index) -> Result<(), StorageError> {
        let Some(first) = self.disk_first() else {
            return Ok(());
        };
        let k = self
            .segments
            .partition_point(|s| s.first <= after)
            .saturating_sub(1);
        self.remove_segments_from(k + 1)?;
        let pos = (after - first) as usize;
        let Some(&end) = self.ends.get(pos) else {
            return Err(StorageError(format!(
                "{}: no entry {after} to truncate after",
                self.log_dir.display()
            )));
        };
        let Some(seg) = self.segments.get_mut(k) else {
            return Ok(());
        };
        if end < seg.len {
            seg.file
                .set_len(end)
                .and_then(|()| seg.file.sync_data())
                .map_err(|e| io_err(&seg.path, "truncating", &e))?;
            seg.len = end;
            seg.count = after + 1 - seg.first;
            self.dirty.remove(&seg.first);
        }
        self.ends.truncate(pos + 1);
        Ok(())
    }

    /// Write `buf` at the end of the last segment.
    fn flush(&mut self, buf: &mut Vec<u8>) -> Result<(), StorageError> {
        if buf.is_empty() {
            return Ok(());
        }
        let Some(seg) = self.segments.last_mut() else {
            return Err(StorageError("no segment to write to".into()));
        };
        seg.file
            .write_all(buf)
            .map_err(|e| io_err(&seg.path, "writing", &e))?;
        seg.len += buf.len() as u64;
        self.dirty.insert(seg.first);
        buf.clear();
        Ok(())
    }

    /// Sync the last segment and begin a new one whose first entry is
    /// `first`.
    fn roll(&mut self, first: Index) -> Result<(), StorageError> {
        if let Some(seg) = self.segments.last()
            && self.dirty.remove(&seg.first)
        {
            seg.file
                .sync_data()
                .map_err(|e| io_err(&seg.path, "syncing", &e))?;
        }
        let path = self.log_dir.join(segment_name(first));
        // Append mode, so writes after a truncation land at the new end.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|f| f.set_len(0).map(|()| f))
            .map_err(|e| io_err(&path, "creating", &e))?;
        self.segments.push(Segment {
            first,
            path,
            file,
            len: 0,
            count: 0,
        });
        self.log_dir_dirty = true;
        Ok(())
    }

    fn append_inner(&mut self, after: Index, entries: &[Stored]) -> Result<(), StorageError> {
        if let (Some(first), Some(last)) = (self.disk_first(), self.disk_last()) {
            if after >= first && after <= last {
                if after < last {
                    self.truncate_after(after)?;
                }
            } else {
                // Nothing on disk is kept (all of it is after `after`, or
                // covered by the snapshot and before a new start), once
                // that snapshot is durable.
                self.settle_snapshot(true)?;
                self.remove_segments_from(0)?;
            }
        }
        let mut buf = std::mem::take(&mut self.buf);
        for e in entries {
            // Each record goes straight into the write buffer: header room
            // first, the entry serialised after it, the header filled in.
            let start = buf.len();
            buf.extend_from_slice(&[0; RECORD_HEADER]);
            buf = postcard::to_extend(e, buf)
                .map_err(|err| StorageError(format!("encoding entry {}: {err}", e.index)))?;
            let payload_len = buf.len() - start - RECORD_HEADER;
            if payload_len > MAX_RECORD {
                buf.truncate(start);
                self.buf = buf;
                return Err(StorageError(format!(
                    "entry {} is {payload_len} bytes, more than the {MAX_RECORD} a record may hold",
                    e.index
                )));
            }
            seal_record(&mut buf[start..]);
            let full = self
                .segments
                .last()
                .is_none_or(|s| s.len + start as u64 >= self.segment_bytes);
            if full {
                // The record opens the next segment; what precedes it
                // closes this one.
                let record = buf.split_off(start);
                self.flush(&mut buf)?;
                self.roll(e.index)?;
                buf.extend_from_slice(&record);
            }
            let Some(seg) = self.segments.last_mut() else {
                return Err(StorageError("no segment to write to".into()));
            };
            self.ends.push_back(seg.len + buf.len() as u64);
            seg.count += 1;
        }
        let flushed = self.flush(&mut buf);
        self.buf = buf;
        flushed
    }

    fn sync_inner(&mut self) -> Result<(), StorageError> {
        for first in std::mem::take(&mut self.dirty) {
            if let Some(seg) = self.segments.iter().find(|s| s.first == first) {
                seg.file
                    .sync_data()
                    .map_err(|e| io_err(&seg.path, "syncing", &e))?;
                self.syncs += 1;
            }
        }
        if self.log_dir_dirty {
            sync_dir(&self.log_dir)?;
            self.log_dir_dirty = false;
        }
        if self.hard_dirty {
            let payload = postcard::to_allocvec(&self.hard)
                .map_err(|e| StorageError(format!("encoding the hard state: {e}")))?;
            let mut rec = Vec::new();
            encode_record(&payload, &mut rec);
            write_atomic(&self.dir, "hardstate", &rec)?;
            self.hard_dirty = false;
        }
        Ok(())
    }

    /// Delete the segments whose entries the snapshot covers entirely.
    /// Finish the snapshot being written, waiting for it if `wait`: once
    /// its file is durable, the segments it covers go. Until then they
    /// stay, so a crash finds the previous snapshot and every entry after
    /// it; anything that would delete segments otherwise waits first.
    fn settle_snapshot(&mut self, wait: bool) -> Result<(), StorageError> {
        let done = self
            .writing
            .as_ref()
            .is_some_and(|w| wait || w.thread.is_finished());
        if !done {
            return Ok(());
        }
        let Some(w) = self.writing.take() else {
            return Ok(());
        };
        let written = w.thread.join().unwrap_or_else(|_| {
            Err(StorageError(format!(
                "{}: the thread writing the snapshot failed",
                self.dir.display()
            )))
        });
        self.poison(written)?;
        let r = self.drop_covered(w.index);
        self.poison(r)
    }

    /// Wait for the snapshot being written, if any (for tests and a clean
    /// stop).
    pub fn settle(&mut self) -> Result<(), StorageError> {
        self.settle_snapshot(true)
    }

    fn drop_covered(&mut self, covered: Index) -> Result<(), StorageError> {
        while let Some(seg) = self.segments.first() {
            if seg.first + seg.count > covered.saturating_add(1) {
                break;
            }
            let seg = self.segments.remove(0);
            let n = (seg.count as usize).min(self.ends.len());
            self.ends.drain(..n);
            self.dirty.remove(&seg.first);
            drop(seg.file);
            fs::remove_file(&seg.path).map_err(|e| io_err(&seg.path, "removing", &e))?;
            self.log_dir_dirty = true;
        }
        Ok(())
    }
}

impl Drop for SegmentStore {
    fn drop(&mut self) {
        // A stopping node leaves its last snapshot in place; a failure
        // here was already reported or changes nothing on disk.
        let _ = self.settle_snapshot(true);
    }
}

impl Storage for SegmentStore {
    fn load(&mut self) -> Result<Loaded, StorageError> {
        self.check()?;
        if let Some(l) = self.cached.take() {
            return Ok(l);
        }
        self.settle_snapshot(true)?;
        let r = self.recover();
        self.poison(r)
    }

    fn save_hard_state(&mut self, hard: &HardState) -> Result<(), StorageError> {
        self.check()?;
        self.cached = None;
        if *hard != self.hard {
            self.hard = *hard;
            self.hard_dirty = true;
        }
        Ok(())
    }

    fn append(&mut self, after: Index, entries: &[Stored]) -> Result<(), StorageError> {
        self.check()?;
        self.cached = None;
        let Some(next) = after.checked_add(1) else {
            return Err(StorageError(format!(
                "append after {after}: no index follows"
            )));
        };
        // The same checks, in the same terms, as MemStorage: the entries
        // kept are those on disk after the snapshot.
        let kept = match (self.disk_first(), self.disk_last()) {
            (Some(f), Some(l)) if l > self.snap_index => {
                let f = f.max(self.snap_index.saturating_add(1));
                Some((f, l - f + 1))
            }
            _ => None,
        };
        let (first, len) = kept.unwrap_or((next, 0));
        if next < first {
            return Err(StorageError(format!(
                "append after {after}, before the first kept entry {first}"
            )));
        }
        if next - first > len {
            return Err(StorageError(format!(
                "append after {after} leaves a gap (last kept {})",
                first + len - 1
            )));
        }
        for (i, e) in entries.iter().enumerate() {
            if Some(e.index) != next.checked_add(i as u64) {
                return Err(StorageError(format!(
                    "append after {after}: entry {i} has index {}, not {}",
                    e.index,
                    next.saturating_add(i as u64)
                )));
            }
        }
        let r = self.append_inner(after, entries);
        self.poison(r)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.check()?;
        self.settle_snapshot(false)?;
        let r = self.sync_inner();
        self.poison(r)
    }

    fn usage(&self) -> StorageUsage {
        let s = self.stats();
        StorageUsage {
            files: s.segments as u64,
            bytes: s.bytes,
            syncs: self.syncs,
        }
    }

    fn save_snapshot(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        self.check()?;
        self.cached = None;
        // One at a time: the file has one name.
        self.settle_snapshot(true)?;
        let bytes = encode_snapshot(meta, data)?;
        // Writing and syncing a large state takes long; the log's thread
        // goes on appending meanwhile. The covered segments stay until the
        // file is in place (see `settle_snapshot`).
        let dir = self.dir.clone();
        let thread = std::thread::Builder::new()
            .name(String::from("cell0-snapshot"))
            .spawn(move || write_atomic(&dir, "snapshot", &bytes))
            .map_err(|e| io_err(&self.dir, "starting the snapshot writer", &e));
        let thread = self.poison(thread)?;
        self.writing = Some(Writing {
            index: meta.index,
            thread,
        });
        self.snap_index = meta.index;
        Ok(())
    }
}

/// `path: doing: error`, the form of every I/O failure.
fn io_err(path: &Path, doing: &str, e: &std::io::Error) -> StorageError {
    StorageError(format!("{}: {doing}: {e}", path.display()))
}

/// The file name of the segment whose first entry is `first`.
fn segment_name(first: Index) -> String {
    format!("{first:020}.seg")
}

/// The first index named by a segment file name, if it is one.
fn parse_segment_name(name: &str) -> Option<Index> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Make the entries of `dir` (creations, deletions, renames) durable.
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, "syncing the directory", &e))
}

/// Replace `dir/name` with `bytes` so that a crash leaves the old file or
/// the new one, never a mix, and the new one is durable on return.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, "creating", &e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(&tmp, "writing", &e))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(|e| io_err(&path, "renaming into place", &e))?;
    sync_dir(dir)
}

/// Append one record for `payload` to `out`.
/// A record's header: its payload's length and CRC-32, 4 bytes each.
const RECORD_HEADER: usize = 8;

/// Fill in the header of `record`, whose payload follows [`RECORD_HEADER`]
/// bytes of room (see [`encode_record`]).
fn seal_record(record: &mut [u8]) {
    let (header, payload) = record.split_at_mut(RECORD_HEADER);
    let len = (payload.len() as u32).to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    header[..4].copy_from_slice(&len);
    header[4..].copy_from_slice(&h.finalize().to_le_bytes());
}

/// Append a record holding `payload` to `out`.
fn encode_record(payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER]);
    out.extend_from_slice(payload);
    seal_record(&mut out[start..]);
}

/// The records of one segment file: where each starts and ends, and
/// whether a torn tail follows them (with why).
struct Records {
    spans: Vec<(usize, usize)>,
    good_len: usize,
    torn: Option<&'static str>,
}

/// Split `bytes` into records. A bad record at the end is a torn tail when
/// `last` (the last segment, the only one a crash can tear); anywhere else
/// it is an error naming the file and byte offset.
fn scan_records(bytes: &[u8], path: &Path, last: bool) -> Result<Records, StorageError> {
    let mut spans = Vec::new();
    let mut at = 0usize;
    let torn = loop {
        let rest = bytes.get(at..).unwrap_or_default();
        if rest.is_empty() {
            break None;
        }
        // A crash can leave a zero-filled tail after the last full write.
        let why = if rest.len() < HEADER || rest.iter().all(|&b| b == 0) {
            Some("incomplete header or zero fill")
        } else {
            None
        };
        let (len, crc) = match (rest.get(0..4), rest.get(4..8)) {
            (Some(l), Some(c)) if why.is_none() => (
                u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize,
                u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            ),
            _ => (0, 0),
        };
        let end = HEADER.saturating_add(len);
        let why = why.or_else(|| (end > rest.len()).then_some("record runs past the end"));
        if why.is_none() && len > MAX_RECORD {
            return Err(StorageError(format!(
                "{}: corrupt record at byte {at}: length {len} is impossible; {REFUSE}",
                path.display()
            )));
        }
        let why = why.or_else(|| {
            let mut h = crc32fast::Hasher::new();
            h.update(rest.get(..4).unwrap_or_default());
            h.update(rest.get(HEADER..end).unwrap_or_default());
            (h.finalize() != crc).then_some("checksum mismatch")
        });
        if let Some(why) = why {
            // Only the very last record may be torn: a failed checksum
            // with more data after it is damage, not an interrupted write.
            let at_end = why != "checksum mismatch" || end == rest.len();
            if last && at_end {
                break Some(why);
            }
            let more = rest.len().saturating_sub(end.min(rest.len()));
            let place = if last {
                format!("{more} more bytes follow")
            } else {
                "not the last segment".to_string()
            };
            return Err(StorageError(format!(
                "{}: corrupt record at byte {at} ({why}, {place}); {REFUSE}: \
                 move the store aside to start empty and catch up from the cluster",
                path.display()
            )));
        }
        spans.push((at + HEADER, at + end));
        at += end;
    };
    Ok(Records {
        spans,
        good_len: at,
        torn,
    })
}

/// One segment as read at recovery.
struct ReadSegment {
    first: Index,
    path: PathBuf,
    len: u64,
    ends: Vec<u64>,
    entries: Vec<Stored>,
}

impl ReadSegment {
    fn last(&self) -> Index {
        self.first + self.entries.len() as u64 - 1
    }
}

/// Read one segment file: its entries, checked to be consecutive from the
/// index its name gives, with a torn tail cut off when `last`.
fn read_segment(first: Index, path: PathBuf, last: bool) -> Result<ReadSegment, StorageError> {
    let bytes = fs::read(&path).map_err(|e| io_err(&path, "reading", &e))?;
    let recs = scan_records(&bytes, &path, last)?;
    if let Some(why) = recs.torn {
        eprintln!(
            "cell0: {}: cutting a torn last record at byte {} ({why}, {} bytes)",
            path.display(),
            recs.good_len,
            bytes.len() - recs.good_len
        );
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| {
                f.set_len(recs.good_len as u64)?;
                f.sync_all()
            })
            .map_err(|e| io_err(&path, "cutting the torn tail", &e))?;
    }
    let mut entries = Vec::with_capacity(recs.spans.len());
    let mut ends = Vec::with_capacity(recs.spans.len());
    for (i, &(start, end)) in recs.spans.iter().enumerate() {
        let at = start - HEADER;
        let payload = bytes.get(start..end).unwrap_or_default();
        let e: Stored = postcard::from_bytes(payload).map_err(|err| {
            StorageError(format!(
                "{}: record at byte {at} does not decode ({err}); {REFUSE}",
                path.display()
            ))
        })?;
        let want = first.checked_add(i as u64);
        if Some(e.index) != want {
            return Err(StorageError(format!(
                "{}: record at byte {at} holds entry {}, expected {}; {REFUSE}",
                path.display(),
                e.index,
                want.map_or("none".into(), |w| w.to_string())
            )));
        }
        entries.push(e);
        ends.push(end as u64);
    }
    Ok(ReadSegment {
        first,
        path,
        len: recs.good_len as u64,
        ends,
        entries,
    })
}

/// Read the hard state file (the default when there is none).
fn read_hard(path: &Path) -> Result<HardState, StorageError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HardState::default()),
        Err(e) => return Err(io_err(path, "reading", &e)),
    };
    let bad = |why: &str| StorageError(format!("{}: {why}; {REFUSE}", path.display()));
    let recs = scan_records(&bytes, path, true).map_err(|e| bad(&e.0))?;
    if recs.torn.is_some() || recs.spans.len() != 1 {
        return Err(bad("not one whole record (damaged)"));
    }
    let (start, end) = recs.spans[0];
    let payload = bytes.get(start..end).unwrap_or_default();
    postcard::from_bytes(payload)
        .or_else(|e| {
            // Written before the boot count existed: term and vote only.
            postcard::from_bytes::<(u64, Option<u64>)>(payload)
                .map(|(term, voted_for)| HardState {
                    term,
                    voted_for,
                    boot: 0,
                })
                .map_err(|_| e)
        })
        .map_err(|e| bad(&format!("does not decode ({e})")))
}

/// The snapshot file's bytes for `meta` and `data`.
fn encode_snapshot(meta: &SnapshotMeta, data: &[u8]) -> Result<Vec<u8>, StorageError> {
    let m = postcard::to_allocvec(meta)
        .map_err(|e| StorageError(format!("encoding the snapshot: {e}")))?;
    let meta_len = u32::try_from(m.len())
        .map_err(|_| StorageError("snapshot metadata too large".into()))?
        .to_le_bytes();
    let data_len = (data.len() as u64).to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&meta_len);
    h.update(&data_len);
    h.update(&m);
    h.update(data);
    let mut out = Vec::with_capacity(SNAP_MAGIC.len() + SNAP_HEADER + m.len() + data.len());
    out.extend_from_slice(SNAP_MAGIC);
    out.extend_from_slice(&meta_len);
    out.extend_from_slice(&data_len);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(&m);
    out.extend_from_slice(data);
    Ok(out)
}

/// Read and check the snapshot file (none when there is no file).
fn read_snapshot(path: &Path) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
    let mut bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "reading", &e)),
    };
    let bad =
        |why: &str| StorageError(format!("{}: bad snapshot: {why}; {REFUSE}", path.display()));
    let m = SNAP_MAGIC.len();
    if bytes.get(..m) != Some(&SNAP_MAGIC[..]) {
        return Err(bad("not a snapshot file"));
    }
    let Some(h) = bytes.get(m..m + SNAP_HEADER) else {
        return Err(bad("short header"));
    };
    let meta_len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as u64;
    let data_len = u64::from_le_bytes([h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11]]);
    let crc = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
    let body = (m + SNAP_HEADER) as u64;
    if meta_len
        .checked_add(data_len)
        .and_then(|n| n.checked_add(body))
        != Some(bytes.len() as u64)
    {
        return Err(bad("lengths do not match the file size"));
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&h[..12]);
    hasher.update(&bytes[m + SNAP_HEADER..]);
    if hasher.finalize() != crc {
        return Err(bad("checksum mismatch"));
    }
    let meta_end = m + SNAP_HEADER + meta_len as usize;
    let meta: SnapshotMeta = postcard::from_bytes(&bytes[m + SNAP_HEADER..meta_end])
        .map_err(|e| bad(&format!("metadata does not decode ({e})")))?;
    let data = bytes.split_off(meta_end);
    Ok(Some((meta, data)))
}

/// Read the whole store: hard state, snapshot and segments, checked;
/// torn tail cut, and segments that hold nothing (empty, or covered by the
/// snapshot) deleted.
fn read_all(dir: &Path, log_dir: &Path) -> Result<Recovered, StorageError> {
    let hard = read_hard(&dir.join("hardstate"))?;
    let snapshot = read_snapshot(&dir.join("snapshot"))?;
    let snap_index = snapshot.as_ref().map_or(0, |(m, _)| m.index);

    let mut names = Vec::new();
    let listing = fs::read_dir(log_dir).map_err(|e| io_err(log_dir, "listing", &e))?;
    for ent in listing {
        let ent = ent.map_err(|e| io_err(log_dir, "listing", &e))?;
        if let Some(first) = ent.file_name().to_str().and_then(parse_segment_name) {
            names.push((first, ent.path()));
        }
    }
    names.sort();
    let n = names.len();
    let mut read = Vec::with_capacity(n);
    for (i, (first, path)) in names.into_iter().enumerate() {
        read.push(read_segment(first, path, i + 1 == n)?);
    }

    // Empty segments (a crash between creating one and writing it) and
    // those the snapshot covers entirely (a crash before their deletion
    // was durable) hold nothing needed.
    let mut removed = false;
    let mut kept: Vec<ReadSegment> = Vec::new();
    for seg in read {
        let useless = seg.entries.is_empty() || (kept.is_empty() && seg.last() <= snap_index);
        if useless {
            fs::remove_file(&seg.path).map_err(|e| io_err(&seg.path, "removing", &e))?;
            removed = true;
        } else {
            kept.push(seg);
        }
    }
    if removed {
        sync_dir(log_dir)?;
    }

    if let Some(first) = kept.first()
        && first.first > snap_index.saturating_add(1)
    {
        return Err(StorageError(format!(
            "{}: the log starts at entry {} but the snapshot ends at {snap_index}: \
             entries are missing; {REFUSE}",
            first.path.display(),
            first.first
        )));
    }
    for pair in kept.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.last().checked_add(1) != Some(b.first) {
            return Err(StorageError(format!(
                "{}: starts at entry {} but {} ends at {} (byte {}): the log is not \
                 contiguous; {REFUSE}",
                b.path.display(),
                b.first,
                a.path.display(),
                a.last(),
                a.len
            )));
        }
    }

    let mut segments = Vec::with_capacity(kept.len());
    let mut ends = VecDeque::new();
    let mut entries = Vec::new();
    for seg in kept {
        let file = OpenOptions::new()
            .append(true)
            .open(&seg.path)
            .map_err(|e| io_err(&seg.path, "opening", &e))?;
        ends.extend(seg.ends.iter().copied());
        let count = seg.entries.len() as u64;
        entries.extend(seg.entries.into_iter().filter(|e| e.index > snap_index));
        segments.push(Segment {
            first: seg.first,
            path: seg.path,
            file,
            len: seg.len,
            count,
        });
    }
    Ok(Recovered {
        segments,
        ends,
        hard,
        snap_index,
        loaded: Loaded {
            hard,
            snapshot,
            entries,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellfs::raft::{Body, MemStorage, Membership};

    fn entry(index: Index, term: u64) -> Stored {
        Stored {
            index,
            term,
            body: Body::Command {
                origin: 1,
                seq: index,
                data: vec![index as u8; (index % 7) as usize * 10],
            },
        }
    }

    fn entries(from: Index, to: Index, term: u64) -> Vec<Stored> {
        (from..=to).map(|i| entry(i, term)).collect()
    }

    fn meta(index: Index, term: u64) -> SnapshotMeta {
        SnapshotMeta {
            index,
            term,
            membership: Membership {
                voters: vec![1, 2, 3],
                ..Membership::default()
            },
        }
    }

    fn segment_files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir.join("log"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn round_trip_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let hard = HardState {
            term: 4,
            voted_for: Some(2),
            boot: 3,
        };
        {
            let mut s = SegmentStore::open(dir.path()).unwrap();
            assert_eq!(s.load().unwrap(), Loaded::default());
            s.save_hard_state(&hard).unwrap();
            s.append(0, &entries(1, 10, 1)).unwrap();
            s.sync().unwrap();
            s.save_snapshot(&meta(3, 1), b"state at 3").unwrap();
            s.append(10, &entries(11, 12, 4)).unwrap();
            s.sync().unwrap();
        }
        let mut s = SegmentStore::open(dir.path()).unwrap();
        let l = s.load().unwrap();
        assert_eq!(l.hard, hard);
        assert_eq!(l.snapshot, Some((meta(3, 1), b"state at 3".to_vec())));
        let mut want = entries(4, 10, 1);
        want.extend(entries(11, 12, 4));
        assert_eq!(l.entries, want);
        assert_eq!(
            s.stats(),
            StoreStats {
                segments: 1,
                bytes: fs::metadata(dir.path().join("log").join(segment_name(1)))
                    .unwrap()
                    .len(),
                first_index: 4,
                last_index: 12,
            }
        );
        // A second load reads the disk again and agrees.
        assert_eq!(s.load().unwrap(), l);
    }

    #[test]
    fn a_hard_state_from_before_the_boot_count_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = Vec::new();
        encode_record(
            &postcard::to_allocvec(&(7u64, Some(3u64))).unwrap(),
            &mut rec,
        );
        fs::write(dir.path().join("hardstate"), rec).unwrap();
        let hard = read_hard(&dir.path().join("hardstate")).unwrap();
        assert_eq!(
            hard,
            HardState {
                term: 7,
                voted_for: Some(3),
                boot: 0
            }
        );
    }

    #[test]
    fn overwrite_truncates_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = SegmentStore::open_with(dir.path(), 100).unwrap();
            s.append(0, &entries(1, 30, 1)).unwrap();
            s.sync().unwrap();
            let before = s.stats().segments;
            assert!(before > 3, "{before} segments");
            s.append(5, &entries(6, 8, 2)).unwrap();
            assert!(s.stats().segments < before);
            s.sync().unwrap();
            assert_eq!(s.stats().last_index, 8);
            // An overwrite that lands exactly on a segment boundary.
            let second = segment_files(dir.path())[1].clone();
            let b = parse_segment_name(&second).unwrap();
            s.append(b - 1, &entries(b, b + 1, 3)).unwrap();
            s.sync().unwrap();
        }
        let mut s = SegmentStore::open_with(dir.path(), 100).unwrap();
        let l = s.load().unwrap();
        let b = parse_segment_name(&segment_files(dir.path())[1]).unwrap();
        let mut want = entries(1, 5, 1);
        want.extend(entries(6, 8, 2));
        want.truncate((b - 1) as usize);
        want.extend(entries(b, b + 1, 3));
        assert_eq!(l.entries, want);
        // Truncating everything, then starting again.
        s.append(0, &entries(1, 2, 5)).unwrap();
        s.sync().unwrap();
        drop(s);
        let mut s = SegmentStore::open_with(dir.path(), 100).unwrap();
        assert_eq!(s.load().unwrap().entries, entries(1, 2, 5));
        assert_eq!(segment_files(dir.path()), vec![segment_name(1)]);
    }

    #[test]
    fn bad_appends_are_refused_like_memstorage() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SegmentStore::open(dir.path()).unwrap();
        let mut m = MemStorage::default();
        s.append(0, &entries(1, 5, 1)).unwrap();
        m.append(0, &entries(1, 5, 1)).unwrap();
        assert_eq!(
            s.append(7, &entries(8, 8, 1)),
            m.append(7, &entries(8, 8, 1))
        );
        s.save_snapshot(&meta(3, 1), b"x").unwrap();
        m.save_snapshot(&meta(3, 1), b"x").unwrap();
        assert_eq!(
            s.append(1, &entries(2, 2, 1)),
            m.append(1, &entries(2, 2, 1))
        );
        assert!(s.append(5, &entries(7, 7, 1)).is_err(), "not consecutive");
        assert!(s.append(u64::MAX, &[]).is_err());
        // Refusals leave the store working.
        s.append(5, &entries(6, 6, 1)).unwrap();
        s.sync().unwrap();
    }

    #[test]
    fn a_torn_tail_is_cut_and_reported_at_every_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = SegmentStore::open(dir.path()).unwrap();
            s.append(0, &entries(1, 3, 1)).unwrap();
            s.sync().unwrap();
        }
        let path = dir.path().join("log").join(segment_name(1));
        let whole = fs::read(&path).unwrap();
        let mut rec = Vec::new();
        encode_record(&postcard::to_allocvec(&entry(3, 1)).unwrap(), &mut rec);
        let keep = whole.len() - rec.len();
        for cut in keep..whole.len() {
            fs::write(&path, &whole[..cut]).unwrap();
            let mut s = SegmentStore::open(dir.path()).unwrap();
            assert_eq!(s.load().unwrap().entries, entries(1, 2, 1), "cut at {cut}");
            assert_eq!(fs::metadata(&path).unwrap().len(), keep as u64);
            // The store goes on from the cut.
            s.append(2, &entries(3, 3, 2)).unwrap();
            s.sync().unwrap();
            drop(s);
            let mut s = SegmentStore::open(dir.path()).unwrap();
            let mut want = entries(1, 2, 1);
            want.push(entry(3, 2));
            assert_eq!(s.load().unwrap().entries, want);
        }
        // Zero fill after the last record, and a flipped bit in it.
        for damage in 0..2 {
            let mut bad = whole.clone();
            if damage == 0 {
                bad.extend_from_slice(&[0; 4096]);
            } else if let Some(b) = bad.last_mut() {
                *b ^= 1;
            }
            fs::write(&path, &bad).unwrap();
            let mut s = SegmentStore::open(dir.path()).unwrap();
            let got = s.load().unwrap().entries;
            assert_eq!(got.len(), if damage == 0 { 3 } else { 2 });
        }
    }

    #[test]
    fn corruption_in_the_middle_names_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = SegmentStore::open(dir.path()).unwrap();
            s.append(0, &entries(1, 3, 1)).unwrap();
            s.sync().unwrap();
        }
        let path = dir.path().join("log").join(segment_name(1));
        let mut bytes = fs::read(&path).unwrap();
        let mut first = Vec::new();
        encode_record(&postcard::to_allocvec(&entry(1, 1)).unwrap(), &mut first);
        let second = first.len();
        bytes[second + HEADER] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let err = SegmentStore::open(dir.path()).err().expect("refused").0;
        assert!(
            err.contains(&format!(
                "{}: corrupt record at byte {second}",
                path.display()
            )),
            "{err}"
        );
        assert!(err.contains("refusing to start"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), bytes, "nothing was cut");
    }

    #[test]
    fn damage_in_an_earlier_segment_or_a_hole_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = SegmentStore::open_with(dir.path(), 60).unwrap();
            s.append(0, &entries(1, 20, 1)).unwrap();
            s.sync().unwrap();
        }
        let files = segment_files(dir.path());
        assert!(files.len() >= 3);
        // A torn tail in a segment that is not the last one.
        let p = dir.path().join("log").join(&files[0]);
        let good = fs::read(&p).unwrap();
        fs::write(&p, &good[..good.len() - 1]).unwrap();
        let err = SegmentStore::open(dir.path()).err().expect("refused").0;
        assert!(err.contains(&files[0]) && err.contains("at byte"), "{err}");
        fs::write(&p, &good).unwrap();
        // A missing segment in the middle.
        let mid = dir.path().join("log").join(&files[1]);
        fs::remove_file(&mid).unwrap();
        let err = SegmentStore::open(dir.path()).err().expect("refused").0;
        assert!(
            err.contains(&files[2]) && err.contains("not contiguous"),
            "{err}"
        );
    }

    #[test]
    fn a_damaged_snapshot_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = SegmentStore::open(dir.path()).unwrap();
            s.save_snapshot(&meta(5, 2), b"the state").unwrap();
        }
        let p = dir.path().join("snapshot");
        let mut bytes = fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n - 2] ^= 4;
        fs::write(&p, &bytes).unwrap();
        let err = SegmentStore::open(dir.path()).err().expect("refused").0;
        assert!(err.contains("snapshot: bad snapshot: checksum"), "{err}");
        for cut in 0..n {
            fs::write(&p, &bytes[..cut]).unwrap();
            assert!(SegmentStore::open(dir.path()).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn snapshot_drops_covered_segments_and_load_skips_covered_entries() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SegmentStore::open_with(dir.path(), 100).unwrap();
        s.append(0, &entries(1, 40, 1)).unwrap();
        s.sync().unwrap();
        let before = segment_files(dir.path());
        // The segment holding 20 stays; every earlier one goes.
        let holding = before
            .iter()
            .rev()
            .find(|n| parse_segment_name(n).unwrap() <= 20)
            .unwrap()
            .clone();
        s.save_snapshot(&meta(20, 1), b"s20").unwrap();
        s.settle().unwrap();
        let after = segment_files(dir.path());
        assert_eq!(after[0], holding);
        assert!(after.len() < before.len());
        assert_eq!(s.stats().first_index, 21);
        drop(s);
        let mut s = SegmentStore::open_with(dir.path(), 100).unwrap();
        let l = s.load().unwrap();
        assert_eq!(l.entries, entries(21, 40, 1));
        assert_eq!(l.snapshot.unwrap().0, meta(20, 1));
        // A snapshot past the end drops everything; the log goes on after it.
        s.save_snapshot(&meta(50, 3), b"s50").unwrap();
        s.settle().unwrap();
        assert!(segment_files(dir.path()).is_empty());
        s.append(50, &entries(51, 52, 3)).unwrap();
        s.sync().unwrap();
        drop(s);
        let mut s = SegmentStore::open_with(dir.path(), 100).unwrap();
        let l = s.load().unwrap();
        assert_eq!(l.entries, entries(51, 52, 3));
        assert_eq!(
            s.stats(),
            StoreStats {
                segments: 1,
                bytes: s.stats().bytes,
                first_index: 51,
                last_index: 52
            }
        );
    }

    #[test]
    fn a_covered_segment_left_by_a_crash_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SegmentStore::open_with(dir.path(), 100).unwrap();
        s.append(0, &entries(1, 5, 1)).unwrap();
        s.sync().unwrap();
        let old = fs::read(dir.path().join("log").join(segment_name(1))).unwrap();
        s.save_snapshot(&meta(100, 2), b"s").unwrap();
        s.append(100, &entries(101, 102, 2)).unwrap();
        s.sync().unwrap();
        drop(s);
        // As if the deletion of segment 1 had not reached the disk.
        fs::write(dir.path().join("log").join(segment_name(1)), old).unwrap();
        let mut s = SegmentStore::open_with(dir.path(), 100).unwrap();
        assert_eq!(s.load().unwrap().entries, entries(101, 102, 2));
        assert_eq!(segment_files(dir.path()), vec![segment_name(101)]);
    }

    #[test]
    fn segments_roll_over_at_the_size_given() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SegmentStore::open_with(dir.path(), 128).unwrap();
        for i in 1..=50 {
            s.append(i - 1, &[entry(i, 1)]).unwrap();
        }
        s.sync().unwrap();
        let files = segment_files(dir.path());
        assert!(files.len() > 5, "{files:?}");
        for f in &files[..files.len() - 1] {
            let len = fs::metadata(dir.path().join("log").join(f)).unwrap().len();
            // Full at 128 bytes, at most one record past it.
            assert!((128..128 + 100).contains(&len), "{f}: {len}");
        }
        assert_eq!(s.stats().segments, files.len());
        drop(s);
        let mut s = SegmentStore::open_with(dir.path(), 128).unwrap();
        assert_eq!(s.load().unwrap().entries, entries(1, 50, 1));
    }

    #[test]
    fn garbage_files_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..200 {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir_all(dir.path().join("log")).unwrap();
            let n = (xorshift(&mut seed) % 200) as usize;
            let junk: Vec<u8> = (0..n).map(|_| xorshift(&mut seed) as u8).collect();
            let target = match round % 3 {
                0 => dir.path().join("hardstate"),
                1 => dir.path().join("snapshot"),
                _ => dir.path().join("log").join(segment_name(1)),
            };
            fs::write(&target, &junk).unwrap();
            let _ = SegmentStore::open(dir.path()).map(|mut s| s.load());
        }
    }

    fn xorshift(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    /// Random operations on a SegmentStore and a MemStorage side by side:
    /// after every sync (and every reopen) both load the same thing.
    #[test]
    fn matches_memstorage_on_random_operations() {
        // Compared loads that held a snapshot and entries, so the test is
        // known to reach the interesting states.
        let mut rich = 0;
        for case in 0..24u64 {
            let mut seed = 0x2545_f491_4f6c_dd1d ^ (case.wrapping_mul(0x9e37_79b9));
            let mut rnd = move |n: u64| xorshift(&mut seed) % n.max(1);
            let dir = tempfile::tempdir().unwrap();
            let seg_bytes = 64 + rnd(400);
            let mut s = SegmentStore::open_with(dir.path(), seg_bytes).unwrap();
            let mut m = MemStorage::default();
            let mut term = 1;
            for step in 0..150 {
                let l = m.load().unwrap();
                let snap = l.snapshot.as_ref().map_or(0, |(mt, _)| mt.index);
                let last = l.entries.last().map_or(snap, |e| e.index);
                match rnd(10) {
                    0..=4 => {
                        let lo = l.entries.first().map_or(snap, |e| e.index - 1);
                        let after = lo + rnd(last - lo + 1);
                        if rnd(3) == 0 {
                            term += 1;
                        }
                        let es = entries(after + 1, after + rnd(6), term);
                        assert_eq!(s.append(after, &es), m.append(after, &es), "case {case}");
                    }
                    5 => {
                        let h = HardState {
                            term,
                            voted_for: (rnd(2) == 0).then(|| rnd(5)),
                            boot: rnd(4),
                        };
                        s.save_hard_state(&h).unwrap();
                        m.save_hard_state(&h).unwrap();
                    }
                    6 => {
                        let idx = snap + rnd(last - snap + 4);
                        let data = format!("state {step}").into_bytes();
                        s.save_snapshot(&meta(idx, term), &data).unwrap();
                        m.save_snapshot(&meta(idx, term), &data).unwrap();
                    }
                    7 | 8 => {
                        s.sync().unwrap();
                        m.sync().unwrap();
                        let want = m.load().unwrap();
                        rich += usize::from(want.snapshot.is_some() && want.entries.len() > 3);
                        assert_eq!(s.load().unwrap(), want, "case {case} step {step}");
                    }
                    _ => {
                        s.sync().unwrap();
                        m.sync().unwrap();
                        drop(s);
                        s = SegmentStore::open_with(dir.path(), seg_bytes).unwrap();
                        let want = m.load().unwrap();
                        rich += usize::from(want.snapshot.is_some() && want.entries.len() > 3);
                        assert_eq!(s.load().unwrap(), want, "case {case} step {step}");
                    }
                }
            }
        }
        assert!(rich > 100, "only {rich} rich comparisons");
    }
}
