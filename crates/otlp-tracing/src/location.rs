//! A callsite's location attributes (`code.file.path`, `code.line.number`,
//! `code.namespace`, and `target` where it is not the module path), made
//! and encoded once per callsite as [`SharedAttributes`], for every span of
//! that callsite to refer to.
//!
//! A span finds its callsite's set by the address of its `&'static`
//! [`Metadata`]: first in a small direct-mapped cache of this thread's
//! (a hit: a load and a compare), then in this thread's map of every
//! callsite it has seen, then in the process's map, under a lock, once per
//! callsite and thread. The process's map makes each set once and keeps it
//! for the rest of the program (callsites are `static`, so there are as
//! many sets as callsites that made a span); the threads' maps keep the lock
//! off every later span. No shared memory is written per span. A thread
//! holds at most about 10 KiB for this, however many callsites it uses:
//! its map is emptied past [`SEEN_MAX`] callsites.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, OnceLock, PoisonError};

use otlp_exporter::{KeyValue, SharedAttributes, Value};
use tracing::Metadata;

/// The location attributes of `meta`, in the order the layer has always
/// pushed them.
pub(crate) fn attributes_of(meta: &'static Metadata<'static>, push: &mut dyn FnMut(KeyValue)) {
    if let Some(file) = meta.file() {
        push(KeyValue::new("code.file.path", file));
    }
    if let Some(line) = meta.line() {
        push(KeyValue::new("code.line.number", Value::I64(line.into())));
    }
    if let Some(module) = meta.module_path() {
        push(KeyValue::new("code.namespace", module));
    }
    if meta.module_path() != Some(meta.target()) {
        push(KeyValue::new("target", meta.target()));
    }
}

/// The location of a `log` record bridged into `tracing` by tracing-log
/// (`LogTracer`, `format_trace`): tracing-log emits it through a callsite
/// of its own, whose metadata has the target `log` and no file, line or
/// module, and passes the record's in the fields `log.target`,
/// `log.module_path`, `log.file` and `log.line`. The layer uses these
/// instead, as tracing-opentelemetry does with its `tracing-log` feature
/// (the crate is not a dependency: such an event is known by its metadata's
/// target and its `log.target` field).
#[derive(Default)]
pub(crate) struct LogLocation {
    pub(crate) target: Option<String>,
    pub(crate) module_path: Option<String>,
    pub(crate) file: Option<String>,
    pub(crate) line: Option<u64>,
}

impl LogLocation {
    /// Whether `meta` is that of an event tracing-log made from a `log`
    /// record.
    pub(crate) fn is_log_event(meta: &Metadata<'_>) -> bool {
        meta.target() == "log" && meta.fields().field("log.target").is_some()
    }

    /// The record's location attributes, as [`attributes_of`] gives a
    /// callsite's (same keys, same order; the target `log` without a
    /// `log.target`), strings cut to `limit` characters.
    pub(crate) fn attributes(self, limit: Option<usize>, push: &mut dyn FnMut(KeyValue)) {
        let cut = |s: String| match limit {
            Some(limit) if s.chars().count() > limit => crate::visit::prefix(&s, limit).to_owned(),
            _ => s,
        };
        if let Some(file) = self.file {
            push(KeyValue::new("code.file.path", cut(file)));
        }
        if let Some(line) = self.line {
            push(KeyValue::new(
                "code.line.number",
                crate::visit::u64_value(line),
            ));
        }
        let target = self.target.unwrap_or_else(|| "log".to_owned());
        let own_target = self.module_path.as_deref() != Some(target.as_str());
        if let Some(module) = self.module_path {
            push(KeyValue::new("code.namespace", cut(module)));
        }
        if own_target {
            push(KeyValue::new("target", cut(target)));
        }
    }
}

/// `meta`'s location attributes, encoded once. `None` only while this
/// thread is being torn down (its caches are gone): the caller then pushes
/// the attributes one by one.
pub(crate) fn shared(meta: &'static Metadata<'static>) -> Option<&'static SharedAttributes> {
    let key = std::ptr::from_ref(meta) as usize;
    let slot = slot_of(key);
    if let Ok(Some(hit)) = RECENT.try_with(|r| {
        let (k, set) = r[slot].get();
        (k == key).then_some(set).flatten()
    }) {
        return Some(hit);
    }
    let set = SEEN
        .try_with(|seen| {
            let mut seen = seen.try_borrow_mut().ok()?;
            if seen.len() >= SEEN_MAX && !seen.contains_key(&key) {
                // A thread that has made spans of very many callsites
                // starts its map again: its memory stays bounded, and the
                // next misses find their sets in the process's map.
                *seen = HashMap::default();
            }
            Some(*seen.entry(key).or_insert_with(|| made_once(key, meta)))
        })
        .ok()
        .flatten()?;
    let _ = RECENT.try_with(|r| r[slot].set((key, Some(set))));
    Some(set)
}

/// Entries in a thread's direct-mapped cache (1 KiB).
const RECENT_SLOTS: usize = 64;

/// Callsites a thread's map holds at most (about 9 KiB): past them it is
/// emptied and refilled.
const SEEN_MAX: usize = 256;

thread_local! {
    /// The sets this thread used last, by callsite address (compared, never
    /// dereferenced), one per slot.
    static RECENT: [Cell<(usize, Option<&'static SharedAttributes>)>; RECENT_SLOTS] =
        const { [const { Cell::new((0, None)) }; RECENT_SLOTS] };

    /// Every set this thread has used, by callsite address.
    static SEEN: RefCell<HashMap<usize, &'static SharedAttributes, ByAddress>> =
        RefCell::new(HashMap::default());
}

/// The process's sets, by callsite address: each made once.
fn made_once(key: usize, meta: &'static Metadata<'static>) -> &'static SharedAttributes {
    static MADE: OnceLock<Mutex<HashMap<usize, &'static SharedAttributes, ByAddress>>> =
        OnceLock::new();
    let mut made = MADE
        .get_or_init(Default::default)
        .lock()
        // The map is whole after any panic: an insert of a made set.
        .unwrap_or_else(PoisonError::into_inner);
    made.entry(key).or_insert_with(|| {
        let mut attributes = Vec::with_capacity(4);
        attributes_of(meta, &mut |kv| attributes.push(kv));
        SharedAttributes::leak(attributes)
    })
}

/// The cache slot of a callsite address: its bits above the alignment of
/// a `Metadata`, mixed.
#[inline]
fn slot_of(key: usize) -> usize {
    // In 64 bits whatever the pointer width: the top six bits of the
    // product pick one of the 64 slots.
    (((key as u64) >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % RECENT_SLOTS
}

/// Hashes a callsite address (a `usize`, unique per callsite) by mixing
/// it, not with SipHash: the maps are keyed by addresses, not by input an
/// attacker chooses.
type ByAddress = BuildHasherDefault<ByAddressHasher>;

#[derive(Default)]
struct ByAddressHasher(u64);

impl Hasher for ByAddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64 >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` with a subscriber that enables every span (without one,
    /// a span keeps no metadata).
    fn with_spans(f: impl FnOnce()) {
        tracing::subscriber::with_default(tracing_subscriber::registry(), f);
    }

    #[test]
    fn a_callsite_has_one_set_on_every_thread() {
        with_spans(a_callsite_has_one_set_on_every_thread_inner);
    }

    fn a_callsite_has_one_set_on_every_thread_inner() {
        let span = tracing::info_span!(target: "elsewhere", "located");
        let meta = span.metadata().expect("a span has metadata");
        let here = shared(meta).expect("caches are up");
        assert!(std::ptr::eq(here, shared(meta).unwrap()));
        let there = std::thread::scope(|s| {
            s.spawn(|| std::ptr::from_ref(shared(meta).unwrap()) as usize)
                .join()
                .unwrap()
        });
        assert_eq!(there, std::ptr::from_ref(here) as usize);
        let mut expected = Vec::new();
        attributes_of(meta, &mut |kv| expected.push(kv));
        assert_eq!(here.attributes(), &expected[..]);
        let keys: Vec<&str> = here.attributes().iter().map(|kv| &*kv.key).collect();
        assert_eq!(
            keys,
            [
                "code.file.path",
                "code.line.number",
                "code.namespace",
                "target"
            ]
        );
    }

    /// Past [`SEEN_MAX`] callsites, a miss empties the thread's map and
    /// still finds its callsite's own set.
    #[test]
    fn a_threads_map_stays_bounded_past_its_limit() {
        let meta = {
            let _g = tracing::subscriber::set_default(tracing_subscriber::registry());
            tracing::info_span!("bounded").metadata().expect("metadata")
        };
        let want = made_once(std::ptr::from_ref(meta) as usize, meta);
        SEEN.with(|seen| {
            let mut seen = seen.borrow_mut();
            // Fill the map with other (never dereferenced) keys.
            for k in 0..SEEN_MAX {
                seen.insert(usize::MAX - 8 * k, want);
            }
        });
        // A miss past the limit empties the map and finds its own set.
        RECENT.with(|r| r[slot_of(std::ptr::from_ref(meta) as usize)].set((0, None)));
        assert!(std::ptr::eq(shared(meta).unwrap(), want));
        assert_eq!(SEEN.with(|seen| seen.borrow().len()), 1);
    }

    #[test]
    fn callsites_sharing_a_cache_slot_each_get_their_own_set() {
        with_spans(callsites_sharing_a_cache_slot_inner);
    }

    fn callsites_sharing_a_cache_slot_inner() {
        // More callsites than slots: some share one, and each still finds
        // its own set (a wrong hit would return another callsite's).
        macro_rules! spans {
            ($($n:literal)*) => {
                [$(tracing::info_span!(target: "t", $n)),*]
            };
        }
        let spans = spans!("a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p"
            "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p"
            "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p"
            "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p"
            "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p");
        let metas: Vec<&'static Metadata<'static>> =
            spans.iter().map(|s| s.metadata().unwrap()).collect();
        let address = |set: &'static SharedAttributes| std::ptr::from_ref(set) as usize;
        let first: Vec<usize> = metas.iter().map(|m| address(shared(m).unwrap())).collect();
        let mut distinct = first.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), metas.len(), "one set per callsite");
        let slots: std::collections::HashSet<usize> = metas
            .iter()
            .map(|m| slot_of(std::ptr::from_ref(*m) as usize))
            .collect();
        assert!(slots.len() < metas.len(), "some callsites share a slot");
        for _ in 0..3 {
            for (m, &was) in metas.iter().zip(&first) {
                assert_eq!(address(shared(m).unwrap()), was);
            }
        }
    }
}
