//! The bare-metal kernel boots under QEMU, reports each stage on its
//! console, and turns a fault or a panic into a report and a failure exit.

use cell0_tests::{QEMU_FAILURE, QEMU_SUCCESS, boot};

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
        "interrupts: exception handlers installed",
        "heap: 8192 KiB",
        "pci: 00:02.0 vendor 1af4 device 1000 class 0200",
        "virtio-net at 00:02.0",
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
