//! `cell0 chan verify`: check saved `msgs` lines offline. See chan(3).

use std::path::PathBuf;

use anyhow::Context;
use cellfs::cap::PublicKey;
use cellfs::chan::msg::{self, Verdict};
use cellfs::proof::boot::hex;

/// What `cell0 chan` can do.
#[derive(clap::Subcommand, Debug)]
pub enum ChanCmd {
    /// Check every line of a copy of a channel's msgs: each signature
    /// recomputed; with --key, the signing node must be one of those.
    Verify {
        /// The copy of msgs, or `-` for standard input.
        msgs: PathBuf,
        /// A node key (64 hex digits) to trust; repeat for a cluster.
        /// Without it any node's valid signature passes and is named.
        #[arg(long = "key", value_name = "HEX")]
        keys: Vec<String>,
    },
}

/// Run a `cell0 chan` subcommand.
pub fn run(cmd: ChanCmd) -> anyhow::Result<()> {
    let ChanCmd::Verify { msgs, keys } = cmd;
    let keys: Vec<PublicKey> = keys
        .iter()
        .map(|k| crate::identity::parse_hex32(k))
        .collect::<anyhow::Result<_>>()
        .context("--key")?;
    let text = crate::cmd::proof::read_log(&msgs)?;
    let checked =
        verify_lines(&text, &keys).map_err(|e| anyhow::anyhow!("{}: {e}", msgs.display()))?;
    for line in &checked {
        println!("{line}");
    }
    println!("ok: {} messages verified", checked.len());
    Ok(())
}

/// One `ok seq=N sender=… nth=N intent=… node=…` line per message of
/// `text`, or the
/// first that does not verify, named by its line and seq.
fn verify_lines(text: &str, keys: &[PublicKey]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let m = msg::parse_line(line)
            .map_err(|e| format!("line {}: not a msgs line: {}", i + 1, e.0))?;
        let trusted = |k: &PublicKey| keys.is_empty() || keys.contains(k);
        match msg::verify(&m.stamp, &m.data, trusted) {
            Verdict::Yes => out.push(format!(
                "ok seq={} sender={} nth={} intent={} node={}",
                m.seq,
                m.stamp.sender,
                m.stamp.nth,
                m.stamp.intent,
                hex(&m.stamp.node)
            )),
            Verdict::BadSignature => {
                return Err(format!(
                    "line {}: seq {}: the signature does not match: its stamp or data was changed",
                    i + 1,
                    m.seq
                ));
            }
            Verdict::UnknownSigner => {
                return Err(format!(
                    "line {}: seq {}: signed by {}, which is not a --key given",
                    i + 1,
                    m.seq,
                    hex(&m.stamp.node)
                ));
            }
        }
    }
    if out.is_empty() {
        return Err(String::from("no messages to verify"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellfs::cap::NodeKey;
    use cellfs::chan::msg::{Message, Unsigned};

    fn lines(key: &NodeKey) -> String {
        let mut text = String::new();
        for (seq, data) in [(1, &b"one\n"[..]), (2, b"two\n")] {
            let stamp = Unsigned {
                chan: "a",
                time_ms: seq,
                sender: "alice",
                cap: 3,
                intent: String::from("w@/chan/a"),
            }
            .sign(key, data);
            let m = Message {
                seq,
                stamp,
                data: data.to_vec(),
            };
            msg::push_line(&mut text, &m, Verdict::Yes);
        }
        text
    }

    #[test]
    fn good_lines_pass_and_any_changed_hex_digit_is_named() {
        let key = NodeKey::from_seed(&[4; 32]);
        let text = lines(&key);
        assert_eq!(verify_lines(&text, &[]).unwrap().len(), 2);
        assert_eq!(verify_lines(&text, &[key.public()]).unwrap().len(), 2);
        let other = NodeKey::from_seed(&[5; 32]).public();
        assert!(
            verify_lines(&text, &[other])
                .unwrap_err()
                .contains("seq 1: signed by")
        );
        // Change one hex digit of the second message's data.
        let at = text.rfind("data=").unwrap() + 6;
        let mut bytes = text.into_bytes();
        bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
        let bad = String::from_utf8(bytes).unwrap();
        let e = verify_lines(&bad, &[]).unwrap_err();
        assert!(
            e.starts_with("line 2: seq 2: the signature does not match"),
            "{e}"
        );
    }
}
