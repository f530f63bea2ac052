//! The review APIs (create-only, nothing is stored): `authorization.k8s.io/v1`
//! SelfSubjectAccessReview, SubjectAccessReview, LocalSubjectAccessReview and
//! SelfSubjectRulesReview (what `kubectl auth can-i` and `kubectl auth can-i --list` send), and
//! `authentication.k8s.io/v1` TokenReview and SelfSubjectReview (`kubectl auth whoami`).
//! With authorization off every access review is allowed and the rules review lists `*`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::request_info::Attrs;
use super::{UserInfo, authn, current, rbac};
use crate::error::{ApiError, ApiResult, Cause};
use crate::handlers::{Reply, Target, parse_body};
use crate::registry::{ResourceInfo, SchemaSource};
use crate::server::Shared;

const AUTHZ: &str = "authorization.k8s.io";
const AUTHN: &str = "authentication.k8s.io";

/// (group, kind, plural, namespaced, k8s-openapi type) of every review resource.
const REVIEWS: &[(&str, &str, &str, bool, &str)] = &[
    (
        AUTHZ,
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        false,
        "api::authorization::v1::SelfSubjectAccessReview",
    ),
    (
        AUTHZ,
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        false,
        "api::authorization::v1::SelfSubjectRulesReview",
    ),
    (AUTHZ, "SubjectAccessReview", "subjectaccessreviews", false, "api::authorization::v1::SubjectAccessReview"),
    (
        AUTHZ,
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        true,
        "api::authorization::v1::LocalSubjectAccessReview",
    ),
    (AUTHN, "TokenReview", "tokenreviews", false, "api::authentication::v1::TokenReview"),
    (AUTHN, "SelfSubjectReview", "selfsubjectreviews", false, "api::authentication::v1::SelfSubjectReview"),
];

/// The registry entries of the review resources.
pub fn infos() -> Vec<Arc<ResourceInfo>> {
    REVIEWS
        .iter()
        .map(|(group, kind, plural, namespaced, path)| {
            Arc::new(ResourceInfo {
                group: group.to_string(),
                version: "v1".into(),
                kind: kind.to_string(),
                plural: plural.to_string(),
                singular: kind.to_lowercase(),
                namespaced: *namespaced,
                short_names: Vec::new(),
                categories: Vec::new(),
                status_subresource: false,
                token_subresource: false,
                scale_subresource: false,
                schema: SchemaSource::Builtin(path),
                columns: Vec::new(),
            })
        })
        .collect()
}

/// Whether a resource is one of the create-only reviews.
pub fn is_review(info: &ResourceInfo) -> bool {
    REVIEWS.iter().any(|(g, _, p, _, _)| info.group == *g && info.plural == *p)
}

fn invalid(kind: &str, group: &str, field: &str, message: &str) -> ApiError {
    ApiError::invalid(
        kind,
        group,
        "",
        vec![Cause { reason: "FieldValueInvalid".into(), message: message.into(), field: field.into() }],
    )
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

fn requester() -> UserInfo {
    current().map(|r| r.user.clone()).unwrap_or_else(UserInfo::anonymous)
}

fn user_json(u: &UserInfo) -> Value {
    let mut v = json!({"username": u.name, "groups": u.groups});
    if !u.uid.is_empty() {
        v["uid"] = json!(u.uid);
    }
    if !u.extra.is_empty() {
        v["extra"] = json!(u.extra);
    }
    v
}

/// The attributes of a review's resourceAttributes or nonResourceAttributes.
fn review_attrs(kind: &str, spec: &Value) -> ApiResult<Attrs> {
    let res = spec.get("resourceAttributes").filter(|v| !v.is_null());
    let non = spec.get("nonResourceAttributes").filter(|v| !v.is_null());
    match (res, non) {
        (Some(r), None) => {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            Ok(Attrs {
                verb: s("verb"),
                resource_request: true,
                api_group: s("group"),
                api_version: s("version"),
                resource: s("resource"),
                subresource: s("subresource"),
                namespace: s("namespace"),
                name: s("name"),
                path: String::new(),
            })
        }
        (None, Some(n)) => {
            Ok(Attrs::non_resource(n["verb"].as_str().unwrap_or_default(), n["path"].as_str().unwrap_or_default()))
        }
        (Some(_), Some(_)) => Err(invalid(
            kind,
            AUTHZ,
            "spec.nonResourceAttributes",
            "Invalid value: \"null\": cannot be specified in combination with resourceAttributes",
        )),
        (None, None) => Err(invalid(
            kind,
            AUTHZ,
            "spec.resourceAttributes",
            "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
    }
}

fn decide(shared: &Shared, user: &UserInfo, a: &Attrs) -> rbac::Decision {
    if !shared.auth.enabled() {
        return rbac::Decision { allowed: true, reason: String::new() };
    }
    let s = shared.store.lock();
    rbac::authorize(&s, user, a)
}

fn access_status(d: &rbac::Decision) -> Value {
    let mut st = json!({"allowed": d.allowed});
    if !d.reason.is_empty() {
        st["reason"] = json!(d.reason);
    }
    st
}

fn reply(kind: &str, group: &str, metadata: Value, spec: Value, status: Value) -> ApiResult<Reply> {
    Ok(Reply {
        code: 201,
        body: json!({"kind": kind, "apiVersion": format!("{group}/v1"), "metadata": metadata, "spec": spec,
            "status": status}),
        changed: false,
    })
}

/// Serves one request to a review resource: only `create`, like the real server.
pub fn handle(shared: &Shared, verb: &str, t: &Target, body: &[u8], content_type: &str) -> ApiResult<Reply> {
    if verb != "create" || t.name.is_some() {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} is create-only)",
            t.info.plural
        )));
    }
    let req = parse_body(body, content_type)?;
    let kind = t.info.kind.as_str();
    let spec = req.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut metadata = req.get("metadata").cloned().unwrap_or_else(|| json!({}));
    metadata["creationTimestamp"] = Value::Null;
    match kind {
        "SelfSubjectAccessReview" => {
            let a = review_attrs(kind, &spec)?;
            let d = decide(shared, &requester(), &a);
            reply(kind, AUTHZ, metadata, spec, access_status(&d))
        }
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let user = spec["user"].as_str().unwrap_or_default().to_string();
            let groups = strings(&spec["groups"]);
            if user.is_empty() && groups.is_empty() {
                return Err(invalid(
                    kind,
                    AUTHZ,
                    "spec.user",
                    "Invalid value: \"\": at least one of user or group must be specified",
                ));
            }
            let a = review_attrs(kind, &spec)?;
            if kind == "LocalSubjectAccessReview" {
                let ns = t.namespace.as_deref().unwrap_or_default();
                if !a.resource_request || a.namespace != ns {
                    return Err(invalid(
                        kind,
                        AUTHZ,
                        "spec.resourceAttributes.namespace",
                        &format!("Invalid value: {:?}: must match metadata.namespace", a.namespace),
                    ));
                }
            }
            let extra: BTreeMap<String, Vec<String>> = spec["extra"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), strings(v))).collect())
                .unwrap_or_default();
            let subject = UserInfo { name: user, uid: spec["uid"].as_str().unwrap_or_default().into(), groups, extra };
            let d = decide(shared, &subject, &a);
            reply(kind, AUTHZ, metadata, spec, access_status(&d))
        }
        "SelfSubjectRulesReview" => {
            let ns = spec["namespace"].as_str().unwrap_or_default().to_string();
            if ns.is_empty() {
                return Err(ApiError::bad_request("no namespace on request"));
            }
            let status = if shared.auth.enabled() {
                let (rules, errors) = {
                    let s = shared.store.lock();
                    rbac::rules_for(&s, &requester(), &ns)
                };
                let resource_rules: Vec<Value> = rules
                    .iter()
                    .filter(|r| !r.resources.is_empty())
                    .map(|r| {
                        let mut v = json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
                        if !r.resource_names.is_empty() {
                            v["resourceNames"] = json!(r.resource_names);
                        }
                        v
                    })
                    .collect();
                let non_resource_rules: Vec<Value> = rules
                    .iter()
                    .filter(|r| !r.non_resource_urls.is_empty())
                    .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}))
                    .collect();
                let mut st = json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules,
                    "incomplete": false});
                if !errors.is_empty() {
                    st["evaluationError"] = json!(rbac::aggregate(&errors));
                }
                st
            } else {
                json!({"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}], "incomplete": false})
            };
            reply(kind, AUTHZ, metadata, spec, status)
        }
        "TokenReview" => {
            let token = spec["token"].as_str().unwrap_or_default();
            let mut audiences = strings(&spec["audiences"]);
            if audiences.is_empty() {
                audiences.push(crate::tokens::DEFAULT_AUDIENCE.to_string());
            }
            let status = match authn::user_for_token_with_audiences(shared, token, &audiences) {
                Some((u, accepted)) => json!({"authenticated": true, "user": user_json(&u), "audiences": accepted}),
                None => json!({"authenticated": false, "error": "invalid bearer token"}),
            };
            reply(kind, AUTHN, metadata, spec, status)
        }
        "SelfSubjectReview" => {
            let status = json!({"userInfo": user_json(&requester())});
            Ok(Reply {
                code: 201,
                body: json!({"kind": kind, "apiVersion": format!("{AUTHN}/v1"), "metadata": metadata,
                    "status": status}),
                changed: false,
            })
        }
        _ => Err(ApiError::method_not_allowed("unsupported review")),
    }
}
