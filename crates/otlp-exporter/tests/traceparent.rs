//! W3C Trace Context (issue 14 item 3): `traceparent` to and from a
//! `SpanContext`, every malformed header a clear error (never a panic), the
//! forward-compatibility rules for later versions, and `tracestate`'s list
//! rules and limits.

use otlp_exporter::{
    SpanContext, SpanId, TraceFlags, TraceId, TraceState, TraceStateError, TraceparentError,
};
use proptest::prelude::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

fn header(version: &str, trace: &str, span: &str, flags: &str) -> String {
    format!("{version}-{trace}-{span}-{flags}")
}

#[test]
fn a_valid_header_parses_to_a_remote_context() {
    let cx = SpanContext::from_traceparent(&header("00", TRACE, SPAN, "01")).unwrap();
    assert_eq!(cx.trace_id.to_string(), TRACE);
    assert_eq!(cx.span_id.to_string(), SPAN);
    assert_eq!(cx.trace_flags, TraceFlags::SAMPLED);
    assert!(cx.is_remote);
    assert_eq!(cx.trace_state, "");
    assert!(cx.is_valid());

    let cx = SpanContext::from_traceparent(&header("00", TRACE, SPAN, "00")).unwrap();
    assert_eq!(cx.trace_flags, TraceFlags::NOT_SAMPLED);
}

#[test]
fn to_traceparent_writes_version_00_lowercase() {
    let mut cx = SpanContext::new(TraceId([0xAB; 16]), SpanId([0, 0, 0, 0, 0, 0, 0, 0xCD]));
    assert_eq!(
        cx.to_traceparent(),
        "00-abababababababababababababababab-00000000000000cd-01"
    );
    cx.trace_flags = TraceFlags::NOT_SAMPLED;
    assert!(cx.to_traceparent().ends_with("-00"));
    assert_eq!(cx.to_traceparent().len(), 55);
}

#[test]
fn unknown_flags_are_zeroed_and_the_sampled_bit_kept() {
    let cx = SpanContext::from_traceparent(&header("00", TRACE, SPAN, "ff")).unwrap();
    assert_eq!(cx.trace_flags, TraceFlags::SAMPLED);
    let cx = SpanContext::from_traceparent(&header("00", TRACE, SPAN, "fe")).unwrap();
    assert_eq!(cx.trace_flags, TraceFlags::NOT_SAMPLED);
    assert!(cx.to_traceparent().ends_with("-00"));
}

#[test]
fn surrounding_spaces_and_tabs_are_ignored() {
    let h = format!(" \t{}\t ", header("00", TRACE, SPAN, "01"));
    assert!(SpanContext::from_traceparent(&h).is_ok());
}

#[test]
fn later_versions_follow_the_forward_compatibility_rules() {
    // Exactly the version-00 fields.
    let cx = SpanContext::from_traceparent(&header("01", TRACE, SPAN, "01")).unwrap();
    assert_eq!(cx.trace_id.to_string(), TRACE);
    // More fields after a dash: ignored.
    let h = format!("{}-future-fields", header("cc", TRACE, SPAN, "01"));
    let cx = SpanContext::from_traceparent(&h).unwrap();
    assert!(cx.trace_flags.is_sampled());
    assert_eq!(cx.to_traceparent(), header("00", TRACE, SPAN, "01"));
    // More characters without a dash: invalid.
    let h = format!("{}x", header("cc", TRACE, SPAN, "01"));
    assert_eq!(
        SpanContext::from_traceparent(&h),
        Err(TraceparentError::MissingDash { at: 55 })
    );
    // Version 00 allows nothing after the flags.
    let h = format!("{}-extra", header("00", TRACE, SPAN, "01"));
    assert_eq!(
        SpanContext::from_traceparent(&h),
        Err(TraceparentError::WrongLength { len: 61 })
    );
    // ff is forbidden.
    assert_eq!(
        SpanContext::from_traceparent(&header("ff", TRACE, SPAN, "01")),
        Err(TraceparentError::InvalidVersion)
    );
}

#[test]
fn every_malformed_header_has_its_own_error() {
    use TraceparentError as E;
    let cases: Vec<(String, TraceparentError)> = vec![
        (String::new(), E::Empty),
        ("   ".into(), E::Empty),
        (header("00", TRACE, SPAN, "0"), E::TooShort { len: 54 }),
        (
            header("00", &TRACE[1..], SPAN, "01"),
            E::TooShort { len: 54 },
        ),
        ("0".into(), E::TooShort { len: 1 }),
        (
            header("0g", TRACE, SPAN, "01"),
            E::BadHex { field: "version" },
        ),
        (
            header("0A", TRACE, SPAN, "01"),
            E::UppercaseHex { field: "version" },
        ),
        (
            header("00", &TRACE.to_uppercase(), SPAN, "01"),
            E::UppercaseHex { field: "trace-id" },
        ),
        (
            header("00", TRACE, &SPAN.to_uppercase(), "01"),
            E::UppercaseHex { field: "parent-id" },
        ),
        (
            header("00", TRACE, SPAN, "0A"),
            E::UppercaseHex {
                field: "trace-flags",
            },
        ),
        (
            header("00", &TRACE.replace('4', "z"), SPAN, "01"),
            E::BadHex { field: "trace-id" },
        ),
        (
            header("00", TRACE, &SPAN.replace('0', " "), "01"),
            E::BadHex { field: "parent-id" },
        ),
        (
            header("00", TRACE, SPAN, "-1"),
            E::BadHex {
                field: "trace-flags",
            },
        ),
        (header("00", &"0".repeat(32), SPAN, "01"), E::ZeroTraceId),
        (header("00", TRACE, &"0".repeat(16), "01"), E::ZeroSpanId),
        (format!("00_{TRACE}-{SPAN}-01"), E::MissingDash { at: 2 }),
        (format!("00-{TRACE}_{SPAN}-01"), E::MissingDash { at: 35 }),
        (format!("00-{TRACE}-{SPAN}_01"), E::MissingDash { at: 52 }),
        (
            // A longer trace id shifts every field: caught at the length.
            header("00", &format!("{TRACE}00"), SPAN, "01"),
            E::WrongLength { len: 57 },
        ),
        (
            // Multi-byte characters are not hex (and are never split).
            header("00", &format!("{}é", &TRACE[..30]), SPAN, "01"),
            E::BadHex { field: "trace-id" },
        ),
    ];
    for (input, expected) in cases {
        let got = SpanContext::from_traceparent(&input);
        assert_eq!(got, Err(expected.clone()), "input {input:?}");
        // Every error explains itself.
        assert!(!expected.to_string().is_empty());
    }
}

#[test]
fn errors_name_the_problem() {
    let e = SpanContext::from_traceparent(&header("00", TRACE, SPAN, "0A")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "traceparent trace-flags has uppercase hex digits; only lowercase is valid"
    );
    let e = SpanContext::from_traceparent("00-1").unwrap_err();
    assert!(e.to_string().contains("at least 55"), "{e}");
}

#[test]
fn both_headers_carry_the_trace_state_and_a_bad_one_is_discarded() {
    let tp = header("00", TRACE, SPAN, "01");
    let cx = SpanContext::from_w3c_headers(&tp, Some(" a=1 ,, b@x=2")).unwrap();
    assert_eq!(cx.trace_state, "a=1,b@x=2");
    assert!(cx.is_remote);
    let cx = SpanContext::from_w3c_headers(&tp, Some("a=1,a=2")).unwrap();
    assert_eq!(cx.trace_state, "", "an invalid tracestate is discarded");
    let cx = SpanContext::from_w3c_headers(&tp, None).unwrap();
    assert_eq!(cx.trace_state, "");
    // A bad traceparent is an error whatever the tracestate.
    assert!(SpanContext::from_w3c_headers("00-x", Some("a=1")).is_err());
}

#[test]
fn trace_state_follows_the_list_rules() {
    // Keys: simple and multi-tenant, at their longest.
    let long_key = format!("a{}", "b".repeat(255));
    assert!(TraceState::parse(&format!("{long_key}=v")).is_ok());
    assert!(TraceState::parse(&format!("{long_key}b=v")).is_err());
    let tenant = format!("1{}", "t".repeat(240));
    assert!(TraceState::parse(&format!("{tenant}@s{}=v", "y".repeat(13))).is_ok());
    assert!(TraceState::parse(&format!("{tenant}t@s=v")).is_err());
    assert!(TraceState::parse(&format!("t@s{}=v", "y".repeat(14))).is_err());
    assert!(TraceState::parse("foo_bar-baz*/9=v").is_ok());
    for bad_key in [
        "1abc", "Abc", "a b", "@sys", "tenant@", "a@b@c", "t@1s", "", "é",
    ] {
        assert!(
            matches!(
                TraceState::parse(&format!("{bad_key}=v")),
                Err(TraceStateError::InvalidKey { .. })
            ),
            "key {bad_key:?}"
        );
    }
    // Values: printable ASCII but ',' and '=', 1 to 256, no trailing space.
    assert!(TraceState::parse(&format!("k={}", "v".repeat(256))).is_ok());
    assert!(TraceState::parse("k=a b").is_ok());
    for bad_value in [
        String::new(),
        "v".repeat(257),
        "a=b".into(),
        "é".into(),
        "\u{7f}".into(),
    ] {
        assert!(
            matches!(
                TraceState::parse(&format!("k={bad_value}")),
                Err(TraceStateError::InvalidValue { .. })
            ),
            "value {bad_value:?}"
        );
    }
    // A trailing space is whitespace around the member, not the value's.
    assert_eq!(TraceState::parse("k=v ").unwrap().get("k"), Some("v"));
    assert!(matches!(
        TraceState::parse("novalue"),
        Err(TraceStateError::NotKeyValue { .. })
    ));
    assert!(matches!(
        TraceState::parse("a=1, a=2"),
        Err(TraceStateError::DuplicateKey { .. })
    ));
}

#[test]
fn trace_state_has_at_most_32_members() {
    let members = |n: usize| (0..n).map(|i| format!("k{i}=v{i}")).collect::<Vec<_>>();
    let ok = TraceState::parse(&members(32).join(",")).unwrap();
    assert_eq!(ok.len(), 32);
    assert_eq!(
        TraceState::parse(&members(33).join(",")),
        Err(TraceStateError::TooManyMembers { count: 33 })
    );
    // Empty members do not count.
    assert!(TraceState::parse(&format!("{},,,", members(32).join(", ,"))).is_ok());
    // Inserting into a full list drops the right-most member.
    let full = ok.insert("new", "1").unwrap();
    assert_eq!(full.len(), 32);
    assert_eq!(full.iter().next(), Some(("new", "1")));
    assert_eq!(full.get("k31"), None);
    assert_eq!(full.get("k30"), Some("v30"));
    // Updating a key moves it to the front without dropping anything.
    let updated = ok.insert("k5", "x").unwrap();
    assert_eq!(updated.len(), 32);
    assert_eq!(updated.iter().next(), Some(("k5", "x")));
    assert_eq!(updated.get("k31"), Some("v31"));
}

#[test]
fn trace_state_mutations_check_their_input() {
    let state = TraceState::parse("a=1").unwrap();
    assert!(matches!(
        state.insert("B", "1"),
        Err(TraceStateError::InvalidKey { .. })
    ));
    assert!(matches!(
        state.insert("b", ""),
        Err(TraceStateError::InvalidValue { .. })
    ));
    assert_eq!(state.remove("missing"), state);
    assert!(state.remove("a").is_empty());
    assert_eq!("a=1".parse::<TraceState>().unwrap(), state);
    assert_eq!(state.to_string(), "a=1");
    let cx = SpanContext::new(TraceId([1; 16]), SpanId([2; 8])).with_trace_state(state.clone());
    assert_eq!(TraceState::parse(&cx.trace_state).unwrap(), state);
}

#[test]
fn error_excerpts_are_bounded() {
    let huge = format!("{}=v", "K".repeat(10_000));
    let e = TraceState::parse(&huge).unwrap_err();
    assert!(e.to_string().len() < 200, "{e}");
}

fn hex_strategy(len: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(b"0123456789abcdef".to_vec()), len)
        .prop_map(|v| String::from_utf8(v).unwrap())
}

fn key_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9_*/-]{0,20}",
        "[a-z0-9][a-z0-9_*/-]{0,10}@[a-z][a-z0-9_*/-]{0,13}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn traceparent_round_trips(
        trace in any::<[u8; 16]>(),
        span in any::<[u8; 8]>(),
        sampled in any::<bool>(),
    ) {
        prop_assume!(trace != [0; 16] && span != [0; 8]);
        let mut cx = SpanContext::new(TraceId(trace), SpanId(span));
        cx.trace_flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::NOT_SAMPLED };
        let header = cx.to_traceparent();
        let back = SpanContext::from_traceparent(&header).unwrap();
        prop_assert_eq!(back.trace_id, cx.trace_id);
        prop_assert_eq!(back.span_id, cx.span_id);
        prop_assert_eq!(back.trace_flags, cx.trace_flags);
        prop_assert!(back.is_remote);
        prop_assert_eq!(back.to_traceparent(), header);
    }

    #[test]
    fn parsed_headers_are_written_back_in_version_00(
        version in hex_strategy(2),
        trace in hex_strategy(32),
        span in hex_strategy(16),
        flags in hex_strategy(2),
        extra in proptest::option::of("[ -~]{0,20}"),
    ) {
        let mut h = header(&version, &trace, &span, &flags);
        if let Some(extra) = &extra {
            h.push('-');
            h.push_str(extra);
        }
        match SpanContext::from_traceparent(&h) {
            Ok(cx) => {
                prop_assert!(version != "ff");
                prop_assert!(version != "00" || extra.is_none());
                let expected_flags = u8::from_str_radix(&flags, 16).unwrap() & 1;
                prop_assert_eq!(
                    cx.to_traceparent(),
                    header("00", &trace, &span, &format!("{expected_flags:02x}"))
                );
            }
            Err(e) => prop_assert!(
                version == "ff"
                    || (version == "00" && extra.is_some())
                    || trace.bytes().all(|b| b == b'0')
                    || span.bytes().all(|b| b == b'0'),
                "unexpected {e:?} for {h:?}"
            ),
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let s = String::from_utf8_lossy(&bytes);
        let _ = SpanContext::from_traceparent(&s);
        let _ = SpanContext::from_w3c_headers(&s, Some(&s));
        let _ = TraceState::parse(&s);
    }

    #[test]
    fn near_valid_headers_never_panic(
        edits in proptest::collection::vec((0usize..60, any::<char>()), 1..4),
    ) {
        let mut h = header("00", TRACE, SPAN, "01");
        for (at, c) in edits {
            let at = at.min(h.len());
            if h.is_char_boundary(at) {
                h.insert(at, c);
            }
        }
        if let Ok(cx) = SpanContext::from_traceparent(&h) {
            prop_assert!(cx.is_valid());
        }
    }

    #[test]
    fn trace_state_round_trips(
        members in proptest::collection::btree_map(key_strategy(), r"[\x21-\x2b\x2d-\x3c\x3e-\x7e]([\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,10}[\x21-\x2b\x2d-\x3c\x3e-\x7e])?", 0..=32),
    ) {
        let header = members.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let state = TraceState::parse(&header).unwrap();
        prop_assert_eq!(state.as_str(), header.as_str());
        prop_assert_eq!(state.len(), members.len());
        for (k, v) in &members {
            prop_assert_eq!(state.get(k), Some(v.as_str()));
        }
        prop_assert_eq!(TraceState::parse(&state.to_string()).unwrap(), state);
    }
}
