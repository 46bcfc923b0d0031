//! Cell0's bare-metal x86_64 kernel.
//!
//! QEMU loads it with `-kernel` through its PVH note (see `boot.rs`); it
//! builds its own page tables, GDT/TSS and IDT, a heap over most of RAM,
//! a timer and a clock, finds the virtio-net card on PCI, brings up
//! TCP/IP on 10.0.2.15 (QEMU user networking) and serves the same
//! `cellfs` core as the hosted node over 9P on TCP port 564, with its
//! state in RAM only. Each boot stage prints a boot-proof marker
//! (`#E0`…`#E10`). Command-line words (QEMU's `-append`) that the kernel
//! reads:
//!
//! - `cell0.exit`: leave QEMU with status 33 after `#E10` instead of
//!   serving (tests use it);
//! - `cell0.test=fault`: execute an invalid instruction after boot, to
//!   show the exception report (QEMU exits with 35);
//! - `cell0.test=panic`: panic after boot, likewise;
//! - `cell0.test=overflow`: overflow the kernel stack, to show that the
//!   guard page and the page-fault stack turn it into a report.
//!
//! Built for the host (as `cargo test --workspace` does), it is a stub
//! that says how to build the real thing.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod cpu;
#[cfg(target_os = "none")]
mod entropy;
#[cfg(target_os = "none")]
mod facts;
#[cfg(target_os = "none")]
mod gdt;
#[cfg(target_os = "none")]
mod heap;
#[cfg(target_os = "none")]
mod idt;
#[cfg(target_os = "none")]
mod net;
#[cfg(target_os = "none")]
mod paging;
#[cfg(target_os = "none")]
mod pci;
#[cfg(target_os = "none")]
mod qemu;
#[cfg(target_os = "none")]
#[macro_use]
mod serial;
#[cfg(target_os = "none")]
mod rtc;
#[cfg(target_os = "none")]
mod serve;
#[cfg(target_os = "none")]
mod start_info;
#[cfg(target_os = "none")]
mod timer;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "cell0-kernel runs on bare metal: build it with `cargo build -p cell0-kernel --target x86_64-unknown-none` and boot it under QEMU"
    );
    std::process::exit(2);
}

/// Where the boot stub lands, in long mode on the boot stack.
///
/// Each stage prints a human line and a boot-proof marker (`#E0`…`#E10`,
/// see `cellfs::proof::boot`). The ledger needs the heap, so the facts of
/// the stages before it (CPU, memory map, image, paging, descriptor
/// tables) are gathered into fixed buffers and recorded, in order, once
/// the heap is up.
#[cfg(target_os = "none")]
#[unsafe(no_mangle)]
extern "C" fn kernel_main(start_info: u32) -> ! {
    use alloc::string::String;
    use alloc::vec::Vec;
    use cellfs::proof::boot::{Ledger, Stage};
    use core::fmt::Write as _;
    use facts::{Facts, sha256, write_hex};

    serial::init();
    println!("cell0 kernel {}: booting", env!("CARGO_PKG_VERSION"));
    let mut early: [Facts; 5] = [const { Facts::new() }; 5];

    let cpu = cpu::Cpu::identify();
    let _ = write!(
        early[0],
        "vendor={} signature={:08x} features={:08x}:{:08x} rdrand={} rdseed={}",
        cpu.vendor(),
        cpu.signature,
        cpu.features.0,
        cpu.features.1,
        if cpu.rdrand { "yes" } else { "no" },
        if cpu.rdseed { "yes" } else { "no" },
    );

    // SAFETY: `start_info` is what the PVH loader put in ebx, and the boot
    // stub identity-maps the low memory where QEMU places it.
    let info = match unsafe { start_info::StartInfo::read(start_info) } {
        Ok(info) => info,
        Err(e) => panic!("bad PVH start info at {start_info:#x}: {e}"),
    };
    let (ram_bytes, regions) = info.ram();
    println!(
        "memory: {} MiB of RAM in {regions} regions",
        ram_bytes >> 20
    );
    let mut ram = [(0u64, 0u64); 32];
    let mut nram = 0;
    for r in info.ram_regions().take(ram.len()) {
        ram[nram] = r;
        nram += 1;
    }
    let _ = write!(
        early[1],
        "ram={}MiB regions={regions} map=",
        ram_bytes >> 20
    );
    let _ = write_hex(&mut early[1], &sha256(info.memmap_bytes()), 8);

    // The loader's structures may sit in page 0, which the kernel's own
    // tables leave unmapped: keep what is needed of them from here on.
    let loader_end = info.loader_end();
    let mut cmdline_buf = [0u8; 1024];
    let cmdline_len = info.cmdline().len().min(cmdline_buf.len());
    cmdline_buf[..cmdline_len].copy_from_slice(&info.cmdline().as_bytes()[..cmdline_len]);
    let cmdline = core::str::from_utf8(&cmdline_buf[..cmdline_len]).unwrap_or("");

    let image = facts::image();
    let _ = write!(early[2], "loader=pvh bytes={} image=", image.len());
    let _ = write_hex(&mut early[2], &sha256(image), 32);

    let paging = paging::init(&ram[..nram]);
    println!(
        "paging: own tables, 4 GiB identity-mapped ({} uncached 2 MiB pages of device memory), null page and stack guard unmapped",
        paging.uncached
    );
    let _ = write!(
        early[3],
        "mapped=4GiB pages2m={} pages4k={} uncached={} unmapped=null,stack-guard",
        paging.pages_2m, paging.pages_4k, paging.uncached
    );

    gdt::init();
    idt::init();
    println!("interrupts: GDT with TSS, IDT with exception handlers on their own stacks");
    let _ = write!(
        early[4],
        "gdt=code,data,tss ist=double-fault,page-fault vectors=0-31,32,39,47"
    );

    let Some((heap_start, heap_size)) = heap::region(ram[..nram].iter().copied(), loader_end)
    else {
        panic!("no RAM above the kernel image for a heap");
    };
    // SAFETY: the region is usable RAM above the image and the loader's
    // structures, identity-mapped by `paging::init`, and used by nothing.
    unsafe { heap::init(heap_start, heap_size) };
    let probe: Vec<u64> = (0..1024).collect();
    let (used, free) = heap::usage();
    println!(
        "heap: {} KiB at {heap_start:#x}, {} KiB in use after a test allocation of {} words",
        (used + free) >> 10,
        used >> 10,
        probe.len()
    );
    drop(probe);

    let mut ledger = Ledger::new();
    let mark = |ledger: &mut Ledger, stage: Stage, facts: &str| match ledger.record(stage, facts) {
        Ok(line) => println!("{line}"),
        Err(e) => panic!("boot proof: {e}"),
    };
    let early_stages = [
        Stage::Cpu,
        Stage::Memory,
        Stage::Handoff,
        Stage::Paging,
        Stage::Interrupts,
    ];
    for (stage, f) in early_stages.into_iter().zip(&early) {
        mark(&mut ledger, stage, f.as_str());
    }
    mark(
        &mut ledger,
        Stage::Heap,
        &alloc::format!("size={}KiB", heap_size >> 10),
    );

    timer::init();
    let source = entropy::init(&cpu);
    println!(
        "timer: PIT at {} Hz, TSC {} MHz, RTC unix time {}, entropy from {}",
        timer::HZ,
        timer::tsc_hz() / 1_000_000,
        cellfs::Clock::unix_nanos(&timer::KernelClock) / 1_000_000_000,
        source.name()
    );
    mark(
        &mut ledger,
        Stage::Timer,
        &alloc::format!(
            "source=pit hz={} clock=tsc wall=cmos-rtc entropy={}",
            timer::HZ,
            source.name()
        ),
    );

    let functions = pci::scan();
    let mut ids = String::new();
    for f in &functions {
        println!(
            "pci: {} vendor {:04x} device {:04x} class {:04x}",
            f.at, f.vendor, f.device, f.class
        );
        let _ = writeln!(
            ids,
            "{} {:04x}:{:04x}:{:04x}",
            f.at, f.vendor, f.device, f.class
        );
    }
    let Some(nic) = functions.iter().find(|f| f.is_virtio_net()) else {
        panic!(
            "pci: {} functions; no virtio-net device (start QEMU with -nic user,model=virtio-net-pci)",
            functions.len()
        );
    };
    println!(
        "pci: {} functions; virtio-net at {}",
        functions.len(),
        nic.at
    );
    let mut f = String::new();
    let _ = write!(f, "functions={} ids=", functions.len());
    let _ = write_hex(&mut f, &sha256(ids.as_bytes()), 8);
    let _ = write!(f, " virtio-net={}", nic.at);
    mark(&mut ledger, Stage::Pci, &f);

    let device = match net::virtio::NetDevice::new(nic.at) {
        Ok(d) => d,
        Err(e) => panic!("virtio-net at {}: {e}", nic.at),
    };
    let mac = device.mac();
    let mac = alloc::format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5]
    );
    println!("virtio: net device up, MAC {mac}");
    mark(
        &mut ledger,
        Stage::Virtio,
        &alloc::format!(
            "mac={mac} transport=pci queues=rx,tx queue-size={}",
            net::virtio::QUEUE_SIZE
        ),
    );

    let mut network = net::iface::Network::new(device, entropy::u64());
    use net::iface::{ADDRESS, GATEWAY, LISTENERS, MAX_SOCKETS, PORT, PREFIX};
    println!(
        "network: {ADDRESS}/{PREFIX} via {GATEWAY}, {LISTENERS} sockets listening on tcp {PORT} (at most {MAX_SOCKETS})"
    );
    mark(
        &mut ledger,
        Stage::Network,
        &alloc::format!(
            "ip={ADDRESS}/{PREFIX} gateway={GATEWAY} tcp={PORT} listen={LISTENERS} max-sockets={MAX_SOCKETS}"
        ),
    );

    let word = |w: &str| cmdline.split_ascii_whitespace().any(|x| x == w);
    if word("cell0.test=fault") {
        println!("test: executing an invalid instruction");
        // SAFETY: ud2 raises #UD on purpose; the handler reports and stops.
        unsafe { core::arch::asm!("ud2") };
    }
    if word("cell0.test=panic") {
        panic!("test panic requested on the command line");
    }
    if word("cell0.test=overflow") {
        println!("test: recursing until the stack runs out");
        recurse(0);
    }

    let mut seed = [0u8; 32];
    entropy::fill(&mut seed);
    // Every attach needs a capability; the owner token printed below is
    // the first one (see kernel(8) and cap(3)).
    let config = cellfs::Config::new("kernel", cellfs::cap::NodeKey::from_seed(&seed));
    mark(
        &mut ledger,
        Stage::Serving,
        &alloc::format!(
            "msize={} dialects=9P2000,9P2000.L node={} log=ram",
            config.max_msize,
            config.node_id
        ),
    );
    let config = cellfs::Config {
        boot_proof: ledger.text().into(),
        ..config
    };
    // The owner's capability: everything, for ten years from the RTC's
    // now. Not part of the boot proof: it is a secret for whoever reads
    // the console (`cell0 boot` does).
    let now = cellfs::Clock::unix_nanos(&timer::KernelClock) / 1_000_000_000;
    let owner = config.key.mint(cellfs::cap::Claims {
        id: 0,
        holder: "owner".into(),
        scope: "/".into(),
        rights: cellfs::cap::Rights::ALL,
        not_before: 0,
        expires: now + 10 * 365 * 86_400,
    });
    match owner {
        Ok(token) => println!("owner-token {}", token.to_text()),
        Err(e) => println!("cap: cannot mint the owner token: {e}"),
    }
    println!("cell0 kernel: boot complete");
    if word("cell0.exit") {
        qemu::exit(qemu::Exit::Success);
    }
    let mut server =
        serve::KernelServer::new(config, cellfs::MemLog::default(), timer::KernelClock);
    println!("9p: serving cellfs on tcp {PORT}");
    serve::run(&mut network, &mut server)
}

/// Recurse forever, for `cell0.test=overflow`: each call keeps a buffer
/// live so the stack grows until it meets the guard page.
#[cfg(target_os = "none")]
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let buf = core::hint::black_box([depth; 64]);
    if core::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + buf[(depth % 64) as usize]
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    serial::seize();
    println!("PANIC: {info}");
    qemu::exit(qemu::Exit::Failure)
}
