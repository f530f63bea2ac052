//! Errors: the public [`Error`] of the library, and [`ApiError`], a failed request rendered as the
//! `Status` object the real API server returns (kube-rs parses `reason`, `code` and `details`).

use serde_json::{Value, json};

/// Why the local API server could not start or be driven.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("building a kube client for {url}: {source}")]
    Client { url: String, source: kube::Error },
    #[error("invalid option {field}: {message}")]
    InvalidOption { field: &'static str, message: String },
    #[error("starting the workload loop's thread: {0}")]
    Thread(std::io::Error),
}

/// One field-level problem, as in `Status.details.causes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// A request that failed, with the HTTP code and `Status.reason` the real server would use.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    pub causes: Vec<Cause>,
    /// Seconds for a `Retry-After` header (429 from fault injection).
    pub retry_after: Option<u64>,
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;

/// Identifies the object a status refers to: (group, kind-or-plural, name).
pub struct Target<'a> {
    pub group: &'a str,
    pub resource: &'a str,
    pub name: &'a str,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None, causes: Vec::new(), retry_after: None }
    }

    fn with_target(mut self, t: &Target<'_>) -> Self {
        self.details = Some(json!({"name": t.name, "group": t.group, "kind": t.resource}));
        self
    }

    fn qualified(t: &Target<'_>) -> String {
        if t.group.is_empty() { t.resource.to_string() } else { format!("{}.{}", t.resource, t.group) }
    }

    pub fn not_found(t: &Target<'_>) -> Self {
        Self::new(404, "NotFound", format!("{} \"{}\" not found", Self::qualified(t), t.name)).with_target(t)
    }

    pub fn already_exists(t: &Target<'_>) -> Self {
        Self::new(409, "AlreadyExists", format!("{} \"{}\" already exists", Self::qualified(t), t.name)).with_target(t)
    }

    pub fn conflict(t: &Target<'_>, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{}\": {}", Self::qualified(t), t.name, why),
        )
        .with_target(t)
    }

    /// 422 Invalid with one cause per field, message formatted like the real server's.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> Self {
        let qualified = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let list: Vec<String> = causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect();
        let summary = if list.len() == 1 { list[0].clone() } else { format!("[{}]", list.join(", ")) };
        let mut e = Self::new(422, "Invalid", format!("{qualified} \"{name}\" is invalid: {summary}"));
        e.details = Some(json!({"name": name, "group": group, "kind": kind}));
        e.causes = causes;
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn unsupported_media(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `Status` object sent as the response body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        let mut details = self.details.clone().unwrap_or_else(|| json!({}));
        if !self.causes.is_empty() {
            details["causes"] = Value::Array(
                self.causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect(),
            );
        }
        if let Some(secs) = self.retry_after {
            details["retryAfterSeconds"] = json!(secs);
        }
        if details.as_object().is_some_and(|d| !d.is_empty()) {
            status["details"] = details;
        }
        status
    }
}
