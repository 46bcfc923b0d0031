//! Walking names to nodes, by walk(5)'s rules.

use alloc::string::String;
use alloc::vec::Vec;

use ninep::Qids;

use crate::attr;
use crate::dev::{Ctx, Step};
use crate::error::Error;
use crate::file::File;
use crate::root;

pub use crate::name::MAX_ELEMENT as MAX_NAME;

/// Where a walk got to.
#[derive(Debug)]
pub struct Walked {
    /// The qid of each name walked, in order.
    pub qids: Qids,
    /// The node of the last name walked (the start if none).
    pub node: File,
}

/// The entry `name` of `dir`: `..` is the parent, except at `root` (the
/// fid's scope, or the tree's root), whose parent is itself.
pub fn lookup(ctx: &Ctx<'_>, root: File, dir: File, name: &str) -> Result<File, Error> {
    let dev = ctx.device(dir);
    let info = dev
        .info(ctx, dir)
        .ok_or_else(|| Error::NotFound(String::from(name)))?;
    if !info.dir {
        return Err(Error::NotDir);
    }
    if name == ".." {
        return Ok(if dir == root || dir == root::ROOT {
            dir
        } else {
            dev.parent(dir)
        });
    }
    if name.is_empty() || name == "/" {
        // The directory itself, as diod takes both (fsspec's clients walk
        // "/" for the root); no other name holding '/' is taken.
        return Ok(dir);
    }
    if name.len() > MAX_NAME {
        return Err(Error::BadName(alloc::format!(
            "a name is at most {MAX_NAME} bytes; this one has {}",
            name.len()
        )));
    }
    if name.contains(['/', '\0']) {
        return Err(Error::BadName(String::from(
            "a walked name cannot hold '/' or NUL: walk one name at a time",
        )));
    }
    if name == "." {
        return Err(Error::NotFound(String::from(name)));
    }
    // A guarded request (an agent's) may be kept from seeing a name,
    // whether it exists or not.
    if ctx.guarded() {
        let mut path = path_of(ctx, dir);
        if !path.ends_with('/') {
            path.push('/');
        }
        path.push_str(name);
        ctx.vet(&Step::Walk(&path))?;
    }
    dev.lookup(ctx, dir, name)
        .ok_or_else(|| Error::NotFound(String::from(name)))
}

/// Walk `names` from `start`, never above `root`. Per walk(5): an error
/// only if the first name fails; otherwise as many qids as names that could
/// be walked. A refusal (an agent walking out of its intent) is an error
/// wherever it happens, so its holder is told why.
pub fn walk(ctx: &Ctx<'_>, root: File, start: File, names: &[&str]) -> Result<Walked, Error> {
    let mut qids = Qids::new();
    let mut node = start;
    for (i, name) in names.iter().enumerate() {
        match lookup(ctx, root, node, name) {
            Ok(next) => {
                let info = ctx
                    .device(next)
                    .info(ctx, next)
                    .ok_or_else(|| Error::NotFound(String::from(*name)))?;
                // Cannot overflow: names holds at most MAXWELEM entries.
                let _ = qids.push(attr::qid(next, &info));
                node = next;
            }
            Err(e) if i == 0 || matches!(e, Error::Unauthorized(_)) => return Err(e),
            Err(_) => break,
        }
    }
    Ok(Walked { qids, node })
}

/// The path of `node` from the root, for messages and events.
pub fn path_of(ctx: &Ctx<'_>, node: File) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let mut n = node;
    // Bounded: the tree is shallow, and a cycle would be a device bug.
    for _ in 0..32 {
        if n == root::ROOT {
            break;
        }
        let dev = ctx.device(n);
        match dev.info(ctx, n) {
            Some(info) => parts.push(info.name),
            None => parts.push("?"),
        }
        n = dev.parent(n);
    }
    let mut path = String::new();
    for p in parts.iter().rev() {
        path.push('/');
        path.push_str(p);
    }
    if path.is_empty() {
        path.push('/');
    }
    path
}

/// The node at the normalised absolute `path` (a capability's scope), or
/// `None` if it does not exist (or is not a directory on the way).
pub fn resolve(ctx: &Ctx<'_>, path: &str) -> Option<File> {
    let mut node = root::ROOT;
    for name in path.split('/').filter(|n| !n.is_empty()) {
        if name == ".." || name == "." {
            return None;
        }
        node = lookup(ctx, root::ROOT, node, name).ok()?;
    }
    Some(node)
}
