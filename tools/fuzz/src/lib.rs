//! ferrofuzz: a structure-aware fuzzer of ferrofs images (issue 9, section 5).
//!
//! The mutator ([`mutate`]) changes one field of a healthy base image
//! ([`model`] knows where every structure lives) to a hostile value and
//! recomputes the checksums with the format's own functions. The runner
//! ([`run`]) writes each mutated image to a pmem device inside the guest,
//! mounts it in a child process with a time limit, exercises it
//! ([`exercise`]) and reads the kernel log for warnings, oopses and lockdep
//! reports.

pub mod base;
pub mod exercise;
pub mod kmsg;
pub mod layout;
pub mod model;
pub mod mutate;
pub mod rng;
pub mod run;
pub mod synth;
pub mod sys;
