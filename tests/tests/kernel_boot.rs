//! The bare-metal kernel boots under QEMU, reports each stage on its
//! console with a boot-proof marker, turns a fault, a panic or a stack
//! overflow into a report and a failure exit, and serves cellfs over 9P
//! on TCP.

use cell0_tests::{QEMU_FAILURE, QEMU_SUCCESS, Raw, ServingKernel, boot, markers};
use cellfs::proof::boot::verify;
use ninep::{Body, Dialect, NOFID, NOTAG, Names};

fn console(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

#[test]
fn boots_through_every_stage_and_exits_cleanly() {
    let out = boot("cell0.exit", 60);
    let text = console(&out);
    assert_eq!(
        out.status.code(),
        Some(QEMU_SUCCESS),
        "QEMU exited with {:?}:\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stages = [
        "cell0 kernel 0.1.0: booting",
        "memory: 127 MiB of RAM in 2 regions",
        "paging: own tables",
        "interrupts: GDT with TSS",
        "heap: ",
        "#E0 cpu ",
        "#E5 heap size=",
        "timer: PIT at 1000 Hz",
        "#E6 timer source=pit hz=1000",
        "pci: 00:02.0 vendor 1af4 device 1000 class 0200",
        "virtio-net at 00:02.0",
        "#E7 pci ",
        "virtio: net device up, MAC 52:54:00:12:34:56",
        "#E8 virtio mac=52:54:00:12:34:56",
        "#E9 network ip=10.0.2.15/24 gateway=10.0.2.2 tcp=564 listen=16 max-sockets=32",
        "#E10 9p msize=1048576 dialects=9P2000,9P2000.L node=kernel",
        "\nowner-token c0.",
        "cell0 kernel: boot complete",
    ];
    let mut rest = text.as_str();
    for stage in stages {
        let at = rest
            .find(stage)
            .unwrap_or_else(|| panic!("stage {stage:?} missing or out of order in:\n{text}"));
        rest = &rest[at + stage.len()..];
    }
    assert!(
        !text.contains("PANIC") && !text.contains("EXCEPTION"),
        "{text}"
    );
}

#[test]
fn an_invalid_instruction_is_reported_and_fails_the_boot() {
    let out = boot("cell0.test=fault", 60);
    let text = console(&out);
    assert_eq!(out.status.code(), Some(QEMU_FAILURE), "{text}");
    assert!(
        text.contains("EXCEPTION: invalid opcode (vector 6)"),
        "no exception report in:\n{text}"
    );
    assert!(text.contains("rip 0x"), "{text}");
    assert!(!text.contains("boot complete"), "{text}");
}

#[test]
fn a_panic_is_reported_and_fails_the_boot() {
    let out = boot("cell0.test=panic", 60);
    let text = console(&out);
    assert_eq!(out.status.code(), Some(QEMU_FAILURE), "{text}");
    assert!(
        text.contains("PANIC: panicked at") && text.contains("test panic requested"),
        "no panic report in:\n{text}"
    );
}

#[test]
fn two_boots_print_the_same_boot_proof_and_it_verifies() {
    let a = console(&boot("cell0.exit", 60));
    let b = console(&boot("cell0.exit", 60));
    let (ma, mb) = (markers(&a), markers(&b));
    assert_eq!(ma.len(), 11, "expected #E0..#E10 in:\n{a}");
    assert_eq!(ma, mb, "two boots of one image differ:\n{a}\n---\n{b}");
    let proof = verify(&a).unwrap_or_else(|e| panic!("{e}:\n{a}"));
    assert_eq!(proof.markers.to_vec(), ma);

    // Any edit of a fact breaks that line's chain.
    let edited = a.replace("node=kernel", "node=kernal");
    let err = verify(&edited).expect_err("an edited #E10 must not verify");
    assert!(err.to_string().contains("#E10"), "{err}");
    let edited = a.replace("ram=127MiB", "ram=255MiB");
    assert!(verify(&edited).is_err(), "an edited #E1 must not verify");
    // A cut log is missing its last stage.
    let cut: String = a
        .lines()
        .filter(|l| !l.starts_with("#E10"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(verify(&cut).is_err());
}

#[test]
fn a_stack_overflow_is_reported_and_fails_the_boot() {
    let out = boot("cell0.test=overflow", 60);
    let text = console(&out);
    assert_eq!(out.status.code(), Some(QEMU_FAILURE), "{text}");
    assert!(
        text.contains("EXCEPTION: page fault (vector 14)")
            && text.contains("kernel stack overflow"),
        "no overflow report in:\n{text}"
    );
}

/// Walk from fid 0 to `path` in `newfid` and open it with `mode`.
fn open(r: &mut Raw, newfid: u32, path: &str, mode: u8) {
    assert_eq!(r.walk(newfid, path), "Rwalk", "walk {path}");
    let o = r.rpc(3, Body::Topen { fid: newfid, mode });
    assert_eq!(r.text(&o), "Ropen", "open {path}");
}

/// The owner token the kernel printed on its console (`owner-token c0.…`).
fn owner_token(k: &ServingKernel) -> String {
    // The line follows #E10; the console copy may not have caught up yet.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let console = k.console();
        let token = console.lines().find_map(|l| {
            l.strip_suffix('\n')
                .unwrap_or(l)
                .strip_prefix("owner-token ")
                .filter(|_| console.contains(&format!("{l}\n")))
        });
        if let Some(t) = token {
            return t.trim_end().to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no owner-token line on the console:\n{console}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A raw 9P connection to the kernel, attached with its owner token passed
/// in the aname (`token=c0.…`).
fn attach(k: &ServingKernel, dialect: Dialect) -> Raw {
    Raw::attached(&k.addr, dialect, &format!("token={}", owner_token(k)))
}

fn write(r: &mut Raw, fid: u32, data: &[u8]) -> String {
    let w = r.rpc(
        6,
        Body::Twrite {
            fid,
            offset: 0,
            data,
        },
    );
    r.text(&w)
}

#[test]
fn the_kernel_serves_cellfs_over_9p() {
    let mut k = ServingKernel::start(60);
    eprintln!(
        "kernel: #E10 {} ms after QEMU started",
        k.boot_time.as_millis()
    );
    let mut r = attach(&k, Dialect::U);

    // Without a capability, the kernel refuses the attach.
    let mut anon = Raw::connect(&k.addr);
    let v = anon.rpc(
        NOTAG,
        Body::Tversion {
            msize: 65536,
            version: "9P2000.u",
        },
    );
    anon.dialect = Dialect::U;
    assert_eq!(anon.text(&v), "Rversion");
    let a = anon.rpc(
        1,
        Body::Tattach {
            fid: 0,
            afid: NOFID,
            uname: "test",
            aname: "",
            n_uname: Some(0),
        },
    );
    assert!(
        anon.text(&a)
            .starts_with("Rerror attach needs a capability"),
        "{}",
        anon.text(&a)
    );

    let status = r.cat("/status");
    assert!(status.starts_with("Rread node kernel\n"), "{status}");

    // /proof/boot holds exactly the markers the console showed.
    let proof = r.cat("/proof/boot");
    let text = proof.strip_prefix("Rread ").expect("a read");
    assert_eq!(
        markers(text),
        markers(&k.console()),
        "/proof/boot differs from the console"
    );
    verify(text).unwrap_or_else(|e| panic!("/proof/boot does not verify: {e}\n{text}"));

    // mkdir /chan/k1, send a message, receive it.
    assert_eq!(r.walk(10, "/chan"), "Rwalk");
    let c = r.rpc(
        7,
        Body::Tcreate {
            fid: 10,
            name: "k1",
            perm: ninep::stat::DMDIR | 0o755,
            mode: 0,
            extension: Some(""),
        },
    );
    assert_eq!(r.text(&c), "Rcreate", "mkdir /chan/k1");
    open(&mut r, 11, "/chan/k1/data", 1);
    assert_eq!(write(&mut r, 11, b"hello from the host\n"), "Rwrite");
    open(&mut r, 12, "/chan/k1/data", 0);
    let m = r.rpc(
        8,
        Body::Tread {
            fid: 12,
            offset: 0,
            count: 4096,
        },
    );
    assert_eq!(r.text(&m), "Rread hello from the host\n");

    // A bad ctl write is refused with a message.
    open(&mut r, 13, "/chan/k1/ctl", 1);
    let e = write(&mut r, 13, b"qoss 3\n");
    assert!(e.starts_with("Rerror ") && e.contains("qoss"), "{e}");

    // Several clients at once, each on its own socket.
    let mut others: Vec<Raw> = (0..4).map(|_| attach(&k, Dialect::L)).collect();
    for o in &mut others {
        let s = o.cat("/status");
        assert!(s.starts_with("Rread node kernel\n"), "{s}");
    }
    // A parked read on one connection is answered by a write on another.
    let mut reader = others.pop().unwrap();
    let mut wnames = Names::new();
    for p in ["chan", "k1", "data"] {
        wnames.push(p).unwrap();
    }
    let w = reader.rpc(
        2,
        Body::Twalk {
            fid: 0,
            newfid: 20,
            wnames,
        },
    );
    assert_eq!(reader.text(&w), "Rwalk");
    let o = reader.rpc(3, Body::Tlopen { fid: 20, flags: 0 });
    assert_eq!(reader.text(&o), "Rlopen");
    // A new reader starts at the oldest retained message.
    let first = reader.rpc(
        8,
        Body::Tread {
            fid: 20,
            offset: 0,
            count: 4096,
        },
    );
    assert_eq!(reader.text(&first), "Rread hello from the host\n");
    // 9P2000.L: the batch ends with one empty read (cellfs(4) STREAMS).
    let end = reader.rpc(
        10,
        Body::Tread {
            fid: 20,
            offset: 0,
            count: 4096,
        },
    );
    assert_eq!(reader.text(&end), "Rread ");
    reader.send(
        9,
        Body::Tread {
            fid: 20,
            offset: 0,
            count: 4096,
        },
    );
    assert!(
        reader.quiet_for(200),
        "a read of an empty channel must wait"
    );
    assert_eq!(write(&mut r, 11, b"later\n"), "Rwrite");
    let got = reader.recv().expect("the parked read is answered");
    assert_eq!(reader.text(&got), "Rread later\n");

    // A frame larger than the negotiated msize closes that connection
    // only.
    let mut bad = attach(&k, Dialect::U);
    bad.send_bytes(&(1u32 << 30).to_le_bytes());
    assert!(
        bad.recv().is_none(),
        "an oversized frame must close the connection"
    );
    assert!(r.cat("/status").starts_with("Rread node kernel\n"));

    // Clients that hang up free their sockets for new ones.
    drop(others);
    drop(reader);
    for _ in 0..10 {
        let mut c = attach(&k, Dialect::U);
        assert!(c.cat("/status").starts_with("Rread node kernel\n"));
    }
    assert!(k.running(), "QEMU stopped:\n{}", k.console());
    let console = k.console();
    assert!(
        !console.contains("PANIC") && !console.contains("EXCEPTION"),
        "{console}"
    );
}
