//! The lab runtime (in progress).

pub(crate) mod hooks;
