//! The persistence-order checker (`ferrocrash`).
//!
//! The module, mounted with `-o trace=MiB`, records every store, cache-line
//! write-back and fence it issues to pmem ([`trace`]). Replayed onto the
//! image from before the workload under the x86 persistency model
//! ([`replay`]), the trace gives, at every fence and every workload marker,
//! the set of images a power cut could leave. Each is recovered as mount
//! would (journal rollback), checked by fsck, and its tree under `w` ([`tree`])
//! compared with the workload's model (`ferrofs-crashwl`): after an operation
//! returned, exactly its result; inside one, the state before or after it
//! (file data, which is not journaled, may mix old and new bytes).

pub mod check;
pub mod replay;
pub mod trace;
pub mod tree;
