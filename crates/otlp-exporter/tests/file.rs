//! The file transport: one OTLP JSON request per line, appended.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use otlp_exporter::{FileTransport, Pipeline, Resource, SpanData};

#[test]
fn writes_one_request_per_line_and_appends() {
    let path = std::env::temp_dir().join(format!(
        "otlp-exporter-file-test-{}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    for round in 0..2 {
        let transport = FileTransport::open(&path).expect("opens");
        assert_eq!(transport.path(), path.as_path());
        let p = Pipeline::builder()
            .transport(transport)
            .resource(Resource::new("file-test"))
            .max_export_batch_size(4)
            .build()
            .unwrap();
        for i in 0..10 {
            p.record(SpanData::new(format!("round{round}-span{i}")));
        }
        let report = p.shutdown(Duration::from_secs(5));
        assert!(report.completed);
        assert_eq!(report.stats.exported, 10);
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let mut names = Vec::new();
    for line in text.lines() {
        let req: ExportTraceServiceRequest =
            serde_json::from_str(line).expect("each line is a request");
        for rs in req.resource_spans {
            for ss in rs.scope_spans {
                names.extend(ss.spans.into_iter().map(|s| s.name));
            }
        }
    }
    let want: Vec<String> = (0..2)
        .flat_map(|r| (0..10).map(move |i| format!("round{r}-span{i}")))
        .collect();
    assert_eq!(names, want, "appended, in order");
    assert_eq!(
        text.lines().count(),
        6,
        "batches of 4: 3 requests per round"
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn the_default_transport_is_a_file_and_a_bad_path_is_a_clear_error() {
    let err = Pipeline::builder()
        .file("/nonexistent-dir/for/sure/traces.jsonl")
        .build()
        .err()
        .expect("cannot open");
    let text = err.to_string();
    assert!(
        text.contains("file") && text.contains("/nonexistent-dir/for/sure/traces.jsonl"),
        "{text}"
    );
}
