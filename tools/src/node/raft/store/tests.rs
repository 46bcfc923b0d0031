//! The segment store's tests: round trips, crashes, corruption, and a
//! random comparison with the in-memory storage.

use super::files::{parse_segment_name, read_hard};
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

/// A store holding entries 1..=3, stopped cleanly; its segment's path,
/// bytes, and where its last record starts.
fn cleanly_stopped(dir: &Path) -> (PathBuf, Vec<u8>, usize) {
    let mut s = SegmentStore::open(dir).unwrap();
    s.append(0, &entries(1, 3, 1)).unwrap();
    s.sync().unwrap();
    s.close().unwrap();
    drop(s);
    let path = dir.join("log").join(segment_name(1));
    let whole = fs::read(&path).unwrap();
    let mut rec = Vec::new();
    encode_record(&postcard::to_allocvec(&entry(3, 1)).unwrap(), &mut rec);
    let last = whole.len() - rec.len();
    (path, whole, last)
}

/// Every file under `dir`, with its bytes.
fn snapshot_of(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let bytes = fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_clean_stop_leaves_a_marker_naming_the_last_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (_, whole, _) = cleanly_stopped(dir.path());
    assert_eq!(
        fs::read_to_string(dir.path().join("clean")).unwrap(),
        format!("{} {}\n", segment_name(1), whole.len())
    );
    // An empty store says so.
    let empty = tempfile::tempdir().unwrap();
    let mut s = SegmentStore::open(empty.path()).unwrap();
    s.close().unwrap();
    drop(s);
    assert_eq!(
        fs::read_to_string(empty.path().join("clean")).unwrap(),
        "no segments\n"
    );
    let mut s = SegmentStore::open(empty.path()).unwrap();
    assert_eq!(s.load().unwrap(), Loaded::default());
}

#[test]
fn a_flipped_payload_bit_in_the_last_record_after_a_clean_stop_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, whole, last) = cleanly_stopped(dir.path());
    for at in last + HEADER..whole.len() {
        let mut bad = whole.clone();
        bad[at] ^= 1 << (at % 8);
        fs::write(&path, &bad).unwrap();
        let before = snapshot_of(dir.path());
        let err = SegmentStore::open(dir.path())
            .err()
            .unwrap_or_else(|| panic!("bit flipped at byte {at} was accepted"))
            .0;
        assert!(
            err.contains(&format!(
                "{}: corrupt last record at byte {last}",
                path.display()
            )) && err.contains("stopped cleanly")
                && err.contains("not a torn write")
                && err.contains("refusing to start")
                && err.contains(&format!("remove {}", dir.path().join("clean").display())),
            "{err}"
        );
        assert_eq!(snapshot_of(dir.path()), before, "byte {at}: files changed");
    }
    // The operator's way out: without the marker it is cut as torn.
    let mut bad = whole.clone();
    bad[whole.len() - 1] ^= 1;
    fs::write(&path, &bad).unwrap();
    fs::remove_file(dir.path().join("clean")).unwrap();
    let mut s = SegmentStore::open(dir.path()).unwrap();
    assert_eq!(s.load().unwrap().entries, entries(1, 2, 1));
}

#[test]
fn a_flipped_header_bit_in_the_last_record_after_a_clean_stop_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, whole, last) = cleanly_stopped(dir.path());
    // Every bit of the length and of the checksum.
    for bit in 0..HEADER * 8 {
        let mut bad = whole.clone();
        bad[last + bit / 8] ^= 1 << (bit % 8);
        fs::write(&path, &bad).unwrap();
        let before = snapshot_of(dir.path());
        let err = SegmentStore::open(dir.path())
            .err()
            .unwrap_or_else(|| panic!("header bit {bit} flipped was accepted"))
            .0;
        assert!(
            err.contains(&format!("{}: corrupt", path.display()))
                && err.contains(&format!("at byte {last}"))
                && err.contains("refusing to start"),
            "bit {bit}: {err}"
        );
        assert_eq!(snapshot_of(dir.path()), before, "bit {bit}: files changed");
    }
}

#[test]
fn a_log_changed_after_a_clean_stop_or_a_damaged_marker_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, whole, last) = cleanly_stopped(dir.path());
    let marker = dir.path().join("clean");
    // The last record gone whole, bytes added, the segment gone.
    for changed in [
        whole[..last].to_vec(),
        [&whole[..], &[0u8; 16][..]].concat(),
    ] {
        fs::write(&path, &changed).unwrap();
        let before = snapshot_of(dir.path());
        let err = SegmentStore::open(dir.path()).err().expect("refused").0;
        assert!(
            err.contains(&format!("{}: the node stopped cleanly", marker.display()))
                && err.contains(&format!("at {} bytes", whole.len()))
                && err.contains(&format!("at {} bytes", changed.len()))
                && err.contains("refusing to start"),
            "{err}"
        );
        assert_eq!(snapshot_of(dir.path()), before);
    }
    fs::remove_file(&path).unwrap();
    let err = SegmentStore::open(dir.path()).err().expect("refused").0;
    assert!(err.contains("now ends in no segment"), "{err}");
    fs::write(&path, &whole).unwrap();
    // A damaged marker is refused too.
    let good = fs::read(&marker).unwrap();
    let mut flipped = good.clone();
    if let Some(b) = flipped.last_mut() {
        *b ^= 1;
    }
    for bad in [b"".to_vec(), b"junk\n".to_vec(), flipped] {
        fs::write(&marker, &bad).unwrap();
        let err = SegmentStore::open(dir.path()).err().expect("refused").0;
        assert!(
            err.contains("damaged clean-stop marker") && err.contains("remove it"),
            "{err}"
        );
    }
    fs::write(&marker, &good).unwrap();
    let mut s = SegmentStore::open(dir.path()).unwrap();
    assert_eq!(s.load().unwrap().entries, entries(1, 3, 1));
}

#[test]
fn the_marker_goes_before_the_first_write_and_a_later_crash_cuts_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, _) = cleanly_stopped(dir.path());
    let marker = dir.path().join("clean");
    {
        // Opening and reading change nothing: the marker stays.
        let mut s = SegmentStore::open(dir.path()).unwrap();
        assert_eq!(s.load().unwrap().entries, entries(1, 3, 1));
        assert!(s.load().is_ok());
        assert!(marker.exists());
    }
    // Every kind of first write removes it before writing.
    for write in 0..3 {
        let mut s = SegmentStore::open(dir.path()).unwrap();
        assert!(marker.exists());
        match write {
            0 => s.append(3, &entries(4, 4, 1)).unwrap(),
            1 => s
                .save_hard_state(&HardState {
                    term: 2,
                    voted_for: None,
                    boot: 1,
                })
                .unwrap(),
            _ => s.save_snapshot(&meta(1, 1), b"s1").unwrap(),
        }
        if write != 1 {
            assert!(!marker.exists(), "write {write}");
        }
        s.sync().unwrap();
        assert!(!marker.exists(), "write {write}");
        s.close().unwrap();
        assert!(marker.exists(), "write {write}");
    }
    // New writes after a clean stop, then a crash (no close): a torn
    // last record is cut as before.
    let mut s = SegmentStore::open(dir.path()).unwrap();
    s.append(4, &entries(5, 6, 2)).unwrap();
    s.sync().unwrap();
    drop(s);
    assert!(!marker.exists());
    let whole = fs::read(&path).unwrap();
    fs::write(&path, &whole[..whole.len() - 3]).unwrap();
    let mut s = SegmentStore::open(dir.path()).unwrap();
    let l = s.load().unwrap();
    assert_eq!(l.entries.last().map(|e| e.index), Some(5));
    assert_eq!(l.snapshot.map(|(m, _)| m.index), Some(1));
    // And the store goes on, and stops cleanly again with the new end.
    s.append(5, &entries(6, 6, 3)).unwrap();
    s.close().unwrap();
    drop(s);
    assert_eq!(
        fs::read_to_string(&marker).unwrap(),
        format!(
            "{} {}\n",
            segment_name(1),
            fs::metadata(&path).unwrap().len()
        )
    );
    let mut s = SegmentStore::open(dir.path()).unwrap();
    assert_eq!(s.load().unwrap().entries.last(), Some(&entry(6, 3)));
}

#[test]
fn a_failed_store_records_no_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SegmentStore::open(dir.path()).unwrap();
    s.append(0, &entries(1, 2, 1)).unwrap();
    s.failed = Some("a write failed".into());
    assert!(s.close().is_err());
    assert!(!dir.path().join("clean").exists());
}

/// Make `dir/name` a link to /dev/full, where every write fails with
/// ENOSPC: a full disk for that one file, without root.
fn full_file(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::os::unix::fs::symlink("/dev/full", &p).unwrap();
    p
}

#[test]
fn write_atomic_leaves_no_temporary_file_when_the_disk_is_full() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("thing"), b"old").unwrap();
    let tmp = full_file(dir.path(), "thing.tmp");
    let err = files::write_atomic(dir.path(), "thing", b"new").unwrap_err();
    let WriteFailure::NoSpace(e) = err else {
        panic!("not a lack of space: {err:?}");
    };
    assert!(e.0.contains("No space left on device"), "{e}");
    assert!(
        fs::symlink_metadata(&tmp).is_err(),
        "the temporary file stayed"
    );
    assert_eq!(fs::read(dir.path().join("thing")).unwrap(), b"old");
}

#[test]
fn a_hard_state_with_no_room_for_a_copy_is_overwritten_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let hard = |term| HardState {
        term,
        voted_for: Some(7),
        boot: 3,
    };
    {
        let mut s = SegmentStore::open(dir.path()).unwrap();
        s.load().unwrap();
        s.save_hard_state(&hard(u64::MAX)).unwrap();
        s.sync().unwrap();
    }
    let tmp = full_file(dir.path(), "hardstate.tmp");
    {
        let mut s = SegmentStore::open(dir.path()).unwrap();
        // Open removes a stale temporary file: put the full one back.
        full_file(dir.path(), "hardstate.tmp");
        s.load().unwrap();
        // A shorter record than the one it replaces: zeros follow it.
        s.save_hard_state(&hard(5)).unwrap();
        s.sync().unwrap();
        assert_eq!(s.no_space(), None, "the overwrite found room");
    }
    assert!(
        fs::symlink_metadata(&tmp).is_err(),
        "the temporary file stayed"
    );
    let mut s = SegmentStore::open(dir.path()).unwrap();
    assert_eq!(s.load().unwrap().hard, hard(5));
    assert_eq!(read_hard(&dir.path().join("hardstate")).unwrap(), hard(5));
}

#[test]
fn a_first_hard_state_with_no_room_leaves_the_store_short_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SegmentStore::open(dir.path()).unwrap();
    s.load().unwrap();
    full_file(dir.path(), "hardstate.tmp");
    let hard = HardState {
        term: 2,
        voted_for: None,
        boot: 1,
    };
    s.save_hard_state(&hard).unwrap();
    let err = s.sync().unwrap_err();
    assert!(err.0.contains("No space left on device"), "{err}");
    assert!(s.no_space().is_some());
    assert!(fs::symlink_metadata(dir.path().join("hardstate.tmp")).is_err());
    // Not poisoned: the log still takes appends, and a sync succeeds once
    // nothing needs the space.
    s.append(0, &entries(1, 3, 1)).unwrap();
    s.sync().unwrap();
    assert_eq!(s.load().unwrap().hard, HardState::default());
    assert_eq!(s.load().unwrap().entries, entries(1, 3, 1));
}

#[test]
fn a_snapshot_with_no_room_is_given_up_and_the_log_it_covers_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SegmentStore::open_with(dir.path(), 200).unwrap();
    s.load().unwrap();
    s.append(0, &entries(1, 20, 1)).unwrap();
    s.sync().unwrap();
    let before = segment_files(dir.path());
    full_file(dir.path(), "snapshot.tmp");
    s.save_snapshot(&meta(15, 1), b"state").unwrap();
    let err = s.settle().unwrap_err();
    assert!(err.0.contains("given up"), "{err}");
    assert!(s.no_space().is_some());
    assert_eq!(segment_files(dir.path()), before, "covered segments went");
    assert!(fs::symlink_metadata(dir.path().join("snapshot.tmp")).is_err());
    // The store goes on, and reopens with every entry.
    s.append(20, &entries(21, 22, 1)).unwrap();
    s.sync().unwrap();
    drop(s);
    let mut s = SegmentStore::open_with(dir.path(), 200).unwrap();
    let l = s.load().unwrap();
    assert!(l.snapshot.is_none());
    assert_eq!(l.entries, entries(1, 22, 1));
}

#[test]
fn the_reserve_is_made_at_open_and_space_is_retried_at_most_once_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SegmentStore::open(dir.path()).unwrap();
    let reserve = dir.path().join(files::RESERVE);
    assert_eq!(
        fs::metadata(&reserve).unwrap().len(),
        files::RESERVE_BYTES as u64
    );
    assert!(!s.retry_space(), "not short, nothing to retry");
    // Short of space (the reserve cannot be rewritten): still short
    // after a retry, and the retry leaves nothing behind.
    s.short = Some("test".into());
    s.last_retry = None;
    full_file(dir.path(), "reserve.tmp");
    assert!(s.retry_space());
    assert!(fs::symlink_metadata(dir.path().join("reserve.tmp")).is_err());
    // Space back: the next retry (a second later) clears it.
    s.last_retry = None;
    assert!(!s.retry_space());
    assert_eq!(s.no_space(), None);
}
