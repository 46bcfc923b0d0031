//! The guest's initramfs: busybox, `/dev/console`, and the modules a 9P
//! mount over virtio-net needs, with everything they depend on, numbered
//! in load order under `/modules` (so `insmod /modules/*.ko` loads them
//! right). The archive is cached; a boot appends its own `/init`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::fetch::Parts;
use super::newc::Archive;

/// The modules the guest loads (their dependencies come along).
pub const MODULES: &[&str] = &["virtio_pci", "virtio_net", "9pnet_fd", "9p"];

/// The cached archive of everything but `/init`
/// (`target/linux-guest/base-VERSION.cpio`), built on first use.
pub fn base_archive(parts: &Parts) -> PathBuf {
    let path = parts.cache.join(format!("base-{}.cpio", parts.version));
    if !path.exists() {
        let bytes = build_base(parts);
        let tmp = path.with_extension("cpio.part");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }
    path
}

/// The base archive followed by one holding `script` as `/init`, written
/// to `out`.
pub fn with_init(base: &Path, script: &str, out: &Path) {
    let mut bytes = std::fs::read(base).expect("read the base initramfs");
    let mut init = Archive::new();
    init.file("init", 0o755, script.as_bytes());
    bytes.extend_from_slice(&init.finish());
    std::fs::write(out, bytes).expect("write the initramfs");
}

fn build_base(parts: &Parts) -> Vec<u8> {
    let mut a = Archive::new();
    for d in ["bin", "dev", "proc", "sys", "mnt", "tmp", "modules"] {
        a.dir(d, 0o755);
    }
    a.char_dev("dev/console", 0o600, 5, 1);
    let busybox = std::fs::read(&parts.busybox).expect("read busybox");
    a.file("bin/busybox", 0o755, &busybox);
    for (i, (name, bytes)) in load_order(&parts.modules, MODULES).iter().enumerate() {
        a.file(&format!("modules/{i:02}-{name}.ko"), 0o644, bytes);
    }
    a.finish()
}

/// `wanted` and every module they need, dependencies first, as (name,
/// uncompressed object).
fn load_order(tree: &Path, wanted: &[&str]) -> Vec<(String, Vec<u8>)> {
    let index = index(tree);
    let mut order = Vec::new();
    for w in wanted {
        visit(&index, &norm(w), &mut order, &mut Vec::new());
    }
    order
}

/// Depth first: a module after everything it depends on.
fn visit(
    index: &HashMap<String, PathBuf>,
    name: &str,
    order: &mut Vec<(String, Vec<u8>)>,
    stack: &mut Vec<String>,
) {
    if order.iter().any(|(n, _)| n == name) || stack.iter().any(|n| n == name) {
        return;
    }
    let path = index.get(name).unwrap_or_else(|| {
        panic!("module {name} is not in the kernel package (is it built in? check its config)")
    });
    let bytes = uncompressed(path);
    stack.push(name.to_string());
    for dep in depends(&bytes) {
        visit(index, &dep, order, stack);
    }
    stack.pop();
    order.push((name.to_string(), bytes));
}

/// The modules under `tree` by name (`-` spelled `_`, as the kernel does).
fn index(tree: &Path) -> HashMap<String, PathBuf> {
    let mut map = HashMap::new();
    let mut dirs = vec![tree.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            if let Some(stem) = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
                .iter()
                .find_map(|ext| file.strip_suffix(ext))
            {
                map.insert(norm(stem), path);
            }
        }
    }
    map
}

fn norm(name: &str) -> String {
    name.replace('-', "_")
}

/// A module's object, decompressed on the host when it is packed (busybox's
/// insmod may not decompress).
fn uncompressed(path: &Path) -> Vec<u8> {
    let file = path.to_string_lossy();
    let tool = if file.ends_with(".xz") {
        ("xz", "apt-get install xz-utils")
    } else if file.ends_with(".zst") {
        ("zstd", "apt-get install zstd")
    } else if file.ends_with(".gz") {
        ("gzip", "apt-get install gzip")
    } else {
        return std::fs::read(path).unwrap();
    };
    crate::require_tool(tool.0, tool.1);
    let out = Command::new(tool.0)
        .args(["-dc"])
        .arg(path)
        .output()
        .expect("decompressor runs");
    assert!(out.status.success(), "{} -dc {file} failed", tool.0);
    out.stdout
}

/// The `depends=` list of a module's `.modinfo` section.
fn depends(object: &[u8]) -> Vec<String> {
    let key = b"depends=";
    let Some(at) = object.windows(key.len()).position(|w| w == key) else {
        return Vec::new();
    };
    let rest = &object[at + key.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(norm)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::depends;

    #[test]
    fn depends_reads_the_modinfo_list() {
        let obj = b"\x7fELF junk\0license=GPL\0depends=9pnet,fscache,netfs\0name=9p\0";
        assert_eq!(depends(obj), ["9pnet", "fscache", "netfs"]);
        assert!(depends(b"\0depends=\0").is_empty());
        assert!(depends(b"nothing").is_empty());
    }
}
