//! Logging: the tracing subscriber (JSON or text lines on stdout, RUST_LOG-style filter) and the
//! rule that keeps secret values out of the logs.
//!
//! # Secret values are never logged
//!
//! - The operator never reads Secret data. Image pull Secrets are checked by name through
//!   metadata only, so no secret value is ever in memory to be logged.
//! - Log fields carry names, kinds, counts, conditions and error messages, never request
//!   headers, tokens, credentials or whole objects of unknown content.
//! - Credentials live only inside the kube and AWS clients. Their wire-level crates can print
//!   request headers (an `x-amz-security-token`, the signed request) at `trace` level, so
//!   [`credential_caps`] caps those crates ([`CREDENTIAL_BEARING_TARGETS`]) at `debug` whatever the global
//!   level is. A person who names one of them explicitly in `--log-level` (e.g.
//!   `aws_smithy_runtime=trace`) asked for that output, and gets it, for local debugging only.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::runtime::config::LogFormat;

/// Crates whose `trace` output can contain credentials (request headers with security tokens,
/// signing input). Capped at `debug` unless named in the filter.
pub const CREDENTIAL_BEARING_TARGETS: &[&str] =
    &["aws_smithy_runtime", "aws_sigv4", "aws_smithy_http_client", "aws_config", "hyper", "hyper_util", "h2"];

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("--log-level {spec:?} is not a RUST_LOG-style filter such as `info` or `info,kube=debug`: {source}")]
    Filter {
        spec: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("a global logger is already installed: {0}")]
    AlreadyInstalled(String),
}

/// The filter for `spec` (RUST_LOG syntax).
pub fn filter(spec: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::builder().parse(spec).map_err(|source| TelemetryError::Filter { spec: spec.to_string(), source })
}

/// The cap on credential-bearing crates (see the module docs): at most `debug` for each one that
/// `spec` does not name, everything else unrestricted. Applied together with the user's filter,
/// so it can only remove lines, never add any.
pub fn credential_caps(spec: &str) -> Targets {
    CREDENTIAL_BEARING_TARGETS
        .iter()
        .filter(|target| !names_target(spec, target))
        .fold(Targets::new().with_default(LevelFilter::TRACE), |caps, target| {
            caps.with_target(*target, LevelFilter::DEBUG)
        })
}

/// True when a directive of `spec` is about `target` or one of its modules.
fn names_target(spec: &str, target: &str) -> bool {
    spec.split(',').any(|directive| {
        let name = directive.split(['=', '[']).next().unwrap_or("").trim();
        name == target || name.strip_prefix(target).is_some_and(|rest| rest.starts_with("::"))
    })
}

/// A subscriber writing `format` lines to `writer`, filtered by `spec` and the credential caps.
/// Separate from [`init`] so tests can capture the output.
pub fn subscriber<W>(
    format: LogFormat,
    spec: &str,
    writer: W,
    ansi: bool,
) -> Result<Box<dyn Subscriber + Send + Sync>, TelemetryError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = filter(spec)?.and(credential_caps(spec));
    Ok(match format {
        // One object per line, event fields at the top level beside `level`, `target` and the
        // current span, which is what log collectors index.
        LogFormat::Json => Box::new(
            Registry::default().with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(writer)
                    .with_filter(filter),
            ),
        ),
        LogFormat::Text => Box::new(
            Registry::default()
                .with(tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(writer).with_filter(filter)),
        ),
    })
}

/// Installs the global subscriber on stdout (and routes `log` records through it). Colours only
/// when stdout is a terminal.
pub fn init(format: LogFormat, spec: &str) -> Result<(), TelemetryError> {
    let ansi = std::io::stdout().is_terminal();
    subscriber(format, spec, std::io::stdout, ansi)?
        .try_init()
        .map_err(|err| TelemetryError::AlreadyInstalled(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf-8")
        }
    }

    fn capture(format: LogFormat, spec: &str, emit: impl FnOnce()) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let sub = subscriber(format, spec, move || writer.clone(), false).expect("valid filter");
        tracing::subscriber::with_default(sub, emit);
        out.text()
    }

    #[test]
    fn json_lines_are_objects_with_fields_at_top_level() {
        let text = capture(LogFormat::Json, "info", || {
            let span = tracing::info_span!("reconcile", object = "default");
            let _entered = span.enter();
            tracing::info!(applied = 3, "children applied");
            tracing::debug!("filtered out");
        });
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let value: serde_json::Value = serde_json::from_str(lines[0]).expect("one JSON object per line");
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["message"], "children applied");
        assert_eq!(value["applied"], 3);
        assert_eq!(value["span"]["object"], "default");
    }

    #[test]
    fn text_lines_are_plain_without_colour() {
        let text = capture(LogFormat::Text, "warn", || {
            tracing::info!("filtered out");
            tracing::warn!(kind = "Deployment", "foreign owner");
        });
        assert!(
            text.contains("WARN") && text.contains("foreign owner") && text.contains("kind=\"Deployment\""),
            "{text}"
        );
        assert!(!text.contains("filtered out"), "{text}");
        assert!(!text.contains('\u{1b}'), "no ANSI escapes: {text}");
    }

    #[test]
    fn caps_never_raise_a_crate_above_the_global_level() {
        let text = capture(LogFormat::Text, "info", || {
            tracing::debug!(target: "hyper_util::client::legacy::pool", "pooling idle connection");
            tracing::info!(target: "hyper_util::client::legacy::pool", "info from hyper_util");
        });
        assert!(!text.contains("pooling idle connection"), "{text}");
        assert!(text.contains("info from hyper_util"), "{text}");
    }

    #[test]
    fn credential_bearing_crates_are_capped_at_debug_unless_named() {
        let text = capture(LogFormat::Text, "trace", || {
            tracing::trace!(target: "aws_smithy_runtime::client::orchestrator", "transmitting request \
                x-amz-security-token");
            tracing::debug!(target: "aws_smithy_runtime::client::orchestrator", "beginning attempt");
            tracing::trace!(target: "hardened_csi_operator", "own trace");
        });
        assert!(!text.contains("x-amz-security-token"), "{text}");
        assert!(text.contains("beginning attempt") && text.contains("own trace"), "{text}");

        let text = capture(LogFormat::Text, "info,aws_smithy_runtime=trace", || {
            tracing::trace!(target: "aws_smithy_runtime::client::orchestrator", "explicitly requested");
        });
        assert!(text.contains("explicitly requested"), "{text}");
    }

    #[test]
    fn names_target_matches_crate_and_modules_only() {
        assert!(names_target("info,h2=trace", "h2"));
        assert!(names_target("aws_sigv4::sign=trace", "aws_sigv4"));
        assert!(!names_target("hyper_util=trace", "hyper"));
        assert!(!names_target("trace", "hyper"));
    }

    #[test]
    fn a_bad_filter_names_the_flag() {
        let err = filter("info,=[=").expect_err("bad filter").to_string();
        assert!(err.starts_with("--log-level"), "{err}");
    }
}
