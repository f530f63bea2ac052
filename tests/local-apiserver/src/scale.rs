//! The `scale` subresource of Deployments and ReplicaSets, served as kube-apiserver's ScaleREST
//! serves it (`pkg/registry/apps/deployment/storage`): an autoscaling/v1 `Scale` made from the
//! workload (`spec.replicas`, `status.replicas`, `status.selector` as a selector string, and the
//! workload's name, namespace, uid, resourceVersion and creationTimestamp). get answers it; update,
//! patch (JSON, merge, strategic merge) and apply change it, and its `spec.replicas` is written
//! back to the workload through the workload's own write path (validation, generation, watch
//! events), the writer owning `spec.replicas` in a managedFields entry with subresource `scale`.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::admission::check_namespace;
use crate::error::{ApiError, ApiResult, Cause};
use crate::handlers::{Query, Reply, Target, dry_run, parse_body};
use crate::managed::{self, WriteCtx};
use crate::patch::{self, PatchType};
use crate::schema::Node;
use crate::selectors::LabelSelector;
use crate::server::Shared;
use crate::write::{check_preconditions, finish_write, manager_of};

const SCALE_TYPE: &str = "api::autoscaling::v1::Scale";

/// The Scale of a stored workload.
fn scale_of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let mut m = json!({"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                       "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]});
    if let Some(m) = m.as_object_mut() {
        m.retain(|_, v| !v.is_null());
    }
    // autoscaling/v1 ScaleSpec.replicas is `omitempty`; ScaleStatus.replicas is not.
    let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(0);
    let spec = if replicas == 0 { json!({}) } else { json!({"replicas": replicas}) };
    let mut status = json!({"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0)});
    let selector = LabelSelector::from_object(&obj["spec"]["selector"]).to_selector_string();
    if !selector.is_empty() {
        status["selector"] = json!(selector);
    }
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": m, "spec": spec, "status": status})
}

/// The Scale a request body (or a patched Scale) says, checked as the Scale decoder and
/// `ValidateScale` check it; returns its `spec.replicas` (0 when omitted, as the decoder leaves it).
fn desired_replicas(t: &Target, scale: &Value) -> ApiResult<i64> {
    if !scale.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    if let Some(k) = scale.get("kind").and_then(Value::as_str)
        && k != "Scale"
    {
        return Err(ApiError::bad_request(format!("the kind in the body ({k}) does not match the resource (Scale)")));
    }
    if let Some(av) = scale.get("apiVersion").and_then(Value::as_str)
        && !av.is_empty()
        && av.split_once('/').map(|(g, _)| g) != Some("autoscaling")
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version (autoscaling/v1)"
        )));
    }
    let name = t.name.as_deref().unwrap_or_default();
    if let Some(n) = scale["metadata"].get("name").and_then(Value::as_str)
        && !n.is_empty()
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    if let Some(ns) = scale["metadata"].get("namespace").and_then(Value::as_str)
        && !ns.is_empty()
        && Some(ns) != t.namespace.as_deref()
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let replicas = match scale["spec"].get("replicas") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_i64().filter(|n| i32::try_from(*n).is_ok()).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Scale in version \"v1\" cannot be handled as a Scale: json: cannot unmarshal {v} into Go struct \
                 field ScaleSpec.spec.replicas of type int32"
            ))
        })?,
    };
    if replicas < 0 {
        let cause = Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {replicas}: must be greater than or equal to 0"),
            field: "spec.replicas".into(),
        };
        return Err(ApiError::invalid("Scale", "autoscaling", name, vec![cause]));
    }
    Ok(replicas)
}

pub fn get(shared: &Shared, t: &Target) -> ApiResult<Reply> {
    let s = shared.store.lock();
    let obj = s.get(&t.info.storage_key(), &t.key()).ok_or_else(|| t.not_found())?;
    Ok(Reply::ok(scale_of(&obj)))
}

pub fn update(shared: &Shared, t: &Target, q: &Query, body: &[u8], content_type: &str, ua: &str) -> ApiResult<Reply> {
    write(shared, t, q, body, content_type, ua, None)
}

pub fn patch(shared: &Shared, t: &Target, q: &Query, body: &[u8], content_type: &str, ua: &str) -> ApiResult<Reply> {
    let type_ = PatchType::from_content_type(content_type).ok_or_else(|| {
        ApiError::unsupported_media(format!(
            "the body of the request was in an unknown format - accepted media types include: \
             application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, \
             application/strategic-merge-patch+json (got {content_type:?})"
        ))
    })?;
    write(shared, t, q, body, content_type, ua, Some(type_))
}

/// PUT of a Scale (`patch_type` None), or PATCH of one: the patch applies to the workload's
/// current Scale.
fn write(
    shared: &Shared,
    t: &Target,
    q: &Query,
    body: &[u8],
    content_type: &str,
    ua: &str,
    patch_type: Option<PatchType>,
) -> ApiResult<Reply> {
    let mut s = shared.store.lock();
    check_namespace(&s, t, false)?;
    let old: Arc<Value> = s.get(&t.info.storage_key(), &t.key()).ok_or_else(|| t.not_found())?;
    let current = scale_of(&old);
    let root = t.info.root_node();
    let scope = crate::fieldpath::Scope::MainWithoutStatus;
    let (new, managed_done, manager) = match patch_type {
        Some(PatchType::Apply) => {
            let manager =
                q.get("fieldManager").filter(|m| !m.is_empty()).cloned().ok_or_else(|| {
                    ApiError::bad_request("PATCH requests with apply content type require fieldManager")
                })?;
            let applied = parse_body(body, content_type)?;
            let replicas = desired_replicas(t, &applied)?;
            check_preconditions(t, &old, &applied)?;
            // The Scale's spec.replicas is the workload's (ScaleHandler maps the one path).
            let mut config = json!({"apiVersion": t.info.api_version(), "kind": t.info.kind,
                "metadata": {"name": old["metadata"]["name"], "namespace": old["metadata"]["namespace"]}});
            if applied["spec"].get("replicas").is_some() {
                config["spec"] = json!({"replicas": replicas});
            }
            let ctx =
                WriteCtx { manager: &manager, api_version: &t.info.api_version(), subresource: "scale", root, scope };
            let force = q.get("force").is_some_and(|f| f == "true");
            let mut merged = managed::apply(Some(&old), &config, force, &ctx)?;
            // An apply that omits replicas leaves the workload's value (it is defaulted, not removed).
            if merged["spec"].get("replicas").is_none() {
                merged["spec"]["replicas"] = old["spec"]["replicas"].clone();
            }
            (merged, true, manager)
        }
        Some(type_) => {
            let patched = patch::apply_patch(&current, body, type_, Node::builtin(SCALE_TYPE))?;
            let replicas = desired_replicas(t, &patched)?;
            if patched["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                check_preconditions(t, &old, &patched)?;
            }
            check_uid(t, &old, &patched)?;
            let mut new = (*old).clone();
            new["spec"]["replicas"] = json!(replicas);
            (new, false, manager_of(q, ua, ""))
        }
        None => {
            let scale = parse_body(body, content_type)?;
            let replicas = desired_replicas(t, &scale)?;
            check_preconditions(t, &old, &scale)?;
            let mut new = (*old).clone();
            new["spec"]["replicas"] = json!(replicas);
            (new, false, manager_of(q, ua, ""))
        }
    };
    let (stored, changed) = finish_write(shared, &mut s, t, Some(&old), new, managed_done, &manager, dry_run(q))?;
    drop(s);
    Ok(Reply { code: 200, body: scale_of(&stored), changed })
}

/// A uid in the Scale is a precondition (`Precondition failed: UID in precondition`).
fn check_uid(t: &Target, old: &Value, scale: &Value) -> ApiResult<()> {
    check_preconditions(t, old, &json!({"metadata": {"uid": scale["metadata"]["uid"]}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_of_a_workload_carries_its_replicas_and_selector_string() {
        let d = json!({"metadata": {"name": "web", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                                    "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"x": "y"}},
                       "spec": {"replicas": 3, "selector": {"matchLabels": {"b": "2", "a": "1"},
                           "matchExpressions": [{"key": "c", "operator": "In", "values": ["z", "y"]},
                                                {"key": "d", "operator": "DoesNotExist"}]}},
                       "status": {"replicas": 2}});
        let s = scale_of(&d);
        assert_eq!(s["spec"], json!({"replicas": 3}));
        assert_eq!(s["status"], json!({"replicas": 2, "selector": "a=1,b=2,c in (y,z),!d"}));
        assert_eq!(
            s["metadata"],
            json!({"name": "web", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                                         "creationTimestamp": "2026-01-01T00:00:00Z"})
        );
        let mut zero = d.clone();
        zero["spec"]["replicas"] = json!(0);
        zero.as_object_mut().unwrap().remove("status");
        let s = scale_of(&zero);
        assert_eq!(s["spec"], json!({}), "replicas is omitempty in autoscaling/v1");
        assert_eq!(s["status"]["replicas"], 0);
    }
}
