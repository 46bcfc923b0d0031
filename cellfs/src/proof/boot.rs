//! The boot proof: one `#E` marker per boot stage, chained by sha256.
//!
//! The kernel records a line per stage as it comes up, made only of facts
//! that the same image on the same machine reproduces (CPU signature,
//! memory map, the hash of its own code, the PCI functions it found, its
//! MAC and addresses, …), never times or random numbers. Each line ends in
//! `chain=` followed by sha256 over the previous chain value (32 zero bytes
//! before `#E0`) and the line's text up to the space before `chain=`.
//! Two boots of one image therefore print the same eleven lines, and
//! editing any line breaks its chain value and every one after it.
//!
//! A line looks like `#E3 paging mapped=4GiB pages2m=2048 chain=3f…`.

use alloc::format;
use alloc::string::String;
use core::fmt;
use core::fmt::Write;
use sha2::{Digest, Sha256};

/// The stages of a boot, in the order their markers appear.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// `#E0`: the CPU was identified.
    Cpu,
    /// `#E1`: the loader's memory map was read.
    Memory,
    /// `#E2`: the loader handed over; the kernel measured its own image.
    Handoff,
    /// `#E3`: the kernel's own page tables are live.
    Paging,
    /// `#E4`: GDT, TSS and IDT are loaded.
    Interrupts,
    /// `#E5`: the heap allocates.
    Heap,
    /// `#E6`: the timer ticks and an entropy source was chosen.
    Timer,
    /// `#E7`: PCI was enumerated.
    Pci,
    /// `#E8`: the virtio-net device is driven.
    Virtio,
    /// `#E9`: TCP/IP is up and listening.
    Network,
    /// `#E10`: the 9P server is serving the tree.
    Serving,
}

/// Every stage, in order; `STAGES[n]` is marker `#En`.
pub const STAGES: [Stage; 11] = [
    Stage::Cpu,
    Stage::Memory,
    Stage::Handoff,
    Stage::Paging,
    Stage::Interrupts,
    Stage::Heap,
    Stage::Timer,
    Stage::Pci,
    Stage::Virtio,
    Stage::Network,
    Stage::Serving,
];

impl Stage {
    /// The word that follows the marker on its line.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Cpu => "cpu",
            Stage::Memory => "memory",
            Stage::Handoff => "handoff",
            Stage::Paging => "paging",
            Stage::Interrupts => "interrupts",
            Stage::Heap => "heap",
            Stage::Timer => "timer",
            Stage::Pci => "pci",
            Stage::Virtio => "virtio",
            Stage::Network => "network",
            Stage::Serving => "9p",
        }
    }

    /// The marker's number (`#E<n>`).
    pub fn number(self) -> usize {
        self as usize
    }
}

/// A chain value: sha256 over the previous one and a marker line.
pub type Chain = [u8; 32];

/// The chain value that comes before `#E0`.
pub const GENESIS: Chain = [0; 32];

/// The chain value of `line` (without its ` chain=…` suffix) after `prev`.
pub fn link(prev: &Chain, line: &str) -> Chain {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(line.as_bytes());
    h.finalize().into()
}

pub use crate::hex::encode as hex;

/// The markers of one boot, as the kernel records them.
#[derive(Clone, Debug)]
pub struct Ledger {
    text: String,
    chain: Chain,
    next: usize,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            text: String::new(),
            chain: GENESIS,
            next: 0,
        }
    }
}

/// Why a ledger or a console log is not a valid boot proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProofError {
    /// A stage was recorded before the ones that must precede it, or twice.
    OutOfOrder {
        /// The marker that was due.
        expected: usize,
        /// The stage that was recorded instead.
        got: Stage,
    },
    /// Facts may not contain line breaks or the word `chain=`.
    BadFacts(Stage),
    /// No line for marker `#E<n>` (the log stops before it).
    Missing(usize),
    /// Marker `#E<n>` appears on more than one line.
    Duplicate {
        /// The marker number.
        marker: usize,
        /// The 1-based line of the second one.
        line: usize,
    },
    /// A marker line that does not read `#E<n> <stage> … chain=<64 hex>`.
    Malformed {
        /// The 1-based line number in the log.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// The line's chain value is not the one its text and the previous
    /// line give: the line, or one before it, was changed.
    Broken {
        /// The marker number.
        marker: usize,
        /// The 1-based line number in the log.
        line: usize,
        /// The chain value the line should carry.
        expected: String,
    },
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProofError::OutOfOrder { expected, got } => write!(
                f,
                "boot stage '{}' recorded out of order: #E{expected} was due",
                got.name()
            ),
            ProofError::BadFacts(stage) => write!(
                f,
                "facts of boot stage '{}' contain a line break or 'chain='",
                stage.name()
            ),
            ProofError::Missing(n) => write!(
                f,
                "no #E{n} marker: the boot did not reach stage '{}' or the log was cut",
                STAGES[*n].name()
            ),
            ProofError::Duplicate { marker, line } => {
                write!(f, "line {line}: marker #E{marker} appears a second time")
            }
            ProofError::Malformed { line, why } => write!(f, "line {line}: {why}"),
            ProofError::Broken {
                marker,
                line,
                expected,
            } => write!(
                f,
                "line {line}: #E{marker} does not chain: its chain value should be {expected}; the line or one before it was edited"
            ),
        }
    }
}

impl Ledger {
    /// An empty ledger, waiting for `#E0`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record `stage` with its facts (`key=value` words) and return the
    /// marker line, without a line break, for the console.
    pub fn record(&mut self, stage: Stage, facts: &str) -> Result<&str, ProofError> {
        if stage.number() != self.next {
            return Err(ProofError::OutOfOrder {
                expected: self.next,
                got: stage,
            });
        }
        if facts.contains(['\n', '\r']) || facts.contains("chain=") {
            return Err(ProofError::BadFacts(stage));
        }
        let body = format!("#E{} {} {}", stage.number(), stage.name(), facts);
        self.chain = link(&self.chain, body.trim_end());
        let start = self.text.len();
        let _ = writeln!(
            self.text,
            "{} chain={}",
            body.trim_end(),
            crate::hex::encode(&self.chain)
        );
        self.next += 1;
        Ok(self.text[start..].trim_end())
    }

    /// Every marker line so far, one per line: what `/proof/boot` shows.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The chain value of the last marker (the genesis value before any).
    pub fn head(&self) -> Chain {
        self.chain
    }

    /// Whether every stage through `#E10` has been recorded.
    pub fn complete(&self) -> bool {
        self.next == STAGES.len()
    }
}

/// A checked boot proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The chain value of `#E10`.
    pub head: Chain,
    /// The eleven marker lines, without their line breaks.
    pub markers: [String; 11],
}

/// Check a captured console log (or a `/proof/boot` file): it must hold
/// exactly one line for each marker `#E0` … `#E10`, in order, each naming
/// its stage and carrying the chain value its text gives. Other lines
/// (the kernel's other messages, the firmware's) are ignored.
pub fn verify(log: &str) -> Result<Verified, ProofError> {
    let mut chain = GENESIS;
    let mut markers: [String; 11] = Default::default();
    let mut next = 0usize;
    for (i, raw) in log.split('\n').enumerate() {
        let line_no = i + 1;
        let line = raw.trim_end_matches('\r');
        let Some(rest) = line.strip_prefix("#E") else {
            continue;
        };
        let malformed = |why: String| ProofError::Malformed { line: line_no, why };
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: usize = rest[..digits]
            .parse()
            .map_err(|_| malformed(String::from("'#E' is not followed by a marker number")))?;
        if n >= STAGES.len() {
            return Err(malformed(format!(
                "there is no marker #E{n} (they end at #E10)"
            )));
        }
        if n < next {
            return Err(ProofError::Duplicate {
                marker: n,
                line: line_no,
            });
        }
        if n > next {
            return Err(ProofError::Missing(next));
        }
        let stage = STAGES[n];
        let after = &rest[digits..];
        let named = after
            .strip_prefix(' ')
            .and_then(|s| s.strip_prefix(stage.name()))
            .is_some_and(|s| s.is_empty() || s.starts_with(' '));
        if !named {
            return Err(malformed(format!(
                "#E{n} must name stage '{}' after the marker",
                stage.name()
            )));
        }
        let Some((body, value)) = line.rsplit_once(" chain=") else {
            return Err(malformed(format!("#E{n} has no ' chain=' value")));
        };
        if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed(format!(
                "#E{n}'s chain value '{value}' is not 64 hex digits"
            )));
        }
        chain = link(&chain, body);
        let expected = crate::hex::encode(&chain);
        if !value.eq_ignore_ascii_case(&expected) {
            return Err(ProofError::Broken {
                marker: n,
                line: line_no,
                expected,
            });
        }
        markers[n] = String::from(line);
        next += 1;
    }
    if next < STAGES.len() {
        return Err(ProofError::Missing(next));
    }
    Ok(Verified {
        head: chain,
        markers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Ledger {
        let mut l = Ledger::new();
        for (i, s) in STAGES.iter().enumerate() {
            l.record(*s, &format!("n={i}")).unwrap();
        }
        l
    }

    #[test]
    fn a_full_ledger_verifies_and_is_deterministic() {
        let a = full();
        assert!(a.complete());
        let v = verify(a.text()).unwrap();
        assert_eq!(v.head, a.head());
        assert_eq!(a.text(), full().text());
        assert!(v.markers[10].starts_with("#E10 9p n=10 chain="));
    }

    #[test]
    fn other_console_lines_are_ignored() {
        let text = format!(
            "SeaBIOS\r\nboot\n{}trailing\n",
            full().text().replace('\n', "\r\n")
        );
        verify(&text).unwrap();
    }

    #[test]
    fn an_edited_fact_breaks_the_chain_at_that_line() {
        let text = full()
            .text()
            .replace("#E4 interrupts n=4", "#E4 interrupts n=5");
        match verify(&text) {
            Err(ProofError::Broken {
                marker: 4, line: 5, ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_duplicate_and_misnamed_markers_are_refused() {
        let text = String::from(full().text());
        let cut: String = text.lines().take(7).map(|l| format!("{l}\n")).collect();
        assert_eq!(verify(&cut), Err(ProofError::Missing(7)));
        let first = text.lines().next().unwrap();
        let dup = format!("{text}{first}\n");
        assert!(matches!(
            verify(&dup),
            Err(ProofError::Duplicate { marker: 0, .. })
        ));
        let renamed = text.replace("#E1 memory", "#E1 memery");
        assert!(matches!(
            verify(&renamed),
            Err(ProofError::Malformed { line: 2, .. })
        ));
        assert_eq!(verify(""), Err(ProofError::Missing(0)));
    }

    #[test]
    fn stages_must_be_recorded_in_order_with_clean_facts() {
        let mut l = Ledger::new();
        assert!(matches!(
            l.record(Stage::Memory, "x=1"),
            Err(ProofError::OutOfOrder { expected: 0, .. })
        ));
        assert_eq!(
            l.record(Stage::Cpu, "a\nb"),
            Err(ProofError::BadFacts(Stage::Cpu))
        );
        assert_eq!(
            l.record(Stage::Cpu, "chain=00"),
            Err(ProofError::BadFacts(Stage::Cpu))
        );
        l.record(Stage::Cpu, "vendor=x").unwrap();
        assert!(l.record(Stage::Cpu, "vendor=x").is_err());
    }
}
