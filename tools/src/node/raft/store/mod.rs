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
//! - `reserve`: 1 MiB of incompressible bytes kept for the node's own
//!   records on a full disk (see below).
//! - `clean`: present only after a clean stop ([`SegmentStore::close`]):
//!   one line naming the last segment and its length in bytes
//!   (`00000000000000000001.seg 1234`, or `no segments`), written
//!   atomically once everything else is synced.
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
//!
//! A crash can tear only a write that was never synced, so never an
//! acknowledged entry; after a clean stop nothing is torn, and a bad last
//! record is damage to a synced one. So with `clean` present the last
//! segment must have exactly the name and length it gives and its last
//! record must be whole: otherwise the node refuses to start like any
//! other corruption, changing nothing on disk (the message says what the
//! operator can do, including removing `clean` to accept the cut). The
//! marker is removed, with the directory synced, before the first change
//! to any file after open (an append, the hard state, a snapshot), so a
//! crash after that change finds no marker and cuts a torn tail as usual.
//! Every crash leaves a state that opens: during the stop, before the
//! marker's rename there is no marker (and everything is synced anyway),
//! after it the marker describes synced files; after a restart, until its
//! removal is durable nothing has been written, so the marker is still
//! true.
//!
//! A full disk (ENOSPC, or EDQUOT) is not a failure (cellfs(4), "A full
//! disk"). An append that finds no room is undone: segments it created
//! are deleted and the last one is cut back to where it ended, the cut
//! synced, so neither a partial record nor a refused entry can be found
//! after a crash. A temporary file that could not be written is removed
//! (the file it would have replaced is untouched); the hard state, when
//! there is no room for a new copy, is overwritten in place within one
//! sector. A snapshot that finds no room is given up, keeping the segments
//! it would have replaced. The store is then *short of space*
//! ([`Storage::no_space`]): the replica refuses commands, restarts from
//! what the store holds, and goes on. `reserve` (1 MiB) keeps room for the
//! node's own records (a new leader's first entry): it is given up when
//! one finds no room, and rewritten by [`SegmentStore::retry_space`],
//! whose success (a free MiB besides it) ends the shortage. Everything
//! else that fails, a failed fsync above all (whose page cache may no
//! longer match the disk), poisons the store: the node stops.
//!
//! This module keeps the store's state and the [`Storage`] calls; `files`
//! reads and writes the formats above.

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cellfs::Index;
use cellfs::raft::{HardState, Loaded, SnapshotMeta, Storage, StorageError, StorageUsage, Stored};

mod files;

use files::{
    CLEAN, RECORD_HEADER, RESERVE, RESERVE_BYTES, WriteFailure, encode_clean, encode_record,
    io_err, overwrite_in_place, read_all, remove_clean, seal_record, segment_name, snapshot_header,
    sync_dir, write_atomic, write_atomic_parts, write_err, write_reserve,
};

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
    /// The hard state as last made durable (what a write that found no
    /// space falls back to).
    hard_durable: HardState,
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
    /// The clean-stop marker may be on disk: it is removed, durably,
    /// before anything else on disk changes (see [`SegmentStore::close`]).
    clean: bool,
    /// Why the store last found no space, until the reserve can be
    /// written again (see [`SegmentStore::retry_space`]); while set, the
    /// replica refuses new commands.
    short: Option<String>,
    /// When [`SegmentStore::retry_space`] last tried.
    last_retry: Option<Instant>,
}

/// A snapshot file being written in the background.
struct Writing {
    /// The last index it covers.
    index: Index,
    /// The last index the snapshot on disk covers until this one is in
    /// place (what the store falls back to if it cannot be written).
    prev_index: Index,
    /// The writer: done when its file is durable in place.
    thread: std::thread::JoinHandle<Result<(), WriteFailure>>,
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

/// Where the log ended before a write, to put it back there.
struct Mark {
    /// How many segments there were.
    segments: usize,
    /// The last one's length in bytes and entries.
    last: Option<(u64, u64)>,
    /// Entries on disk.
    ends: usize,
}

/// Everything read from disk at recovery, before it replaces the store's
/// state.
struct Recovered {
    segments: Vec<Segment>,
    ends: VecDeque<u64>,
    hard: HardState,
    snap_index: Index,
    /// The clean-stop marker is on disk and matches the log.
    clean: bool,
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
        for stale in ["hardstate.tmp", "snapshot.tmp", "clean.tmp", "reserve.tmp"] {
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
            hard_durable: HardState::default(),
            syncs: 0,
            snap_index: 0,
            dirty: BTreeSet::new(),
            log_dir_dirty: false,
            failed: None,
            cached: None,
            buf: Vec::new(),
            writing: None,
            clean: false,
            short: None,
            last_retry: None,
        };
        let loaded = store.recover()?;
        store.cached = Some(loaded);
        let reserve = store.dir.join(RESERVE);
        let in_place = fs::metadata(&reserve).is_ok_and(|m| m.len() == RESERVE_BYTES as u64);
        if !in_place {
            match write_reserve(&store.dir) {
                Ok(()) => {}
                Err(WriteFailure::NoSpace(e)) => {
                    eprintln!(
                        "cell0: {e}: no room for the space reserve; writes are refused until \
                         space is freed (reads are served)"
                    );
                    store.short = Some(e.0);
                }
                Err(WriteFailure::Failed(e)) => return Err(e),
            }
        }
        Ok(store)
    }

    /// Why the store is short of space, if it is: set when a write found
    /// no room, cleared by [`SegmentStore::retry_space`] once the reserve
    /// can be written again.
    pub fn short_of_space(&self) -> Option<&str> {
        match &self.failed {
            Some(_) => None,
            None => self.short.as_deref(),
        }
    }

    /// While short of space, at most once a second: try to write the
    /// reserve again. It needs [`RESERVE_BYTES`] free besides any reserve
    /// in place, so success means space has returned: the store is no
    /// longer short, and the replica takes commands again. Returns whether
    /// the store is short of space after the try.
    pub fn retry_space(&mut self) -> bool {
        if self.short.is_none() || self.failed.is_some() {
            return false;
        }
        let now = Instant::now();
        if self
            .last_retry
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return true;
        }
        self.last_retry = Some(now);
        match write_reserve(&self.dir) {
            Ok(()) => {
                eprintln!(
                    "cell0: {}: space has returned; writes are taken again",
                    self.dir.display()
                );
                self.short = None;
                false
            }
            Err(WriteFailure::NoSpace(_)) => true,
            Err(WriteFailure::Failed(e)) => {
                eprintln!("cell0: writing the space reserve: {e}");
                true
            }
        }
    }

    /// Give up the space reserve so that a write the node needs to go on
    /// (a new leader's first entry, a configuration) finds room: true if
    /// there was one to give up. The store is short of space from then on,
    /// until the reserve is back: commands must not take its room.
    fn release_reserve(&mut self) -> bool {
        let path = self.dir.join(RESERVE);
        if fs::remove_file(&path).is_err() {
            return false;
        }
        let why = format!(
            "{}: the disk is full; the space reserve was released for the node's own records",
            path.display()
        );
        eprintln!("cell0: {why}");
        self.short.get_or_insert(why);
        self.last_retry = Some(Instant::now());
        true
    }

    /// The outcome of a write, for the replica: lack of space leaves the
    /// store usable (and short of space); any other failure poisons it.
    fn outcome<T>(&mut self, r: Result<T, WriteFailure>) -> Result<T, StorageError> {
        match r {
            Ok(v) => Ok(v),
            Err(WriteFailure::NoSpace(e)) => {
                if self.short.is_none() {
                    eprintln!(
                        "cell0: {e}; writes are refused until space is freed (reads are served)"
                    );
                }
                self.short = Some(e.0.clone());
                self.last_retry = Some(Instant::now());
                Err(e)
            }
            Err(WriteFailure::Failed(e)) => self.poison(Err(e)),
        }
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
        self.hard_durable = r.hard;
        self.snap_index = r.snap_index;
        self.clean = r.clean;
        let firsts: BTreeSet<Index> = self.segments.iter().map(|s| s.first).collect();
        self.dirty.retain(|f| firsts.contains(f));
        Ok(Loaded { hard, ..r.loaded })
    }

    /// Record a clean stop: settle the snapshot being written, make
    /// everything written durable, then write the clean-stop marker
    /// (`clean`, naming the last segment and its length) atomically. At
    /// the next open the marker says the last record was whole and synced,
    /// so a bad one is damage and refused, not cut as a torn write. The
    /// marker is removed, durably, before the next change to the files;
    /// the store stays usable.
    pub fn close(&mut self) -> Result<(), StorageError> {
        self.check()?;
        let r = self.settle_snapshot(true);
        self.outcome(r)?;
        let r = self.sync_inner();
        self.outcome(r)?;
        if self.clean {
            // Nothing changed since the open that found the marker.
            return Ok(());
        }
        let last = self.segments.last().map(|s| (s.first, s.len));
        // Set first: should the write fail after its rename, the marker
        // is on disk and must go before the next change.
        self.clean = true;
        write_atomic(&self.dir, CLEAN, encode_clean(last).as_bytes()).map_err(StorageError::from)
    }

    /// Remove the clean-stop marker, durably, before the first change to
    /// the files it describes: a crash from then on is a crash.
    fn unmark(&mut self) -> Result<(), StorageError> {
        if self.clean {
            remove_clean(&self.dir)?;
            self.clean = false;
        }
        Ok(())
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
    fn flush(&mut self, buf: &mut Vec<u8>) -> Result<(), WriteFailure> {
        if buf.is_empty() {
            return Ok(());
        }
        let Some(seg) = self.segments.last_mut() else {
            return Err(WriteFailure::Failed(StorageError(
                "no segment to write to".into(),
            )));
        };
        seg.file
            .write_all(buf)
            .map_err(|e| write_err(&seg.path, "writing", &e))?;
        seg.len += buf.len() as u64;
        self.dirty.insert(seg.first);
        buf.clear();
        Ok(())
    }

    /// Sync the last segment and begin a new one whose first entry is
    /// `first`.
    fn roll(&mut self, first: Index) -> Result<(), WriteFailure> {
        if let Some(seg) = self.segments.last()
            && self.dirty.remove(&seg.first)
        {
            seg.file
                .sync_data()
                .map_err(|e| WriteFailure::Failed(io_err(&seg.path, "syncing", &e)))?;
        }
        let path = self.log_dir.join(segment_name(first));
        // Append mode, so writes after a truncation land at the new end.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|f| f.set_len(0).map(|()| f))
            .map_err(|e| write_err(&path, "creating", &e))?;
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

    fn append_inner(&mut self, after: Index, entries: &[Stored]) -> Result<(), WriteFailure> {
        self.unmark().map_err(WriteFailure::Failed)?;
        if let (Some(first), Some(last)) = (self.disk_first(), self.disk_last()) {
            if after >= first && after <= last {
                if after < last {
                    self.truncate_after(after).map_err(WriteFailure::Failed)?;
                }
            } else {
                // Nothing on disk is kept (all of it is after `after`, or
                // covered by the snapshot and before a new start), once
                // that snapshot is durable.
                self.settle_snapshot(true)?;
                self.remove_segments_from(0).map_err(WriteFailure::Failed)?;
            }
        }
        let before = Mark {
            segments: self.segments.len(),
            last: self.segments.last().map(|s| (s.len, s.count)),
            ends: self.ends.len(),
        };
        let mut written = self.write_entries(entries);
        if let Err(WriteFailure::NoSpace(_)) = &written {
            self.undo_write(&before)?;
            // The node's own records (a new leader's first entry, a
            // configuration) may use the reserve; commands never do.
            let own = entries
                .iter()
                .all(|e| !matches!(e.body, cellfs::raft::Body::Command { .. }));
            if own && self.release_reserve() {
                written = self.write_entries(entries);
                if let Err(WriteFailure::NoSpace(_)) = &written {
                    self.undo_write(&before)?;
                }
            }
        }
        written
    }

    /// Write `entries` after the last one on disk (any truncation done).
    fn write_entries(&mut self, entries: &[Stored]) -> Result<(), WriteFailure> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        for e in entries {
            // Each record goes straight into the write buffer: header room
            // first, the entry serialised after it, the header filled in.
            let start = buf.len();
            buf.extend_from_slice(&[0; RECORD_HEADER]);
            buf = postcard::to_extend(e, buf).map_err(|err| {
                WriteFailure::Failed(StorageError(format!("encoding entry {}: {err}", e.index)))
            })?;
            let payload_len = buf.len() - start - RECORD_HEADER;
            if payload_len > MAX_RECORD {
                buf.truncate(start);
                self.buf = buf;
                return Err(WriteFailure::Failed(StorageError(format!(
                    "entry {} is {payload_len} bytes, more than the {MAX_RECORD} a record may hold",
                    e.index
                ))));
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
                if let Err(e) = self.flush(&mut buf).and_then(|()| self.roll(e.index)) {
                    self.buf = record;
                    return Err(e);
                }
                buf.extend_from_slice(&record);
            }
            let Some(seg) = self.segments.last_mut() else {
                return Err(WriteFailure::Failed(StorageError(
                    "no segment to write to".into(),
                )));
            };
            self.ends.push_back(seg.len + buf.len() as u64);
            seg.count += 1;
        }
        let flushed = self.flush(&mut buf);
        buf.clear();
        self.buf = buf;
        flushed
    }

    /// Put the log back as it was at `before`, after a write that found
    /// no space: segments it began are deleted, the last one it kept is
    /// cut back to its old length, and the cut is synced (part of the
    /// write may have reached the disk already, and an entry refused to
    /// its client must not come back after a crash). Failing that, the
    /// log's state is unknown: the store stops.
    fn undo_write(&mut self, before: &Mark) -> Result<(), WriteFailure> {
        let failed = |e: StorageError| WriteFailure::Failed(e);
        let mut removed = false;
        while self.segments.len() > before.segments {
            let Some(seg) = self.segments.pop() else {
                break;
            };
            self.dirty.remove(&seg.first);
            drop(seg.file);
            fs::remove_file(&seg.path)
                .map_err(|e| failed(io_err(&seg.path, "removing after a full disk", &e)))?;
            removed = true;
        }
        if removed {
            sync_dir(&self.log_dir).map_err(failed)?;
        }
        if let (Some(seg), Some((len, count))) = (self.segments.last_mut(), before.last) {
            seg.file
                .set_len(len)
                .and_then(|()| seg.file.sync_data())
                .map_err(|e| failed(io_err(&seg.path, "cutting back after a full disk", &e)))?;
            seg.len = len;
            seg.count = count;
        }
        self.ends.truncate(before.ends);
        Ok(())
    }

    fn sync_inner(&mut self) -> Result<(), WriteFailure> {
        if self.hard_dirty {
            // The only write here not preceded by an append's (which
            // removed the marker already).
            self.unmark().map_err(WriteFailure::Failed)?;
        }
        for first in std::mem::take(&mut self.dirty) {
            if let Some(seg) = self.segments.iter().find(|s| s.first == first) {
                // After a failed fsync the page cache may hold what the
                // disk does not (and a retry would then succeed on
                // nothing): never a case for a retry, whatever the errno.
                seg.file
                    .sync_data()
                    .map_err(|e| WriteFailure::Failed(io_err(&seg.path, "syncing", &e)))?;
                self.syncs += 1;
            }
        }
        if self.log_dir_dirty {
            sync_dir(&self.log_dir).map_err(WriteFailure::Failed)?;
            self.log_dir_dirty = false;
        }
        if self.hard_dirty {
            let payload = postcard::to_allocvec(&self.hard).map_err(|e| {
                WriteFailure::Failed(StorageError(format!("encoding the hard state: {e}")))
            })?;
            let mut rec = Vec::new();
            encode_record(&payload, &mut rec);
            let written = match write_atomic(&self.dir, "hardstate", &rec) {
                // No room for a new copy: the old one is overwritten in
                // place, which needs none.
                Err(WriteFailure::NoSpace(_)) if self.dir.join("hardstate").exists() => {
                    overwrite_in_place(&self.dir.join("hardstate"), &rec)
                }
                r => r,
            };
            if let Err(WriteFailure::NoSpace(_)) = &written {
                // Not written: what the replica restarts from is what
                // the disk holds.
                self.hard = self.hard_durable;
                self.hard_dirty = false;
            }
            written?;
            self.hard_durable = self.hard;
            self.hard_dirty = false;
        }
        Ok(())
    }

    /// Finish the snapshot being written, waiting for it if `wait`: once
    /// its file is durable, the segments it covers go. Until then they
    /// stay, so a crash finds the previous snapshot and every entry after
    /// it; anything that would delete segments otherwise waits first. A
    /// snapshot that found no space is given up (its temporary file is
    /// gone): the previous one and the entries after it stay, and the
    /// store is short of space.
    fn settle_snapshot(&mut self, wait: bool) -> Result<(), WriteFailure> {
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
            Err(WriteFailure::Failed(StorageError(format!(
                "{}: the thread writing the snapshot failed",
                self.dir.display()
            ))))
        });
        if let Err(WriteFailure::NoSpace(e)) = written {
            self.snap_index = w.prev_index;
            return Err(WriteFailure::NoSpace(StorageError(format!(
                "{e}; the snapshot through entry {} was given up and the log it would have \
                 replaced is kept",
                w.index
            ))));
        }
        written?;
        self.drop_covered(w.index).map_err(WriteFailure::Failed)
    }

    /// Wait for the snapshot being written, if any (for tests and a clean
    /// stop).
    pub fn settle(&mut self) -> Result<(), StorageError> {
        let r = self.settle_snapshot(true);
        self.outcome(r)
    }

    /// Delete the segments whose entries the snapshot covers entirely.
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
        let r = self.settle_snapshot(true);
        // A snapshot given up for lack of space leaves the previous one
        // and its log, which `recover` reads.
        if let Err(WriteFailure::Failed(e)) = r {
            return self.poison(Err(e));
        }
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
        self.outcome(r)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.check()?;
        let r = self.settle_snapshot(false).and_then(|()| self.sync_inner());
        self.outcome(r)
    }

    fn no_space(&self) -> Option<String> {
        self.short_of_space().map(String::from)
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
        self.save_shared_snapshot(meta, &Arc::new(data.to_vec()))
    }

    fn save_shared_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        data: &Arc<Vec<u8>>,
    ) -> Result<(), StorageError> {
        self.check()?;
        self.cached = None;
        // One at a time: the file has one name. One given up for lack of
        // space is replaced by this newer one.
        match self.settle_snapshot(true) {
            Ok(()) => {}
            Err(WriteFailure::NoSpace(e)) => eprintln!("cell0: {e}"),
            Err(WriteFailure::Failed(e)) => return self.poison(Err(e)),
        }
        let r = self.unmark();
        self.poison(r)?;
        let header = snapshot_header(meta, data)?;
        let data = Arc::clone(data);
        let prev_index = self.snap_index;
        // Writing and syncing a large state takes long; the log's thread
        // goes on appending meanwhile. The covered segments stay until the
        // file is in place (see `settle_snapshot`).
        let dir = self.dir.clone();
        let thread = std::thread::Builder::new()
            .name(String::from("cell0-snapshot"))
            .spawn(move || write_atomic_parts(&dir, "snapshot", &[&header, &data]))
            .map_err(|e| io_err(&self.dir, "starting the snapshot writer", &e));
        let thread = self.poison(thread)?;
        self.writing = Some(Writing {
            index: meta.index,
            prev_index,
            thread,
        });
        self.snap_index = meta.index;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
