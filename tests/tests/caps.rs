//! Capabilities with real parts: `cell0 serve` with its key and owner
//! token, `cell0 cap`, FUSE mounts and p9fs attached with narrow tokens,
//! and every way a token is refused. See cap(3).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cell0_tests::{Mount, Node, Raw, cell0_bin, conformance, free_port, sh, sh_ok};
use ninep::{Body, Dialect, NOFID, NOTAG};

/// `cell0 ARGS` with `stdin`; (success, stdout, stderr).
fn cell0(args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write as _;
    let mut child = Command::new(cell0_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cell0 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(r: (bool, String, String)) -> String {
    assert!(r.0, "cell0 failed:\n{}{}", r.1, r.2);
    r.1
}

/// A token file in `dir` holding `text`.
fn token_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{}\n", text.trim())).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// `cell0 cap attenuate` of `parent` with `args`; the new token's text.
fn attenuate(parent: &Path, args: &[&str]) -> String {
    let mut all = vec!["cap", "attenuate"];
    all.extend_from_slice(args);
    let p = parent.to_string_lossy();
    all.push(&p);
    ok(cell0(&all, "")).trim().to_string()
}

/// A node with a channel /chan/alerts holding one message, and a second
/// channel /chan/other.
fn node_with_alerts() -> Node {
    let node = Node::start();
    for args in [
        &["mkdir", "/chan/alerts"][..],
        &["mkdir", "/chan/other"],
        &["write", "/chan/alerts/data", "fire"],
    ] {
        let (s, o, e) = node.cell0(args);
        assert!(s, "{args:?}: {o}{e}");
    }
    node
}

/// The node's /chan listing, with the owner token.
fn chan_listing(node: &Node) -> String {
    let (s, o, e) = node.cell0(&["ls", "/chan"]);
    assert!(s, "{e}");
    o
}

#[test]
fn node_key_and_owner_token_are_private() {
    let node = Node::start();
    for f in ["node.key", "owner.token"] {
        let mode = std::fs::metadata(node.data().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f} has mode {mode:o}");
    }
    let out = ok(cell0(
        &["cap", "inspect", &node.owner_token().to_string_lossy()],
        "",
    ));
    assert!(out.contains("holder owner"), "{out}");
    assert!(out.contains("scope /"), "{out}");
    assert!(out.contains("rights rwcda"), "{out}");
}

#[test]
fn serve_refuses_a_key_others_can_read() {
    let mut node = Node::start();
    node.stop_with(libc::SIGTERM);
    let key = node.data().join("node.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(cell0_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--data")
        .arg(node.data())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "serve started with a 0644 key: {err}"
    );
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn a_read_only_channel_mount_sees_only_its_channel() {
    let node = node_with_alerts();
    let scratch = tempfile::tempdir().unwrap();
    let agent = attenuate(
        &node.owner_token(),
        &[
            "--scope",
            "/chan/alerts",
            "--rights",
            "r",
            "--ttl",
            "1h",
            "--holder",
            "agent",
        ],
    );
    let agent = token_file(scratch.path(), "agent.token", &agent);
    let m = Mount::with_token(&node.addr, Some(&agent));
    let d = m.path();
    // The root is the channel: its files, nothing of the rest of the tree.
    let ls = sh_ok(d, "ls");
    let names: Vec<&str> = ls.split_whitespace().collect();
    assert_eq!(names, ["ctl", "data", "groups", "msgs", "status"], "{ls}");
    assert!(sh(d, "ls chan").status.code() != Some(0));
    // Read works.
    assert_eq!(sh_ok(d, "head -c 4 data"), "fire");
    // Write, mkdir and rm do not, with EACCES.
    let w = sh(d, "echo nope > data");
    assert!(!w.status.success());
    let err = String::from_utf8_lossy(&w.stderr);
    assert!(err.contains("Permission denied"), "{err}");
    assert!(!sh(d, "mkdir x").status.success());
    assert!(!sh(d, "rm status").status.success());
    drop(m);
    // Nothing changed; the owner still sees everything.
    let listing = chan_listing(&node);
    assert!(
        listing.contains("alerts/") && listing.contains("other/"),
        "{listing}"
    );
    let owner = Mount::with_token(&node.addr, Some(&node.owner_token()));
    let root = sh_ok(owner.path(), "ls");
    for name in conformance::ROOT_NAMES {
        assert!(root.split_whitespace().any(|n| n == name), "{root}");
    }
}

/// Mounting with `token` is refused, the message contains `why`, and the
/// tree is as it was.
fn refused(node: &Node, token: &Path, why: &[&str]) {
    let before = chan_listing(node);
    let err = match Mount::try_with_token(&node.addr, Some(token)) {
        Ok(_) => panic!("a mount with {} was allowed", token.display()),
        Err(e) => e,
    };
    assert!(
        why.iter()
            .any(|w| err.to_lowercase().contains(&w.to_lowercase())),
        "expected one of {why:?} in:\n{err}"
    );
    let (s, _, e) = node.cell0(&["ls", "/"]);
    assert!(s, "{e}");
    let (s, o, e) = cell0(
        &[
            "ls",
            "/",
            "--addr",
            &node.addr,
            "--token",
            &token.to_string_lossy(),
        ],
        "",
    );
    assert!(!s, "cell0 ls with {} worked: {o}", token.display());
    assert!(
        why.iter()
            .any(|w| e.to_lowercase().contains(&w.to_lowercase())),
        "expected one of {why:?} in:\n{e}"
    );
    assert_eq!(chan_listing(node), before);
}

#[test]
fn bad_tokens_are_refused_and_change_nothing() {
    let node = node_with_alerts();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let owner = std::fs::read_to_string(node.owner_token()).unwrap();

    // One flipped bit in the signature part of the text.
    let mut bytes = owner.trim().as_bytes().to_vec();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let flipped = token_file(dir, "flipped", std::str::from_utf8(&bytes).unwrap());
    refused(&node, &flipped, &["signature", "token", "decode", "not a"]);

    // Minted by another node's key.
    let other = Node::start();
    refused(&node, &other.owner_token(), &["key", "issuer", "unknown"]);

    // Expired.
    let short = attenuate(&node.owner_token(), &["--ttl", "1s", "--holder", "brief"]);
    let short = token_file(dir, "short", &short);
    std::thread::sleep(Duration::from_millis(2100));
    refused(&node, &short, &["expired"]);

    // Minted, then revoked; and a token derived from a revoked one.
    let minted = ok(cell0(
        &[
            "cap",
            "mint",
            "--scope",
            "/chan",
            "--rights",
            "rw",
            "--ttl",
            "1h",
            "--holder",
            "ci",
            "--addr",
            &node.addr,
            "--token",
            &node.owner_token().to_string_lossy(),
        ],
        "",
    ));
    let minted = token_file(dir, "minted", &minted);
    let child = attenuate(&minted, &["--scope", "/chan/alerts", "--rights", "r"]);
    let child = token_file(dir, "child", &child);
    // Both work before the revocation.
    drop(Mount::with_token(&node.addr, Some(&child)));
    ok(cell0(
        &[
            "cap",
            "revoke",
            &minted.to_string_lossy(),
            "--addr",
            &node.addr,
            "--token",
            &node.owner_token().to_string_lossy(),
        ],
        "",
    ));
    refused(&node, &minted, &["revoked"]);
    refused(&node, &child, &["revoked"]);
}

#[test]
fn attenuation_that_widens_is_refused_offline() {
    let node = node_with_alerts();
    let scratch = tempfile::tempdir().unwrap();
    let narrow = attenuate(
        &node.owner_token(),
        &["--scope", "/chan/alerts", "--rights", "r", "--ttl", "1h"],
    );
    let narrow = token_file(scratch.path(), "narrow", &narrow);
    let p = narrow.to_string_lossy();
    for (args, why) in [
        (&["--scope", "/chan"][..], "scope"),
        (&["--rights", "rw"], "rights"),
        (&["--ttl", "2h"], "outlive"),
    ] {
        let mut all = vec!["cap", "attenuate"];
        all.extend_from_slice(args);
        all.push(&p);
        let (s, o, e) = cell0(&all, "");
        assert!(!s, "{args:?} widened: {o}");
        assert!(e.contains("refused") && e.contains(why), "{e}");
    }
}

#[test]
fn p9fs_attaches_with_a_token_in_the_aname_and_stays_in_scope() {
    let node = node_with_alerts();
    let scratch = tempfile::tempdir().unwrap();
    // The owner's token through aname passes the whole p9fs check.
    conformance::p9fs(&node.addr, "9P2000.L", Some(&node.owner_token()));
    // A token for /chan/alerts sees the channel's files at its root.
    let t = attenuate(
        &node.owner_token(),
        &["--scope", "/chan/alerts", "--rights", "r"],
    );
    let t = token_file(scratch.path(), "alerts", &t);
    let (host, port) = node.addr.rsplit_once(':').unwrap();
    let script = format!(
        "from p9fs import P9FileSystem\n\
         import os\n\
         fs = P9FileSystem(host={host:?}, port={port}, username='p9fs', version='9P2000.L', aname={aname:?})\n\
         names = sorted(os.path.basename(p.rstrip('/')) for p in fs.ls('', detail=False))\n\
         assert names == ['ctl', 'data', 'groups', 'msgs', 'status'], names\n\
         for bad in ['chan', 'status/../../chan']:\n\
         \x20   try:\n\
         \x20       fs.ls(bad, detail=False)\n\
         \x20       raise SystemExit('walked out of scope to ' + bad)\n\
         \x20   except SystemExit:\n\
         \x20       raise\n\
         \x20   except Exception:\n\
         \x20       pass\n\
         print('scoped ok')\n",
        aname = conformance::token_aname(Some(&t)),
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("scoped ok"), "{text}");
}

#[test]
fn insecure_lets_a_tokenless_attach_in_and_secure_does_not() {
    let scratch = tempfile::tempdir().unwrap();
    let empty = scratch.path().join("no-data");
    // Secure (the default): no token, no attach.
    let node = Node::start();
    let (s, _, e) = cell0(
        &[
            "ls",
            "/",
            "--addr",
            &node.addr,
            "--data",
            &empty.to_string_lossy(),
        ],
        "",
    );
    assert!(!s, "a tokenless attach got in");
    assert!(!e.is_empty());
    drop(node);
    // --insecure: it gets in, and the node says so loudly.
    let addr = format!("127.0.0.1:{}", free_port());
    let log = scratch.path().join("insecure.log");
    let mut child = Command::new(cell0_bin())
        .args(["serve", "--insecure", "--listen", &addr, "--data"])
        .arg(scratch.path().join("data"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(scratch.path().join("insecure.err")).unwrap())
        .spawn()
        .unwrap();
    let mut listed = None;
    for _ in 0..200 {
        let r = cell0(
            &[
                "ls",
                "/",
                "--addr",
                &addr,
                "--data",
                &empty.to_string_lossy(),
            ],
            "",
        );
        if r.0 {
            listed = Some(r.1);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let listed = listed.expect("an insecure node let a tokenless ls in");
    assert!(listed.contains("status"), "{listed}");
    let err = std::fs::read_to_string(scratch.path().join("insecure.err")).unwrap();
    assert!(err.contains("WARNING") && err.contains("insecure"), "{err}");
}

/// `cell0 cap mint` with the token in `as_token`; the new token's file
/// in `dir`, or the failure's stderr.
fn mint_as(
    node: &Node,
    as_token: &Path,
    dir: &Path,
    name: &str,
    args: &[&str],
) -> Result<PathBuf, String> {
    let mut all = vec!["cap", "mint"];
    all.extend_from_slice(args);
    let (s, o, e) = conformance::cell0(&node.addr, Some(as_token), &all);
    if s {
        Ok(token_file(dir, name, &o))
    } else {
        Err(e)
    }
}

/// The issue's first attack, through the CLI: a token derived from an
/// agent's cannot be renamed, and what is derived from it keeps to the
/// agent's intent.
#[test]
fn an_agents_token_stays_the_agents() {
    let node = node_with_alerts();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    for args in [
        &["mkdir", "/chan/in"][..],
        &["mkdir", "/agent/foo"],
        &["write", "/agent/foo/ctl", "intent r /chan/in"],
    ] {
        let (s, o, e) = node.cell0(args);
        assert!(s, "{args:?}: {o}{e}");
    }
    let foo = mint_as(
        &node,
        &node.owner_token(),
        dir,
        "foo",
        &[
            "--scope",
            "/",
            "--rights",
            "rw",
            "--ttl",
            "1h",
            "--holder",
            "agent/foo",
        ],
    )
    .unwrap();
    let p = foo.to_string_lossy();
    for holder in ["x", "owner", "agent/peer"] {
        let (s, o, e) = cell0(&["cap", "attenuate", "--holder", holder, &p], "");
        assert!(!s, "--holder {holder} was allowed: {o}");
        assert!(
            e.contains("refused") && e.contains("stays agent foo's"),
            "{e}"
        );
    }
    // Keeping the holder works, and the intent still holds it.
    let narrow = attenuate(&foo, &["--scope", "/chan"]);
    let narrow = token_file(dir, "narrow", &narrow);
    let (s, _, e) = conformance::cell0(
        &node.addr,
        Some(&narrow),
        &["write", "/other/data", "forged"],
    );
    assert!(!s, "an agent's token wrote outside its intent");
    assert!(e.contains("outside its intent"), "{e}");
    let (_, status, _) = node.cell0(&["cat", "/chan/other/status"]);
    assert!(status.contains("\nretained 0\n"), "{status}");
    let (_, status, _) = node.cell0(&["cat", "/agent/foo/status"]);
    assert!(status.contains("state halted-drift"), "{status}");
}

/// The issue's attack 11: holder names that would scramble `sender=`.
#[test]
fn holder_names_must_be_printable_ascii() {
    let node = node_with_alerts();
    let scratch = tempfile::tempdir().unwrap();
    for holder in ["evil\u{202e}txt.exe", "a\tb", "caf\u{e9}"] {
        let r = mint_as(
            &node,
            &node.owner_token(),
            scratch.path(),
            "bad",
            &["--scope", "/chan", "--rights", "r", "--holder", holder],
        );
        let e = r.expect_err("a bad holder was minted");
        assert!(e.contains("printable ASCII"), "{e}");
        let (s, _, e) = cell0(
            &[
                "cap",
                "attenuate",
                "--holder",
                holder,
                &node.owner_token().to_string_lossy(),
            ],
            "",
        );
        assert!(!s && e.contains("printable ASCII"), "{e}");
    }
    let e = mint_as(
        &node,
        &node.owner_token(),
        scratch.path(),
        "owner2",
        &["--scope", "/chan", "--rights", "r", "--holder", "owner"],
    )
    .expect_err("a second owner was minted");
    assert!(e.contains("reserved"), "{e}");
}

/// The issue's attack 11: an admin over /chan mints and revokes within
/// /chan with `cell0 cap`, and nowhere else.
#[test]
fn a_scoped_admin_mints_and_revokes_within_its_scope() {
    let node = node_with_alerts();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let admin = mint_as(
        &node,
        &node.owner_token(),
        dir,
        "admin",
        &[
            "--scope",
            "/chan",
            "--rights",
            "rwa",
            "--ttl",
            "1h",
            "--holder",
            "chanadmin",
        ],
    )
    .unwrap();
    let reader = mint_as(
        &node,
        &admin,
        dir,
        "reader",
        &[
            "--scope",
            "/chan/alerts",
            "--rights",
            "r",
            "--holder",
            "reader",
        ],
    )
    .unwrap();
    let out = ok(cell0(&["cap", "inspect", &reader.to_string_lossy()], ""));
    assert!(
        out.contains("scope /chan/alerts") && out.contains("holder reader"),
        "{out}"
    );
    // It works: the channel is its root.
    let (s, o, e) = conformance::cell0(&node.addr, Some(&reader), &["cat", "/status"]);
    assert!(s && o.starts_with("name alerts"), "{o}{e}");
    // Outside /chan, for an agent, or wider rights: refused.
    for (args, why) in [
        (
            &["--scope", "/agent", "--rights", "r"][..],
            "does not reach",
        ),
        (&["--scope", "/chan", "--rights", "rc"], "not within"),
    ] {
        let mut all = args.to_vec();
        all.extend(["--holder", "x"]);
        let e = mint_as(&node, &admin, dir, "no", &all).expect_err("minted");
        assert!(e.contains(why), "{args:?}: {e}");
    }
    let e = mint_as(
        &node,
        &admin,
        dir,
        "no",
        &["--scope", "/chan", "--rights", "r", "--holder", "agent/foo"],
    )
    .expect_err("minted an agent's");
    assert!(e.contains("/agent/foo"), "{e}");
    // It revokes what it minted; not the owner's capabilities elsewhere.
    let other = mint_as(
        &node,
        &node.owner_token(),
        dir,
        "other",
        &["--scope", "/agent", "--rights", "r", "--holder", "other"],
    )
    .unwrap();
    let (s, _, e) = conformance::cell0(
        &node.addr,
        Some(&admin),
        &["cap", "revoke", &other.to_string_lossy()],
    );
    assert!(!s && e.contains("does not reach"), "{e}");
    ok(conformance::cell0(
        &node.addr,
        Some(&admin),
        &["cap", "revoke", &reader.to_string_lossy()],
    ));
    let (s, _, e) = conformance::cell0(&node.addr, Some(&reader), &["cat", "/status"]);
    assert!(!s && e.contains("revoked"), "{e}");
}

/// The issue's attack 11: two `token=` words in an aname.
#[test]
fn an_aname_with_two_tokens_is_refused() {
    let node = node_with_alerts();
    let scratch = tempfile::tempdir().unwrap();
    let ro = attenuate(
        &node.owner_token(),
        &["--scope", "/chan/alerts", "--rights", "r"],
    );
    let owner = std::fs::read_to_string(node.owner_token()).unwrap();
    let _ = scratch;
    let mut r = Raw::connect(&node.addr);
    let v = r.rpc(
        NOTAG,
        Body::Tversion {
            msize: 65536,
            version: Dialect::U.version(),
        },
    );
    r.dialect = Dialect::U;
    assert_eq!(r.text(&v), "Rversion");
    let aname = format!("token={ro} token={}", owner.trim());
    let a = r.rpc(
        1,
        Body::Tattach {
            fid: 0,
            afid: NOFID,
            uname: "test",
            aname: &aname,
            n_uname: Some(0),
        },
    );
    let text = r.text(&a);
    assert!(
        text.starts_with("Rerror aname holds token= twice"),
        "{text}"
    );
}

/// The issue's attack 11: a `cell0 cat` blocked on an empty channel ends
/// with the revocation when its capability is revoked.
#[test]
fn a_blocked_read_ends_when_its_capability_is_revoked() {
    let node = node_with_alerts();
    let scratch = tempfile::tempdir().unwrap();
    let (s, _, e) = node.cell0(&["mkdir", "/chan/quiet"]);
    assert!(s, "{e}");
    let reader = mint_as(
        &node,
        &node.owner_token(),
        scratch.path(),
        "reader",
        &["--scope", "/chan", "--rights", "r", "--holder", "reader"],
    )
    .unwrap();
    let mut cat = Command::new(cell0_bin())
        .args(["cat", "/quiet/data", "--addr", &node.addr, "--token"])
        .arg(&reader)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(cat.try_wait().unwrap().is_none(), "cat did not block");
    ok(cell0(
        &[
            "cap",
            "revoke",
            &reader.to_string_lossy(),
            "--addr",
            &node.addr,
            "--token",
            &node.owner_token().to_string_lossy(),
        ],
        "",
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cat.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = cat.kill();
            panic!("cat still blocked 10 s after its capability was revoked");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = cat.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("was revoked"), "{err}");
}
