//! What every verb shares (the addressed [`Target`], the [`Reply`], body parsing, presenting an
//! object at the requested version, selectors) and the reading verbs: get and list with
//! limit/continue. Writes live in `write`, deletion in `deletion`, checks in `admission`.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, Target as ErrTarget};
use crate::registry::ResourceInfo;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::server::Shared;
use crate::store::ObjKey;

pub const CRD_KEY: &str = "apiextensions.k8s.io/customresourcedefinitions";

pub const NAMESPACE_KEY: &str = "/namespaces";

pub const CRD_CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// What a request addresses.
#[derive(Debug, Clone)]
pub struct Target {
    pub info: Arc<ResourceInfo>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl Target {
    pub fn key(&self) -> ObjKey {
        (self.namespace.clone().unwrap_or_default(), self.name.clone().unwrap_or_default())
    }

    pub fn err_target(&self) -> ErrTarget<'_> {
        ErrTarget {
            group: &self.info.group,
            resource: &self.info.plural,
            name: self.name.as_deref().unwrap_or_default(),
        }
    }

    pub fn not_found(&self) -> ApiError {
        ApiError::not_found(&self.err_target())
    }

    pub fn is_status(&self) -> bool {
        self.subresource.as_deref() == Some("status")
    }
}

/// A handler's answer: HTTP code, body, and whether stored state changed (for counters).
pub struct Reply {
    pub code: u16,
    pub body: Value,
    pub changed: bool,
}

impl Reply {
    pub fn ok(body: Value) -> Reply {
        Reply { code: 200, body, changed: false }
    }
}

pub type Query = HashMap<String, String>;

/// Parses a request body as JSON, or YAML for apply patches and YAML content types.
pub fn parse_body(body: &[u8], content_type: &str) -> ApiResult<Value> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(json_err) => {
            if content_type.contains("yaml") {
                serde_yaml_ng::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid YAML body: {e}")))
            } else {
                Err(ApiError::bad_request(format!("invalid JSON body: {json_err}")))
            }
        }
    }
}

/// The object as served at the requested version.
pub fn present(obj: &Value, info: &ResourceInfo) -> Value {
    let mut o = obj.clone();
    if let crate::registry::SchemaSource::Crd { schema: Some(schema), .. } = &info.schema {
        crate::validation::default_on_read(&mut o, schema);
    }
    o["apiVersion"] = json!(info.api_version());
    o
}

/// `dryRun=All`: validate and answer, store nothing.
pub fn dry_run(q: &Query) -> bool {
    q.get("dryRun").is_some_and(|d| d == "All")
}

pub fn get(shared: &Shared, t: &Target) -> ApiResult<Reply> {
    let s = shared.store.lock();
    let obj = s.get(&t.info.storage_key(), &t.key()).ok_or_else(|| t.not_found())?;
    Ok(Reply::ok(present(&obj, &t.info)))
}

/// A continue token: the last key served and the list's resourceVersion, hex-encoded.
pub fn encode_continue(key: &ObjKey, rv: u64) -> String {
    let raw = format!("{}\u{0}{}\u{0}{}", rv, key.0, key.1);
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

pub fn decode_continue(token: &str) -> ApiResult<(u64, ObjKey)> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token}"));
    if !token.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes: Result<Vec<u8>, _> =
        (0..token.len()).step_by(2).map(|i| u8::from_str_radix(&token[i..i + 2], 16)).collect();
    let raw = String::from_utf8(bytes.map_err(|_| bad())?).map_err(|_| bad())?;
    let mut parts = raw.split('\u{0}');
    let rv = parts.next().and_then(|r| r.parse().ok()).ok_or_else(bad)?;
    let ns = parts.next().ok_or_else(bad)?.to_string();
    let name = parts.next().ok_or_else(bad)?.to_string();
    Ok((rv, (ns, name)))
}

pub fn selectors(t: &Target, q: &Query) -> ApiResult<(LabelSelector, FieldSelector)> {
    let labels = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or_default())?;
    let fields = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or_default())?;
    fields.check_supported(&t.info.kind)?;
    Ok((labels, fields))
}

pub fn list(shared: &Shared, t: &Target, q: &Query) -> ApiResult<Reply> {
    let (labels, fields) = selectors(t, q)?;
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        Some(Ok(0)) | None => usize::MAX,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return Err(ApiError::bad_request("limit must be a non-negative integer"));
        }
    };
    let s = shared.store.lock();
    let (list_rv, after) = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (rv, key) = decode_continue(token)?;
            // Pages continue from the live state, but a token older than the kept history has
            // expired, as on a real server (clients then list again from the start).
            if rv < s.compacted_rv() {
                return Err(ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a \
                        new list without the continue parameter, or use the continue token in this response to \
                        retrieve the remainder of the results. Continuing with the provided token results in an \
                        inconsistent list - objects that were created, modified, or deleted between the time the \
                        first chunk was returned and now may show up in the list.",
                ));
            }
            (rv, Some(key))
        }
        None => (s.current_rv(), None),
    };
    let (items, cont, remaining) = s.list_page(
        &t.info.storage_key(),
        t.namespace.as_deref(),
        after.as_ref(),
        |o| labels.matches(o["metadata"].get("labels")) && fields.matches(o),
        limit,
    );
    drop(s);
    let mut list_meta = json!({"resourceVersion": list_rv.to_string()});
    if let Some(k) = cont {
        list_meta["continue"] = json!(encode_continue(&k, list_rv));
        list_meta["remainingItemCount"] = json!(remaining);
    }
    let items: Vec<Value> = items.iter().map(|o| present(o, &t.info)).collect();
    Ok(Reply::ok(json!({
        "kind": format!("{}List", t.info.kind),
        "apiVersion": t.info.api_version(),
        "metadata": list_meta,
        "items": items,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let key = ("ns".to_string(), "name-1".to_string());
        let token = encode_continue(&key, 42);
        assert_eq!(decode_continue(&token).unwrap(), (42, key));
        assert!(decode_continue("zz").is_err());
    }
}
