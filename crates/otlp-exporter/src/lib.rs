//! # otlp-exporter (not built yet)
//!
//! This crate will be the span export pipeline: a span model that carries
//! everything OTLP can, a `record` path that takes no lock and never blocks
//! (built on [`otlp-queue`](https://docs.rs/otlp-queue)), a batching worker,
//! per-pipeline load shedding, exact accounting of every span that is not
//! delivered, OTLP protobuf and JSON encoding, and transports (in-memory,
//! file, OTLP/HTTP).
//!
//! It holds no API yet: the issue that builds it is open. See
//! `docs/ARCHITECTURE.md` at the workspace root for where it fits.
