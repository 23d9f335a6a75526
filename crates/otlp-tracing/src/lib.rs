//! A `tracing-subscriber` layer that records `tracing` spans into an
//! `otlp-exporter` pipeline.
