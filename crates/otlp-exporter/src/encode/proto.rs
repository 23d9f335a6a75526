//! A direct OTLP protobuf encoder: writes `ExportTraceServiceRequest` bytes
//! straight from [`SpanData`], without building the generated message types
//! (no allocation per field). `tests/encode.rs` proves it byte-identical to
//! `prost`'s encoding of the `opentelemetry-proto` message, field by field
//! and byte for byte.
//!
//! One pass: every nested message is written after a one-byte length
//! placeholder, and the body is shifted along in the rare case its length
//! needs more than one byte of varint. The output is canonical (minimal
//! varints, default-valued fields left out), as `prost` writes it.

use std::mem::MaybeUninit;
use std::ops::Range;

use crate::model::{
    Event, InstrumentationScope, KeyValue, Link, Resource, SpanData, SpanId, Status, StatusCode,
    Value,
};

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// OTLP span flags: bit 8 says the is-remote bit (9) is known.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// A write that found its [`Fixed`] buffer full (a `Vec` never is).
#[derive(Debug)]
pub(crate) struct Full;

type Put = Result<(), Full>;

/// Where the encoder writes: a growable `Vec<u8>`, which is never full, or
/// a [`Fixed`] buffer, which fails a write that would pass its end (the
/// caller then encodes into a `Vec` instead). One encoder serves both, so
/// the bytes are the same whichever is used; for `Vec` every `Result` is
/// `Ok` and the checks compile away.
pub(crate) trait Sink {
    /// Bytes written so far.
    fn len(&self) -> usize;
    fn put(&mut self, b: u8) -> Put;
    fn put_slice(&mut self, s: &[u8]) -> Put;
    /// Overwrites the written byte at `at`.
    fn set(&mut self, at: usize, b: u8);
    /// Moves the bytes from `at` on along by `n`, growing by `n` bytes (the
    /// `n` bytes at `at` are then the caller's to overwrite).
    fn open_gap(&mut self, at: usize, n: usize) -> Put;
    /// Appends `n` bytes that `write` writes through a raw pointer: one
    /// room check for a run of bytes whose length is known up front.
    ///
    /// # Safety
    ///
    /// `write` writes exactly `n` bytes from the pointer it is given (which
    /// is valid for `n` byte writes) and returns the pointer past them.
    unsafe fn put_exact(&mut self, n: usize, write: impl FnOnce(*mut u8) -> *mut u8) -> Put;

    /// Room for `n` more bytes: a pointer valid for `n` byte writes, where
    /// the next [`commit`](Self::commit) of `n` takes them in. What
    /// [`put_exact`](Self::put_exact) does, in two halves, for a writer that
    /// is better inlined without a closure.
    fn room(&mut self, n: usize) -> Result<*mut u8, Full>;

    /// Takes in the `n` bytes written at the last [`room`](Self::room).
    ///
    /// # Safety
    ///
    /// `room(n)` was the last call on this sink, and all `n` bytes at its
    /// pointer were written since.
    unsafe fn commit(&mut self, n: usize);
}

impl Sink for Vec<u8> {
    #[inline(always)]
    fn len(&self) -> usize {
        Vec::len(self)
    }

    #[inline(always)]
    fn put(&mut self, b: u8) -> Put {
        self.push(b);
        Ok(())
    }

    #[inline(always)]
    fn put_slice(&mut self, s: &[u8]) -> Put {
        self.extend_from_slice(s);
        Ok(())
    }

    #[inline(always)]
    fn set(&mut self, at: usize, b: u8) {
        self[at] = b;
    }

    fn open_gap(&mut self, at: usize, n: usize) -> Put {
        let end = Vec::len(self);
        self.resize(end + n, 0);
        self.copy_within(at..end, at + n);
        Ok(())
    }

    #[inline(always)]
    unsafe fn put_exact(&mut self, n: usize, write: impl FnOnce(*mut u8) -> *mut u8) -> Put {
        self.reserve(n);
        let len = Vec::len(self);
        // SAFETY: `reserve` made room for `n` more bytes after `len`; the
        // caller's `write` writes exactly those, so they are initialized
        // when the length takes them in.
        unsafe {
            let start = self.as_mut_ptr().add(len);
            let end = write(start);
            debug_assert_eq!(end.offset_from(start), n as isize);
            self.set_len(len + n);
        }
        Ok(())
    }

    #[inline(always)]
    fn room(&mut self, n: usize) -> Result<*mut u8, Full> {
        self.reserve(n);
        // SAFETY: `reserve` made room for `n` bytes after the length.
        Ok(unsafe { self.as_mut_ptr().add(Vec::len(self)) })
    }

    #[inline(always)]
    unsafe fn commit(&mut self, n: usize) {
        // SAFETY: the caller wrote the `n` bytes `room` reserved.
        unsafe { self.set_len(Vec::len(self) + n) };
    }
}

/// A fixed buffer, written from `len` on; never initialized past what was
/// written (the record path encodes into a queue slot's inline buffer,
/// which nobody needs zeroed).
pub(crate) struct Fixed<'a> {
    buf: &'a mut [MaybeUninit<u8>],
    len: usize,
}

impl Sink for Fixed<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn put(&mut self, b: u8) -> Put {
        let slot = self.buf.get_mut(self.len).ok_or(Full)?;
        slot.write(b);
        self.len += 1;
        Ok(())
    }

    #[inline(always)]
    fn put_slice(&mut self, s: &[u8]) -> Put {
        // SAFETY: `raw::slice` writes exactly `s.len()` bytes.
        unsafe { self.put_exact(s.len(), |p| raw::slice(p, s)) }
    }

    #[inline(always)]
    fn set(&mut self, at: usize, b: u8) {
        debug_assert!(at < self.len, "only written bytes are overwritten");
        self.buf[at].write(b);
    }

    fn open_gap(&mut self, at: usize, n: usize) -> Put {
        let end = self.len + n;
        if end > self.buf.len() {
            return Err(Full);
        }
        self.buf.copy_within(at..self.len, at + n);
        self.len = end;
        Ok(())
    }

    #[inline(always)]
    unsafe fn put_exact(&mut self, n: usize, write: impl FnOnce(*mut u8) -> *mut u8) -> Put {
        let room = self.buf.get_mut(self.len..self.len + n).ok_or(Full)?;
        // SAFETY: `room` is `n` bytes of `buf`, valid for writes
        // (`MaybeUninit<u8>` has the layout of `u8`); the caller's `write`
        // writes exactly those.
        unsafe {
            let start = room.as_mut_ptr().cast::<u8>();
            let end = write(start);
            debug_assert_eq!(end.offset_from(start), n as isize);
        }
        self.len += n;
        Ok(())
    }

    #[inline(always)]
    fn room(&mut self, n: usize) -> Result<*mut u8, Full> {
        let room = self.buf.get_mut(self.len..self.len + n).ok_or(Full)?;
        Ok(room.as_mut_ptr().cast::<u8>())
    }

    #[inline(always)]
    unsafe fn commit(&mut self, n: usize) {
        debug_assert!(self.len + n <= self.buf.len());
        self.len += n;
    }
}

/// Raw writes for [`Sink::put_exact`]: each writes at `p` and returns the
/// pointer past what it wrote.
mod raw {
    /// # Safety
    ///
    /// `p` is valid for a one-byte write.
    #[inline(always)]
    pub(super) unsafe fn byte(p: *mut u8, b: u8) -> *mut u8 {
        // SAFETY: the caller's contract.
        unsafe {
            p.write(b);
            p.add(1)
        }
    }

    /// # Safety
    ///
    /// `p` is valid for `super::varint_len(v)` byte writes.
    #[inline(always)]
    pub(super) unsafe fn varint(mut p: *mut u8, mut v: u64) -> *mut u8 {
        // SAFETY: the caller's contract: one byte per 7 bits of `v`.
        unsafe {
            while v >= 0x80 {
                p = byte(p, (v as u8) | 0x80);
                v >>= 7;
            }
            byte(p, v as u8)
        }
    }

    /// # Safety
    ///
    /// `p` is valid for `s.len()` byte writes and does not overlap `s`.
    #[inline(always)]
    pub(super) unsafe fn slice(p: *mut u8, s: &[u8]) -> *mut u8 {
        let n = s.len();
        let src = s.as_ptr();
        // SAFETY: the caller's contract. Keys and short values are a few
        // bytes: a call to `memcpy` for each (what a copy of a length not
        // known at compile time becomes) costs more than the copy, so up to
        // 16 bytes are moved in at most two overlapping fixed-size moves.
        unsafe {
            match n {
                0 => {}
                1..=3 => {
                    p.write(*src);
                    p.add(n / 2).write(*src.add(n / 2));
                    p.add(n - 1).write(*src.add(n - 1));
                }
                4..=7 => {
                    p.cast::<[u8; 4]>()
                        .write_unaligned(src.cast::<[u8; 4]>().read_unaligned());
                    p.add(n - 4)
                        .cast::<[u8; 4]>()
                        .write_unaligned(src.add(n - 4).cast::<[u8; 4]>().read_unaligned());
                }
                8..=16 => {
                    p.cast::<[u8; 8]>()
                        .write_unaligned(src.cast::<[u8; 8]>().read_unaligned());
                    p.add(n - 8)
                        .cast::<[u8; 8]>()
                        .write_unaligned(src.add(n - 8).cast::<[u8; 8]>().read_unaligned());
                }
                _ => std::ptr::copy_nonoverlapping(src, p, n),
            }
            p.add(n)
        }
    }
}

/// The bytes `range` of `buf`, which the encoder wrote.
///
/// # Safety
///
/// Every byte of `buf[range]` was written (initialized).
pub(crate) unsafe fn written(buf: &[MaybeUninit<u8>], range: Range<usize>) -> &[u8] {
    let part = &buf[range];
    // SAFETY: the caller says `part` is initialized; `MaybeUninit<u8>` has
    // the layout of `u8`.
    unsafe { std::slice::from_raw_parts(part.as_ptr().cast::<u8>(), part.len()) }
}

#[inline(always)]
fn varint_len(v: u64) -> usize {
    // Lengths and tags are nearly always under 128: one byte, and a
    // predictable branch instead of the bit count below.
    if v < 0x80 {
        return 1;
    }
    // 1 byte per 7 bits: `bits.div_ceil(7)`, which is `(bits * 9 + 64) /
    // 64` for every `bits` from 1 to 64 (a multiply and a shift instead of
    // a division by 7's multiply, shifts and correction; test
    // `varint_lengths_are_a_byte_per_seven_bits`).
    let bits = 64 - v.leading_zeros() as usize;
    (bits * 9 + 64) / 64
}

#[inline(always)]
fn put_varint<S: Sink>(buf: &mut S, mut v: u64) -> Put {
    if v < 0x80 {
        return buf.put(v as u8);
    }
    let mut bytes = [0u8; 10];
    let mut n = 0;
    while v >= 0x80 {
        bytes[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    bytes[n] = v as u8;
    buf.put_slice(&bytes[..=n])
}

#[inline(always)]
fn put_key<S: Sink>(buf: &mut S, field: u32, wire: u32) -> Put {
    put_varint(buf, u64::from((field << 3) | wire))
}

/// Writes a length-delimited field whose body `body` writes, filling in the
/// length afterwards.
#[inline]
fn put_message<S: Sink>(buf: &mut S, field: u32, body: impl FnOnce(&mut S) -> Put) -> Put {
    put_key(buf, field, LEN)?;
    let at = buf.len();
    buf.put(0)?;
    body(buf)?;
    let len = buf.len() - at - 1;
    if len < 0x80 {
        buf.set(at, len as u8);
    } else {
        // The length needs `n` bytes: shift the body along to make room.
        let n = varint_len(len as u64);
        buf.open_gap(at + 1, n - 1)?;
        let mut v = len as u64;
        for i in 0..n {
            let more = if i + 1 < n { 0x80 } else { 0 };
            buf.set(at + i, (v as u8 & 0x7f) | more);
            v >>= 7;
        }
    }
    Ok(())
}

#[inline]
fn put_bytes<S: Sink>(buf: &mut S, field: u32, b: &[u8]) -> Put {
    if !b.is_empty() {
        put_key(buf, field, LEN)?;
        put_varint(buf, b.len() as u64)?;
        buf.put_slice(b)?;
    }
    Ok(())
}

#[inline]
fn put_uint<S: Sink>(buf: &mut S, field: u32, v: u64) -> Put {
    if v != 0 {
        put_key(buf, field, VARINT)?;
        put_varint(buf, v)?;
    }
    Ok(())
}

#[inline]
fn put_fixed64<S: Sink>(buf: &mut S, field: u32, v: u64) -> Put {
    if v != 0 {
        put_key(buf, field, FIXED64)?;
        buf.put_slice(&v.to_le_bytes())?;
    }
    Ok(())
}

#[inline]
fn put_fixed32<S: Sink>(buf: &mut S, field: u32, v: u32) -> Put {
    if v != 0 {
        put_key(buf, field, FIXED32)?;
        buf.put_slice(&v.to_le_bytes())?;
    }
    Ok(())
}

/// `AnyValue` body (a oneof: the set member is always written). Recurses
/// once per array level: callers check the depth first (`too_deep`).
fn put_any_value<S: Sink>(buf: &mut S, v: &Value) -> Put {
    match v {
        Value::Str(s) => {
            put_key(buf, 1, LEN)?;
            put_varint(buf, s.len() as u64)?;
            buf.put_slice(s.as_bytes())
        }
        Value::Bool(b) => {
            put_key(buf, 2, VARINT)?;
            buf.put(u8::from(*b))
        }
        Value::I64(i) => {
            put_key(buf, 3, VARINT)?;
            put_varint(buf, *i as u64)
        }
        Value::F64(f) => {
            put_key(buf, 4, FIXED64)?;
            buf.put_slice(&f.to_bits().to_le_bytes())
        }
        Value::Array(items) => put_message(buf, 5, |buf| {
            for i in items {
                put_message(buf, 1, |buf| put_any_value(buf, i))?;
            }
            Ok(())
        }),
        Value::Bytes(b) => {
            put_key(buf, 7, LEN)?;
            put_varint(buf, b.len() as u64)?;
            buf.put_slice(b)
        }
    }
}

/// Writes the attributes whose values are not nested too deep (see
/// [`MAX_VALUE_DEPTH`](super::MAX_VALUE_DEPTH)) and whose keys are not
/// empty; returns how many were left out, for the owner's
/// `dropped_attributes_count`.
fn put_attributes<S: Sink>(buf: &mut S, field: u32, attrs: &[KeyValue]) -> Result<u32, Full> {
    put_attributes_inline(buf, field, attrs)
}

/// [`put_attributes`], for a span's own attributes on the record path:
/// inlined into the span's encoding, so that the writer's length and
/// buffer stay in registers across the attributes (and no call is made
/// for a span's usual few small ones); anything but a small attribute is
/// written out of line ([`put_other_attribute`]).
#[inline(always)]
fn put_attributes_inline<S: Sink>(
    buf: &mut S,
    field: u32,
    attrs: &[KeyValue],
) -> Result<u32, Full> {
    let mut left_out = 0u32;
    for kv in attrs {
        if !put_small_attribute(buf, field, kv)? && !put_other_attribute(buf, field, kv)? {
            left_out = left_out.saturating_add(1);
        }
    }
    Ok(left_out)
}

/// The shared attributes whose keys are not among the span's `own` (a
/// span's own attribute wins over a shared one with its key), one by one;
/// returns how many were left out as [`put_attributes`] does (the
/// duplicates are not counted: they are replaced, not lost).
#[cold]
#[inline(never)]
fn put_shared_not_own<S: Sink>(
    buf: &mut S,
    shared: &crate::SharedAttributes,
    own: &[KeyValue],
) -> Result<u32, Full> {
    let mut left_out = 0u32;
    for kv in shared.attributes() {
        // An own attribute with an empty key is dropped, so it replaces
        // nothing: a shared one with an empty key is left out and counted
        // (found by review: it went uncounted).
        if kv.key.is_empty() || !own.iter().any(|o| o.key == kv.key) {
            left_out = left_out.saturating_add(put_attributes(buf, 9, std::slice::from_ref(kv))?);
        }
    }
    Ok(left_out)
}

/// An attribute that [`put_small_attribute`] does not take: a scalar in
/// one run ([`put_scalar_attribute`]), else an array through the general
/// path. `Ok(false)` if it was left out (nested too deep, see
/// [`MAX_VALUE_DEPTH`](super::MAX_VALUE_DEPTH)).
#[inline(never)]
fn put_other_attribute<S: Sink>(buf: &mut S, field: u32, kv: &KeyValue) -> Result<bool, Full> {
    // An empty key is no attribute (the OpenTelemetry spec: a key MUST be
    // non-empty): left out and counted. `put_small_attribute` never takes
    // one, so the check costs the usual attribute nothing.
    if kv.key.is_empty() {
        return Ok(false);
    }
    if put_scalar_attribute(buf, field, kv)? {
        return Ok(true);
    }
    if super::too_deep(&kv.value) {
        return Ok(false);
    }
    put_message(buf, field, |buf| {
        put_bytes(buf, 1, kv.key.as_bytes())?;
        put_message(buf, 2, |buf| put_any_value(buf, &kv.value))
    })?;
    Ok(true)
}

/// The largest key-and-string length [`put_small_attribute`] takes: with
/// it, every length in the run fits one varint byte.
const SMALL_ATTRIBUTE: usize = 100;

/// What most attributes are, written with the fewest decisions: a
/// non-empty key and an integer, a bool or a string, together under
/// [`SMALL_ATTRIBUTE`] bytes, so that every length in the run is one byte
/// (the field's tag too: `field` is under 16). The same bytes as
/// [`put_scalar_attribute`]; `Ok(false)` for anything else (it writes
/// those).
#[inline(always)]
fn put_small_attribute<S: Sink>(buf: &mut S, field: u32, kv: &KeyValue) -> Result<bool, Full> {
    let key = kv.key.as_bytes();
    let k = key.len();
    // The value: its `AnyValue` tag and either a varint or a short string.
    let (tag, v, text): (u8, u64, &[u8]) = match &kv.value {
        Value::I64(i) => (((3 << 3) | VARINT) as u8, *i as u64, &[]),
        Value::Bool(b) => (((2 << 3) | VARINT) as u8, u64::from(*b), &[]),
        Value::Str(s) => (((1 << 3) | LEN) as u8, s.len() as u64, s.as_bytes()),
        _ => return Ok(false),
    };
    if k == 0 || k + text.len() >= SMALL_ATTRIBUTE || field >= 16 {
        return Ok(false);
    }
    // A string's varint is its length (under 100: one byte).
    let any_len = 1 + varint_len(v) + text.len();
    // Key (tag, length, bytes), value (tag, length, `AnyValue`): at most
    // 2 + 99 + 2 + 11, under 128.
    let kv_len = 2 + k + 2 + any_len;
    let n = 2 + kv_len;
    // No closure (`put_exact`): inlined into a span's encoding, a closure
    // was left out of line, a call per attribute.
    let start = buf.room(n)?;
    // SAFETY: the writes below are exactly the `n` bytes counted above
    // (four one-byte heads, the key, three one-byte heads, the varint of
    // `varint_len(v)` bytes and the string), all at `start`, which `room`
    // made valid for `n` byte writes; `commit` takes them in.
    unsafe {
        let mut p = raw::byte(start, ((field << 3) | LEN) as u8);
        p = raw::byte(p, kv_len as u8);
        p = raw::byte(p, ((1 << 3) | LEN) as u8);
        p = raw::byte(p, k as u8);
        p = raw::slice(p, key);
        p = raw::byte(p, ((2 << 3) | LEN) as u8);
        p = raw::byte(p, any_len as u8);
        p = raw::byte(p, tag);
        p = raw::varint(p, v);
        let end = raw::slice(p, text);
        debug_assert_eq!(end.offset_from(start), n as isize);
        buf.commit(n);
    }
    Ok(true)
}

/// A `KeyValue` whose value is a scalar (string, bool, integer, float,
/// bytes: all but arrays), written in one run whose length is worked out
/// first: the same bytes as the general path (`put_message` twice and
/// `put_any_value`), with one room check instead of one per byte, and no
/// length placeholders to fill in or shift. `Ok(false)` for an array (the
/// general path writes it).
#[inline]
fn put_scalar_attribute<S: Sink>(buf: &mut S, field: u32, kv: &KeyValue) -> Result<bool, Full> {
    // The AnyValue member: its tag, and its body (a varint, 8 bytes, or a
    // length-prefixed run).
    enum Body<'a> {
        Varint(u64),
        Fixed64([u8; 8]),
        Bytes(&'a [u8]),
    }
    let (tag, body) = match &kv.value {
        Value::Str(s) => ((1 << 3) | LEN, Body::Bytes(s.as_bytes())),
        Value::Bool(b) => ((2 << 3) | VARINT, Body::Varint(u64::from(*b))),
        Value::I64(i) => ((3 << 3) | VARINT, Body::Varint(*i as u64)),
        Value::F64(f) => ((4 << 3) | FIXED64, Body::Fixed64(f.to_bits().to_le_bytes())),
        Value::Bytes(b) => ((7 << 3) | LEN, Body::Bytes(b)),
        Value::Array(_) => return Ok(false),
    };
    let key = kv.key.as_bytes();
    // Every tag here is under 128: one byte.
    let any_len = 1 + match &body {
        Body::Varint(v) => varint_len(*v),
        Body::Fixed64(_) => 8,
        Body::Bytes(b) => varint_len(b.len() as u64) + b.len(),
    };
    let key_len = if key.is_empty() {
        0
    } else {
        1 + varint_len(key.len() as u64) + key.len()
    };
    let kv_len = key_len + 1 + varint_len(any_len as u64) + any_len;
    let head = u64::from((field << 3) | LEN);
    let n = varint_len(head) + varint_len(kv_len as u64) + kv_len;
    // SAFETY: the writes below are exactly the `n` bytes counted above.
    unsafe {
        buf.put_exact(n, |p| {
            let mut p = raw::varint(p, head);
            p = raw::varint(p, kv_len as u64);
            if !key.is_empty() {
                p = raw::byte(p, ((1 << 3) | LEN) as u8);
                p = raw::varint(p, key.len() as u64);
                p = raw::slice(p, key);
            }
            p = raw::byte(p, ((2 << 3) | LEN) as u8);
            p = raw::varint(p, any_len as u64);
            p = raw::byte(p, tag as u8);
            match body {
                Body::Varint(v) => raw::varint(p, v),
                Body::Fixed64(bytes) => raw::slice(p, &bytes),
                Body::Bytes(b) => {
                    p = raw::varint(p, b.len() as u64);
                    raw::slice(p, b)
                }
            }
        })?;
    }
    Ok(true)
}

fn put_event<S: Sink>(buf: &mut S, e: &Event) -> Put {
    put_fixed64(buf, 1, e.time_unix_nano)?;
    put_bytes(buf, 2, e.name.as_bytes())?;
    let left_out = put_attributes(buf, 3, &e.attributes)?;
    put_uint(
        buf,
        4,
        e.dropped_attributes_count.saturating_add(left_out).into(),
    )
}

/// OTLP `flags` of a span or link: trace flags plus the is-remote bits.
pub(crate) fn flags(trace_flags: u8, is_remote: bool) -> u32 {
    u32::from(trace_flags) | FLAG_HAS_IS_REMOTE | if is_remote { FLAG_IS_REMOTE } else { 0 }
}

fn put_link<S: Sink>(buf: &mut S, l: &Link) -> Put {
    put_bytes(buf, 1, &l.context.trace_id.0)?;
    put_bytes(buf, 2, &l.context.span_id.0)?;
    put_bytes(buf, 3, l.context.trace_state.as_bytes())?;
    let left_out = put_attributes(buf, 4, &l.attributes)?;
    put_uint(
        buf,
        5,
        l.dropped_attributes_count.saturating_add(left_out).into(),
    )?;
    put_fixed32(buf, 6, flags(l.context.trace_flags.0, l.context.is_remote))
}

fn put_status<S: Sink>(buf: &mut S, s: &Status) -> Put {
    // An unset status is the default message: left out, as prost does (its
    // message too: the OpenTelemetry API ignores a description for `Ok`
    // and `Unset`, and so does the export, see `Status::message`).
    if s.code != StatusCode::Unset {
        put_message(buf, 15, |buf| {
            put_bytes(buf, 2, status_message(s).as_bytes())?;
            put_uint(buf, 3, s.code as u64)
        })?;
    }
    Ok(())
}

/// The description exported with `s`: its message for an `Error`, none
/// for `Ok` and `Unset` (the OpenTelemetry API ignores it for them).
pub(super) fn status_message(s: &Status) -> &str {
    if s.code == StatusCode::Error {
        &s.message
    } else {
        ""
    }
}

fn parent_bytes(p: &SpanId) -> &[u8] {
    if p.is_valid() { &p.0 } else { &[] }
}

/// The span's fields 1 to 8 (ids, trace state, parent, name, kind, times)
/// in one run whose length is worked out first: the bytes `put_bytes`,
/// `put_uint` and `put_fixed64` would write one by one (empty and zero
/// fields left out), with one room check.
#[inline]
fn put_span_head<S: Sink>(buf: &mut S, s: &SpanData) -> Put {
    fn bytes_len(b: &[u8]) -> usize {
        if b.is_empty() {
            0
        } else {
            1 + varint_len(b.len() as u64) + b.len()
        }
    }
    /// # Safety
    ///
    /// `p` is valid for `bytes_len(b)` byte writes.
    #[inline(always)]
    unsafe fn bytes_field(p: *mut u8, field: u32, b: &[u8]) -> *mut u8 {
        if b.is_empty() {
            return p;
        }
        // SAFETY: the caller's contract; the tag of fields 1 to 8 is one
        // byte.
        unsafe {
            let p = raw::byte(p, ((field << 3) | LEN) as u8);
            let p = raw::varint(p, b.len() as u64);
            raw::slice(p, b)
        }
    }
    let (trace_id, span_id) = (&s.context.trace_id.0, &s.context.span_id.0);
    let trace_state = s.context.trace_state.as_bytes();
    let parent = parent_bytes(&s.parent_span_id);
    let name = s.name.as_bytes();
    let kind = s.kind as u64;
    let (start, end) = (s.start_time_unix_nano, s.end_time_unix_nano);
    if trace_state.is_empty() && (1..0x80).contains(&name.len()) && start != 0 && end != 0 {
        return put_usual_span_head(buf, s, name);
    }
    let n = bytes_len(trace_id)
        + bytes_len(span_id)
        + bytes_len(trace_state)
        + bytes_len(parent)
        + bytes_len(name)
        + if kind != 0 { 1 + varint_len(kind) } else { 0 }
        + if start != 0 { 9 } else { 0 }
        + if end != 0 { 9 } else { 0 };
    // SAFETY: the writes below are exactly the `n` bytes counted above.
    unsafe {
        buf.put_exact(n, |p| {
            let mut p = bytes_field(p, 1, trace_id);
            p = bytes_field(p, 2, span_id);
            p = bytes_field(p, 3, trace_state);
            p = bytes_field(p, 4, parent);
            p = bytes_field(p, 5, name);
            if kind != 0 {
                p = raw::byte(p, ((6 << 3) | VARINT) as u8);
                p = raw::varint(p, kind);
            }
            for (field, v) in [(7, start), (8, end)] {
                if v != 0 {
                    p = raw::byte(p, ((field << 3) | FIXED64) as u8);
                    p = raw::slice(p, &v.to_le_bytes());
                }
            }
            p
        })
    }
}

/// [`put_span_head`] for the usual span (`name`: its name, of 1 to 127
/// bytes; no trace state; both times set), with fewer decisions: every
/// field but the parent and the kind is there, and every length and tag
/// is one byte. The same bytes (test
/// `the_usual_heads_and_tails_are_the_field_by_field_bytes`).
#[inline(always)]
fn put_usual_span_head<S: Sink>(buf: &mut S, s: &SpanData, name: &[u8]) -> Put {
    debug_assert!(s.context.trace_state.is_empty() && (1..0x80).contains(&name.len()));
    let parent = s.parent_span_id.is_valid();
    // 0 to 5: a one-byte varint.
    let kind = s.kind as u8;
    let n = (2 + 16)
        + (2 + 8)
        + if parent { 2 + 8 } else { 0 }
        + (2 + name.len())
        + if kind != 0 { 2 } else { 0 }
        + (1 + 8)
        + (1 + 8);
    let at = buf.room(n)?;
    // SAFETY: the writes below are exactly the `n` bytes counted above, at
    // `at`, which `room` made valid for `n` byte writes; `commit` takes
    // them in.
    unsafe {
        let mut p = raw::byte(at, ((1 << 3) | LEN) as u8);
        p = raw::byte(p, 16);
        p = raw::slice(p, &s.context.trace_id.0);
        p = raw::byte(p, ((2 << 3) | LEN) as u8);
        p = raw::byte(p, 8);
        p = raw::slice(p, &s.context.span_id.0);
        if parent {
            p = raw::byte(p, ((4 << 3) | LEN) as u8);
            p = raw::byte(p, 8);
            p = raw::slice(p, &s.parent_span_id.0);
        }
        p = raw::byte(p, ((5 << 3) | LEN) as u8);
        p = raw::byte(p, name.len() as u8);
        p = raw::slice(p, name);
        if kind != 0 {
            p = raw::byte(p, ((6 << 3) | VARINT) as u8);
            p = raw::byte(p, kind);
        }
        p = raw::byte(p, ((7 << 3) | FIXED64) as u8);
        p = raw::slice(p, &s.start_time_unix_nano.to_le_bytes());
        p = raw::byte(p, ((8 << 3) | FIXED64) as u8);
        let end = raw::slice(p, &s.end_time_unix_nano.to_le_bytes());
        debug_assert_eq!(end.offset_from(at), n as isize);
        buf.commit(n);
    }
    Ok(())
}

fn put_span<S: Sink>(buf: &mut S, s: &SpanData) -> Put {
    put_span_head(buf, s)?;
    let mut left_out = put_attributes_inline(buf, 9, &s.attributes)?;
    if let Some(shared) = s.shared_attributes {
        let shared_left_out = if shared.overlaps(&s.attributes) {
            put_shared_not_own(buf, shared, &s.attributes)?
        } else {
            // Encoded once, as the same fields: copied.
            let (bytes, shared_left_out) = shared.proto();
            buf.put_slice(bytes)?;
            shared_left_out
        };
        left_out = left_out.saturating_add(shared_left_out);
    }
    if s.events.is_empty() && s.links.is_empty() && s.status.code == StatusCode::Unset {
        return put_plain_span_tail(buf, s, left_out);
    }
    put_uint(
        buf,
        10,
        s.dropped_attributes_count.saturating_add(left_out).into(),
    )?;
    for e in &s.events {
        put_message(buf, 11, |buf| put_event(buf, e))?;
    }
    put_uint(buf, 12, s.dropped_events_count.into())?;
    for l in &s.links {
        put_message(buf, 13, |buf| put_link(buf, l))?;
    }
    put_uint(buf, 14, s.dropped_links_count.into())?;
    put_status(buf, &s.status)?;
    // The span's flags say whether its *parent* is remote; a link's, whether
    // the linked context is.
    put_fixed32(buf, 16, flags(s.context.trace_flags.0, s.parent_is_remote))
}

/// The rest of a span without events, links or status (most spans): the
/// three dropped counts (left out when zero) and the flags, in one run
/// whose length is worked out first; the bytes `put_span`'s field-by-field
/// path writes for such a span.
#[inline]
fn put_plain_span_tail<S: Sink>(buf: &mut S, s: &SpanData, left_out: u32) -> Put {
    let dropped_attributes = s.dropped_attributes_count.saturating_add(left_out);
    // The span's flags say whether its *parent* is remote. Never zero (the
    // has-is-remote bit is always set), so always written.
    let flags = flags(s.context.trace_flags.0, s.parent_is_remote);
    let flags_tag = u64::from((16 << 3) | FIXED32);
    if dropped_attributes == 0 && s.dropped_events_count == 0 && s.dropped_links_count == 0 {
        // Nothing dropped (the usual span): the flags alone, their tag in
        // two bytes.
        const FLAGS_TAG: [u8; 2] = [(((16 << 3) | FIXED32) as u8) | 0x80, 1];
        let at = buf.room(6)?;
        // SAFETY: six bytes at `at`, which `room` made valid for six byte
        // writes; `commit` takes them in.
        unsafe {
            let p = raw::slice(at, &FLAGS_TAG);
            raw::slice(p, &flags.to_le_bytes());
            buf.commit(6);
        }
        return Ok(());
    }
    let counts = [
        (10, u64::from(dropped_attributes)),
        (12, u64::from(s.dropped_events_count)),
        (14, u64::from(s.dropped_links_count)),
    ];
    let n = counts
        .iter()
        .map(|&(_, v)| if v != 0 { 1 + varint_len(v) } else { 0 })
        .sum::<usize>()
        + varint_len(flags_tag)
        + 4;
    // SAFETY: the writes below are exactly the `n` bytes counted above
    // (the tags of fields 10 to 14 are one byte).
    unsafe {
        buf.put_exact(n, |mut p| {
            for (field, v) in counts {
                if v != 0 {
                    p = raw::byte(p, ((field << 3) | VARINT) as u8);
                    p = raw::varint(p, v);
                }
            }
            p = raw::varint(p, flags_tag);
            raw::slice(p, &flags.to_le_bytes())
        })
    }
}

/// Ignores the `Result` of a write into a `Vec`, which never fails.
#[inline(always)]
fn infallible<T>(r: Result<T, Full>) -> T {
    match r {
        Ok(v) => v,
        Err(Full) => unreachable!("a Vec is never full"),
    }
}

/// Appends `attrs` as `Span.attributes` fields (for
/// [`SharedAttributes`](crate::SharedAttributes)); returns how many were
/// left out (nested too deep).
pub(crate) fn span_attributes(buf: &mut Vec<u8>, attrs: &[KeyValue]) -> u32 {
    infallible(put_attributes(buf, 9, attrs))
}

/// Appends one span as a framed `ScopeSpans.spans` field (tag 2), ready to
/// be concatenated with others of its scope.
pub(crate) fn put_framed_span(buf: &mut Vec<u8>, s: &SpanData) {
    infallible(put_message(buf, 2, |buf| put_span(buf, s)));
}

/// About the size of `s`'s encoded body, from the lengths of its strings
/// and counts of its parts (no encoding): so that a span that cannot fit a
/// fixed buffer is not encoded into it first and then again into a `Vec`.
/// Only the choice of path depends on it (both write the same bytes), so
/// it may be off either way; it is within a few bytes for typical spans.
fn estimated_len(s: &SpanData) -> usize {
    fn value(v: &Value) -> usize {
        match v {
            Value::Str(s) => 2 + s.len(),
            Value::Bytes(b) => 2 + b.len(),
            Value::Bool(_) => 2,
            Value::I64(_) => 3,
            Value::F64(_) => 9,
            Value::Array(items) => 2 + 3 * items.len(),
        }
    }
    fn attributes(attrs: &[KeyValue]) -> usize {
        attrs
            .iter()
            .map(|kv| 6 + kv.key.len() + value(&kv.value))
            .sum()
    }
    // Ids (18 + 10), times (18), kind (2), flags (5), name's head (2).
    55 + s.name.len()
        + s.context.trace_state.len()
        + if s.parent_span_id.is_valid() { 10 } else { 0 }
        + attributes(&s.attributes)
        + s.shared_attributes.map_or(0, |a| a.proto().0.len())
        + s.events
            .iter()
            .map(|e| 13 + e.name.len() + attributes(&e.attributes))
            .sum::<usize>()
        + s.links
            .iter()
            .map(|l| 37 + l.context.trace_state.len() + attributes(&l.attributes))
            .sum::<usize>()
        + s.status.message.len()
}

/// Room [`put_framed_span_fixed`] keeps before the span's body: the field's
/// tag and up to two bytes of length.
const FRAME_HEAD: usize = 3;

/// The largest buffer [`put_framed_span_fixed`] takes: a body of up to
/// 16 KiB - 1, whose length fits the two bytes (14 bits) the frame's head
/// keeps.
pub(crate) const FIXED_MAX: usize = (1 << 14) - 1 + FRAME_HEAD;

/// [`put_framed_span`] into a fixed buffer (at most [`FIXED_MAX`]), without
/// allocating and without the `Vec`'s capacity checks: the range of `buf`
/// holding the framed span, or `None` if it does not fit (then use
/// [`put_framed_span`]). The body is written after [`FRAME_HEAD`] bytes
/// and the frame's head right before it, so the range starts at 1 (a body
/// under 128 bytes: a one-byte length) or 0.
#[inline]
pub(crate) fn put_framed_span_fixed(
    buf: &mut [MaybeUninit<u8>],
    s: &SpanData,
) -> Option<Range<usize>> {
    if buf.len() > FIXED_MAX {
        // The head has room for a two-byte length only.
        return None;
    }
    // A span with few parts is not worth estimating (it nearly always
    // fits, and the estimate costs what its encoding does); else a span
    // surely too large is not encoded twice.
    let few = s.attributes.len() <= 3 && s.events.is_empty() && s.links.is_empty();
    if !few && estimated_len(s) > buf.len() - FRAME_HEAD {
        return None;
    }
    let mut w = Fixed {
        buf,
        len: FRAME_HEAD,
    };
    put_span(&mut w, s).ok()?;
    let (buf, end) = (w.buf, w.len);
    let len = end - FRAME_HEAD;
    let tag = ((2 << 3) | LEN) as u8;
    if len < 0x80 {
        buf[1].write(tag);
        buf[2].write(len as u8);
        Some(1..end)
    } else {
        buf[0].write(tag);
        buf[1].write((len as u8) | 0x80);
        buf[2].write((len >> 7) as u8);
        Some(0..end)
    }
}

/// The `Resource` message body.
pub(crate) fn resource_message(r: &Resource) -> Vec<u8> {
    let mut buf = Vec::new();
    let left_out = infallible(put_attributes(&mut buf, 1, &r.attributes));
    infallible(put_uint(
        &mut buf,
        2,
        r.dropped_attributes_count.saturating_add(left_out).into(),
    ));
    buf
}

/// The `InstrumentationScope` message body.
pub(crate) fn scope_message(s: &InstrumentationScope) -> Vec<u8> {
    let mut buf = Vec::new();
    infallible(put_bytes(&mut buf, 1, s.name.as_bytes()));
    infallible(put_bytes(&mut buf, 2, s.version.as_bytes()));
    let left_out = infallible(put_attributes(&mut buf, 3, &s.attributes));
    infallible(put_uint(&mut buf, 4, left_out.into()));
    buf
}

/// One scope's pre-encoded spans within a request.
pub(crate) struct Group<'a> {
    /// The `InstrumentationScope` message body.
    pub(crate) scope: &'a [u8],
    pub(crate) schema_url: &'a str,
    /// Framed spans (see [`put_framed_span`]).
    pub(crate) spans: Vec<&'a [u8]>,
}

/// Writes one `ExportTraceServiceRequest` holding one `ResourceSpans`
/// (`resource`: the message body) with a `ScopeSpans` per group.
pub(crate) fn write_request(
    buf: &mut Vec<u8>,
    resource: &[u8],
    resource_schema: &str,
    groups: &[Group<'_>],
) {
    // Every part's length is known before it is written (the spans are
    // encoded already), so each message's length is written up front: no
    // placeholder, and no shifting of the whole body along when a length
    // takes more than one byte (a request's always does).
    let scope_spans_len = |g: &Group<'_>| {
        field_len(g.scope.len())
            + g.spans.iter().map(|s| s.len()).sum::<usize>()
            + opt_field_len(g.schema_url.len())
    };
    let resource_spans_len = field_len(resource.len())
        + groups
            .iter()
            .map(|g| field_len(scope_spans_len(g)))
            .sum::<usize>()
        + opt_field_len(resource_schema.len());
    buf.reserve(field_len(resource_spans_len));
    infallible((|| {
        put_key(buf, 1, LEN)?;
        put_varint(buf, resource_spans_len as u64)?;
        put_bytes_always(buf, 1, resource)?;
        for g in groups {
            put_key(buf, 2, LEN)?;
            put_varint(buf, scope_spans_len(g) as u64)?;
            put_bytes_always(buf, 1, g.scope)?;
            for s in &g.spans {
                buf.extend_from_slice(s);
            }
            put_bytes(buf, 3, g.schema_url.as_bytes())?;
        }
        put_bytes(buf, 3, resource_schema.as_bytes())
    })());
}

/// The size of a length-delimited field (a one-byte tag) with a body of
/// `len` bytes.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// [`field_len`] of a field left out when empty.
fn opt_field_len(len: usize) -> usize {
    if len == 0 { 0 } else { field_len(len) }
}

/// A present (even if empty) sub-message whose body is already encoded.
fn put_bytes_always(buf: &mut Vec<u8>, field: u32, body: &[u8]) -> Put {
    put_key(buf, field, LEN)?;
    put_varint(buf, body.len() as u64)?;
    buf.put_slice(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_minimal() {
        for v in [
            0u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u32::MAX.into(),
            u64::MAX,
            (-1i64) as u64,
        ] {
            let mut b = Vec::new();
            infallible(put_varint(&mut b, v));
            assert_eq!(b.len(), varint_len(v), "{v}");
        }
    }

    /// The head's and the plain tail's fast paths (the usual span) write
    /// what the fields written one by one do, for spans on either side of
    /// every condition of those paths (trace state, name length, times,
    /// parent, kind, dropped counts), into a `Vec` and a fixed buffer.
    #[test]
    fn the_usual_heads_and_tails_are_the_field_by_field_bytes() {
        use crate::model::{SpanContext, SpanKind, TraceFlags, TraceId};
        let kinds = [
            SpanKind::Unspecified,
            SpanKind::Internal,
            SpanKind::Server,
            SpanKind::Client,
            SpanKind::Producer,
            SpanKind::Consumer,
        ];
        let mut usual = 0;
        for trace_state in ["", "k=v"] {
            for name_len in [0, 1, 2, 126, 127, 128, 300] {
                for (start, end) in [(0, 0), (5, 0), (0, 7), (5, 7), (u64::MAX, 1 << 60)] {
                    for parent in [SpanId::INVALID, SpanId([3; 8])] {
                        for (k, &kind) in kinds.iter().enumerate() {
                            let mut s = SpanData::new("n".repeat(name_len));
                            s.context = SpanContext::new(TraceId([7; 16]), SpanId([9; 8]));
                            s.context.trace_state = trace_state.to_owned().into();
                            if k % 2 == 0 {
                                s.context.trace_flags = TraceFlags::NOT_SAMPLED;
                            }
                            s.parent_span_id = parent;
                            s.parent_is_remote = k % 3 == 0;
                            s.kind = kind;
                            s.start_time_unix_nano = start;
                            s.end_time_unix_nano = end;
                            let drops = [(0, 0, 0, 0), (1, 0, 0, 0), (0, 2, 0, 0)];
                            let (a, e, l, left_out) = drops[k % 3];
                            let (a, e, l) = if k == 5 { (200, 3, 1 << 20) } else { (a, e, l) };
                            s.dropped_attributes_count = a;
                            s.dropped_events_count = e;
                            s.dropped_links_count = l;
                            let left_out = if k == 4 { 1 } else { left_out };

                            let mut want = Vec::new();
                            infallible(put_bytes(&mut want, 1, &s.context.trace_id.0));
                            infallible(put_bytes(&mut want, 2, &s.context.span_id.0));
                            infallible(put_bytes(&mut want, 3, s.context.trace_state.as_bytes()));
                            infallible(put_bytes(&mut want, 4, parent_bytes(&s.parent_span_id)));
                            infallible(put_bytes(&mut want, 5, s.name.as_bytes()));
                            infallible(put_uint(&mut want, 6, s.kind as u64));
                            infallible(put_fixed64(&mut want, 7, start));
                            infallible(put_fixed64(&mut want, 8, end));
                            infallible(put_uint(&mut want, 10, (a + left_out).into()));
                            infallible(put_uint(&mut want, 12, e.into()));
                            infallible(put_uint(&mut want, 14, l.into()));
                            let f = flags(s.context.trace_flags.0, s.parent_is_remote);
                            infallible(put_fixed32(&mut want, 16, f));

                            let mut got = Vec::new();
                            infallible(put_span_head(&mut got, &s));
                            infallible(put_plain_span_tail(&mut got, &s, left_out));
                            assert_eq!(got, want, "{s:?}, {left_out} left out");

                            let mut buf = [MaybeUninit::uninit(); 512];
                            let mut w = Fixed {
                                buf: &mut buf,
                                len: 0,
                            };
                            put_span_head(&mut w, &s).unwrap();
                            put_plain_span_tail(&mut w, &s, left_out).unwrap();
                            let len = w.len;
                            // SAFETY: the encoder wrote the first `len` bytes.
                            assert_eq!(unsafe { written(&buf, 0..len) }, &want[..]);
                            if trace_state.is_empty()
                                && (1..128).contains(&name_len)
                                && start != 0
                                && end != 0
                            {
                                usual += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(usual > 0, "no span took the fast paths");
    }

    #[test]
    fn varint_lengths_are_a_byte_per_seven_bits() {
        for bits in 0..=64u32 {
            // The smallest and the largest value of `bits` bits.
            let (low, high) = match bits {
                0 => (0, 0),
                64 => (1 << 63, u64::MAX),
                b => (1 << (b - 1), (1 << b) - 1),
            };
            let want = (bits as usize).div_ceil(7).max(1);
            assert_eq!(varint_len(low), want, "{low}");
            assert_eq!(varint_len(high), want, "{high}");
        }
    }

    #[test]
    fn long_messages_get_their_length_shifted_in() {
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let mut buf = vec![0xAA];
            infallible(put_message(&mut buf, 3, |b| {
                b.extend(std::iter::repeat_n(7u8, len));
                Ok(())
            }));
            let mut want = vec![0xAA];
            infallible(put_key(&mut want, 3, LEN));
            infallible(put_varint(&mut want, len as u64));
            want.extend(std::iter::repeat_n(7u8, len));
            assert_eq!(buf, want, "{len}");
        }
    }

    /// At the largest fixed buffer, a body whose length needs a third byte
    /// (16 384 bytes and up) is refused, and every shorter one is framed as
    /// the `Vec` encoder frames it.
    #[test]
    fn the_largest_fixed_buffer_frames_bodies_up_to_its_two_length_bytes() {
        use crate::model::{SpanContext, TraceId};
        let mut buf = vec![MaybeUninit::uninit(); FIXED_MAX];
        let (mut fitted, mut refused) = (0, 0);
        for name_len in 16_300..16_420 {
            let mut s = SpanData::new("n".repeat(name_len));
            s.context = SpanContext::new(TraceId([7; 16]), SpanId([9; 8]));
            let mut want = Vec::new();
            put_framed_span(&mut want, &s);
            let body = want.len() - 1 - varint_len((want.len() - 3) as u64).min(3);
            match put_framed_span_fixed(&mut buf, &s) {
                Some(range) => {
                    // SAFETY: the encoder wrote `range`.
                    let got = unsafe { written(&buf, range) };
                    assert_eq!(got, &want[..], "name of {name_len} bytes");
                    fitted += 1;
                }
                None => {
                    assert!(body >= 1 << 14, "{body} bytes refused");
                    refused += 1;
                }
            }
        }
        assert!(
            fitted > 0 && refused > 0,
            "{fitted} fitted, {refused} refused"
        );
    }

    /// The fixed-buffer encoder writes exactly what the `Vec` one does
    /// (which `tests/encode.rs` proves equal to prost's), and refuses
    /// exactly the spans whose body does not fit after the frame's head.
    #[test]
    fn the_fixed_buffer_encoding_is_the_vec_encoding_or_nothing() {
        use crate::model::{Event, KeyValue, Link, SpanContext, TraceId};
        let mut spans = Vec::new();
        for name_len in [
            0, 1, 60, 100, 110, 120, 126, 127, 128, 150, 190, 200, 220, 230, 260,
        ] {
            for attrs in 0..4 {
                let mut s = SpanData::new("n".repeat(name_len));
                s.context = SpanContext::new(TraceId([7; 16]), SpanId([9; 8]));
                s.start_time_unix_nano = 1;
                s.end_time_unix_nano = 2;
                for a in 0..attrs {
                    s.attributes.push(KeyValue::new(format!("k{a}"), a as i64));
                }
                spans.push(s);
            }
        }
        let mut rich = SpanData::new("rich");
        rich.attributes = vec![
            KeyValue::new("s", "v".repeat(130)),
            KeyValue::new(
                "a",
                vec![Value::I64(1), Value::Array(vec![Value::Bool(true)])],
            ),
            KeyValue::new("f", 1.5),
            KeyValue::new("b", vec![1u8, 2, 3]),
        ];
        rich.events.push(Event {
            name: "e".into(),
            time_unix_nano: 3,
            attributes: vec![KeyValue::new("x", 1)],
            dropped_attributes_count: 0,
        });
        rich.links.push(Link {
            context: SpanContext::new(TraceId([1; 16]), SpanId([2; 8])),
            attributes: vec![],
            dropped_attributes_count: 1,
        });
        rich.status = Status::error("bad");
        spans.push(rich);
        let mut fitted = 0;
        for (i, s) in spans.iter().enumerate() {
            let mut want = Vec::new();
            put_framed_span(&mut want, s);
            let body = want.len() - if want.len() - 2 < 0x80 { 2 } else { 3 };
            let mut buf = [MaybeUninit::uninit(); 240];
            match put_framed_span_fixed(&mut buf, s) {
                Some(range) => {
                    // SAFETY: the encoder wrote `range`.
                    let got = unsafe { written(&buf, range) };
                    assert_eq!(got, &want[..], "span {i}");
                    fitted += 1;
                }
                None => assert!(
                    body > 240 - FRAME_HEAD
                        || (s.attributes.len() > 3 && estimated_len(s) > 240 - FRAME_HEAD),
                    "span {i}: {body} bytes refused"
                ),
            }
        }
        assert!(
            fitted > spans.len() / 2,
            "most fit: {fitted} of {}",
            spans.len()
        );
        assert!(fitted < spans.len(), "some do not");
    }
}
