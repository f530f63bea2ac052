//! The operator's one error type. Each variant says which child or which call failed and has a
//! short stable label for metrics and events.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("applying {child}: {source}")]
    Apply { child: String, source: kube::Error },
    #[error("deleting {child}: {source}")]
    Delete { child: String, source: kube::Error },
    #[error("reading {what}: {source}")]
    Read { what: String, source: kube::Error },
    #[error("writing status of {name}: {source}")]
    Status { name: String, source: kube::Error },
    #[error("updating finalizers of {name}: {source}")]
    Finalizer { name: String, source: kube::Error },
    #[error("discovering cluster capabilities: {0}")]
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
            | Error::Read { source, .. }
            | Error::Status { source, .. }
            | Error::Finalizer { source, .. } => source,
            Error::Discovery(source) => source,
            Error::Serialize { .. } => return None,
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
            Error::Read { .. } => "read_failed",
            Error::Status { .. } => "status_failed",
            Error::Finalizer { .. } => "finalizer_failed",
            Error::Discovery(_) => "discovery_failed",
            Error::Serialize { .. } => "serialize_failed",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
