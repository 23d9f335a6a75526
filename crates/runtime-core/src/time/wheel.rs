//! TEMPORARY placeholder (replaced by the hierarchical wheel).
use std::collections::BTreeMap;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerKey { id: u64 }
pub(crate) struct Wheel<T> { now: u64, next: u64, map: BTreeMap<(u64, u64), T>, idx: std::collections::HashMap<u64, u64> }
impl<T> Wheel<T> {
    pub(crate) fn new() -> Self { Wheel { now: 0, next: 0, map: BTreeMap::new(), idx: Default::default() } }
    pub(crate) fn insert(&mut self, deadline: u64, value: T) -> TimerKey { self.next += 1; self.map.insert((deadline, self.next), value); self.idx.insert(self.next, deadline); TimerKey { id: self.next } }
    pub(crate) fn cancel(&mut self, key: TimerKey) -> Option<T> { let d = self.idx.remove(&key.id)?; self.map.remove(&(d, key.id)) }
    pub(crate) fn next_expiry(&self) -> Option<u64> { self.map.keys().next().map(|k| k.0.max(self.now)) }
    pub(crate) fn advance(&mut self, now: u64, fired: &mut Vec<T>) { self.now = self.now.max(now); while let Some(e) = self.map.first_entry() { if e.key().0 > self.now { break } let k = *e.key(); self.idx.remove(&k.1); fired.push(e.remove()); } }
}
