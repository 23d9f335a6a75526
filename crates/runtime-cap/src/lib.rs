//! # runtime-cap (not built yet)
//!
//! This crate will hold the capability vocabulary of the runtime: sealed,
//! zero-sized capability sets (spawn, time, blocking work, randomness,
//! network and file I/O, telemetry export) with a subset relation, where
//! narrowing is a method and widening does not compile, plus the single,
//! greppable ambient-authority token for code outside the runtime.
//!
//! It holds no API yet: the issue that builds it is open. See
//! `docs/ARCHITECTURE.md` at the workspace root for where it fits.
