//! Helpers shared by the integration tests (each test file that uses them
//! declares `mod common;`).

use runtime_core::Runtime;
use runtime_core::caps::ambient_authority;

/// A two-worker runtime and a current-thread one: a test that runs on
/// both holds on either flavour.
pub(crate) fn both_runtimes() -> [Runtime; 2] {
    [
        Runtime::builder()
            .worker_threads(2)
            .build(ambient_authority())
            .unwrap(),
        Runtime::builder()
            .current_thread()
            .build(ambient_authority())
            .unwrap(),
    ]
}
