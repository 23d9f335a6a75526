//! A scheduler that runs nothing, behind `Cx::detached_for_tests`.

use super::{Schedule, Scheduler, Stats};
use crate::blocking::BlockingPool;
use crate::task::TaskRef;
use crate::time::driver::{TimerAction, TimerDriver, TimerHandle};
use crate::time::{Clock, Instant, SystemClock};

pub(crate) struct Detached {
    clock: SystemClock,
    timers: TimerDriver,
    stats: Stats,
}

impl Detached {
    pub(crate) fn new() -> Self {
        Detached {
            clock: SystemClock::new(runtime_cap::ambient_authority()),
            timers: TimerDriver::new(),
            stats: Stats::default(),
        }
    }
}

impl Scheduler for Detached {
    fn schedule(&self, _task: TaskRef, _how: Schedule) {
        panic!("a detached test Cx has no runtime to run tasks on");
    }
    fn now(&self) -> Instant {
        self.clock.now()
    }
    fn insert_timer(&self, at: Instant, action: TimerAction) -> TimerHandle {
        self.timers.insert(at, action).0
    }
    fn cancel_timer(&self, handle: TimerHandle) {
        self.timers.cancel(handle, &self.stats);
    }
    fn next_id(&self) -> u64 {
        0
    }
    fn stats(&self) -> &Stats {
        &self.stats
    }
    fn blocking(&self) -> Option<&BlockingPool> {
        None
    }
}
