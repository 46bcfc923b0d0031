//! Plain 9P client verbs for scripts: `cell0 ls|cat|stat|mkdir|rm|write`.
//!
//! They speak 9P2000.u, whose Rerror carries the node's own message (and
//! its errno), so a script sees exactly why a request was refused; any failure is an error
//! (non-zero exit) naming the path.

use std::io::{ErrorKind, Read, Write};

use anyhow::{Context, bail};
use ninep::Dialect;

use crate::client::{Client, Options, mode, split_path};
use crate::identity::ClientToken;

/// Where a verb goes and with which capability.
pub struct Node {
    /// The node's 9P address.
    pub addr: String,
    /// The token to present (`--token`, else the owner's).
    pub token: ClientToken,
}

impl Node {
    /// The node named by the shared client flags.
    pub fn from_args(a: &crate::args::ClientArgs) -> anyhow::Result<Node> {
        Ok(Node {
            addr: a.addr.resolve(),
            token: ClientToken::resolve(a.token.as_deref(), a.data.as_deref())?,
        })
    }
}

/// A 9P2000.u session with `node`, attached with its token.
pub fn connect(node: &Node) -> anyhow::Result<Client> {
    let opts = Options::new(Dialect::U).with_token(&node.token);
    Ok(Client::connect_with(&node.addr, &opts)?)
}

/// Split `path` into its parent and last name.
fn parent_and_name(path: &str) -> anyhow::Result<(String, &str)> {
    let mut names = split_path(path);
    match names.pop() {
        Some(name) if name != ".." => Ok((names.join("/"), name)),
        _ => bail!("{path}: needs a name to create"),
    }
}

/// Whether writing to standard output failed because the reader went away
/// (`cell0 cat events | head -1`): that ends the verb quietly.
fn reader_gone(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::BrokenPipe
}

/// `cell0 ls PATH`: one name per line, directories with a trailing `/`.
pub fn ls(node: &Node, path: &str) -> anyhow::Result<()> {
    let c = connect(node)?;
    let fid = c.walk_path(path).with_context(|| path.to_string())?;
    let listing = c.list(fid);
    let _ = c.clunk(fid);
    let listing = listing.with_context(|| path.to_string())?;
    let mut text = String::new();
    for (name, dir) in listing {
        text.push_str(&name);
        text.push_str(if dir { "/\n" } else { "\n" });
    }
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if !reader_gone(&e) => Err(e.into()),
        _ => Ok(()),
    }
}

/// `cell0 cat PATH`: print until end of file, each read as it comes
/// (blocking files block, and follow).
pub fn cat(node: &Node, path: &str) -> anyhow::Result<()> {
    let c = connect(node)?;
    let fid = c.walk_path(path).with_context(|| path.to_string())?;
    let r = copy_out(&c, fid).with_context(|| path.to_string());
    let _ = c.clunk(fid);
    r
}

fn copy_out(c: &Client, fid: u32) -> anyhow::Result<()> {
    let opened = c.open(fid, mode::OREAD)?;
    if opened.qid.ty.is_dir() {
        bail!("is a directory (list it with cell0 ls)");
    }
    let mut out = std::io::stdout().lock();
    let mut offset = 0u64;
    loop {
        let reply = c.read_reply(fid, offset, opened.iounit)?;
        let data = reply.read_data()?;
        if data.is_empty() {
            return Ok(());
        }
        offset += data.len() as u64;
        if let Err(e) = out.write_all(data).and_then(|()| out.flush()) {
            return if reader_gone(&e) {
                Ok(())
            } else {
                Err(e.into())
            };
        }
    }
}

/// `cell0 stat PATH`: `key value` lines.
pub fn stat(node: &Node, path: &str) -> anyhow::Result<()> {
    let c = connect(node)?;
    let fid = c.walk_path(path).with_context(|| path.to_string())?;
    let s = c.stat(fid);
    let _ = c.clunk(fid);
    let s = s.with_context(|| path.to_string())?;
    let name = if s.name.is_empty() { "/" } else { &s.name };
    let kind = if s.is_dir() { "directory" } else { "file" };
    println!("name {name}");
    println!("type {kind}");
    println!("mode {:04o}", s.mode & 0o7777);
    println!("length {}", s.length);
    println!(
        "qid {:#x} {} {:#04x}",
        s.qid.path, s.qid.version, s.qid.ty.0
    );
    println!("atime {}", s.atime);
    println!("mtime {}", s.mtime);
    println!("uid {}", s.uid);
    println!("gid {}", s.gid);
    println!("muid {}", s.muid);
    Ok(())
}

/// `cell0 mkdir PATH`: Tcreate with DMDIR in the parent.
pub fn mkdir(node: &Node, path: &str) -> anyhow::Result<()> {
    let (parent, name) = parent_and_name(path)?;
    let c = connect(node)?;
    let fid = c.walk_path(&parent).with_context(|| format!("/{parent}"))?;
    match c.create(fid, name, ninep::stat::DMDIR | 0o775, mode::OREAD) {
        Ok(_) => {
            // The fid is now the new directory; let it go.
            let _ = c.clunk(fid);
            Ok(())
        }
        Err(e) => {
            let _ = c.clunk(fid);
            Err(e).with_context(|| path.to_string())
        }
    }
}

/// `cell0 rm PATH`: Tremove.
pub fn rm(node: &Node, path: &str) -> anyhow::Result<()> {
    let c = connect(node)?;
    let fid = c.walk_path(path).with_context(|| path.to_string())?;
    c.remove(fid).with_context(|| path.to_string())
}

/// What `cell0 write` sends: TEXT and a newline (like echo, unless it ends
/// with one already), or standard input as read.
fn payload(text: Option<&str>) -> anyhow::Result<Vec<u8>> {
    Ok(match text {
        Some(t) if t.ends_with('\n') => t.as_bytes().to_vec(),
        Some(t) => format!("{t}\n").into_bytes(),
        None => {
            let mut v = Vec::new();
            std::io::stdin()
                .read_to_end(&mut v)
                .context("reading standard input")?;
            v
        }
    })
}

/// `cell0 write PATH [TEXT]`: one Twrite when it fits in the iounit, else
/// successive writes.
pub fn write(node: &Node, path: &str, text: Option<&str>) -> anyhow::Result<()> {
    let data = payload(text)?;
    let c = connect(node)?;
    let fid = c.walk_path(path).with_context(|| path.to_string())?;
    let r = c
        .open(fid, mode::OWRITE)
        .and_then(|o| c.write_all(fid, 0, &data, o.iounit));
    let _ = c.clunk(fid);
    r.with_context(|| path.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_and_name_take_the_last_element() {
        assert_eq!(
            parent_and_name("/chan/x").unwrap(),
            ("chan".to_string(), "x")
        );
        assert_eq!(
            parent_and_name("chan/x/").unwrap(),
            ("chan".to_string(), "x")
        );
        assert_eq!(parent_and_name("x").unwrap(), (String::new(), "x"));
        assert!(parent_and_name("/").is_err());
        assert!(parent_and_name("/chan/..").is_err());
    }

    #[test]
    fn text_gets_one_trailing_newline_like_echo() {
        assert_eq!(payload(Some("note hi")).unwrap(), b"note hi\n");
        assert_eq!(payload(Some("note hi\n")).unwrap(), b"note hi\n");
        assert_eq!(payload(Some("")).unwrap(), b"\n");
    }
}
