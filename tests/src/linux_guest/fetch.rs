//! Debian's kernel image and busybox, downloaded with apt once and kept
//! under `target/linux-guest/` so later runs boot at once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// What a guest boot needs from Debian, unpacked on the host.
#[derive(Clone, Debug)]
pub struct Parts {
    /// The kernel (`boot/vmlinuz-VERSION`).
    pub vmlinuz: PathBuf,
    /// Its modules (`lib/modules/VERSION/kernel`).
    pub modules: PathBuf,
    /// A statically linked busybox.
    pub busybox: PathBuf,
    /// The cache directory (`target/linux-guest`).
    pub cache: PathBuf,
    /// The kernel's version (`6.1.0-57-amd64`).
    pub version: String,
}

/// The cache directory: `linux-guest` in the workspace's target directory.
pub fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("workspace root")
                .join("target")
        });
    target.join("linux-guest")
}

/// The parts, downloaded and unpacked on first use (once per test run).
/// Fails the test, saying what to install or download, when apt cannot
/// fetch them.
pub fn parts() -> Parts {
    static PARTS: OnceLock<Parts> = OnceLock::new();
    PARTS.get_or_init(|| fetch(&cache_dir())).clone()
}

/// Download and unpack into `cache` what is not there yet.
fn fetch(cache: &Path) -> Parts {
    std::fs::create_dir_all(cache).expect("create target/linux-guest");
    let kernel = cache.join("kernel");
    if find_vmlinuz(&kernel).is_none() {
        let pkg = image_package();
        unpack(cache, &pkg, &kernel);
    }
    let bb = cache.join("busybox");
    if !bb.join("bin/busybox").exists() {
        unpack(cache, "busybox-static", &bb);
    }
    let vmlinuz = find_vmlinuz(&kernel).expect("vmlinuz in the unpacked kernel package");
    let version = vmlinuz
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches("vmlinuz-")
        .to_string();
    let modules = kernel.join("lib/modules").join(&version).join("kernel");
    assert!(
        modules.is_dir(),
        "{} missing: remove {} and run again",
        modules.display(),
        kernel.display()
    );
    Parts {
        vmlinuz,
        modules,
        busybox: bb.join("bin/busybox"),
        cache: cache.to_path_buf(),
        version,
    }
}

/// `boot/vmlinuz-*` under an unpacked kernel package.
fn find_vmlinuz(kernel: &Path) -> Option<PathBuf> {
    std::fs::read_dir(kernel.join("boot"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
}

/// The real image package behind the `linux-image-amd64` metapackage.
fn image_package() -> String {
    crate::require_tool("apt-cache", "run on Debian, or apt-get install apt");
    let out = Command::new("apt-cache")
        .args(["depends", "linux-image-amd64"])
        .output()
        .expect("apt-cache runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .unwrap_or_else(|| {
            panic!(
                "apt knows no linux-image-amd64 (run apt-get update), or it names no image \
                 package:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string()
}

/// `apt-get download PKG` into `cache/debs` and `dpkg -x` it into `into`
/// (through a scratch directory, so an interrupted run leaves nothing
/// half unpacked).
fn unpack(cache: &Path, pkg: &str, into: &Path) {
    crate::require_tool("apt-get", "run on Debian, or apt-get install apt");
    crate::require_tool("dpkg", "run on Debian, or apt-get install dpkg");
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    let deb = find_deb(&debs, pkg).unwrap_or_else(|| {
        let out = Command::new("apt-get")
            .args(["download", "-q", pkg])
            .current_dir(&debs)
            .output()
            .expect("apt-get runs");
        find_deb(&debs, pkg).unwrap_or_else(|| {
            panic!(
                "could not download {pkg} ({}): run `apt-get update`, or put {pkg}'s .deb in {}\n{}{}",
                out.status,
                debs.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    });
    let scratch = cache.join(format!("{pkg}.unpacking"));
    let _ = std::fs::remove_dir_all(&scratch);
    let out = Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(&scratch)
        .output()
        .expect("dpkg runs");
    assert!(
        out.status.success(),
        "dpkg -x {} failed: {}",
        deb.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(into);
    std::fs::rename(&scratch, into).unwrap();
}

/// A downloaded `.deb` of `pkg` (`PKG_VERSION_ARCH.deb`) in `debs`.
fn find_deb(debs: &Path, pkg: &str) -> Option<PathBuf> {
    let prefix = format!("{pkg}_");
    std::fs::read_dir(debs)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(&prefix) && n.ends_with(".deb")
        })
}
