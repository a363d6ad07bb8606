//! Cache-line write-back from user space: the floor under every fsync of a
//! DAX mapping. `clwb` if CPUID has it, else `clflushopt`, else `clflush`;
//! one `sfence` at the end, as a filesystem's writeback walk does.

use crate::sys::{cpuid, LINE};
use std::arch::asm;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insn {
    Clwb,
    Clflushopt,
    Clflush,
}

impl Insn {
    pub fn name(self) -> &'static str {
        match self {
            Insn::Clwb => "clwb",
            Insn::Clflushopt => "clflushopt",
            Insn::Clflush => "clflush",
        }
    }

    /// The best instruction this CPU has (CPUID.7.0:EBX bits 24 and 23).
    pub fn detect() -> Insn {
        if cpuid(0, 0).eax >= 7 {
            let ebx = cpuid(7, 0).ebx;
            if ebx & (1 << 24) != 0 {
                return Insn::Clwb;
            }
            if ebx & (1 << 23) != 0 {
                return Insn::Clflushopt;
            }
        }
        Insn::Clflush
    }
}

/// Writes back every cache line of `addr..addr + len` (no fence).
///
/// # Safety
/// The range must be mapped (these instructions fault on an unmapped
/// address like a load would; they do not modify memory).
pub unsafe fn flush_range(insn: Insn, addr: usize, len: usize) {
    let mut a = addr & !(LINE - 1);
    let end = addr + len;
    while a < end {
        // SAFETY: the caller guarantees `a` is mapped; write-back only.
        unsafe {
            match insn {
                Insn::Clwb => asm!("clwb [{0}]", in(reg) a, options(nostack, preserves_flags)),
                Insn::Clflushopt => {
                    asm!("clflushopt [{0}]", in(reg) a, options(nostack, preserves_flags))
                }
                Insn::Clflush => {
                    asm!("clflush [{0}]", in(reg) a, options(nostack, preserves_flags))
                }
            }
        }
        a += LINE;
    }
}

/// Orders the write-backs before anything that follows.
pub fn sfence() {
    // SAFETY: no operands, no effect beyond store ordering.
    unsafe { asm!("sfence", options(nostack, preserves_flags)) };
}
