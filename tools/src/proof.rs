//! `cell0 proof`: check proofs offline. See proof(3).

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context;
use cellfs::proof::boot::{self, Verified};

/// What `cell0 proof` can check.
#[derive(clap::Subcommand, Debug)]
pub enum ProofCmd {
    /// Check a boot ledger: a kernel's console log or a copy of /proof/boot.
    VerifyBoot {
        /// The log to check, or `-` for standard input.
        log: PathBuf,
    },
}

/// Run a `cell0 proof` subcommand.
pub fn run(cmd: ProofCmd) -> anyhow::Result<()> {
    match cmd {
        ProofCmd::VerifyBoot { log } => {
            let text = read_log(&log)?;
            let v = boot::verify(&text)
                .map_err(|e| anyhow::anyhow!("{}: not a valid boot proof: {e}", log.display()))?;
            print!("{}", summary(&v));
            Ok(())
        }
    }
}

fn read_log(path: &PathBuf) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading the log from standard input")?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    }
    // A console log may hold the firmware's odd bytes; markers are ASCII.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// One line per marker (its stage and facts, without the chain value),
/// then `head HEX`: the chain value of `#E10`.
pub fn summary(v: &Verified) -> String {
    let mut out = String::new();
    for line in &v.markers {
        let facts = line
            .rsplit_once(" chain=")
            .map_or(line.as_str(), |(b, _)| b);
        out.push_str("ok ");
        out.push_str(facts);
        out.push('\n');
    }
    out.push_str("head ");
    out.push_str(&boot::hex(&v.head));
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellfs::proof::boot::{Ledger, STAGES};

    #[test]
    fn the_summary_names_every_stage_and_ends_with_the_head() {
        let mut l = Ledger::new();
        for s in STAGES {
            l.record(s, "k=v").unwrap();
        }
        let v = boot::verify(l.text()).unwrap();
        let s = summary(&v);
        assert_eq!(s.lines().count(), 12);
        assert!(s.starts_with("ok #E0 cpu k=v\n"), "{s}");
        assert!(s.contains("ok #E10 9p k=v\n"), "{s}");
        assert!(s.ends_with(&format!("head {}\n", boot::hex(&l.head()))));
    }
}
