//! The segment store's files: records, segments, the hard state and the
//! snapshot as bytes on disk, and reading them all back at open.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use cellfs::Index;
use cellfs::raft::{HardState, Loaded, SnapshotMeta, StorageError, Stored};

use super::{HEADER, MAX_RECORD, REFUSE, Recovered, SNAP_HEADER, SNAP_MAGIC, Segment};

/// `path: doing: error`, the form of every I/O failure.
pub(super) fn io_err(path: &Path, doing: &str, e: &std::io::Error) -> StorageError {
    StorageError(format!("{}: {doing}: {e}", path.display()))
}

/// The file name of the segment whose first entry is `first`.
pub(super) fn segment_name(first: Index) -> String {
    format!("{first:020}.seg")
}

/// The first index named by a segment file name, if it is one.
pub(super) fn parse_segment_name(name: &str) -> Option<Index> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Make the entries of `dir` (creations, deletions, renames) durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, "syncing the directory", &e))
}

/// A write that failed, by what it means for the store.
#[derive(Debug)]
pub(super) enum WriteFailure {
    /// The file system had no room (ENOSPC, or EDQUOT for a quota). What
    /// the write began was removed or cut back, so nothing half-written is
    /// left; the same write may succeed once space is freed.
    NoSpace(StorageError),
    /// Anything else (an I/O error, a failed fsync): what is on disk is no
    /// longer known to match the store's index.
    Failed(StorageError),
}

impl From<WriteFailure> for StorageError {
    fn from(f: WriteFailure) -> StorageError {
        match f {
            WriteFailure::NoSpace(e) | WriteFailure::Failed(e) => e,
        }
    }
}

/// Whether `e` says the file system is out of room: ENOSPC, or EDQUOT
/// (a quota reached), which an operator answers the same way.
pub(super) fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// [`io_err`], classified: lack of space or any other failure.
pub(super) fn write_err(path: &Path, doing: &str, e: &std::io::Error) -> WriteFailure {
    if is_no_space(e) {
        WriteFailure::NoSpace(io_err(path, doing, e))
    } else {
        WriteFailure::Failed(io_err(path, doing, e))
    }
}

/// Replace `dir/name` with `bytes` so that a crash leaves the old file or
/// the new one, never a mix, and the new one is durable on return. A
/// failure before the rename removes the temporary file, so nothing
/// half-written stays behind (the old file is untouched); a failed fsync
/// of the temporary file is harmless for the same reason.
pub(super) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), WriteFailure> {
    write_atomic_parts(dir, name, &[bytes])
}

/// [`write_atomic`] of the concatenation of `parts`, which need not be
/// copied into one buffer first.
pub(super) fn write_atomic_parts(
    dir: &Path,
    name: &str,
    parts: &[&[u8]],
) -> Result<(), WriteFailure> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let written = File::create(&tmp)
        .map_err(|e| ("creating", e))
        .and_then(|mut f| {
            parts
                .iter()
                .try_for_each(|p| f.write_all(p))
                .and_then(|()| f.sync_all())
                .map_err(|e| ("writing", e))
        });
    if let Err((doing, e)) = written {
        // Best effort: a temporary file left by a failed removal is
        // removed at the next open.
        let _ = fs::remove_file(&tmp);
        return Err(write_err(&tmp, doing, &e));
    }
    fs::rename(&tmp, &path)
        .map_err(|e| WriteFailure::Failed(io_err(&path, "renaming into place", &e)))?;
    sync_dir(dir).map_err(WriteFailure::Failed)
}

/// Largest write [`overwrite_in_place`] makes: one disk sector, which
/// disks write whole or not at all (the assumption PostgreSQL makes of
/// its `pg_control`, kept under 512 bytes for the same reason).
const SECTOR: usize = 512;

/// Overwrite the existing file `path` in place with `bytes` (zero-filled
/// up to its old length, so it never shrinks) and sync it. This needs no
/// new block, so it works on a full file system, where [`write_atomic`]
/// cannot create its temporary file; it is atomic only because the write
/// fits in one sector, so it takes at most [`SECTOR`] bytes and a file
/// no longer than that.
pub(super) fn overwrite_in_place(path: &Path, bytes: &[u8]) -> Result<(), WriteFailure> {
    use std::os::unix::fs::FileExt;
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| write_err(path, "opening to overwrite", &e))?;
    let old = f
        .metadata()
        .map_err(|e| write_err(path, "reading", &e))?
        .len();
    if bytes.len() > SECTOR || old > SECTOR as u64 {
        return Err(WriteFailure::NoSpace(StorageError(format!(
            "{}: no space for a new copy, and {} bytes (file of {old}) are too many to \
             overwrite in place within one {SECTOR}-byte sector",
            path.display(),
            bytes.len()
        ))));
    }
    let mut buf = bytes.to_vec();
    buf.resize(buf.len().max(old as usize), 0);
    f.write_all_at(&buf, 0)
        .map_err(|e| write_err(path, "overwriting in place", &e))?;
    // Not a temporary file: after a failed fsync the page cache may hold
    // what the disk does not, so this is no case for a retry.
    f.sync_data()
        .map_err(|e| WriteFailure::Failed(io_err(path, "syncing", &e)))
}

/// The space reserve's name in the store's directory.
pub(super) const RESERVE: &str = "reserve";

/// Bytes the reserve holds.
pub(super) const RESERVE_BYTES: usize = 1 << 20;

/// (Re)write the space reserve: [`RESERVE_BYTES`] of bytes that do not
/// compress (a file system that compresses or deduplicates would store
/// zeros in no space at all), replaced atomically. It succeeds only when
/// that much is free besides any reserve already in place, which makes it
/// the store's test that space has returned.
pub(super) fn write_reserve(dir: &Path) -> Result<(), WriteFailure> {
    let mut bytes = Vec::with_capacity(RESERVE_BYTES);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while bytes.len() < RESERVE_BYTES {
        // xorshift64: cheap bytes no compressor can shrink.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    write_atomic(dir, RESERVE, &bytes)
}

/// A record's header: its payload's length and CRC-32, 4 bytes each.
pub(super) const RECORD_HEADER: usize = 8;

/// Fill in the header of `record`, whose payload follows [`RECORD_HEADER`]
/// bytes of room (see [`encode_record`]).
pub(super) fn seal_record(record: &mut [u8]) {
    let (header, payload) = record.split_at_mut(RECORD_HEADER);
    let len = (payload.len() as u32).to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    header[..4].copy_from_slice(&len);
    header[4..].copy_from_slice(&h.finalize().to_le_bytes());
}

/// Append a record holding `payload` to `out`.
pub(super) fn encode_record(payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER]);
    out.extend_from_slice(payload);
    seal_record(&mut out[start..]);
}

/// The clean-stop marker's name in the store's directory.
pub(super) const CLEAN: &str = "clean";

/// What a clean stop left: the last segment's first index and length in
/// bytes, or `None` when no segment was left.
pub(super) type CleanStop = Option<(Index, u64)>;

/// The marker's bytes: one line naming the last segment and its length
/// (`00000000000000000001.seg 1234`), or `no segments`.
pub(super) fn encode_clean(stop: CleanStop) -> String {
    match stop {
        Some((first, len)) => format!("{} {len}\n", segment_name(first)),
        None => "no segments\n".to_string(),
    }
}

/// How a clean stop's log ended, in words for messages.
fn describe_clean(stop: CleanStop) -> String {
    match stop {
        Some((first, len)) => format!("log/{} at {len} bytes", segment_name(first)),
        None => "no segment".to_string(),
    }
}

/// Read the clean-stop marker: `None` when there is none (the node did
/// not stop cleanly, or has written since). A marker that is not exactly
/// what [`encode_clean`] writes is damaged, and refused.
pub(super) fn read_clean(path: &Path) -> Result<Option<CleanStop>, StorageError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "reading", &e)),
    };
    let text = String::from_utf8_lossy(&bytes);
    let stop = match text.trim_end().split_once(' ') {
        Some(("no", "segments")) => Some(None),
        Some((name, len)) => parse_segment_name(name)
            .zip(len.parse::<u64>().ok())
            .map(Some),
        None => None,
    };
    // Canonical form only, so that any change to the file is noticed.
    match stop {
        Some(stop) if encode_clean(stop).as_bytes() == bytes => Ok(Some(stop)),
        _ => Err(StorageError(format!(
            "{}: damaged clean-stop marker (holds {:?}); {REFUSE}: remove it to open the \
             log as after a crash (a bad last record is then cut as a torn write)",
            path.display(),
            text.chars().take(80).collect::<String>()
        ))),
    }
}

/// Remove the clean-stop marker in `dir`, durably: once this returns, a
/// crash finds no marker.
pub(super) fn remove_clean(dir: &Path) -> Result<(), StorageError> {
    let path = dir.join(CLEAN);
    match fs::remove_file(&path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(&path, "removing", &e)),
    }
}

/// The records of one segment file: where each starts and ends, and
/// whether a torn tail follows them (with why).
pub(super) struct Records {
    pub(super) spans: Vec<(usize, usize)>,
    pub(super) good_len: usize,
    pub(super) torn: Option<&'static str>,
}

/// Where a file being scanned sits, which decides what a bad record at
/// its end means.
#[derive(Clone, Copy)]
pub(super) enum Tail<'a> {
    /// The last segment after a crash (or a file a crash may tear): a bad
    /// last record is a torn write, to be cut.
    MayTear,
    /// A segment with others after it: nothing in it can be torn.
    Earlier,
    /// The last segment of a log that stopped cleanly, as the marker at
    /// this path says: its last record was whole and synced, so a bad one
    /// is damage.
    Clean(&'a Path),
}

/// Split `bytes` into records. A bad record at the end is a torn tail
/// under [`Tail::MayTear`] (the last segment, the only one a crash can
/// tear); anywhere else, or after a clean stop, it is an error naming the
/// file and byte offset.
pub(super) fn scan_records(
    bytes: &[u8],
    path: &Path,
    tail: Tail<'_>,
) -> Result<Records, StorageError> {
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
            let more = rest.len().saturating_sub(end.min(rest.len()));
            let place = match tail {
                Tail::MayTear if at_end => break Some(why),
                Tail::MayTear => format!("{more} more bytes follow"),
                Tail::Earlier => "not the last segment".to_string(),
                Tail::Clean(marker) if at_end => {
                    return Err(StorageError(format!(
                        "{}: corrupt last record at byte {at} ({why}) of a log that {} says \
                         was stopped cleanly: damage, not a torn write; {REFUSE}: restore the \
                         store from a backup, or move it aside to start empty and catch up \
                         from the cluster; to accept losing this record (one log entry), \
                         remove {} and start again (it is then cut as a torn write)",
                        path.display(),
                        marker.display(),
                        marker.display()
                    )));
                }
                Tail::Clean(_) => format!("{more} more bytes follow"),
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
pub(super) struct ReadSegment {
    pub(super) first: Index,
    pub(super) path: PathBuf,
    pub(super) len: u64,
    pub(super) ends: Vec<u64>,
    pub(super) entries: Vec<Stored>,
}

impl ReadSegment {
    pub(super) fn last(&self) -> Index {
        self.first + self.entries.len() as u64 - 1
    }
}

/// Read one segment file: its entries, checked to be consecutive from the
/// index its name gives, with a torn tail cut off under [`Tail::MayTear`].
pub(super) fn read_segment(
    first: Index,
    path: PathBuf,
    tail: Tail<'_>,
) -> Result<ReadSegment, StorageError> {
    let bytes = fs::read(&path).map_err(|e| io_err(&path, "reading", &e))?;
    let recs = scan_records(&bytes, &path, tail)?;
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
pub(super) fn read_hard(path: &Path) -> Result<HardState, StorageError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HardState::default()),
        Err(e) => return Err(io_err(path, "reading", &e)),
    };
    let bad = |why: &str| StorageError(format!("{}: {why}; {REFUSE}", path.display()));
    let recs = scan_records(&bytes, path, Tail::MayTear).map_err(|e| bad(&e.0))?;
    // An overwrite in place (see `overwrite_in_place`) leaves zeros after
    // a record shorter than the one it replaced.
    let zero_fill = bytes
        .get(recs.good_len..)
        .is_some_and(|rest| rest.iter().all(|&b| b == 0));
    if (recs.torn.is_some() && !zero_fill) || recs.spans.len() != 1 {
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

/// The snapshot file's bytes for `meta` and `data` up to `data`: the
/// file is these followed by `data` itself.
pub(super) fn snapshot_header(meta: &SnapshotMeta, data: &[u8]) -> Result<Vec<u8>, StorageError> {
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
    let mut out = Vec::with_capacity(SNAP_MAGIC.len() + SNAP_HEADER + m.len());
    out.extend_from_slice(SNAP_MAGIC);
    out.extend_from_slice(&meta_len);
    out.extend_from_slice(&data_len);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(&m);
    Ok(out)
}

/// Read and check the snapshot file (none when there is no file).
pub(super) fn read_snapshot(path: &Path) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
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
pub(super) fn read_all(dir: &Path, log_dir: &Path) -> Result<Recovered, StorageError> {
    let marker = dir.join(CLEAN);
    let mut clean = read_clean(&marker)?;
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
    if let Some(stop) = clean {
        // After a clean stop the log ends exactly where the stop left it.
        let found = match names.last() {
            Some((first, path)) => {
                let len = fs::metadata(path)
                    .map_err(|e| io_err(path, "reading", &e))?
                    .len();
                Some((*first, len))
            }
            None => None,
        };
        if found != stop {
            return Err(StorageError(format!(
                "{}: the node stopped cleanly with its log ending in {}, but it now ends in \
                 {}: the log changed after the stop; {REFUSE}: restore the store from a \
                 backup, or move it aside to start empty and catch up from the cluster; to \
                 accept the log as it is, remove {} and start again (a bad last record is \
                 then cut as a torn write)",
                marker.display(),
                describe_clean(stop),
                describe_clean(found),
                marker.display()
            )));
        }
    }
    let n = names.len();
    let mut read = Vec::with_capacity(n);
    for (i, (first, path)) in names.into_iter().enumerate() {
        let tail = match clean {
            _ if i + 1 < n => Tail::Earlier,
            Some(_) => Tail::Clean(&marker),
            None => Tail::MayTear,
        };
        read.push(read_segment(first, path, tail)?);
    }

    // Empty segments (a crash between creating one and writing it) and
    // those the snapshot covers entirely (a crash before their deletion
    // was durable) hold nothing needed.
    let mut removed = false;
    let mut kept: Vec<ReadSegment> = Vec::new();
    for seg in read {
        let useless = seg.entries.is_empty() || (kept.is_empty() && seg.last() <= snap_index);
        if useless {
            // A clean stop leaves none of these, but should one be found,
            // the marker goes first: it describes the files as they were.
            if clean.take().is_some() {
                remove_clean(dir)?;
            }
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
        clean: clean.is_some(),
        loaded: Loaded {
            hard,
            snapshot,
            entries,
        },
    })
}
