//! Configuration from the environment and the builder. One test, because
//! environment variables are shared by every thread of the test binary.

use std::time::Duration;

use otlp_exporter::{ConfigError, InMemory, Pipeline, Resource, Shedding, SpanLimits, Value};

fn set(var: &str, value: Option<&str>) {
    // SAFETY: this binary has a single test, so no other thread reads the
    // environment while it changes.
    unsafe {
        match value {
            Some(v) => std::env::set_var(var, v),
            None => std::env::remove_var(var),
        }
    }
}

#[test]
fn environment_and_builder() {
    // The child of `replaced_executable_service_name` (see there).
    if let Ok(path) = std::env::var("CONFIG_TEST_DELETE_SELF") {
        return replaced_executable_child(&path);
    }
    // A malformed variable is an error that names it and its value.
    set("OTEL_BSP_MAX_QUEUE_SIZE", Some("lots"));
    let err = Pipeline::builder()
        .transport(InMemory::new())
        .build()
        .err()
        .expect("error");
    assert_eq!(
        err,
        ConfigError::InvalidEnv {
            var: "OTEL_BSP_MAX_QUEUE_SIZE",
            value: "lots".into(),
            reason: "expected a non-negative integer"
        }
    );
    assert!(
        err.to_string().contains("OTEL_BSP_MAX_QUEUE_SIZE=\"lots\""),
        "{err}"
    );
    // The builder wins over the environment.
    if let Err(e) = Pipeline::builder()
        .transport(InMemory::new())
        .max_queue_size(16)
        .build()
    {
        panic!("builder should win over the environment: {e}");
    }
    set("OTEL_BSP_MAX_QUEUE_SIZE", None);

    // The environment's batch size is checked against the queue size.
    set("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", Some("4096"));
    let err = Pipeline::builder()
        .transport(InMemory::new())
        .build()
        .err()
        .expect("error");
    assert!(
        matches!(
            err,
            ConfigError::InvalidSetting {
                setting: "max_export_batch_size",
                ..
            }
        ),
        "{err}"
    );
    set("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", Some("4"));
    let memory = InMemory::new();
    let p = Pipeline::builder()
        .transport(memory.clone())
        .scheduled_delay(Duration::from_secs(3600))
        .build()
        .unwrap();
    for _ in 0..4 {
        p.record(otlp_exporter::SpanData::new("env batch"));
    }
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while memory.span_count() < 4 {
        assert!(
            std::time::Instant::now() < end,
            "batch of 4 from the environment not exported"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(p);
    set("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", None);

    // Builder settings out of range.
    for (b, setting) in [
        (Pipeline::builder().max_queue_size(0), "max_queue_size"),
        (
            Pipeline::builder().max_export_batch_size(0),
            "max_export_batch_size",
        ),
        (
            Pipeline::builder()
                .max_queue_size(8)
                .max_export_batch_size(9),
            "max_export_batch_size",
        ),
        (
            Pipeline::builder().shedding(Shedding::Priority { high_water: 0 }),
            "shedding",
        ),
    ] {
        match b.transport(InMemory::new()).build() {
            Err(ConfigError::InvalidSetting { setting: s, .. }) => assert_eq!(s, setting),
            Err(e) => panic!("{setting}: wrong error {e}"),
            Ok(_) => panic!("{setting}: accepted"),
        }
    }

    // A collector named in the environment makes OTLP/HTTP the default
    // transport, if the pipeline was given network access; a malformed one
    // is an error naming the variable.
    let net = || otlp_exporter::NetAccess::from_ambient(otlp_exporter::ambient_authority());
    set("OTEL_EXPORTER_OTLP_ENDPOINT", Some("http://127.0.0.1:9"));
    assert!(
        matches!(
            Pipeline::builder().build(),
            Err(ConfigError::NoNetworkAccess)
        ),
        "no network access, no connection"
    );
    set("OTEL_EXPORTER_OTLP_ENDPOINT", Some("localhost:4318"));
    match Pipeline::builder().network(net()).build() {
        Err(ConfigError::InvalidEnv { var, value, .. }) => {
            assert_eq!(
                (var, value.as_str()),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318")
            );
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a URL without a scheme was accepted"),
    }
    set("OTEL_EXPORTER_OTLP_ENDPOINT", Some("http://127.0.0.1:9"));
    assert!(
        Pipeline::builder().network(net()).build().is_ok(),
        "an endpoint and network access are enough to build"
    );
    set("OTEL_EXPORTER_OTLP_ENDPOINT", None);

    // The resource from the environment.
    set("OTEL_SERVICE_NAME", Some("checkout"));
    set(
        "OTEL_RESOURCE_ATTRIBUTES",
        Some("service.name=ignored,team=pay%20ments,bad,=x"),
    );
    let r = Resource::from_env();
    assert_eq!(
        r.get("service.name"),
        Some(&Value::from("checkout")),
        "OTEL_SERVICE_NAME wins"
    );
    assert_eq!(
        r.get("team"),
        Some(&Value::from("pay ments")),
        "percent-decoded"
    );
    // service.name, team and the three telemetry.sdk.* attributes.
    assert_eq!(r.attributes.len(), 5, "malformed entries skipped: {r:?}");
    // A percent sign needs two hex digits: not a sign and one digit (found
    // by review: `%+A` decoded to a newline), nor one digit at the end.
    let r = Resource::from_vars(Some("a=%+A,b=%-1,c=%4,d=%4a%4A,e=%zz"), None);
    assert_eq!(r.get("d"), Some(&Value::from("JJ")), "{r:?}");
    for k in ["a", "b", "c", "e"] {
        assert_eq!(r.get(k), None, "{k}: {r:?}");
    }
    set("OTEL_SERVICE_NAME", None);
    set("OTEL_RESOURCE_ATTRIBUTES", None);
    assert_eq!(
        Resource::from_env().get("service.name"),
        Some(&Value::from(format!("unknown_service:{}", exe_name())))
    );

    // Span limits from the environment.
    set("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", Some("5"));
    set("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", Some("12"));
    let l = SpanLimits::from_env().unwrap();
    assert_eq!((l.attribute_count, l.attribute_value_length), (5, Some(12)));
    set("OTEL_SPAN_EVENT_COUNT_LIMIT", Some("-1"));
    assert!(matches!(
        SpanLimits::from_env(),
        Err(ConfigError::InvalidEnv {
            var: "OTEL_SPAN_EVENT_COUNT_LIMIT",
            ..
        })
    ));
    for v in [
        "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        "OTEL_SPAN_EVENT_COUNT_LIMIT",
    ] {
        set(v, None);
    }

    // The resource SDK spec (found by review: `service.name` was plain
    // `unknown_service` and there were no `telemetry.sdk.*` attributes):
    // with nothing set, `service.name` is `unknown_service:` and the
    // executable's file name, and the SDK's attributes are there.
    let r = Resource::from_vars(None, None);
    let s = |v: &str| Some(Value::from(v.to_owned()));
    let get = |r: &Resource, k: &str| r.get(k).cloned();
    assert_eq!(
        get(&r, "service.name"),
        s(&format!("unknown_service:{}", exe_name())),
        "{r:?}"
    );
    assert!(exe_name().starts_with("config"), "{}", exe_name());
    assert_eq!(get(&r, "telemetry.sdk.language"), s("rust"));
    assert_eq!(get(&r, "telemetry.sdk.name"), s("otlp-exporter"));
    assert_eq!(
        get(&r, "telemetry.sdk.version"),
        s(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(r.attributes.len(), 4, "{r:?}");
    // The user's attributes win over the SDK's (the spec's merge).
    let r = Resource::from_vars(Some("telemetry.sdk.name=custom,k=v"), Some("svc"));
    assert_eq!(get(&r, "telemetry.sdk.name"), s("custom"));
    assert_eq!(get(&r, "service.name"), s("svc"));
    assert_eq!(get(&r, "telemetry.sdk.language"), s("rust"));
    assert_eq!(r.attributes.len(), 5, "{r:?}");
    // A pipeline exports the builder's resource merged over the SDK's,
    // the builder's values winning.
    let memory = InMemory::new();
    let mut given = Resource::new("given");
    given.set(otlp_exporter::KeyValue::new("telemetry.sdk.version", "9"));
    let p = Pipeline::builder()
        .transport(memory.clone())
        .resource(given)
        .build()
        .unwrap();
    p.record(otlp_exporter::SpanData::new("s"));
    assert!(p.shutdown(Duration::from_secs(10)).completed);
    let requests = memory.requests();
    let req: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest =
        prost::Message::decode(&requests[0].body[..]).unwrap();
    let attrs: Vec<(String, String)> = req.resource_spans[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| {
            let Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(v)) =
                kv.value.as_ref().and_then(|v| v.value.clone())
            else {
                panic!("{kv:?}")
            };
            (kv.key.clone(), v)
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("service.name", "given"),
        ("telemetry.sdk.version", "9"),
        ("telemetry.sdk.language", "rust"),
        ("telemetry.sdk.name", "otlp-exporter"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(attrs, want);

    builder_resource_service_name_from_environment();
    #[cfg(target_os = "linux")]
    replaced_executable_service_name();
}

/// The file name of this test binary (`process.executable.name`).
fn exe_name() -> String {
    std::env::current_exe()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The `service.name` a pipeline exports with `resource` given to the
/// builder (or none).
fn exported_service_name(resource: Option<Resource>) -> Option<Value> {
    let memory = InMemory::new();
    let mut b = Pipeline::builder().transport(memory.clone());
    if let Some(r) = resource {
        b = b.resource(r);
    }
    let p = b.build().unwrap();
    p.record(otlp_exporter::SpanData::new("s"));
    assert!(p.shutdown(Duration::from_secs(10)).completed);
    let req: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest =
        prost::Message::decode(&memory.requests()[0].body[..]).unwrap();
    let attrs = &req.resource_spans[0].resource.as_ref().unwrap().attributes;
    let kv = attrs.iter().find(|kv| kv.key == "service.name")?;
    match kv.value.as_ref().and_then(|v| v.value.clone()) {
        Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(v)) => {
            Some(Value::from(v))
        }
        other => panic!("{other:?}"),
    }
}

/// A builder resource without `service.name` takes the environment's
/// (found by review: `OTEL_SERVICE_NAME` was ignored and the name was
/// `unknown_service:<exe>`); one it sets, even empty, is kept.
fn builder_resource_service_name_from_environment() {
    let s = |v: &str| Some(Value::from(v.to_owned()));
    let unnamed = || {
        let mut r = Resource::default();
        r.set(otlp_exporter::KeyValue::new(
            "deployment.environment.name",
            "prod",
        ));
        r
    };
    set("OTEL_SERVICE_NAME", Some("checkout"));
    set(
        "OTEL_RESOURCE_ATTRIBUTES",
        Some("service.name=attrs,team=pay"),
    );
    assert_eq!(exported_service_name(Some(unnamed())), s("checkout"));
    assert_eq!(exported_service_name(None), s("checkout"));
    assert_eq!(exported_service_name(Some(Resource::new(""))), s(""));
    assert_eq!(
        exported_service_name(Some(Resource::new("mine"))),
        s("mine")
    );
    // Only service.name comes from the environment.
    let memory = InMemory::new();
    let p = Pipeline::builder()
        .transport(memory.clone())
        .resource(unnamed())
        .build()
        .unwrap();
    p.record(otlp_exporter::SpanData::new("s"));
    assert!(p.shutdown(Duration::from_secs(10)).completed);
    let req: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest =
        prost::Message::decode(&memory.requests()[0].body[..]).unwrap();
    let attrs = &req.resource_spans[0].resource.as_ref().unwrap().attributes;
    assert!(!attrs.iter().any(|kv| kv.key == "team"), "{attrs:?}");
    // An empty OTEL_SERVICE_NAME is unset: OTEL_RESOURCE_ATTRIBUTES' name.
    set("OTEL_SERVICE_NAME", Some(""));
    assert_eq!(exported_service_name(Some(unnamed())), s("attrs"));
    set("OTEL_SERVICE_NAME", None);
    assert_eq!(exported_service_name(Some(unnamed())), s("attrs"));
    // Neither: the executable's.
    set("OTEL_RESOURCE_ATTRIBUTES", Some("team=pay"));
    assert_eq!(
        exported_service_name(Some(unnamed())),
        s(&format!("unknown_service:{}", exe_name()))
    );
    set("OTEL_RESOURCE_ATTRIBUTES", None);
}

/// `service.name`'s fallback when the executable file was replaced or
/// deleted while the process runs (a deploy): Linux reads its path as
/// `<path> (deleted)`, and the name was `unknown_service:<exe> (deleted)`
/// (found by review). A copy of this binary deletes itself and checks.
#[cfg(target_os = "linux")]
fn replaced_executable_service_name() {
    let me = std::env::current_exe().unwrap();
    let copy = std::env::temp_dir().join(format!("config-app-{}", std::process::id()));
    std::fs::copy(&me, &copy).unwrap();
    let mut child = std::process::Command::new(&copy)
        .env("CONFIG_TEST_DELETE_SELF", &copy)
        .args(["--exact", "environment_and_builder", "--nocapture"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A watchdog: the child's output is a few lines, so the pipes cannot
    // fill while it runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = std::fs::remove_file(&copy);
            panic!("the child that deletes its executable hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&copy);
    assert!(
        out.status.success(),
        "child: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deleted-self checked"),
        "the child did not run the check: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// In the copy: delete this executable, then check the fallback name.
fn replaced_executable_child(path: &str) {
    std::fs::remove_file(path).unwrap();
    let name = std::path::Path::new(path)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(
        Resource::from_vars(None, None).get("service.name"),
        Some(&Value::from(format!("unknown_service:{name}")))
    );
    println!("deleted-self checked");
}
