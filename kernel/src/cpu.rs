//! What the CPU is, from CPUID: facts for the boot proof and the feature
//! bits the kernel chooses by.

use core::arch::x86_64::__cpuid_count;

/// The CPU's identity and the features the kernel cares about.
pub struct Cpu {
    /// The vendor string (`GenuineIntel`, `AuthenticAMD`, …), 12 bytes.
    pub vendor: [u8; 12],
    /// CPUID leaf 1 EAX: family, model, stepping.
    pub signature: u32,
    /// CPUID leaf 1 ECX and EDX: the basic feature bits.
    pub features: (u32, u32),
    /// The RDRAND instruction exists.
    pub rdrand: bool,
    /// The RDSEED instruction exists.
    pub rdseed: bool,
}

impl Cpu {
    /// Read CPUID.
    pub fn identify() -> Cpu {
        // CPUID is always available in long mode and has no side effects.
        let l0 = __cpuid_count(0, 0);
        let mut vendor = [0; 12];
        vendor[..4].copy_from_slice(&l0.ebx.to_le_bytes());
        vendor[4..8].copy_from_slice(&l0.edx.to_le_bytes());
        vendor[8..].copy_from_slice(&l0.ecx.to_le_bytes());
        let l1 = __cpuid_count(1, 0);
        let rdseed = l0.eax >= 7 && __cpuid_count(7, 0).ebx & (1 << 18) != 0;
        Cpu {
            vendor,
            signature: l1.eax,
            features: (l1.ecx, l1.edx),
            rdrand: l1.ecx & (1 << 30) != 0,
            rdseed,
        }
    }

    /// The vendor as text.
    pub fn vendor(&self) -> &str {
        core::str::from_utf8(&self.vendor).unwrap_or("unknown")
    }
}
