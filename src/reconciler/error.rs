//! The reconciler's one error type. Each variant says which child or which call failed and has a
//! short stable label for metrics and events. Displayed, it carries the API server's own message
//! (what a person reads in a condition or an event), never a Debug dump of the response.

use std::fmt;

use thiserror::Error;

/// A `kube::Error` as a person reads it: for an API answer the server's message and code, for
/// anything else kube's own description.
pub struct ApiMessage<'a>(pub &'a kube::Error);

impl fmt::Display for ApiMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            kube::Error::Api(s) if !s.message.is_empty() => write!(f, "{} ({} {})", s.message, s.code, s.reason),
            kube::Error::Api(s) => write!(f, "the API server answered {} {}", s.code, s.reason),
            other => write!(f, "{other}"),
        }
    }
}

impl fmt::Debug for ApiMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, Error)]
pub enum Error {
    #[error("applying {child}: {}", ApiMessage(source))]
    Apply { child: String, source: kube::Error },
    #[error("deleting {child}: {}", ApiMessage(source))]
    Delete { child: String, source: kube::Error },
    /// An object whose immutable fields changed (a class, the CSIDriver) was deleted, and creating
    /// it anew failed.
    #[error("recreating {child} (its immutable fields changed): {}; {}", ApiMessage(source), match restored {
        None => "the old object was put back unchanged".to_string(),
        Some(e) => format!("putting the old object back failed too ({e}): the operator retries the recreate"),
    })]
    Recreate { child: String, source: kube::Error, restored: Option<String> },
    /// A VolumeAttributesClass whose parameters changed is still referenced: it cannot be
    /// recreated under claims that use it.
    #[error(
        "{child}: its parameters are immutable and it is in use by {}; create a class under a new name with the new \
        parameters and move the claims to it (spec.volumeAttributesClassName)", users.join(", ")
    )]
    ClassInUse { child: String, users: Vec<String> },
    #[error("reading {what}: {}", ApiMessage(source))]
    Read { what: String, source: kube::Error },
    #[error("writing status of {name}: {}", ApiMessage(source))]
    Status { name: String, source: kube::Error },
    #[error("updating finalizers of {name}: {}", ApiMessage(source))]
    Finalizer { name: String, source: kube::Error },
    #[error("discovering cluster capabilities: {}", ApiMessage(.0))]
    Discovery(kube::Error),
    #[error("serialising {what}: {source}")]
    Serialize { what: String, source: serde_json::Error },
}

impl Error {
    /// The API server's status code and Retry-After hint, when the error came from the API.
    pub fn api_status(&self) -> Option<(u16, Option<u32>)> {
        let source = match self {
            Error::Apply { source, .. }
            | Error::Delete { source, .. }
            | Error::Recreate { source, .. }
            | Error::Read { source, .. }
            | Error::Status { source, .. }
            | Error::Finalizer { source, .. } => source,
            Error::Discovery(source) => source,
            Error::Serialize { .. } | Error::ClassInUse { .. } => return None,
        };
        match source {
            kube::Error::Api(s) => Some((s.code, s.details.as_ref().map(|d| d.retry_after_seconds).filter(|r| *r > 0))),
            _ => None,
        }
    }

    /// Stable, low-cardinality label (metrics `result`, event reasons).
    pub fn label(&self) -> &'static str {
        match self {
            Error::Apply { .. } => "apply_failed",
            Error::Delete { .. } => "delete_failed",
            Error::Recreate { .. } => "recreate_failed",
            Error::ClassInUse { .. } => "class_in_use",
            Error::Read { .. } => "read_failed",
            Error::Status { .. } => "status_failed",
            Error::Finalizer { .. } => "finalizer_failed",
            Error::Discovery(_) => "discovery_failed",
            Error::Serialize { .. } => "serialize_failed",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
