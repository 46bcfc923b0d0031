//! Linux's own 9P client (v9fs), for real: a stock Debian kernel booted
//! under QEMU mounts a hosted node with `trans=tcp` in 9P2000, 9P2000.u
//! and 9P2000.L, presenting the owner token in its aname, and runs the
//! shell-tool steps (ls, cat, mkdir, echo >, a blocking read, a bad ctl
//! write, mkdir of an existing name, rm -r) in each; then the same against
//! the bare-metal kernel.
//!
//! The first run downloads Debian's kernel and busybox packages with apt
//! into `target/linux-guest/`; later runs reuse them.

use cell0_tests::conformance::token_aname;
use cell0_tests::linux_guest::{
    DIALECTS, Step, base_archive, boot_guest, parts, script, steps, with_init,
};
use cell0_tests::{Booted, Node, kernel_image, require_tool};

/// How long the whole boot (every dialect's steps) may take under TCG.
const BOOT_LIMIT_SECS: u64 = 300;

/// How long the bare-metal kernel may take to serve under TCG.
const KERNEL_BOOT_SECS: u64 = 120;

/// What each step must show: (step, its check). A check gets the step and
/// the dialect's channel name and says what is wrong.
type Check = fn(&Step, &str) -> Result<(), String>;

const EXPECTED: &[(&str, Check)] = &[
    ("mount", |s, _| ok(s)),
    ("ls", |s, _| {
        ok(s)?;
        names_include(s, &["chan", "ctl", "events", "status", "cap", "proof"])
    }),
    ("status", |s, _| {
        ok(s)?;
        expect(
            s.text.starts_with("node "),
            "the first line of status should start with `node `",
        )
    }),
    ("mkdir", |s, _| ok(s)),
    ("ls-chan", |s, _| {
        ok(s)?;
        names_include(s, &["ctl", "data", "status"])
    }),
    ("write", |s, _| ok(s)),
    ("read-count", |s, _| {
        ok(s)?;
        expect(
            s.text == "first",
            "one 6-byte read of data should return the message written before it (`first`)",
        )
    }),
    ("blocking-read", |s, _| {
        expect(
            s.rc == 0,
            "a cat of data started before `echo hello > data` should print hello within 5 s: \
             Linux's p9_client_read sends Treads until the caller's buffer is full or a read \
             returns 0 bytes, so the stream must end the batch it handed over with one empty \
             read (9P2000.L and .u always, plain 9P2000 with reads=batch in the aname)",
        )
    }),
    ("ctl-bad", |s, _| {
        expect(s.rc != 0, "echo bad > ctl should fail")?;
        expect(
            s.text.contains("Invalid argument"),
            "echo bad > ctl should fail with EINVAL (\"Invalid argument\")",
        )
    }),
    ("mkdir-existing", |s, _| {
        expect(s.rc != 0, "mkdir of an existing channel should fail")?;
        expect(
            s.text.contains("File exists"),
            "mkdir of an existing channel should fail with EEXIST (\"File exists\")",
        )
    }),
    ("rm-r", |s, _| ok(s)),
    ("gone", |s, chan| {
        ok(s)?;
        expect(
            !s.text.split('|').any(|n| n == chan),
            "the channel should be gone after rm -r",
        )
    }),
    ("umount", |s, _| ok(s)),
];

fn expect(cond: bool, what: &str) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what.to_string()) }
}

fn ok(s: &Step) -> Result<(), String> {
    expect(s.rc == 0, "the command should succeed")
}

fn names_include(s: &Step, want: &[&str]) -> Result<(), String> {
    let names: Vec<&str> = s.text.split('|').collect();
    let missing: Vec<&&str> = want.iter().filter(|w| !names.contains(w)).collect();
    expect(
        missing.is_empty(),
        &format!("the listing lacks {missing:?}"),
    )
}

/// Boots run one at a time: two TCG guests (and a kernel) on a small
/// machine would slow every step towards its timeout.
static ONE_BOOT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Boot the guest against the server at the host's loopback `port` with
/// `aname`, and check every step in every dialect; `server_log` is shown
/// with the failures.
fn run_steps(port: u16, aname: &str, server_log: impl Fn() -> String) {
    let _one = ONE_BOOT.lock().unwrap_or_else(|e| e.into_inner());
    let parts = parts();
    let base = base_archive(&parts);
    let scratch = tempfile::tempdir().unwrap();
    let initrd = scratch.path().join("initrd.cpio");
    with_init(&base, &script(port, aname), &initrd);

    let run = boot_guest(&parts, &initrd, BOOT_LIMIT_SECS);
    eprintln!(
        "guest ran {:.1} s ({})\n{}",
        run.took.as_secs_f64(),
        run.status,
        run.console
    );
    let got = steps(&run.console);

    let mut failures = Vec::new();
    for (d, version) in DIALECTS {
        let chan = format!("x{d}");
        for (name, check) in EXPECTED {
            let verdict = match got.iter().find(|s| s.dialect == *d && s.name == *name) {
                None => Err("the step never ran (see the console)".to_string()),
                Some(s) => {
                    check(s, &chan).map_err(|e| format!("{e}; got rc={} [{}]", s.rc, s.text))
                }
            };
            match verdict {
                Ok(()) => eprintln!("PASS {version} {name}"),
                Err(e) => {
                    eprintln!("FAIL {version} {name}: {e}");
                    failures.push(format!("{version} {name}: {e}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "Linux v9fs steps failed:\n{}\n\nconsole:\n{}\n\nserver log:\n{}",
        failures.join("\n"),
        run.console,
        server_log()
    );
    assert!(
        run.status.success(),
        "the guest did not power off cleanly ({}):\n{}",
        run.status,
        run.console
    );
}

#[test]
fn linux_v9fs_against_a_hosted_node() {
    let node = Node::start();
    let port: u16 = node.addr.rsplit(':').next().unwrap().parse().unwrap();
    run_steps(port, &node.aname(), || node.log());
}

/// The same against the bare-metal kernel, booted by `cell0 boot` with its
/// 9P port forwarded to a loopback port, which the guest reaches through
/// the host.
#[test]
fn linux_v9fs_against_the_kernel() {
    require_tool(
        "qemu-system-x86_64",
        "apt-get install --no-install-recommends qemu-system-x86",
    );
    let image = kernel_image();
    let b = {
        let _one = ONE_BOOT.lock().unwrap_or_else(|e| e.into_inner());
        Booted::start(KERNEL_BOOT_SECS, |cmd| {
            cmd.arg("--kernel").arg(&image);
            cmd.args(["--timeout", &(KERNEL_BOOT_SECS - 20).to_string()]);
        })
    };
    let aname = token_aname(b.token().as_deref());
    run_steps(b.port(), &aname, || {
        format!(
            "{}\n{}",
            b.said(),
            std::fs::read_to_string(&b.console).unwrap_or_default()
        )
    });
}
