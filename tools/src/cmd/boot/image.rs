//! Finding the kernel image: `--kernel`, else `$CELL0_KERNEL`, else built
//! with cargo in the workspace this `cell0` was built from.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The bare-metal target the kernel is built for.
pub const TARGET: &str = "x86_64-unknown-none";

/// The workspace this binary was built from.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The kernel image to boot.
pub fn find(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    let given = flag.map(Path::to_path_buf).or_else(|| {
        std::env::var_os("CELL0_KERNEL")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    });
    match given {
        Some(image) => {
            anyhow::ensure!(
                image.is_file(),
                "kernel image {} does not exist (build one with `cargo build --release -p cell0-kernel --target {TARGET}`)",
                image.display()
            );
            Ok(image)
        }
        None => build(&workspace()),
    }
}

/// Build the kernel with cargo in `root`; return the image's path.
fn build(root: &Path) -> anyhow::Result<PathBuf> {
    if !root.join("kernel/Cargo.toml").is_file() {
        bail!(
            "no kernel source at {}/kernel (this cell0 was built elsewhere): pass --kernel IMAGE or set CELL0_KERNEL",
            root.display()
        );
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    check_target(root)?;
    eprintln!(
        "cell0: building the kernel in {} (cargo build --release -p cell0-kernel --target {TARGET})",
        root.display()
    );
    // Cargo's own output goes to our standard error; our standard output
    // stays for what `cell0 boot` reports.
    let status = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "-p",
            "cell0-kernel",
            "--target",
            TARGET,
        ])
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status();
    let status = match status {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "cargo is not installed, and it builds the kernel: install Rust (https://rustup.rs), or pass --kernel IMAGE"
        ),
        other => other.context("running cargo")?,
    };
    anyhow::ensure!(
        status.success(),
        "building the kernel failed ({status}; cargo's messages are above)"
    );
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let target_dir = if target_dir.is_relative() {
        root.join(target_dir)
    } else {
        target_dir
    };
    let image = target_dir.join(TARGET).join("release/cell0-kernel");
    anyhow::ensure!(
        image.is_file(),
        "cargo built the kernel but {} is not there",
        image.display()
    );
    Ok(image)
}

/// Fail with the command that fixes it if the toolchain lacks the target.
fn check_target(root: &Path) -> anyhow::Result<()> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .current_dir(root)
        .output();
    let sysroot = match out {
        Ok(o) if o.status.success() => PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
        // No rustc to ask: let cargo say what is wrong.
        _ => return Ok(()),
    };
    if !sysroot.join("lib/rustlib").join(TARGET).is_dir() {
        bail!(
            "the Rust target {TARGET} is not installed, and the kernel is built for it: rustup target add {TARGET}"
        );
    }
    Ok(())
}
