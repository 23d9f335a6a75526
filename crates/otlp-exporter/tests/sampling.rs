//! Sampling as the OpenTelemetry spec defines it (issue 14 item 4): the
//! built-in samplers, `TraceIdRatioBased` computed as the other SDKs do,
//! `ParentBased` and its default delegates, and `OTEL_TRACES_SAMPLER` /
//! `OTEL_TRACES_SAMPLER_ARG`.

use std::time::Duration;

use otlp_exporter::{
    ConfigError, InMemory, Pipeline, Recorded, Sampler, SamplingDecision, SpanContext, SpanId,
    SpanKind, TraceFlags, TraceId,
};
use proptest::prelude::*;

use SamplingDecision::{Drop, RecordAndSample};

const WATCHDOG: Duration = Duration::from_secs(60);

/// A trace id with `high` in its upper 8 bytes and `low` in its lower 8.
fn id(high: u64, low: u64) -> TraceId {
    let mut b = [0; 16];
    b[..8].copy_from_slice(&high.to_be_bytes());
    b[8..].copy_from_slice(&low.to_be_bytes());
    TraceId(b)
}

fn root(sampler: &Sampler, trace_id: TraceId) -> SamplingDecision {
    sampler.should_sample(None, trace_id, "op", SpanKind::Internal)
}

fn parent(remote: bool, sampled: bool) -> SpanContext {
    let mut cx = SpanContext::new(id(1, 1), SpanId([1; 8]));
    cx.is_remote = remote;
    cx.trace_flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::NOT_SAMPLED
    };
    cx
}

#[test]
fn always_on_and_always_off() {
    for p in [None, Some(parent(true, false)), Some(parent(false, true))] {
        let t = id(7, 7);
        assert_eq!(
            Sampler::AlwaysOn.should_sample(p.as_ref(), t, "x", SpanKind::Server),
            RecordAndSample
        );
        assert_eq!(
            Sampler::AlwaysOff.should_sample(p.as_ref(), t, "x", SpanKind::Client),
            Drop
        );
    }
}

#[test]
fn ratio_compares_the_lower_8_bytes_as_the_other_sdks_do() {
    // ratio 0.5: bound 2^62; the lower 8 bytes, big-endian, shifted right
    // by one, must be below it. The upper 8 bytes play no part.
    let half = Sampler::TraceIdRatioBased(0.5);
    for high in [0, u64::MAX] {
        assert_eq!(root(&half, id(high, 0)), RecordAndSample);
        assert_eq!(
            root(&half, id(high, 0x7fff_ffff_ffff_ffff)),
            RecordAndSample
        );
        assert_eq!(root(&half, id(high, 0x8000_0000_0000_0000)), Drop);
        assert_eq!(root(&half, id(high, u64::MAX)), Drop);
    }
    // ratio 2^-10: bound 2^53, so (low >> 1) < 2^53, i.e. low < 2^54.
    let small = Sampler::TraceIdRatioBased(1.0 / 1024.0);
    assert_eq!(root(&small, id(9, (1 << 54) - 1)), RecordAndSample);
    assert_eq!(root(&small, id(9, 1 << 54)), Drop);
    // The bit shifted out does not matter.
    assert_eq!(root(&small, id(9, (1 << 54) - 2)), RecordAndSample);
}

#[test]
fn ratio_edges() {
    let t = [id(0, 0), id(0, 1), id(u64::MAX, u64::MAX), id(5, 1 << 40)];
    for trace_id in t {
        assert_eq!(
            root(&Sampler::TraceIdRatioBased(1.0), trace_id),
            RecordAndSample
        );
        assert_eq!(
            root(&Sampler::TraceIdRatioBased(7.0), trace_id),
            RecordAndSample
        );
        assert_eq!(
            root(&Sampler::TraceIdRatioBased(f64::INFINITY), trace_id),
            RecordAndSample
        );
        assert_eq!(root(&Sampler::TraceIdRatioBased(-0.5), trace_id), Drop);
        assert_eq!(root(&Sampler::TraceIdRatioBased(f64::NAN), trace_id), Drop);
        assert_eq!(
            root(&Sampler::TraceIdRatioBased(f64::NEG_INFINITY), trace_id),
            Drop
        );
    }
    // 0 drops even the smallest id (the comparison is strict).
    assert_eq!(root(&Sampler::TraceIdRatioBased(0.0), id(0, 0)), Drop);
}

#[test]
fn ratio_ignores_the_parent() {
    let s = Sampler::TraceIdRatioBased(0.5);
    let t = id(0, u64::MAX);
    for (remote, sampled) in [(true, true), (false, true)] {
        assert_eq!(
            s.should_sample(Some(&parent(remote, sampled)), t, "x", SpanKind::Internal),
            Drop
        );
    }
}

#[test]
fn ratio_keeps_about_its_share_of_random_trace_ids() {
    let s = Sampler::TraceIdRatioBased(0.1);
    let kept = (0..20_000)
        .filter(|_| root(&s, TraceId::random()).is_sampled())
        .count();
    // 20 000 draws at p = 0.1: mean 2000, sd 42; 10 sd either way.
    assert!((1580..=2420).contains(&kept), "kept {kept} of 20000");
}

#[test]
fn parent_based_uses_the_spec_defaults() {
    let s = Sampler::parent_based(Sampler::AlwaysOff);
    let t = id(3, 3);
    let decide = |p: Option<&SpanContext>| s.should_sample(p, t, "x", SpanKind::Internal);
    assert_eq!(decide(None), Drop, "the root sampler decides for roots");
    assert_eq!(decide(Some(&parent(true, true))), RecordAndSample);
    assert_eq!(decide(Some(&parent(true, false))), Drop);
    assert_eq!(decide(Some(&parent(false, true))), RecordAndSample);
    assert_eq!(decide(Some(&parent(false, false))), Drop);
    // An invalid parent counts as none.
    let invalid = SpanContext::default();
    assert_eq!(decide(Some(&invalid)), Drop);
    assert_eq!(
        Sampler::default().should_sample(Some(&invalid), t, "x", SpanKind::Internal),
        RecordAndSample
    );
    assert_eq!(Sampler::default(), Sampler::parent_based(Sampler::AlwaysOn));
}

#[test]
fn parent_based_delegates_each_case() {
    // Every delegate the opposite of its default: each case is routed to
    // its own sampler.
    let s = Sampler::ParentBased {
        root: Box::new(Sampler::AlwaysOn),
        remote_parent_sampled: Box::new(Sampler::AlwaysOff),
        remote_parent_not_sampled: Box::new(Sampler::AlwaysOn),
        local_parent_sampled: Box::new(Sampler::AlwaysOff),
        local_parent_not_sampled: Box::new(Sampler::TraceIdRatioBased(1.0)),
    };
    let t = id(3, 3);
    let decide = |p: Option<&SpanContext>| s.should_sample(p, t, "x", SpanKind::Internal);
    assert_eq!(decide(None), RecordAndSample);
    assert_eq!(decide(Some(&parent(true, true))), Drop);
    assert_eq!(decide(Some(&parent(true, false))), RecordAndSample);
    assert_eq!(decide(Some(&parent(false, true))), Drop);
    assert_eq!(decide(Some(&parent(false, false))), RecordAndSample);
    assert_eq!(
        s.description(),
        "ParentBased{root:AlwaysOnSampler,remoteParentSampled:AlwaysOffSampler,\
         remoteParentNotSampled:AlwaysOnSampler,localParentSampled:AlwaysOffSampler,\
         localParentNotSampled:TraceIdRatioBased{1}}"
    );
}

#[test]
fn descriptions() {
    assert_eq!(Sampler::AlwaysOn.description(), "AlwaysOnSampler");
    assert_eq!(Sampler::AlwaysOff.description(), "AlwaysOffSampler");
    assert_eq!(
        Sampler::TraceIdRatioBased(0.25).description(),
        "TraceIdRatioBased{0.25}"
    );
    assert_eq!(
        Sampler::parent_based(Sampler::AlwaysOff).description(),
        "ParentBased{root:AlwaysOffSampler}"
    );
}

#[test]
fn environment_values_name_the_spec_samplers() {
    let ok = |name: &str, arg: Option<&str>| Sampler::from_vars(Some(name), arg).unwrap();
    assert_eq!(ok("always_on", None), Sampler::AlwaysOn);
    assert_eq!(ok("always_off", Some("0.5")), Sampler::AlwaysOff);
    assert_eq!(
        ok("traceidratio", Some("0.25")),
        Sampler::TraceIdRatioBased(0.25)
    );
    assert_eq!(ok("traceidratio", None), Sampler::TraceIdRatioBased(1.0));
    assert_eq!(
        ok("traceidratio", Some(" ")),
        Sampler::TraceIdRatioBased(1.0)
    );
    assert_eq!(
        ok("traceidratio", Some("0")),
        Sampler::TraceIdRatioBased(0.0)
    );
    assert_eq!(ok("parentbased_always_on", None), Sampler::default());
    assert_eq!(
        ok("parentbased_always_off", None),
        Sampler::parent_based(Sampler::AlwaysOff)
    );
    assert_eq!(
        ok("parentbased_traceidratio", Some("0.001")),
        Sampler::parent_based(Sampler::TraceIdRatioBased(0.001))
    );
    // Case-insensitive, whitespace ignored; unset or empty is the default.
    assert_eq!(ok(" Always_Off ", None), Sampler::AlwaysOff);
    assert_eq!(ok("", None), Sampler::default());
    assert_eq!(
        Sampler::from_vars(None, Some("0.1")),
        Ok(Sampler::default())
    );
}

#[test]
fn bad_environment_values_are_errors_that_name_the_variable() {
    for arg in ["1.5", "-0.1", "NaN", "inf", "half", "0,5"] {
        match Sampler::from_vars(Some("traceidratio"), Some(arg)) {
            Err(ConfigError::InvalidEnv { var, value, reason }) => {
                assert_eq!(var, "OTEL_TRACES_SAMPLER_ARG");
                assert_eq!(value, arg);
                assert!(reason.contains("from 0 to 1"), "{reason}");
            }
            other => panic!("{arg:?}: {other:?}"),
        }
    }
    for name in ["sometimes", "always-on", "jaeger_remote", "xray"] {
        match Sampler::from_vars(Some(name), None) {
            Err(ConfigError::InvalidEnv { var, value, .. }) => {
                assert_eq!(var, "OTEL_TRACES_SAMPLER");
                assert_eq!(value, name);
            }
            other => panic!("{name:?}: {other:?}"),
        }
    }
    let e = Sampler::from_vars(Some("xray"), None).unwrap_err();
    assert!(e.to_string().contains("not implemented"), "{e}");
}

fn set_env(var: &str, value: &str) {
    // SAFETY: only in a watchdog child, which runs this one test on its
    // test thread before any other thread reads the environment.
    unsafe { std::env::set_var(var, value) }
}

#[test]
fn bad_environment_values_fall_back_with_a_warning() {
    test_watchdog::isolate(WATCHDOG, || {
        set_env("OTEL_TRACES_SAMPLER", "sometimes");
        assert_eq!(Sampler::from_env(), Sampler::default());
        set_env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio");
        set_env("OTEL_TRACES_SAMPLER_ARG", "2");
        assert_eq!(
            Sampler::from_env(),
            Sampler::parent_based(Sampler::TraceIdRatioBased(1.0))
        );
        set_env("OTEL_TRACES_SAMPLER_ARG", "0.5");
        assert_eq!(
            Sampler::from_env(),
            Sampler::parent_based(Sampler::TraceIdRatioBased(0.5))
        );
    });
}

#[test]
fn a_tracer_uses_the_sampler_the_environment_names() {
    test_watchdog::isolate(WATCHDOG, || {
        set_env("OTEL_TRACES_SAMPLER", "always_off");
        let memory = InMemory::new();
        let pipeline = Pipeline::builder()
            .transport(memory.clone())
            .build()
            .unwrap();
        let tracer = pipeline.tracer("env", "1");
        assert_eq!(tracer.sampler(), &Sampler::AlwaysOff);
        assert_eq!(
            tracer.start("off").end(),
            Recorded::Dropped(otlp_exporter::DropReason::NotSampled)
        );
        // The builder's choice wins over the environment.
        let on = tracer.with_sampler(Sampler::AlwaysOn);
        assert_eq!(on.start("on").end(), Recorded::Queued);
        let stats = pipeline.shutdown(WATCHDOG).stats;
        assert_eq!(stats.dropped.not_sampled, 1);
        assert_eq!(stats.exported, 1);
        assert_eq!(memory.span_count(), 1);
    });
}

proptest! {
    #[test]
    fn a_higher_ratio_keeps_every_trace_a_lower_one_keeps(
        high in any::<u64>(),
        low in any::<u64>(),
        a in 0.0f64..=1.0,
        b in 0.0f64..=1.0,
    ) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let t = id(high, low);
        if root(&Sampler::TraceIdRatioBased(lo), t).is_sampled() {
            prop_assert!(root(&Sampler::TraceIdRatioBased(hi), t).is_sampled());
        }
        // Decided by the lower 8 bytes alone.
        prop_assert_eq!(
            root(&Sampler::TraceIdRatioBased(lo), t),
            root(&Sampler::TraceIdRatioBased(lo), id(!high, low))
        );
    }

    #[test]
    fn any_parent_and_ratio_give_a_deterministic_decision(
        trace in any::<[u8; 16]>(),
        span in any::<[u8; 8]>(),
        flags in any::<u8>(),
        remote in any::<bool>(),
        ratio in any::<f64>(),
    ) {
        let mut p = SpanContext::new(TraceId(trace), SpanId(span));
        p.trace_flags = TraceFlags(flags);
        p.is_remote = remote;
        let s = Sampler::parent_based(Sampler::TraceIdRatioBased(ratio));
        let d = s.should_sample(Some(&p), TraceId(trace), "x", SpanKind::Internal);
        prop_assert_eq!(d, s.should_sample(Some(&p), TraceId(trace), "x", SpanKind::Internal));
        if p.is_valid() {
            // A valid parent's sampled flag decides (the default delegates).
            prop_assert_eq!(d.is_sampled(), p.trace_flags.is_sampled());
        } else {
            prop_assert_eq!(d, root(&Sampler::TraceIdRatioBased(ratio), TraceId(trace)));
        }
    }

    #[test]
    fn environment_parsing_never_panics(name in ".{0,30}", arg in proptest::option::of(".{0,30}")) {
        let _ = Sampler::from_vars(Some(&name), arg.as_deref());
    }
}
