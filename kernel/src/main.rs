//! Cell0's bare-metal x86_64 kernel.
//!
//! QEMU loads it with `-kernel` through its PVH note (see `boot.rs`); it
//! sets up the console, exception handling and a heap, enumerates PCI,
//! and (issue 3, in progress) will bring up virtio-net and TCP/IP to serve
//! the same `cellfs` core as the hosted node. Command-line words (QEMU's
//! `-append`) that the kernel reads:
//!
//! - `cell0.exit`: leave QEMU with status 33 once booted (tests use it);
//! - `cell0.test=fault`: execute an invalid instruction after boot, to
//!   show the exception report (QEMU exits with 35);
//! - `cell0.test=panic`: panic after boot, likewise.
//!
//! Built for the host (as `cargo test --workspace` does), it is a stub
//! that says how to build the real thing.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod heap;
#[cfg(target_os = "none")]
mod idt;
#[cfg(target_os = "none")]
mod pci;
#[cfg(target_os = "none")]
mod qemu;
#[cfg(target_os = "none")]
#[macro_use]
mod serial;
#[cfg(target_os = "none")]
mod start_info;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "cell0-kernel runs on bare metal: build it with `cargo build -p cell0-kernel --target x86_64-unknown-none` and boot it under QEMU"
    );
    std::process::exit(2);
}

/// Where the boot stub lands, in long mode on the boot stack.
#[cfg(target_os = "none")]
#[unsafe(no_mangle)]
extern "C" fn kernel_main(start_info: u32) -> ! {
    use alloc::vec::Vec;

    serial::init();
    println!("cell0 kernel {}: booting", env!("CARGO_PKG_VERSION"));
    // SAFETY: `start_info` is what the PVH loader put in ebx, and the boot
    // stub identity-maps the low memory where QEMU places it.
    let info = match unsafe { start_info::StartInfo::read(start_info) } {
        Ok(info) => info,
        Err(e) => panic!("bad PVH start info at {start_info:#x}: {e}"),
    };
    let (ram, regions) = info.ram();
    println!("memory: {} MiB of RAM in {regions} regions", ram >> 20);
    idt::init();
    println!("interrupts: exception handlers installed");
    heap::init();
    let probe: Vec<u64> = (0..1024).collect();
    let (used, free) = heap::usage();
    println!(
        "heap: {} KiB, {} KiB in use after a test allocation of {} words",
        (used + free) >> 10,
        used >> 10,
        probe.len()
    );
    drop(probe);

    let functions = pci::scan();
    for f in &functions {
        println!(
            "pci: {} vendor {:04x} device {:04x} class {:04x}",
            f.at, f.vendor, f.device, f.class
        );
    }
    match functions.iter().find(|f| f.is_virtio_net()) {
        Some(f) => println!("pci: {} functions; virtio-net at {}", functions.len(), f.at),
        None => println!(
            "pci: {} functions; no virtio-net device (start QEMU with -nic user,model=virtio-net-pci)",
            functions.len()
        ),
    }

    let cmdline = info.cmdline();
    let word = |w: &str| cmdline.split_ascii_whitespace().any(|x| x == w);
    if word("cell0.test=fault") {
        println!("test: executing an invalid instruction");
        // SAFETY: ud2 raises #UD on purpose; the handler reports and stops.
        unsafe { core::arch::asm!("ud2") };
    }
    if word("cell0.test=panic") {
        panic!("test panic requested on the command line");
    }
    println!("cell0 kernel: boot complete");
    if word("cell0.exit") {
        qemu::exit(qemu::Exit::Success);
    }
    qemu::halt()
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("PANIC: {info}");
    qemu::exit(qemu::Exit::Failure)
}
