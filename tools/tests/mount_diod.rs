//! `cell0 mount` of diod, Debian's 9P2000.L server, used with shell tools:
//! every change made through the mount must show in diod's export, and
//! every file there must read back the same through the mount.

use cell0_tests::{Diod, Mount, cell0_bin, wait_for};

#[test]
fn shell_tools_work_through_a_mount_of_diod() {
    let diod = Diod::start();
    let export = diod.export();
    std::fs::write(export.join("hello.txt"), "hello\n").unwrap();
    std::fs::create_dir(export.join("sub")).unwrap();
    std::fs::write(export.join("sub/inner"), "inner\n").unwrap();
    let m = Mount::on(&diod, &export.to_string_lossy());

    let ls = m.sh_ok("ls");
    assert_eq!(
        ls.split_whitespace().collect::<Vec<_>>(),
        ["hello.txt", "sub"]
    );
    assert_eq!(m.sh_ok("cat hello.txt"), "hello\n");
    assert_eq!(m.sh_ok("cat sub/inner"), "inner\n");
    assert_eq!(m.sh_ok("stat -c %F sub"), "directory\n");
    assert_eq!(m.sh_ok("stat -c %s hello.txt"), "6\n");

    m.sh_ok("echo world > new.txt");
    assert_eq!(
        std::fs::read_to_string(export.join("new.txt")).unwrap(),
        "world\n"
    );
    m.sh_ok("echo more >> new.txt");
    assert_eq!(
        std::fs::read_to_string(export.join("new.txt")).unwrap(),
        "world\nmore\n"
    );
    // O_TRUNC through setattr: the old contents go.
    m.sh_ok("echo x > new.txt");
    assert_eq!(
        std::fs::read_to_string(export.join("new.txt")).unwrap(),
        "x\n"
    );

    m.sh_ok("mkdir d && echo z > d/z");
    assert_eq!(std::fs::read_to_string(export.join("d/z")).unwrap(), "z\n");
    assert_eq!(m.sh_ok("ls d"), "z\n");
    m.sh_ok("rm d/z && rmdir d");
    assert!(!export.join("d").exists());
    m.sh_ok("rm -r sub new.txt");
    assert!(!export.join("sub").exists() && !export.join("new.txt").exists());

    let missing = m.sh("cat nope");
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("No such file"),
        "{missing:?}"
    );
    // Changes made on the server side show at once (no stale cache).
    std::fs::write(export.join("hello.txt"), "changed behind the mount\n").unwrap();
    assert_eq!(m.sh_ok("cat hello.txt"), "changed behind the mount\n");
}

#[test]
fn large_files_are_cut_into_iounit_sized_reads_and_writes() {
    let diod = Diod::start();
    let export = diod.export();
    let m = Mount::on(&diod, &export.to_string_lossy());
    let src = diod.dir.path().join("random.bin");
    let bytes: Vec<u8> = (0..700_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &bytes).unwrap();
    m.sh_ok(&format!("cp {} big.bin", src.display()));
    assert_eq!(std::fs::read(export.join("big.bin")).unwrap(), bytes);
    m.sh_ok(&format!("cmp big.bin {}", src.display()));
}

#[test]
fn umount_unmounts_and_the_background_server_exits() {
    let diod = Diod::start();
    let m = Mount::on(&diod, &diod.export().to_string_lossy());
    assert!(
        cell0_tests::proc_state(m.pid).is_some(),
        "the mount's server runs"
    );
    let out = std::process::Command::new(cell0_bin())
        .arg("umount")
        .arg(m.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!m.is_mounted());
    wait_for("the mount's server to exit", || {
        matches!(cell0_tests::proc_state(m.pid), None | Some('Z'))
    });
    assert!(
        m.log_text().contains("unmounted; exiting"),
        "{}",
        m.log_text()
    );
}

#[test]
fn mounting_a_dead_address_fails_with_the_reason_and_mounts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(cell0_bin())
        .args(["mount", "--addr", "127.0.0.1:1"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("127.0.0.1:1") && err.contains("refused"),
        "{err}"
    );
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!info.contains(&*dir.path().to_string_lossy()));
}

#[test]
fn a_wrong_aname_is_refused_before_going_to_the_background() {
    let diod = Diod::start();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(cell0_bin())
        .args(["mount", "--addr", &diod.addr, "--aname", "/no/such/export"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("attach of \"/no/such/export\" refused"),
        "{err}"
    );
}
