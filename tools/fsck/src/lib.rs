//! The checks of fsck.ferrofs, as a library: the `fsck-ferrofs` binary and
//! the crash-state checker (`ferrocrash`) both run them.

pub mod check;
