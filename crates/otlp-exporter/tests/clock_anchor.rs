//! A thread held up (preempted, or running a signal handler) while it
//! anchors its clock to the wall clock (`clock::unix_nanos_of`) does not
//! keep the hold-up in its offset. Found by review (2026-12-02): the anchor
//! was one `mono_nanos` read then one `SystemTime::now`, and a hold-up
//! between them went into the offset, so that for `ANCHOR_TTL` (500 ms)
//! every span and event the thread stamped was ahead of the wall clock by
//! the hold-up (3-18 ms here), and a span it started and another thread
//! ended came out with no duration. Now the wall-clock read is bracketed
//! by two monotonic reads, taken again when they are far apart. The signal
//! handler below stands in for the scheduler: it holds the thread for 3 ms
//! wherever it lands, as a preemption on a loaded machine does.
#![cfg(target_os = "linux")]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value as PV;
use otlp_exporter::clock::system_unix_nanos;
use otlp_exporter::{InMemory, Pipeline, now_unix_nanos};

extern "C" fn hold_up(_: libc::c_int) {
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 3_000_000,
    };
    // SAFETY: nanosleep is async-signal-safe.
    unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
}

fn set_alarm_blocked(block: bool) {
    // SAFETY: a signal set built by sigemptyset/sigaddset, for this thread.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGALRM);
        let how = if block {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

fn alarm_every(usec: i64) {
    // SAFETY: a periodic ITIMER_REAL (0 disarms it).
    unsafe {
        let it = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 0,
                tv_usec: usec,
            },
            it_value: libc::timeval {
                tv_sec: 0,
                tv_usec: usec,
            },
        };
        libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut());
    }
}

#[test]
fn a_thread_held_up_while_it_anchors_its_clock_stamps_its_spans_on_time() {
    test_watchdog::isolate(Duration::from_secs(120), || {
        let memory = InMemory::new();
        let pipeline = Pipeline::builder()
            .transport(memory.clone())
            .max_queue_size(1 << 16)
            .build()
            .unwrap();
        let tracer = pipeline.tracer("clock", "1");
        // Let the counter calibrate first (its calibration guards its pairs).
        let _ = now_unix_nanos();
        std::thread::sleep(Duration::from_millis(200));
        let _ = now_unix_nanos();
        set_alarm_blocked(true); // this thread and those it spawns
        // SAFETY: a handler that only sleeps.
        unsafe {
            let mut sa = std::mem::zeroed::<libc::sigaction>();
            sa.sa_sigaction = hold_up as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
        }
        alarm_every(97);
        static FOUND: AtomicBool = AtomicBool::new(false);
        let mut threads = 0;
        while threads < 40 && !FOUND.load(Ordering::Relaxed) {
            threads += 1;
            let tracer = tracer.clone();
            std::thread::spawn(move || {
                // The thread's first stamp anchors its clock: the hold-up
                // may land there (and only there: blocked from here on).
                set_alarm_blocked(false);
                let _ = now_unix_nanos();
                set_alarm_blocked(true);
                let mut span = tracer.start("work");
                let wall = system_unix_nanos(); // read after the span started
                span.set_attribute("wall_after_start", wall as i64);
                span.end();
                if now_unix_nanos() > system_unix_nanos() + 1_000_000 {
                    FOUND.store(true, Ordering::Relaxed);
                }
            })
            .join()
            .unwrap();
        }
        alarm_every(0);
        pipeline.shutdown(Duration::from_secs(10));
        let spans = common::received(&memory);
        let worst = spans
            .iter()
            .filter(|s| s.name == "work")
            .map(|s| {
                let Some(PV::IntValue(wall)) =
                    s.attributes[0].value.as_ref().and_then(|v| v.value.clone())
                else {
                    panic!("{s:?}")
                };
                s.start_time_unix_nano as i64 - wall
            })
            .max()
            .unwrap();
        assert_eq!(spans.len(), threads, "one span a thread");
        assert!(
            worst < 1_000_000,
            "{threads} threads: a span's start is stamped {worst} ns after a wall-clock read taken after it started"
        );
    });
}
