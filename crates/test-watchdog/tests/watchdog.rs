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

#[test]
#[ignore = "run by the next test's parent with --ignored semantics: the child must include it"]
fn an_ignored_body_runs_in_its_child() {
    test_watchdog::isolate(Duration::from_secs(30), || {
        assert!(test_watchdog::in_child());
    });
}

#[test]
fn an_ignored_test_is_run_by_its_child_when_the_parent_runs_it() {
    // Run the ignored test above as a parent would with `--ignored`: the
    // parent re-runs itself filtered to that test; the child must run it
    // (not report "0 passed").
    if test_watchdog::in_child() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["an_ignored_body_runs_in_its_child", "--exact", "--ignored"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("1 passed"), "{stdout}");
}
