//! What the PVH loader tells the kernel: `struct hvm_start_info` from
//! Xen's public headers (arch-x86/hvm/start_info.h), read from physical
//! memory, which the boot stub identity-maps.

/// `hvm_start_info.magic`.
const MAGIC: u32 = 0x336e_c578;
/// Memory map entry type of usable RAM.
const RAM: u32 = 1;
/// Longest command line read.
const MAX_CMDLINE: usize = 4096;

#[repr(C)]
struct Raw {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

#[repr(C)]
struct MemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

/// The loader's hand-off, checked.
pub struct StartInfo {
    raw: &'static Raw,
}

/// Why the hand-off cannot be used.
#[derive(Debug)]
pub enum StartInfoError {
    /// The magic number is wrong: not started by a PVH loader.
    BadMagic(u32),
    /// Version 0 has no memory map, which the kernel needs.
    NoMemoryMap,
}

impl core::fmt::Display for StartInfoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartInfoError::BadMagic(m) => write!(
                f,
                "magic {m:#x} is not {MAGIC:#x}: the kernel was not started by a PVH loader (boot it with qemu -kernel)"
            ),
            StartInfoError::NoMemoryMap => {
                f.write_str("start info version 0 has no memory map; use QEMU 4.0 or later")
            }
        }
    }
}

impl StartInfo {
    /// Read the hand-off at physical address `paddr`.
    ///
    /// # Safety
    /// `paddr` must be the address the PVH loader passed in `ebx`, and
    /// the loader's structures must stay mapped and unchanged.
    pub unsafe fn read(paddr: u32) -> Result<StartInfo, StartInfoError> {
        // SAFETY: the caller promises a loader-made structure there.
        let raw = unsafe { &*(paddr as usize as *const Raw) };
        if raw.magic != MAGIC {
            return Err(StartInfoError::BadMagic(raw.magic));
        }
        if raw.version < 1 || raw.memmap_paddr == 0 {
            return Err(StartInfoError::NoMemoryMap);
        }
        Ok(StartInfo { raw })
    }

    /// The kernel command line (QEMU's `-append`), empty if none.
    pub fn cmdline(&self) -> &'static str {
        let p = self.raw.cmdline_paddr as usize as *const u8;
        if p.is_null() {
            return "";
        }
        let mut len = 0;
        // SAFETY: the loader wrote a NUL-terminated string there; reading
        // stops at the NUL or at MAX_CMDLINE.
        while len < MAX_CMDLINE && unsafe { *p.add(len) } != 0 {
            len += 1;
        }
        // SAFETY: `len` bytes from `p` were just read above.
        let bytes = unsafe { core::slice::from_raw_parts(p, len) };
        core::str::from_utf8(bytes).unwrap_or("")
    }

    fn memmap(&self) -> &'static [MemmapEntry] {
        // SAFETY: version >= 1 was checked, so the loader filled in a
        // table of `memmap_entries` entries at `memmap_paddr`.
        unsafe {
            core::slice::from_raw_parts(
                self.raw.memmap_paddr as usize as *const MemmapEntry,
                self.raw.memmap_entries as usize,
            )
        }
    }

    /// The memory map's raw bytes, as the loader wrote them (the boot
    /// proof hashes them: the same machine gives the same map).
    pub fn memmap_bytes(&self) -> &'static [u8] {
        let map = self.memmap();
        // SAFETY: the entries are plain integers, so viewing them as bytes
        // is sound; the slice covers exactly the table.
        unsafe { core::slice::from_raw_parts(map.as_ptr().cast(), core::mem::size_of_val(map)) }
    }

    /// Usable RAM regions: (physical start, bytes).
    pub fn ram_regions(&self) -> impl Iterator<Item = (u64, u64)> {
        self.memmap()
            .iter()
            .filter(|e| e.kind == RAM)
            .map(|e| (e.addr, e.size))
    }

    /// The highest physical address the loader's own structures (this
    /// hand-off, the command line, the memory map) reach: memory below it
    /// must not be handed to the heap while they are still read.
    pub fn loader_end(&self) -> u64 {
        let raw = self.raw as *const Raw as u64 + core::mem::size_of::<Raw>() as u64;
        let cmd = self.raw.cmdline_paddr + self.cmdline().len() as u64 + 1;
        let map = self.raw.memmap_paddr + core::mem::size_of_val(self.memmap()) as u64;
        raw.max(cmd).max(map)
    }

    /// Usable RAM: (bytes, regions).
    pub fn ram(&self) -> (u64, usize) {
        self.memmap()
            .iter()
            .filter(|e| e.kind == RAM)
            .fold((0, 0), |(bytes, n), e| (bytes + e.size, n + 1))
    }
}
