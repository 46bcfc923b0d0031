//! The shape of the server core: `cellfs`'s files import one another
//! without a cycle, apart from the ones through the `Command` enum (which
//! names every object's command type, and which every object names to make
//! its commands). A cycle through `server`, `dev` or the device table
//! would mean an object reaching back into the server (ARCHITECTURE.md).
//!
//! Each `crate::a::b::Name` path in a file (outside comments and inline
//! test modules) is resolved to the file that defines `Name` (or to the
//! module's file), and the files are searched for strongly connected
//! components.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `cellfs/src`, from this crate's directory.
fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../cellfs/src")
}

/// Every `.rs` file under `dir`, as paths relative to `root`.
fn files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).expect("cellfs/src is readable") {
        let p = e.expect("a directory entry").path();
        if p.is_dir() {
            files(root, &p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(root).expect("under the root");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The module path of file `rel` (`chan/mod.rs` is `chan`).
fn module(rel: &str) -> Vec<String> {
    let mut m: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if m.last().is_some_and(|l| l == "mod" || l == "lib") {
        m.pop();
    }
    m
}

/// The code of a file without comments and its inline test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Names that `text` defines as public items.
fn defined(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace().peekable();
        let Some(first) = words.next() else { continue };
        if !first.starts_with("pub") {
            continue;
        }
        let mut w: Vec<&str> = words.collect();
        if w.first() == Some(&"const") && w.get(1) == Some(&"fn") {
            w.remove(0);
        }
        if let [kind, name, ..] = w.as_slice()
            && matches!(
                *kind,
                "struct" | "enum" | "fn" | "const" | "trait" | "type" | "static"
            )
        {
            let name: String = name
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            names.push(name);
        }
    }
    names
}

/// The paths written in `text` that name something of the crate, as
/// paths from the crate's root: `crate::…`, `super::…`, `self::…` and
/// paths through a child module of the file (`local::meters`). Braces
/// are expanded (`crate::a::{B, c::D}` gives `a::B` and `a::c::D`).
fn paths(text: &str, me: &[String], children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let bytes: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !ident(bytes[i]) || (i > 0 && (ident(bytes[i - 1]) || bytes[i - 1] == ':')) {
            i += 1;
            continue;
        }
        // A chain of `name::name::…`, ending in a name or a brace group.
        let mut segs: Vec<String> = Vec::new();
        let mut j = i;
        let mut group: Option<String> = None;
        loop {
            let start = j;
            while j < bytes.len() && ident(bytes[j]) {
                j += 1;
            }
            segs.push(bytes[start..j].iter().collect());
            if bytes.get(j) == Some(&':') && bytes.get(j + 1) == Some(&':') {
                j += 2;
                if bytes.get(j) == Some(&'{') {
                    let close = (j..bytes.len())
                        .find(|&k| bytes[k] == '}')
                        .unwrap_or(bytes.len());
                    group = Some(bytes[j + 1..close].iter().collect());
                    j = close;
                    break;
                }
                if !bytes.get(j).is_some_and(|&c| ident(c)) {
                    break;
                }
            } else {
                break;
            }
        }
        i = j.max(i + 1);
        if segs.len() < 2 && group.is_none() {
            continue;
        }
        let (base, rest): (Vec<String>, &[String]) = match segs[0].as_str() {
            "crate" => (Vec::new(), &segs[1..]),
            "self" => (me.to_vec(), &segs[1..]),
            "super" => {
                let mut base = me.to_vec();
                base.pop();
                let mut k = 1;
                while segs.get(k).is_some_and(|s| s == "super") {
                    base.pop();
                    k += 1;
                }
                (base, &segs[k..])
            }
            first if children.contains(first) => (me.to_vec(), &segs[..]),
            _ => continue,
        };
        let mut head = base;
        head.extend(rest.iter().cloned());
        match group {
            Some(g) => {
                for item in g.split(',') {
                    let item = item.split_whitespace().next().unwrap_or("");
                    let mut p = head.clone();
                    p.extend(
                        item.split("::")
                            .map(|s| s.trim_matches(|c: char| !ident(c)))
                            .filter(|s| !s.is_empty() && *s != "self")
                            .map(String::from),
                    );
                    out.push(p);
                }
            }
            None => out.push(head),
        }
    }
    out
}

/// The child modules file `text` declares (`mod local;`).
fn children(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix("pub(crate) ")
                .or_else(|| l.strip_prefix("pub "))
                .unwrap_or(l);
            l.strip_prefix("mod ")?.strip_suffix(';').map(String::from)
        })
        .collect()
}

#[test]
fn cellfs_has_no_import_cycle_but_through_the_command_enum() {
    let root = src();
    let mut names = Vec::new();
    files(&root, &root, &mut names);
    let texts: BTreeMap<String, String> = names
        .iter()
        .map(|n| {
            let t = std::fs::read_to_string(root.join(n)).expect("a source file");
            (n.clone(), code(&t))
        })
        .collect();
    let modules: BTreeMap<Vec<String>, String> =
        names.iter().map(|n| (module(n), n.clone())).collect();
    let mut defs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (n, t) in &texts {
        for d in defined(t) {
            defs.entry(d).or_default().push(n.clone());
        }
    }
    let resolve = |path: &[String]| -> Vec<String> {
        for k in (1..=path.len()).rev() {
            let Some(file) = modules.get(&path[..k]) else {
                continue;
            };
            let Some(name) = path.get(k) else {
                return vec![file.clone()];
            };
            let found: Vec<String> = defs
                .get(name)
                .into_iter()
                .flatten()
                .filter(|f| module(f).starts_with(&path[..k]))
                .cloned()
                .collect();
            return if found.is_empty() {
                vec![file.clone()]
            } else {
                found
            };
        }
        Vec::new()
    };
    let skip = "command.rs";
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (n, t) in &texts {
        let e = edges.entry(n.clone()).or_default();
        for p in paths(t, &module(n), &children(t)) {
            for f in resolve(&p) {
                if f != *n && f != skip {
                    e.insert(f);
                }
            }
        }
    }
    assert!(
        edges
            .get("server/mod.rs")
            .is_some_and(|e| e.contains("dev.rs")),
        "the graph is not read right: server/mod.rs should import dev.rs; {edges:?}"
    );
    // Tarjan's strongly connected components (recursive: the graph is
    // a few dozen files).
    struct Tarjan<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on: BTreeSet<String>,
        cycles: Vec<Vec<String>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, v: &str) {
            let i = self.index.len();
            self.index.insert(v.to_string(), i);
            self.low.insert(v.to_string(), i);
            self.stack.push(v.to_string());
            self.on.insert(v.to_string());
            let next: Vec<String> = self.edges.get(v).into_iter().flatten().cloned().collect();
            for w in next {
                if !self.index.contains_key(&w) {
                    self.visit(&w);
                    let l = self.low[v].min(self.low[&w]);
                    self.low.insert(v.to_string(), l);
                } else if self.on.contains(&w) {
                    let l = self.low[v].min(self.index[&w]);
                    self.low.insert(v.to_string(), l);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(&w);
                    let done = w == v;
                    comp.push(w);
                    if done {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.cycles.push(comp);
                }
            }
        }
    }
    let mut t = Tarjan {
        edges: &edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        cycles: Vec::new(),
    };
    for n in names.iter().filter(|n| *n != skip) {
        if !t.index.contains_key(n) {
            t.visit(n);
        }
    }
    // Files of one module (`chan/mod.rs` and `chan/local.rs`) may use
    // one another; a cycle that leaves its module is the kind that makes
    // a core hard to read.
    let unit = |f: &String| {
        f.split('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".rs")
            .to_string()
    };
    let across: Vec<&Vec<String>> = t
        .cycles
        .iter()
        .filter(|c| c.iter().map(unit).collect::<BTreeSet<_>>().len() > 1)
        .collect();
    assert!(
        across.is_empty(),
        "cellfs modules import one another in a cycle (not through command.rs): {across:?}"
    );
}

#[test]
fn the_server_names_no_object() {
    let root = src().join("server");
    let mut names = Vec::new();
    files(&root, &root, &mut names);
    for n in names {
        let text = code(&std::fs::read_to_string(root.join(&n)).expect("a source file"));
        // The root's own files (`/`, `/events`) are the node's, which the
        // server serves events through; every other object is a device's.
        for object in [
            "chan::",
            "agent::",
            "proof::",
            "cap::device",
            "raft::device",
        ] {
            assert!(
                !text.contains(object),
                "server/{n} names an object ({object}): reach it through its Device"
            );
        }
    }
}
