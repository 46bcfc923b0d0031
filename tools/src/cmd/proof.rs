//! `cell0 proof`: check proofs offline. See proof(3).

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context;
use cellfs::proof::boot::{self, Verified};
use cellfs::proof::chain;

/// What `cell0 proof` can check.
#[derive(clap::Subcommand, Debug)]
pub enum ProofCmd {
    /// Check a boot ledger: a kernel's console log or a copy of /proof/boot.
    VerifyBoot {
        /// The log to check, or `-` for standard input.
        log: PathBuf,
    },
    /// Check a copy of /proof/chain against a copy of /proof/head: every
    /// hash recomputed, the head naming the last entry and signed.
    Verify {
        /// The copy of /proof/chain, or `-` for standard input.
        chain: PathBuf,
        /// The copy of /proof/head.
        head: PathBuf,
        /// The node's public key (64 hex digits) the head must be signed by.
        #[arg(long, value_name = "HEX")]
        key: Option<String>,
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
        ProofCmd::Verify { chain, head, key } => {
            let key = key
                .map(|k| crate::identity::parse_hex32(&k))
                .transpose()
                .context("--key")?;
            let chain_text = read_log(&chain)?;
            let head_text = read_log(&head)?;
            let v = chain::verify(&chain_text, &head_text, key.as_ref()).map_err(|e| {
                anyhow::anyhow!(
                    "{} and {} do not verify: {e}",
                    chain.display(),
                    head.display()
                )
            })?;
            println!("{}", chain_summary(&v));
            Ok(())
        }
    }
}

/// `ok: N entries, head INDEX HASH signed by KEY`, with `after base INDEX
/// HASH` when the copy starts from a base line.
pub fn chain_summary(v: &chain::Verified) -> String {
    let base = v.base.map_or(String::new(), |b| {
        format!(" after base {} {}", b.index, boot::hex(&b.hash))
    });
    format!(
        "ok: {} entries{base}, head {} {} signed by {}",
        v.entries,
        v.head.index,
        boot::hex(&v.head.hash),
        boot::hex(&v.head.key)
    )
}

/// The text of `path` (`-`: standard input), odd bytes replaced.
pub fn read_log(path: &PathBuf) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading the log from standard input")?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    }
    // A console log may hold the firmware's odd bytes; markers are ASCII.
    // (A byte that is not UTF-8 in a chain or head becomes U+FFFD, which
    // no field allows: the line is reported malformed.)
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
