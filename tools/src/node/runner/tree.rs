//! The runner's side of the tree: what it reads of agents and the lines
//! it writes to their ctl files, over one 9P session.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use ninep::Dialect;

use crate::client::{Client, ClientError, Options, mode};
use crate::identity::ClientToken;

/// A 9P session with the node the runner serves (clones share it). A
/// session the node closed (it restarted, say) is made again at the next
/// request.
#[derive(Clone)]
pub struct Tree {
    session: Arc<Session>,
}

struct Session {
    addr: String,
    opts: Options,
    client: Mutex<Client>,
}

/// What reading an agent's spec found.
pub enum Found {
    /// The spec's text.
    Spec(String),
    /// There is no such agent (any more).
    Gone,
}

impl Tree {
    /// Attach to `addr` with the capability `token` (text form).
    pub fn connect(addr: &str, token: &str) -> anyhow::Result<Tree> {
        let opts = Options::new(Dialect::U).with_token(&ClientToken {
            text: Some(token.to_string()),
            explicit: true,
        });
        let client =
            Client::connect_with(addr, &opts).with_context(|| format!("runner: node {addr}"))?;
        Ok(Tree {
            session: Arc::new(Session {
                addr: addr.to_string(),
                opts,
                client: Mutex::new(client),
            }),
        })
    }

    /// The session, attached again first if the node closed it (if that
    /// fails, the closed one: requests on it fail, and the next try
    /// connects again).
    pub fn client(&self) -> Client {
        let mut c = self
            .session
            .client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if c.closed().is_some()
            && let Ok(fresh) = Client::connect_with(&self.session.addr, &self.session.opts)
        {
            *c = fresh;
        }
        c.clone()
    }

    /// The names under `/agent`.
    pub fn agents(&self) -> anyhow::Result<Vec<String>> {
        let c = self.client();
        let fid = c.walk_path("/agent")?;
        let listing = c.list(fid);
        let _ = c.clunk(fid);
        Ok(listing?
            .into_iter()
            .filter(|(_, dir)| *dir)
            .map(|(name, _)| name)
            .collect())
    }

    /// Agent `name`'s `spec` file.
    pub fn spec(&self, name: &str) -> anyhow::Result<Found> {
        let path = format!("/agent/{name}/spec");
        match self.client().read_file(&path) {
            Ok(bytes) => Ok(Found::Spec(String::from_utf8_lossy(&bytes).into_owned())),
            // Not there, or removed between the walk and the read.
            Err(e) if is_gone(&e) => Ok(Found::Gone),
            Err(e) => Err(e).context(path),
        }
    }

    /// Write `lines` (each ending in a newline) to agent `name`'s ctl in
    /// as few writes as fit in a message: the node applies each write
    /// all or nothing.
    pub fn ctl(&self, name: &str, lines: &str) -> anyhow::Result<()> {
        let c = self.client();
        let fid = c
            .walk_path(&format!("/agent/{name}/ctl"))
            .with_context(|| format!("/agent/{name}/ctl"))?;
        let r = write_lines(&c, fid, lines);
        let _ = c.clunk(fid);
        r.with_context(|| format!("/agent/{name}/ctl"))
    }
}

fn write_lines(c: &Client, fid: u32, lines: &str) -> Result<(), ClientError> {
    let opened = c.open(fid, mode::OWRITE)?;
    let max = c.effective_iounit(opened.iounit) as usize;
    let mut rest = lines;
    while !rest.is_empty() {
        let (cut, end) = next_write(rest, max);
        c.write(fid, 0, &rest.as_bytes()[..cut])?;
        rest = &rest[end..];
    }
    Ok(())
}

/// The next write of `rest`: as many whole lines as fit in `max` bytes,
/// or a line longer than that alone, cut (the node cuts such lines
/// shorter anyway). Returns the bytes to send and where the rest starts.
fn next_write(rest: &str, max: usize) -> (usize, usize) {
    let fit = &rest.as_bytes()[..rest.len().min(max)];
    let end = match fit.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => rest.find('\n').map_or(rest.len(), |i| i + 1),
    };
    let mut cut = end.min(max);
    while !rest.is_char_boundary(cut) {
        cut -= 1;
    }
    (cut, end)
}

/// Whether `e` says the file or its object is gone.
pub fn is_gone(e: &ClientError) -> bool {
    match e {
        ClientError::NotFound(_) => true,
        ClientError::Server(text) | ClientError::Refused { text, .. } => {
            text.contains("removed") || text.contains("does not exist")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::next_write;

    #[test]
    fn writes_carry_whole_lines_and_cut_only_a_line_too_long_alone() {
        assert_eq!(next_write("a\nbb\n", 100), (5, 5));
        assert_eq!(next_write("a\nbb\nccc\n", 6), (5, 5));
        assert_eq!(next_write("ccc\n", 6), (4, 4));
        // Longer than a message: alone, cut, the rest of it skipped.
        assert_eq!(next_write("abcdefgh\nx\n", 4), (4, 9));
        // Never inside a character.
        assert_eq!(next_write("ééé\n", 3), (2, 7));
        assert_eq!(next_write("no newline", 100), (10, 10));
    }
}
