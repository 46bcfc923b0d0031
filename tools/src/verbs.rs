//! Plain 9P client verbs for scripts: `cell0 ls|cat|stat|mkdir|rm|write`.
//!
//! They speak 9P2000, whose Rerror carries the node's own message, so a
//! script sees exactly why a write was refused.

use std::io::{Read, Write};

use anyhow::Context;
use ninep::Dialect;

use crate::client::Client;

fn connect(addr: &str) -> anyhow::Result<Client> {
    Client::connect(addr, Dialect::P2000).with_context(|| format!("cannot reach a node at {addr}"))
}

/// Split `path` into its parent and last name.
fn parent_and_name(path: &str) -> anyhow::Result<(&str, &str)> {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((parent, name)) if !name.is_empty() => Ok((parent, name)),
        None if !trimmed.is_empty() => Ok(("", trimmed)),
        _ => anyhow::bail!("{path}: needs a name to create or remove"),
    }
}

/// `cell0 ls PATH`: one name per line, directories with a trailing `/`.
pub fn ls(addr: &str, path: &str) -> anyhow::Result<()> {
    let c = connect(addr)?;
    let fid = c.walk_path(path).with_context(|| path.to_string())?;
    let st = c.stat(fid).with_context(|| path.to_string())?;
    let mut out = std::io::stdout().lock();
    if !st.is_dir() {
        writeln!(out, "{}", st.name)?;
        return Ok(c.clunk(fid)?);
    }
    c.open(fid, 0).with_context(|| path.to_string())?;
    for e in c.read_dir(fid).with_context(|| path.to_string())? {
        writeln!(out, "{}{}", e.name, if e.is_dir() { "/" } else { "" })?;
    }
    Ok(c.clunk(fid)?)
}

/// `cell0 cat PATH`: print until end of file (blocking files block).
pub fn cat(addr: &str, path: &str) -> anyhow::Result<()> {
    let c = connect(addr)?;
    let fid = c.walk_path(path).with_context(|| path.to_string())?;
    let (_, iounit) = c.open(fid, 0).with_context(|| path.to_string())?;
    let mut out = std::io::stdout().lock();
    let mut offset = 0u64;
    loop {
        let data = c
            .read(fid, offset, iounit)
            .with_context(|| path.to_string())?;
        if data.is_empty() {
            break;
        }
        offset += data.len() as u64;
        out.write_all(&data)?;
        out.flush()?;
    }
    Ok(c.clunk(fid)?)
}

/// `cell0 stat PATH`: `key value` lines.
pub fn stat(addr: &str, path: &str) -> anyhow::Result<()> {
    let c = connect(addr)?;
    let fid = c.walk_path(path).with_context(|| path.to_string())?;
    let s = c.stat(fid).with_context(|| path.to_string())?;
    println!("name {}", if s.name.is_empty() { "/" } else { &s.name });
    println!("type {}", if s.is_dir() { "directory" } else { "file" });
    println!("mode {:04o}", s.mode & 0o7777);
    println!("length {}", s.length);
    println!("qid {:016x}.{}", s.qid.path, s.qid.version);
    println!("mtime {}", s.mtime);
    println!("owner {}", s.uid);
    Ok(c.clunk(fid)?)
}

/// `cell0 mkdir PATH`.
pub fn mkdir(addr: &str, path: &str) -> anyhow::Result<()> {
    let (parent, name) = parent_and_name(path)?;
    let c = connect(addr)?;
    let fid = c.walk_path(parent).with_context(|| parent.to_string())?;
    let r = c.create(fid, name, ninep::stat::DMDIR | 0o755, 0);
    let _ = c.clunk(fid);
    r.with_context(|| format!("mkdir {path}"))?;
    Ok(())
}

/// `cell0 rm PATH`.
pub fn rm(addr: &str, path: &str) -> anyhow::Result<()> {
    let c = connect(addr)?;
    let fid = c.walk_path(path).with_context(|| path.to_string())?;
    c.remove(fid).with_context(|| format!("rm {path}"))?;
    Ok(())
}

/// `cell0 write PATH [TEXT]`: TEXT and a newline (like echo), or standard
/// input as read; one write when it fits in a message.
pub fn write(addr: &str, path: &str, text: Option<&str>) -> anyhow::Result<()> {
    let data = match text {
        Some(t) if t.ends_with('\n') => t.as_bytes().to_vec(),
        Some(t) => format!("{t}\n").into_bytes(),
        None => {
            let mut v = Vec::new();
            std::io::stdin()
                .read_to_end(&mut v)
                .context("reading standard input")?;
            v
        }
    };
    let c = connect(addr)?;
    let fid = c.walk_path(path).with_context(|| path.to_string())?;
    let (_, iounit) = c.open(fid, 1).with_context(|| path.to_string())?;
    let mut offset = 0u64;
    for chunk in data.chunks(iounit as usize) {
        let n = c
            .write(fid, offset, chunk)
            .with_context(|| format!("write {path}"))?;
        offset += u64::from(n);
    }
    Ok(c.clunk(fid)?)
}
