//! Walking paths: names split into Twalks of at most 16, fids released on
//! every failure.

use ninep::{Body, MAXWELEM, Names};

use super::reply::unexpected;
use super::{Client, ClientError, ROOT, Result};

/// Split a tree path into names: `/chan/x`, `chan/x/` and `./chan//x` all
/// give `chan`, `x`; the root is no names at all.
pub fn split_path(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect()
}

/// The Twalks a walk of `names` takes: one per 16 names, and one empty
/// walk (a clone) for no names.
fn chunks<'n, 'a>(names: &'n [&'a str]) -> impl Iterator<Item = &'n [&'a str]> {
    let clone: &'n [&'a str] = &[];
    let empty = names.is_empty().then_some(clone);
    empty.into_iter().chain(names.chunks(MAXWELEM))
}

impl Client {
    /// Walk `names` from `from` to a new fid; every name must exist. A
    /// missing name is [`ClientError::NotFound`] (9P2000: the node's own
    /// message when the first name fails); the new fid is released on any
    /// failure.
    pub fn walk(&self, from: u32, names: &[&str]) -> Result<u32> {
        let newfid = self.alloc_fid()?;
        // Whether `newfid` exists on the node (after the first Twalk).
        let mut made = false;
        for chunk in chunks(names) {
            let fid = if made { newfid } else { from };
            let result = self.walk_once(fid, newfid, chunk);
            if let Err(e) = result {
                if made {
                    let _ = self.clunk(newfid);
                } else {
                    self.free_fid(newfid);
                }
                return Err(e);
            }
            made = true;
        }
        Ok(newfid)
    }

    /// One Twalk of at most 16 names that must all succeed.
    fn walk_once(&self, fid: u32, newfid: u32, names: &[&str]) -> Result<()> {
        let wnames = Names::from_slice(names)
            .map_err(|_| ClientError::Protocol("more than 16 names in one walk".into()))?;
        let reply = self.call(&Body::Twalk {
            fid,
            newfid,
            wnames,
        });
        let walked = match reply?.body()? {
            Body::Rwalk { wqids } => wqids.len(),
            other => return Err(unexpected("walk", &other)),
        };
        match names.get(walked) {
            None if walked == names.len() => Ok(()),
            Some(missing) => Err(ClientError::NotFound((*missing).to_string())),
            None => Err(ClientError::Protocol(format!(
                "walk of {} names answered with {walked} qids",
                names.len()
            ))),
        }
    }

    /// Walk from the root along a slash-separated path.
    pub fn walk_path(&self, path: &str) -> Result<u32> {
        self.walk(ROOT, &split_path(path))
    }

    /// Clunk `fid` and release its number (even if the node complains: a
    /// clunked fid is gone either way).
    pub fn clunk(&self, fid: u32) -> Result<()> {
        let r = self.call(&Body::Tclunk { fid });
        self.free_fid(fid);
        r.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_names() {
        assert_eq!(split_path("/chan/x"), ["chan", "x"]);
        assert_eq!(split_path("chan//x/"), ["chan", "x"]);
        assert_eq!(split_path("./chan/./x"), ["chan", "x"]);
        assert!(split_path("/").is_empty());
        assert_eq!(split_path("a/../b"), ["a", "..", "b"]);
    }

    #[test]
    fn long_walks_are_split_at_16_names_and_no_names_is_one_clone() {
        let names: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let sizes: Vec<usize> = chunks(&names).map(<[&str]>::len).collect();
        assert_eq!(sizes, [16, 16, 8]);
        let joined: Vec<&str> = chunks(&names).flatten().copied().collect();
        assert_eq!(joined, names);
        let sizes: Vec<usize> = chunks(&names[..16]).map(<[&str]>::len).collect();
        assert_eq!(sizes, [16]);
        let sizes: Vec<usize> = chunks(&[]).map(<[&str]>::len).collect();
        assert_eq!(sizes, [0]);
    }
}
