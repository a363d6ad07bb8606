//! The on-media format, compiled from the module's own definition so that the
//! tools and the kernel can never disagree about it.
#![no_std]

// The shared file also builds with the kernel's (possibly older) rustc, so
// it avoids `is_multiple_of` (stable only since 1.87).
#[allow(clippy::manual_is_multiple_of)]
#[path = "../../../src/format.rs"]
mod format;
pub use format::*;
