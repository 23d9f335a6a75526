//! The watchdog reports each way a child can go wrong, and passes a child
//! that passes.

use std::time::Duration;

#[test]
fn a_passing_body_passes() {
    test_watchdog::isolate(Duration::from_secs(30), || {
        assert!(test_watchdog::in_child());
    });
}

#[test]
fn a_panicking_body_is_reported() {
    let r = test_watchdog::try_isolate(Duration::from_secs(30), || panic!("on purpose"));
    if !test_watchdog::in_child() {
        let why = r.unwrap_err();
        assert!(why.contains("on purpose"), "{why}");
    }
}

#[test]
fn a_hanging_body_is_killed_and_reported() {
    let r = test_watchdog::try_isolate(Duration::from_millis(500), || {
        std::thread::sleep(Duration::from_secs(3600));
    });
    if !test_watchdog::in_child() {
        let why = r.unwrap_err();
        assert!(why.contains("hung"), "{why}");
    }
}

#[test]
fn an_aborting_body_is_reported() {
    let r = test_watchdog::try_isolate(Duration::from_secs(30), || std::process::abort());
    if !test_watchdog::in_child() {
        let why = r.unwrap_err();
        assert!(why.contains("signal 6"), "{why}");
    }
}
