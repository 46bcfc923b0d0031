//! The engine every target shares: a small deterministic PRNG, byte
//! mutations, the short and long budgets, and the report of a failure.
//!
//! Each unit of work (a frame to decode, a sequence of requests, a ctl
//! write) draws from its own generator, made from the run's seed and the
//! unit's number, so any failure replays alone:
//! `CELL0_FUZZ_SEED=S CELL0_FUZZ_FROM=N CELL0_FUZZ_INPUTS=1`.

use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

/// SplitMix64: tiny, fast, and good enough to drive a fuzzer.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// The generator of unit `n` of a target seeded with `seed`.
    pub fn new(seed: u64, n: u64) -> Rng {
        let mut r = Rng(seed ^ n.wrapping_mul(0xD134_2543_DE82_EF95));
        r.next();
        r
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// One item of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A number that is often at an edge: 0, 1, a power of two and its
    /// neighbours, the maximum, or anything.
    pub fn edgy(&mut self) -> u64 {
        match self.below(8) {
            0 => 0,
            1 => u64::MAX,
            2 => 1u64 << self.below(64),
            3 => (1u64 << self.below(64)).wrapping_sub(1),
            4 => self.below(16) as u64,
            5 => u64::from(u32::MAX) - self.below(4) as u64,
            _ => self.next(),
        }
    }
}

/// Values that often break length and count fields.
const INTERESTING: &[u32] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    16,
    17,
    64,
    127,
    128,
    255,
    256,
    4096,
    8192,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x10_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
];

/// Mutate `buf` in place with one to `max` random edits (bit flips,
/// interesting values, inserted, deleted and duplicated runs, a splice
/// from `other`, a cut), then sometimes make its size field honest again.
pub fn mutate(rng: &mut Rng, buf: &mut Vec<u8>, other: &[u8], max: usize) {
    edit(rng, buf, other, max);
    if buf.len() >= 4 && !rng.one_in(4) {
        let n = buf.len() as u32;
        buf[..4].copy_from_slice(&n.to_le_bytes());
    }
}

/// The edits of [`mutate`], for text that has no size field.
pub fn edit(rng: &mut Rng, buf: &mut Vec<u8>, other: &[u8], max: usize) {
    let edits = 1 + rng.below(max);
    for _ in 0..edits {
        let len = buf.len();
        match rng.below(11) {
            0 | 1 if len > 0 => {
                let i = rng.below(len);
                buf[i] ^= 1 << rng.below(8);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                buf[i] = rng.next() as u8;
            }
            3 if len >= 2 => {
                let i = rng.below(len - 1);
                let v = *rng.pick(INTERESTING) as u16;
                buf[i..i + 2].copy_from_slice(&v.to_le_bytes());
            }
            4 if len >= 4 => {
                let i = rng.below(len - 3);
                let v = *rng.pick(INTERESTING);
                buf[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            5 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                for _ in 0..n {
                    buf.insert(i, rng.next() as u8);
                }
            }
            6 if len > 0 => {
                let i = rng.below(len);
                let n = (1 + rng.below(8)).min(len - i);
                buf.drain(i..i + n);
            }
            7 if len > 0 => {
                let cut = rng.below(len);
                buf.truncate(cut);
            }
            8 if len > 0 => {
                let i = rng.below(len);
                let n = (1 + rng.below(16)).min(len - i);
                let run: Vec<u8> = buf[i..i + n].to_vec();
                let at = rng.below(buf.len() + 1);
                buf.splice(at..at, run);
            }
            9 if !other.is_empty() => {
                let i = rng.below(other.len());
                let n = (1 + rng.below(32)).min(other.len() - i);
                let at = rng.below(len + 1);
                let end = (at + n).min(len);
                buf.splice(at..end, other[i..i + n].iter().copied());
            }
            _ => {
                // A message type byte from another message.
                if len > 4 {
                    buf[4] = rng.below(256) as u8;
                }
            }
        }
    }
}

/// Lowercase hex of `bytes`, for failure reports.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How much a target runs, from the environment.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// The run's seed (`CELL0_FUZZ_SEED`, else a fixed default).
    pub seed: u64,
    /// Inputs for this target.
    pub inputs: u64,
    /// The first unit to run (`CELL0_FUZZ_FROM`), to replay one failure.
    pub from: u64,
    /// Whether a long run was asked for (`CELL0_FUZZ_INPUTS` set).
    pub long: bool,
}

/// The default seed of a run that names none, so `cargo test` is
/// repeatable.
const DEFAULT_SEED: u64 = 0xCE11_0F00_2026;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim().replace('_', "");
    let parsed = match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        // Plain digits, or a float such as 1e8.
        None => v
            .parse()
            .ok()
            .or_else(|| v.parse::<f64>().ok().map(|f| f as u64)),
    };
    Some(parsed.unwrap_or_else(|| panic!("{name}={v}: not a number")))
}

impl Budget {
    /// The budget of a target that gets `share` tenths of
    /// `CELL0_FUZZ_INPUTS` in a long run and `short` inputs otherwise;
    /// `CELL0_FUZZ_<TARGET>` sets a target's count outright.
    pub fn of(target: &str, share: u64, short: u64) -> Budget {
        let seed = env_u64("CELL0_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
        let from = env_u64("CELL0_FUZZ_FROM").unwrap_or(0);
        let own = env_u64(&format!("CELL0_FUZZ_{}", target.to_uppercase()));
        let total = env_u64("CELL0_FUZZ_INPUTS");
        let inputs = match (own, total) {
            (Some(n), _) => n,
            (None, Some(1)) => 1,
            (None, Some(t)) => t / 10 * share,
            (None, None) => short,
        };
        Budget {
            seed: seed ^ fnv(target),
            inputs,
            from,
            long: own.is_some() || total.is_some(),
        }
    }
}

/// A stable hash of a target's name, so targets draw different streams.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Run `unit` on units `from, from + 1, …` until it has counted
/// `budget.inputs` inputs (each call returns how many it ran). A panic
/// prints the seed, the unit and what `describe` says of its input
/// (regenerated from the same generator), then fails the test.
pub fn run(
    target: &str,
    budget: Budget,
    mut unit: impl FnMut(u64, &mut Rng) -> u64,
    describe: impl Fn(u64, &mut Rng) -> String,
) -> u64 {
    let start = Instant::now();
    let mut done = 0u64;
    let mut n = budget.from;
    let mut next_note = 10_000_000u64;
    let env_seed = budget.seed ^ fnv(target);
    while done < budget.inputs {
        let mut rng = Rng::new(budget.seed, n);
        match panic::catch_unwind(AssertUnwindSafe(|| unit(n, &mut rng))) {
            Ok(k) => done += k,
            Err(e) => {
                let what = describe(n, &mut Rng::new(budget.seed, n));
                eprintln!(
                    "fuzz {target}: FAILED at unit {n} after {done} inputs\n\
                     replay: CELL0_FUZZ_SEED={env_seed:#x} CELL0_FUZZ_FROM={n} CELL0_FUZZ_INPUTS=1 \
                     cargo test -p cellfs --test fuzz {target}\ninput:\n{what}"
                );
                panic::resume_unwind(e);
            }
        }
        n += 1;
        if budget.long && done >= next_note {
            let secs = start.elapsed().as_secs_f64();
            eprintln!(
                "fuzz {target}: {done} inputs, {secs:.0} s, {:.0}/s",
                done as f64 / secs
            );
            next_note += 10_000_000;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "fuzz {target}: {done} inputs in {n} units, {secs:.1} s, {:.0} inputs/s, seed {env_seed:#x}",
        done as f64 / secs.max(1e-9),
        n = n - budget.from
    );
    done
}
