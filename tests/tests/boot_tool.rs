//! `cell0 boot` and `cell0 proof verify-boot`, with a stand-in for QEMU
//! (tests/src/fake_qemu.rs) that prints a boot ledger and then serves the
//! tree as a hosted node: the tool's waiting, checking, mounting, error
//! reports and clean-up, without the kernel. kernel_conformance.rs boots
//! the real one.

use std::io::Write as _;
use std::process::{Command, Stdio};

use cell0_tests::fake_qemu::Script;
use cell0_tests::{
    Booted, FakeQemu, cell0_bin, conformance, is_mounted, output_within, processes_mentioning,
};
use cellfs::proof::boot::hex;

fn with_fake(fake: &FakeQemu) -> impl FnOnce(&mut Command) + '_ {
    move |cmd: &mut Command| {
        cmd.env("PATH", fake.path_env())
            .arg("--kernel")
            .arg(fake.image());
    }
}

/// Nothing that `cell0 boot` started is left: no process mentions its
/// address, and nothing listens there.
fn assert_nothing_left(b: &Booted) {
    let left = processes_mentioning(&b.addr);
    assert!(left.is_empty(), "left running: {left:?}\n{}", b.said());
    assert!(
        std::net::TcpStream::connect(&b.addr).is_err(),
        "something still listens on {}",
        b.addr
    );
}

#[test]
fn boot_waits_for_e10_checks_the_proof_mounts_and_stops_on_ctrl_c() {
    let fake = FakeQemu::new(Script::Serve);
    let dir = tempfile::tempdir().unwrap();
    let cell = dir.path().join("cell");
    let mut b = Booted::start(60, |cmd| {
        with_fake(&fake)(cmd);
        cmd.arg("--mount").arg(&cell);
    });
    b.wait_for("mounted on", 30);
    let said = b.said();
    assert!(
        said.contains(&format!(
            "kernel serving 9P on {} (console: {})",
            b.addr,
            b.console.display()
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "boot proof: #E0..#E10 verified, head {}",
            hex(&fake.ledger.head())
        )),
        "{said}"
    );
    // The mount `cell0 boot` made passes the shell-tool checks.
    assert!(is_mounted(&cell));
    conformance::tree(&cell);
    conformance::channel_round_trip(&cell);

    let st = b.interrupt();
    assert!(
        st.success(),
        "cell0 boot exited {st} on Ctrl-C:\n{}",
        b.said()
    );
    assert!(!is_mounted(&cell), "still mounted:\n{}", b.said());
    assert_nothing_left(&b);
    // The console file holds what QEMU printed, and it verifies.
    let out = output_within(
        30,
        Command::new(cell0_bin())
            .args(["proof", "verify-boot"])
            .arg(&b.console),
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.ends_with(&format!("head {}\n", hex(&fake.ledger.head()))),
        "{text}"
    );
}

#[test]
fn boot_without_mount_serves_the_conformance_suite() {
    let fake = FakeQemu::new(Script::Serve);
    let mut b = Booted::start(60, with_fake(&fake));
    conformance::fuse_suite(&b.addr, b.token().as_deref());
    conformance::diod_suite(&b.addr, b.token().as_deref());
    let st = b.interrupt();
    assert!(st.success(), "{}", b.said());
    assert_nothing_left(&b);
}

#[test]
fn boot_unmounts_and_fails_when_qemu_dies() {
    let fake = FakeQemu::new(Script::Serve);
    let dir = tempfile::tempdir().unwrap();
    let cell = dir.path().join("cell");
    let mut b = Booted::start(60, |cmd| {
        with_fake(&fake)(cmd);
        cmd.arg("--mount").arg(&cell);
    });
    b.wait_for("mounted on", 30);
    // The stand-in became `cell0 serve --listen ADDR`: kill it as if QEMU
    // had crashed.
    let qemu = processes_mentioning(&format!("serve --listen {}", b.addr));
    assert_eq!(qemu.len(), 1, "{qemu:?}");
    let pid: i32 = qemu[0].split(':').next().unwrap().parse().unwrap();
    // SAFETY: kill(2) of a process this test's cell0 boot started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let st = b.wait_exit(60);
    assert!(!st.success(), "{}", b.said());
    assert!(b.said().contains("stopped on its own"), "{}", b.said());
    assert!(!is_mounted(&cell), "still mounted:\n{}", b.said());
    assert_nothing_left(&b);
}

#[test]
fn boot_shows_status_and_console_when_qemu_exits_before_serving() {
    let fake = FakeQemu::new(Script::PanicEarly);
    let mut b = Booted::spawn(with_fake(&fake));
    let st = b.wait_exit(60);
    assert!(!st.success());
    let said = b.said();
    assert!(said.contains("QEMU exited (exit status: 3)"), "{said}");
    assert!(said.contains("panic: a stand-in"), "{said}");
    assert!(said.contains("#E3 paging"), "{said}");
    assert_nothing_left(&b);
}

#[test]
fn boot_gives_up_on_a_kernel_that_never_serves() {
    let fake = FakeQemu::new(Script::Hang);
    let mut b = Booted::spawn(|cmd| {
        with_fake(&fake)(cmd);
        cmd.args(["--timeout", "2"]);
    });
    let st = b.wait_exit(60);
    assert!(!st.success());
    let said = b.said();
    assert!(
        said.contains("did not serve 9P (print #E10) within 2s"),
        "{said}"
    );
    assert!(said.contains("#E0 cpu"), "{said}");
    assert!(processes_mentioning(fake.dir().to_str().unwrap()).is_empty());
    assert_nothing_left(&b);
}

#[test]
fn boot_refuses_an_address_in_use_and_a_missing_image() {
    let fake = FakeQemu::new(Script::Serve);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = output_within(
        30,
        Command::new(cell0_bin())
            .args(["boot", "--listen", &addr, "--kernel"])
            .arg(fake.image())
            .env("PATH", fake.path_env()),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{addr} is already in use")), "{err}");

    let out = output_within(
        30,
        Command::new(cell0_bin())
            .args([
                "boot",
                "--listen",
                "127.0.0.1:1",
                "--kernel",
                "/nonexistent/k",
            ])
            .env("PATH", fake.path_env()),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kernel image /nonexistent/k does not exist"),
        "{err}"
    );
}

#[test]
fn boot_says_how_to_install_a_missing_qemu() {
    let empty = tempfile::tempdir().unwrap();
    let out = output_within(
        30,
        Command::new(cell0_bin())
            .args(["boot", "--kernel", "/nonexistent/k"])
            .env("PATH", empty.path()),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("apt-get install --no-install-recommends qemu-system-x86"),
        "{err}"
    );
}

fn verify_boot(arg: &str, stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(cell0_bin())
        .args(["proof", "verify-boot", arg])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn verify_boot_accepts_a_ledger_and_refuses_an_edited_one() {
    let fake = FakeQemu::new(Script::Serve);
    let text = format!("firmware noise\n{}", fake.ledger.text());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    std::fs::write(&log, &text).unwrap();

    let (code, out, err) = verify_boot(log.to_str().unwrap(), None);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 12, "{out}");
    assert_eq!(lines[0], "ok #E0 cpu vendor=GenuineFake family=6");
    assert_eq!(lines[10], "ok #E10 9p port=564");
    assert_eq!(lines[11], format!("head {}", hex(&fake.ledger.head())));

    // The same from standard input.
    let (code, out2, _) = verify_boot("-", Some(&text));
    assert_eq!((code, out2.as_str()), (0, out.as_str()));

    // One fact changed: refused, naming the line.
    let edited = text.replace("pages2m=2048", "pages2m=2049");
    let (code, out, err) = verify_boot("-", Some(&edited));
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("line 5: #E3 does not chain") && err.contains("edited"),
        "{err}"
    );

    // Cut short: refused, naming the missing stage.
    let cut: String = text.lines().take(8).map(|l| format!("{l}\n")).collect();
    let (code, _, err) = verify_boot("-", Some(&cut));
    assert_eq!(code, 1);
    assert!(err.contains("no #E7 marker"), "{err}");

    let (code, _, err) = verify_boot("/nonexistent/log", None);
    assert_eq!(code, 1);
    assert!(err.contains("reading /nonexistent/log"), "{err}");
}
