//! The bare-metal kernel under `cell0 boot` passes the same conformance
//! suite as the hosted node (tests/src/conformance.rs): shell tools on a
//! FUSE mount, p9fs in both dialects, diod's tools. Its /proof/boot and
//! its console verify as a boot proof, and Ctrl-C leaves no QEMU behind.

use std::process::Command;

use cell0_tests::{
    Booted, cell0_bin, conformance, is_mounted, kernel_image, output_within, processes_mentioning,
    require_tool, sh_ok,
};
use cellfs::proof::boot::{hex, verify};

/// How long a boot under TCG may take to reach #E10.
const BOOT_SECS: u64 = 120;

fn boot(configure: impl FnOnce(&mut std::process::Command)) -> Booted {
    require_tool(
        "qemu-system-x86_64",
        "apt-get install --no-install-recommends qemu-system-x86",
    );
    let image = kernel_image();
    Booted::start(BOOT_SECS, |cmd| {
        cmd.arg("--kernel").arg(&image);
        cmd.args(["--timeout", &(BOOT_SECS - 20).to_string()]);
        configure(cmd);
    })
}

/// Ctrl-C; then neither QEMU nor anything else of this boot is left.
fn stop(mut b: Booted) -> Booted {
    let st = b.interrupt();
    assert!(
        st.success(),
        "cell0 boot exited {st} on Ctrl-C:\n{}",
        b.said()
    );
    let qemu = processes_mentioning(&format!("hostfwd=tcp:{}-", b.addr));
    assert!(qemu.is_empty(), "QEMU left running: {qemu:?}");
    let left = processes_mentioning(&b.addr);
    assert!(left.is_empty(), "left running: {left:?}");
    b
}

#[test]
fn the_kernel_passes_the_conformance_suite() {
    let b = boot(|_| {});
    let said = b.said();
    assert!(
        said.contains("boot proof: #E0..#E10 verified, head "),
        "{said}"
    );

    conformance::fuse_suite(&b.addr, b.token().as_deref());
    conformance::p9fs_suite(&b.addr, b.token().as_deref());
    conformance::diod_suite(&b.addr, b.token().as_deref());

    // /proof/boot holds the markers the console showed, and verifies.
    let (ok, proof, err) =
        conformance::cell0(&b.addr, b.token().as_deref(), &["cat", "/proof/boot"]);
    assert!(ok, "{err}");
    let served = verify(&proof).unwrap_or_else(|e| panic!("/proof/boot: {e}\n{proof}"));
    let console = std::fs::read_to_string(&b.console).unwrap();
    let printed = verify(&console).unwrap_or_else(|e| panic!("console: {e}\n{console}"));
    assert_eq!(served, printed);
    assert!(said.contains(&hex(&printed.head)), "{said}");

    let b = stop(b);

    // The console log of this boot is accepted by `cell0 proof verify-boot`…
    let out = output_within(
        30,
        Command::new(cell0_bin())
            .args(["proof", "verify-boot"])
            .arg(&b.console),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.ends_with(&format!("head {}\n", hex(&printed.head))),
        "{text}"
    );
    assert_eq!(text.lines().count(), 12, "{text}");

    // … and an edited copy is refused.
    let line = printed.markers[3].clone();
    let (body, chain) = line.rsplit_once(" chain=").unwrap();
    let edited_line = format!("{body} edited=1 chain={chain}");
    let edited = b.scratch().join("edited.log");
    std::fs::write(&edited, console.replace(&line, &edited_line)).unwrap();
    let out = output_within(
        30,
        Command::new(cell0_bin())
            .args(["proof", "verify-boot"])
            .arg(&edited),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("#E3 does not chain"), "{err}");
}

#[test]
fn boot_mounts_the_kernel_and_unmounts_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let cell = dir.path().join("cell");
    let mut b = boot(|cmd| {
        cmd.arg("--mount").arg(&cell);
    });
    b.wait_for("mounted on", 30);
    assert!(is_mounted(&cell));
    let status = sh_ok(&cell, "cat status");
    assert!(status.starts_with("node "), "{status}");
    conformance::channel_round_trip(&cell);
    stop(b);
    assert!(!is_mounted(&cell), "still mounted after Ctrl-C");
}
