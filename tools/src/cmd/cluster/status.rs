//! Reading a node's `/raft/status` to tell when a cluster has formed.

use ninep::Dialect;

use crate::client::{Client, Options};
use crate::identity::ClientToken;

/// The `key value` lines of `/raft/status` on the node at `addr`.
pub struct RaftStatus {
    text: String,
}

impl RaftStatus {
    /// Read it, attaching with `token`.
    pub fn read(addr: &str, token: &ClientToken) -> anyhow::Result<RaftStatus> {
        let opts = Options::new(Dialect::U).with_token(token);
        let c = Client::connect_with(addr, &opts)?;
        let bytes = c.read_file("/raft/status")?;
        Ok(RaftStatus {
            text: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }

    /// The value of `key`, if the file has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        field(&self.text, key)
    }

    /// A numeric field (0 when missing or not a number, as a cluster that
    /// has not formed reads).
    pub fn number(&self, key: &str) -> u64 {
        self.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

/// The value of `key` in `key value` lines.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_match_whole_keys() {
        let s = RaftStatus {
            text: "id 1\nrole leader\nleader 1\nmembers 3\nmembers_x 9\n".into(),
        };
        assert_eq!(s.get("role"), Some("leader"));
        assert_eq!(s.number("members"), 3);
        assert_eq!(s.number("term"), 0);
    }
}
