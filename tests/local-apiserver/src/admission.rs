//! Admission of a write: the body's identity against the URL, namespace lifecycle, strict
//! field validation, status rules per subresource, kind-specific defaults on create, CRD
//! structure and status, and validation (built-in rules, CRD schemas and CEL).

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, Target as ErrTarget};
use crate::fieldpath::Scope;
use crate::handlers::{CRD_CLEANUP_FINALIZER, CRD_KEY, NAMESPACE_KEY, Query, Target};
use crate::meta;
use crate::registry::ResourceInfo;
use crate::server::Shared;
use crate::store::Inner;
use crate::validation;

/// `fieldValidation=Strict`: a custom resource with fields its schema does not declare is
/// rejected instead of pruned (400, like the real server's strict decoding error).
pub fn check_strict(t: &Target, q: &Query, obj: &Value) -> ApiResult<()> {
    if q.get("fieldValidation").map(String::as_str) != Some("Strict") {
        return Ok(());
    }
    if let crate::registry::SchemaSource::Crd { schema: Some(schema), .. } = &t.info.schema {
        let unknown = validation::unknown_fields(obj, schema);
        if !unknown.is_empty() {
            let list: Vec<String> =
                unknown.iter().map(|f| format!("unknown field \"{}\"", f.trim_start_matches('.'))).collect();
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                t.info.kind,
                t.info.version,
                t.info.kind,
                list.join(", ")
            )));
        }
    }
    Ok(())
}

/// Checks the body's apiVersion/kind and aligns name and namespace with the URL.
pub fn align_identity(t: &Target, obj: &mut Value, require_name_match: bool) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    let info = &t.info;
    match obj.get("kind").and_then(Value::as_str) {
        Some(k) if k != info.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the body ({k}) does not match the resource ({})",
                info.kind
            )));
        }
        _ => {}
    }
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
        let group = av.split_once('/').map(|(g, _)| g).unwrap_or("");
        if group != info.group {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                info.api_version()
            )));
        }
    }
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    let meta = &mut obj["metadata"];
    if info.namespaced {
        let url_ns = t.namespace.clone().unwrap_or_default();
        match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != url_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => meta["namespace"] = json!(url_ns),
        }
    } else if let Some(m) = meta.as_object_mut() {
        m.remove("namespace");
    }
    if let Some(url_name) = &t.name {
        match meta.get("name").and_then(Value::as_str) {
            Some(n) if require_name_match && n != url_name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({url_name})"
                )));
            }
            _ => meta["name"] = json!(url_name),
        }
    }
    Ok(())
}

/// Namespaced writes need an existing, non-terminating namespace (NamespaceLifecycle).
pub fn check_namespace(s: &Inner, t: &Target, creating: bool) -> ApiResult<()> {
    let Some(ns) = t.namespace.as_deref().filter(|_| t.info.namespaced) else {
        return Ok(());
    };
    match s.get(NAMESPACE_KEY, &(String::new(), ns.to_string())) {
        None => Err(ApiError::not_found(&ErrTarget { group: "", resource: "namespaces", name: ns })),
        Some(n) if creating && n["metadata"].get("deletionTimestamp").is_some() => Err(ApiError::forbidden(format!(
            "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            t.info.plural,
            t.name.as_deref().unwrap_or_default()
        ))),
        Some(_) => Ok(()),
    }
}

pub fn scope_for(t: &Target) -> Scope {
    if t.is_status() {
        Scope::StatusOnly
    } else if t.info.status_subresource {
        Scope::MainWithoutStatus
    } else {
        Scope::All
    }
}

/// Status a new object starts with, per kind (the real strategies' PrepareForCreate).
pub fn initial_status(info: &ResourceInfo, obj: &mut Value) {
    if !info.status_subresource {
        return;
    }
    let keep_status = info.kind == "Node" && info.group.is_empty();
    if keep_status {
        return;
    }
    let status = match (info.group.as_str(), info.kind.as_str()) {
        ("", "Namespace") => json!({"phase": "Active"}),
        ("", "Pod") => json!({"phase": "Pending"}),
        ("", "PersistentVolume") => json!({"phase": "Pending"}),
        ("", "PersistentVolumeClaim") => json!({"phase": "Pending"}),
        ("", "Service") => json!({"loadBalancer": {}}),
        _ => Value::Null,
    };
    match (status, obj.as_object_mut()) {
        (Value::Null, Some(m)) => {
            m.remove("status");
        }
        (st, Some(m)) => {
            m.insert("status".into(), st);
        }
        _ => {}
    }
}

/// Kind-specific defaults on create.
pub fn create_defaults(shared: &Shared, s: &Inner, info: &ResourceInfo, obj: &mut Value) {
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Namespace") => {
            if obj["spec"].get("finalizers").is_none() {
                obj["spec"]["finalizers"] = json!(["kubernetes"]);
            }
            let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
        }
        ("", "Service") => {
            let type_ = obj["spec"]["type"].as_str().unwrap_or("ClusterIP").to_string();
            obj["spec"]["type"] = json!(type_);
            if type_ != "ExternalName" && obj["spec"].get("clusterIP").is_none() {
                let n = s.current_rv();
                let ip = format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 2);
                obj["spec"]["clusterIP"] = json!(ip);
                obj["spec"]["clusterIPs"] = json!([ip]);
            }
        }
        ("", "Pod") => crate::controllers::kubelet::service_account_pull_secrets(s, obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            let fins = obj["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
            if !fins.iter().any(|f| f == CRD_CLEANUP_FINALIZER) {
                let mut fins = fins;
                fins.push(json!(CRD_CLEANUP_FINALIZER));
                obj["metadata"]["finalizers"] = Value::Array(fins);
            }
        }
        _ => {}
    }
    let _ = shared;
}

/// CRD objects: structural checks and the status the apiextensions controller would set.
pub fn admit_crd(obj: &mut Value) -> ApiResult<()> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let spec = &obj["spec"];
    let mut causes = Vec::new();
    let mut need = |field: &str, ok: bool, msg: &str| {
        if !ok {
            causes.push(crate::error::Cause {
                reason: "FieldValueRequired".into(),
                message: msg.into(),
                field: field.into(),
            });
        }
    };
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    need("spec.group", !group.is_empty(), "Required value");
    need("spec.names.plural", !plural.is_empty(), "Required value");
    need("spec.names.kind", spec["names"]["kind"].as_str().is_some_and(|k| !k.is_empty()), "Required value");
    need(
        "spec.scope",
        matches!(spec["scope"].as_str(), Some("Cluster" | "Namespaced")),
        "Required value: must be Cluster or Namespaced",
    );
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    need("spec.versions", !versions.is_empty(), "Required value: must have at least one version");
    let storage = versions.iter().filter(|v| v["storage"].as_bool() == Some(true)).count();
    need(
        "spec.versions",
        versions.is_empty() || storage == 1,
        "Invalid value: must have exactly one version marked as storage version",
    );
    if !group.is_empty() && !plural.is_empty() {
        let want = format!("{plural}.{group}");
        need(
            "metadata.name",
            name == want,
            &format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        );
    }
    for (i, v) in versions.iter().enumerate() {
        if let Some(schema) = v["schema"].get("openAPIV3Schema") {
            let path = format!("spec.versions[{i}].schema.openAPIV3Schema");
            causes.extend(validation::crd_rule_causes(schema, &path));
        }
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("CustomResourceDefinition", "apiextensions.k8s.io", &name, causes));
    }
    let storage_version = versions
        .iter()
        .find(|v| v["storage"].as_bool() == Some(true))
        .and_then(|v| v["name"].as_str())
        .unwrap_or_default()
        .to_string();
    let names = obj["spec"]["names"].clone();
    let mut accepted = names.clone();
    if accepted.get("singular").is_none() {
        accepted["singular"] = json!(names["kind"].as_str().unwrap_or_default().to_lowercase());
    }
    if accepted.get("listKind").is_none() {
        accepted["listKind"] = json!(format!("{}List", names["kind"].as_str().unwrap_or_default()));
    }
    let prev = obj["status"].clone();
    let ts = |t: &str| {
        prev["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == t))
            .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_string))
            .unwrap_or_else(meta::now)
    };
    let mut stored: Vec<Value> = prev["storedVersions"].as_array().cloned().unwrap_or_default();
    if !stored.iter().any(|v| v == &json!(storage_version)) {
        stored.push(json!(storage_version));
    }
    let terminating = obj["metadata"].get("deletionTimestamp").is_some();
    let mut conditions = vec![
        json!({"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found",
               "lastTransitionTime": ts("NamesAccepted")}),
        json!({"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
               "message": "the initial names have been accepted", "lastTransitionTime": ts("Established")}),
    ];
    if terminating {
        conditions.push(json!({"type": "Terminating", "status": "True", "reason": "InstanceDeletionInProgress",
                               "message": "CustomResource deletion is in progress",
                               "lastTransitionTime": ts("Terminating")}));
    }
    obj["status"] = json!({"acceptedNames": accepted, "conditions": conditions, "storedVersions": stored});
    Ok(())
}

/// Runs admission for the final object of a write: schema validation for custom resources,
/// CRD checks, name validation. `status`: the write is to the status subresource.
pub fn admit(
    shared: &Shared,
    info: &ResourceInfo,
    old: Option<&Value>,
    obj: &mut Value,
    status: bool,
) -> ApiResult<()> {
    let minor = crate::registry::minor_of(&shared.kubernetes_version()).unwrap_or(33);
    crate::registry::drop_disabled_fields(info, minor, old, obj);
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    if old.is_none()
        && let Some(c) = meta::validate_name(&name, &info.kind)
    {
        return Err(ApiError::invalid(&info.kind, &info.group, &name, vec![c]));
    }
    if !info.is_crd() {
        let causes = crate::builtin_rules::validate(info, old, obj);
        if !causes.is_empty() {
            return Err(ApiError::invalid(&info.kind, &info.group, &name, causes));
        }
    }
    if let crate::registry::SchemaSource::Crd { schema: Some(schema), .. } = &info.schema {
        // The strategies see the old object as the storage decoder reads it (pruned, defaulted).
        let decoded = old.map(|o| validation::decode_stored(o, schema));
        let write = match (&decoded, status) {
            (None, _) => validation::Write::Create,
            (Some(o), false) => validation::Write::Update(o),
            (Some(o), true) => validation::Write::Status(o),
        };
        let causes = validation::admit(obj, schema, write, minor);
        if !causes.is_empty() {
            return Err(ApiError::invalid(&info.kind, &info.group, &name, causes));
        }
    }
    if info.storage_key() == CRD_KEY {
        admit_crd(obj)?;
        if old.is_none() {
            // Another CRD serving the same group and plural is a naming conflict.
            let group = obj["spec"]["group"].as_str().unwrap_or_default();
            let plural = obj["spec"]["names"]["plural"].as_str().unwrap_or_default();
            if shared.registry.all().iter().any(|r| r.group == group && r.plural == plural && !r.is_crd()) {
                return Err(ApiError::invalid(
                    &info.kind,
                    &info.group,
                    &name,
                    vec![crate::error::Cause {
                        reason: "FieldValueInvalid".into(),
                        message: format!("Invalid value: \"{plural}\": is already served by a built-in resource"),
                        field: "spec.names.plural".into(),
                    }],
                ));
            }
        }
    }
    Ok(())
}
