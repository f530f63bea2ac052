//! The verbs on resources: get, list, create, update (PUT), patch (merge, JSON, strategic,
//! apply), delete and deletecollection, on main resources and the `status` subresource.
//! Every write goes through [`finish_write`] so metadata, status rules, admission, no-op
//! detection and the store commit are the same whatever the verb.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, Target as ErrTarget};
use crate::fieldpath::Scope;
use crate::managed::{self, WriteCtx};
use crate::meta;
use crate::patch::{self, PatchType};
use crate::registry::ResourceInfo;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::server::Shared;
use crate::store::{Inner, ObjKey};
use crate::validation;

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

    fn err_target(&self) -> ErrTarget<'_> {
        ErrTarget { group: &self.info.group, resource: &self.info.plural, name: self.name.as_deref().unwrap_or_default() }
    }

    fn not_found(&self) -> ApiError {
        ApiError::not_found(&self.err_target())
    }

    fn is_status(&self) -> bool {
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
    fn ok(body: Value) -> Reply {
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
    o["apiVersion"] = json!(info.api_version());
    o
}

pub fn get(shared: &Shared, t: &Target) -> ApiResult<Reply> {
    let s = shared.store.lock();
    let obj = s.get(&t.info.storage_key(), &t.key()).ok_or_else(|| t.not_found())?;
    Ok(Reply::ok(present(&obj, &t.info)))
}

/// A continue token: the last key served and the list's resourceVersion, hex-encoded.
fn encode_continue(key: &ObjKey, rv: u64) -> String {
    let raw = format!("{}\u{0}{}\u{0}{}", rv, key.0, key.1);
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(token: &str) -> ApiResult<(u64, ObjKey)> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token}"));
    if token.len() % 2 != 0 {
        return Err(bad());
    }
    let bytes: Result<Vec<u8>, _> = (0..token.len()).step_by(2).map(|i| u8::from_str_radix(&token[i..i + 2], 16)).collect();
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
        Some(Err(_)) => return Err(ApiError::bad_request("limit must be a non-negative integer")),
    };
    let s = shared.store.lock();
    let (list_rv, after) = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (rv, key) = decode_continue(token)?;
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

fn manager_of(q: &Query, user_agent: &str, default_suffix: &str) -> String {
    match q.get("fieldManager").filter(|m| !m.is_empty()) {
        Some(m) => m.clone(),
        None => {
            // The real server derives the manager from the User-Agent's first segment.
            let base = user_agent.split('/').next().unwrap_or_default();
            if base.is_empty() { format!("unknown{default_suffix}") } else { base.to_string() }
        }
    }
}

fn dry_run(q: &Query) -> bool {
    q.get("dryRun").is_some_and(|d| d == "All")
}

/// Checks the body's apiVersion/kind and aligns name and namespace with the URL.
fn align_identity(t: &Target, obj: &mut Value, require_name_match: bool) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    let info = &t.info;
    match obj.get("kind").and_then(Value::as_str) {
        Some(k) if k != info.kind => {
            return Err(ApiError::bad_request(format!("the kind in the body ({k}) does not match the resource ({})", info.kind)));
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
fn check_namespace(s: &Inner, t: &Target, creating: bool) -> ApiResult<()> {
    let Some(ns) = t.namespace.as_deref().filter(|_| t.info.namespaced) else { return Ok(()) };
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

fn scope_for(t: &Target) -> Scope {
    if t.is_status() {
        Scope::StatusOnly
    } else if t.info.status_subresource {
        Scope::MainWithoutStatus
    } else {
        Scope::All
    }
}

/// Status a new object starts with, per kind (the real strategies' PrepareForCreate).
fn initial_status(info: &ResourceInfo, obj: &mut Value) {
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
fn create_defaults(shared: &Shared, s: &Inner, info: &ResourceInfo, obj: &mut Value) {
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
fn admit_crd(obj: &mut Value) -> ApiResult<()> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let spec = &obj["spec"];
    let mut causes = Vec::new();
    let mut need = |field: &str, ok: bool, msg: &str| {
        if !ok {
            causes.push(crate::error::Cause { reason: "FieldValueRequired".into(), message: msg.into(), field: field.into() });
        }
    };
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    need("spec.group", !group.is_empty(), "Required value");
    need("spec.names.plural", !plural.is_empty(), "Required value");
    need("spec.names.kind", spec["names"]["kind"].as_str().is_some_and(|k| !k.is_empty()), "Required value");
    need("spec.scope", matches!(spec["scope"].as_str(), Some("Cluster" | "Namespaced")), "Required value: must be Cluster or Namespaced");
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    need("spec.versions", !versions.is_empty(), "Required value: must have at least one version");
    let storage = versions.iter().filter(|v| v["storage"].as_bool() == Some(true)).count();
    need("spec.versions", versions.is_empty() || storage == 1, "Invalid value: must have exactly one version marked as storage version");
    if !group.is_empty() && !plural.is_empty() {
        let want = format!("{plural}.{group}");
        need("metadata.name", name == want, &format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"));
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
        json!({"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": ts("NamesAccepted")}),
        json!({"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": ts("Established")}),
    ];
    if terminating {
        conditions.push(json!({"type": "Terminating", "status": "True", "reason": "InstanceDeletionInProgress", "message": "CustomResource deletion is in progress", "lastTransitionTime": ts("Terminating")}));
    }
    obj["status"] = json!({"acceptedNames": accepted, "conditions": conditions, "storedVersions": stored});
    Ok(())
}

/// Runs admission for the final object of a write: schema validation for custom resources,
/// CRD checks, name validation.
fn admit(shared: &Shared, info: &ResourceInfo, old: Option<&Value>, obj: &mut Value) -> ApiResult<()> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    if old.is_none() {
        if let Some(c) = meta::validate_name(&name, &info.kind) {
            return Err(ApiError::invalid(&info.kind, &info.group, &name, vec![c]));
        }
    }
    if !info.is_crd() {
        let causes = crate::builtin_rules::validate(info, old, obj);
        if !causes.is_empty() {
            return Err(ApiError::invalid(&info.kind, &info.group, &name, causes));
        }
    }
    if let crate::registry::SchemaSource::Crd { schema: Some(schema), .. } = &info.schema {
        let causes = validation::admit(obj, schema, old);
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

/// Finishes any write: status rules, metadata, admission, no-op detection, commit.
/// Returns the stored (or would-be) object and whether state changed.
#[allow(clippy::too_many_arguments)]
pub fn finish_write(
    shared: &Shared,
    s: &mut Inner,
    t: &Target,
    old: Option<&Arc<Value>>,
    mut new: Value,
    managed_done: bool,
    manager: &str,
    dry: bool,
) -> ApiResult<(Value, bool)> {
    let info = &t.info;
    let scope = scope_for(t);
    match old {
        Some(old) => {
            // Status rules: main writes keep the stored status, status writes keep the rest.
            if t.is_status() {
                let status = new.get("status").cloned();
                let mut kept = (**old).clone();
                if let Some(m) = kept.as_object_mut() {
                    match status {
                        Some(st) => m.insert("status".into(), st),
                        None => m.remove("status"),
                    };
                }
                kept["metadata"]["managedFields"] = new["metadata"].get("managedFields").cloned().unwrap_or(Value::Null);
                new = kept;
            } else if info.status_subresource {
                match old.get("status") {
                    Some(st) => new["status"] = st.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            new["apiVersion"] = json!(info.api_version());
            new["kind"] = json!(info.kind);
            meta::carry_over(old, &mut new);
            if !managed_done {
                let ctx = WriteCtx {
                    manager,
                    api_version: &info.api_version(),
                    subresource: t.subresource.as_deref().unwrap_or_default(),
                    root: info.root_node(),
                    scope,
                };
                managed::record_update(Some(old), &mut new, &ctx);
            }
            if new["metadata"].get("managedFields").is_some_and(Value::is_null) {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove("managedFields");
                }
            }
            admit(shared, info, Some(old), &mut new)?;
            // An object being deleted goes away when its last finalizer does.
            let terminating = new["metadata"].get("deletionTimestamp").is_some();
            let no_finalizers = new["metadata"]["finalizers"].as_array().is_none_or(Vec::is_empty);
            if terminating && no_finalizers && !(info.storage_key() == NAMESPACE_KEY && has_spec_finalizers(&new)) {
                if dry {
                    return Ok((new, false));
                }
                let gone = remove_object(shared, s, &info.storage_key(), &t.key());
                return Ok((gone.unwrap_or(new), true));
            }
            if meta::same_content(old, &new) {
                return Ok(((**old).clone(), false));
            }
            if dry {
                return Ok((new, false));
            }
            let stored = s.put(&info.storage_key(), new);
            if info.storage_key() == CRD_KEY {
                shared.registry.register_crd(&stored);
            }
            Ok(((*stored).clone(), true))
        }
        None => {
            if t.is_status() {
                return Err(t.not_found());
            }
            initial_status(info, &mut new);
            meta::stamp_create(&mut new, &info.api_version(), &info.kind, info.tracks_generation());
            create_defaults(shared, s, info, &mut new);
            if !managed_done {
                let ctx = WriteCtx {
                    manager,
                    api_version: &info.api_version(),
                    subresource: "",
                    root: info.root_node(),
                    scope,
                };
                managed::record_update(None, &mut new, &ctx);
            }
            admit(shared, info, None, &mut new)?;
            if dry {
                return Ok((new, false));
            }
            let stored = s.put(&info.storage_key(), new);
            if info.storage_key() == CRD_KEY {
                shared.registry.register_crd(&stored);
            }
            Ok(((*stored).clone(), true))
        }
    }
}

fn has_spec_finalizers(ns: &Value) -> bool {
    ns["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty())
}

/// Removes an object from the store, with the side effects of removal (a CRD stops serving).
pub fn remove_object(shared: &Shared, s: &mut Inner, storage_key: &str, key: &ObjKey) -> Option<Value> {
    let gone = s.remove(storage_key, key)?;
    if storage_key == CRD_KEY {
        if let Some(name) = gone["metadata"]["name"].as_str() {
            let group = gone["spec"]["group"].as_str().unwrap_or_default();
            let plural = gone["spec"]["names"]["plural"].as_str().unwrap_or_default();
            s.drop_resource(&format!("{group}/{plural}"));
            shared.registry.unregister_crd(name);
        }
    }
    shared.gc_wake.notify_one();
    Some((*gone).clone())
}

pub fn create(shared: &Shared, t: &Target, q: &Query, body: &[u8], content_type: &str, ua: &str) -> ApiResult<Reply> {
    let mut obj = parse_body(body, content_type)?;
    let mut t = t.clone();
    align_identity(&t, &mut obj, false)?;
    let manager = manager_of(q, ua, "");
    if obj["metadata"].get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
        if let Some(prefix) = obj["metadata"].get("generateName").and_then(Value::as_str) {
            obj["metadata"]["name"] = json!(format!("{prefix}{}", meta::name_suffix()));
        }
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    t.name = Some(name.clone());
    let mut s = shared.store.lock();
    check_namespace(&s, &t, true)?;
    if s.get(&t.info.storage_key(), &t.key()).is_some() {
        return Err(ApiError::already_exists(&t.err_target()));
    }
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    let (stored, changed) = finish_write(shared, &mut s, &t, None, obj, false, &manager, dry_run(q))?;
    drop(s);
    shared.gc_wake.notify_one();
    Ok(Reply { code: 201, body: present(&stored, &t.info), changed })
}

fn check_preconditions(t: &Target, current: &Value, wanted: &Value) -> ApiResult<()> {
    if let Some(rv) = wanted["metadata"].get("resourceVersion").and_then(Value::as_str).filter(|r| !r.is_empty()) {
        if current["metadata"]["resourceVersion"].as_str() != Some(rv) {
            return Err(ApiError::conflict(
                &t.err_target(),
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
    }
    if let Some(uid) = wanted["metadata"].get("uid").and_then(Value::as_str).filter(|u| !u.is_empty()) {
        if current["metadata"]["uid"].as_str() != Some(uid) {
            return Err(ApiError::conflict(
                &t.err_target(),
                &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", current["metadata"]["uid"].as_str().unwrap_or_default()),
            ));
        }
    }
    Ok(())
}

pub fn update(shared: &Shared, t: &Target, q: &Query, body: &[u8], content_type: &str, ua: &str) -> ApiResult<Reply> {
    let mut obj = parse_body(body, content_type)?;
    align_identity(t, &mut obj, true)?;
    let manager = manager_of(q, ua, "");
    let mut s = shared.store.lock();
    check_namespace(&s, t, false)?;
    let old = s.get(&t.info.storage_key(), &t.key()).ok_or_else(|| t.not_found())?;
    check_preconditions(t, &old, &obj)?;
    let (stored, changed) = finish_write(shared, &mut s, t, Some(&old), obj, false, &manager, dry_run(q))?;
    drop(s);
    if changed {
        shared.gc_wake.notify_one();
    }
    Ok(Reply { code: 200, body: present(&stored, &t.info), changed })
}

pub fn patch(shared: &Shared, t: &Target, q: &Query, body: &[u8], content_type: &str, ua: &str) -> ApiResult<Reply> {
    let Some(type_) = PatchType::from_content_type(content_type) else {
        return Err(ApiError::unsupported_media(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"
        )));
    };
    if type_ == PatchType::Apply {
        return apply(shared, t, q, body, content_type);
    }
    let manager = manager_of(q, ua, "");
    let mut s = shared.store.lock();
    check_namespace(&s, t, false)?;
    let old = s.get(&t.info.storage_key(), &t.key()).ok_or_else(|| t.not_found())?;
    let mut patched = patch::apply_patch(&old, body, type_, t.info.root_node())?;
    if !patched.is_object() {
        return Err(ApiError::bad_request("the patch did not produce an object"));
    }
    // A resourceVersion in the patch is a precondition; otherwise the patch applies to the
    // current version.
    let wanted_rv = patched["metadata"]["resourceVersion"].clone();
    if wanted_rv != old["metadata"]["resourceVersion"] {
        check_preconditions(t, &old, &patched)?;
    }
    align_identity(t, &mut patched, true)?;
    let (stored, changed) = finish_write(shared, &mut s, t, Some(&old), patched, false, &manager, dry_run(q))?;
    drop(s);
    if changed {
        shared.gc_wake.notify_one();
    }
    Ok(Reply { code: 200, body: present(&stored, &t.info), changed })
}

fn apply(shared: &Shared, t: &Target, q: &Query, body: &[u8], content_type: &str) -> ApiResult<Reply> {
    let manager = q.get("fieldManager").filter(|m| !m.is_empty()).cloned().ok_or_else(|| {
        ApiError::bad_request("PATCH requests with apply content type require fieldManager")
    })?;
    let force = q.get("force").is_some_and(|f| f == "true");
    let mut applied = parse_body(body, content_type)?;
    if applied.get("apiVersion").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(ApiError::bad_request("apiVersion must be set in an apply configuration"));
    }
    if applied.get("kind").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(ApiError::bad_request("kind must be set in an apply configuration"));
    }
    align_identity(t, &mut applied, true)?;
    let info = &t.info;
    let scope = scope_for(t);
    let ctx = WriteCtx {
        manager: &manager,
        api_version: &info.api_version(),
        subresource: t.subresource.as_deref().unwrap_or_default(),
        root: info.root_node(),
        scope,
    };
    let mut s = shared.store.lock();
    check_namespace(&s, t, true)?;
    let old = s.get(&info.storage_key(), &t.key());
    if let Some(o) = &old {
        check_preconditions(t, o, &applied)?;
    }
    let mut merged = managed::apply(old.as_deref(), &applied, force, &ctx)?;
    if old.is_none() {
        // The apply configuration's identity becomes the new object's.
        merged["metadata"]["name"] = applied["metadata"]["name"].clone();
        if info.namespaced {
            merged["metadata"]["namespace"] = applied["metadata"]["namespace"].clone();
        }
    }
    let (stored, changed) = finish_write(shared, &mut s, t, old.as_ref(), merged, true, &manager, dry_run(q))?;
    drop(s);
    if changed {
        shared.gc_wake.notify_one();
    }
    let code = if old.is_none() && changed { 201 } else { 200 };
    Ok(Reply { code, body: present(&stored, info), changed })
}

/// Deletion options from the query and an optional DeleteOptions body.
pub struct DeleteOpts {
    pub propagation: String,
    pub precondition_rv: Option<String>,
    pub precondition_uid: Option<String>,
    pub dry_run: bool,
}

pub fn delete_opts(q: &Query, body: &[u8]) -> ApiResult<DeleteOpts> {
    let b: Value = if body.is_empty() { json!({}) } else { parse_body(body, "application/json")? };
    let propagation = q
        .get("propagationPolicy")
        .cloned()
        .or_else(|| b["propagationPolicy"].as_str().map(str::to_string))
        .or_else(|| if b["orphanDependents"] == json!(true) { Some("Orphan".into()) } else { None })
        .unwrap_or_else(|| "Background".into());
    if !matches!(propagation.as_str(), "Background" | "Foreground" | "Orphan") {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: \"{propagation}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
        )));
    }
    Ok(DeleteOpts {
        propagation,
        precondition_rv: b["preconditions"]["resourceVersion"].as_str().map(str::to_string),
        precondition_uid: b["preconditions"]["uid"].as_str().map(str::to_string),
        dry_run: dry_run(q) || b["dryRun"].as_array().is_some_and(|d| d.iter().any(|x| x == "All")),
    })
}

/// Deletes one object under the lock: marks it terminating when finalizers (including the
/// ones the propagation policy adds) hold it, removes it otherwise.
/// Returns (object or final state, removed, changed).
pub fn delete_locked(shared: &Shared, s: &mut Inner, info: &ResourceInfo, key: &ObjKey, opts: &DeleteOpts) -> ApiResult<(Value, bool, bool)> {
    let storage = info.storage_key();
    let t = ErrTarget { group: &info.group, resource: &info.plural, name: &key.1 };
    let old = s.get(&storage, key).ok_or_else(|| ApiError::not_found(&t))?;
    if let Some(rv) = &opts.precondition_rv {
        if old["metadata"]["resourceVersion"].as_str() != Some(rv.as_str()) {
            return Err(ApiError::conflict(&t, &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                old["metadata"]["resourceVersion"].as_str().unwrap_or_default()
            )));
        }
    }
    if let Some(uid) = &opts.precondition_uid {
        if old["metadata"]["uid"].as_str() != Some(uid.as_str()) {
            return Err(ApiError::conflict(&t, &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                old["metadata"]["uid"].as_str().unwrap_or_default()
            )));
        }
    }
    let mut new = (*old).clone();
    let mut finalizers: Vec<Value> = new["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
    let already_terminating = new["metadata"].get("deletionTimestamp").is_some();
    if !already_terminating {
        let add = match opts.propagation.as_str() {
            "Foreground" => Some("foregroundDeletion"),
            "Orphan" => Some("orphan"),
            _ => None,
        };
        if let Some(f) = add {
            if !finalizers.iter().any(|x| x == f) {
                finalizers.push(json!(f));
            }
        }
    }
    let held = !finalizers.is_empty() || (storage == NAMESPACE_KEY && has_spec_finalizers(&new));
    if !held {
        if opts.dry_run {
            return Ok(((*old).clone(), true, false));
        }
        let gone = remove_object(shared, s, &storage, key).unwrap_or_else(|| (*old).clone());
        return Ok((gone, true, true));
    }
    if already_terminating {
        return Ok(((*old).clone(), false, false));
    }
    new["metadata"]["finalizers"] = Value::Array(finalizers.clone());
    if finalizers.is_empty() {
        if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("finalizers");
        }
    }
    new["metadata"]["deletionTimestamp"] = json!(meta::now());
    new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    if storage == NAMESPACE_KEY {
        new["status"]["phase"] = json!("Terminating");
    }
    if storage == CRD_KEY {
        let _ = admit_crd(&mut new);
    }
    if opts.dry_run {
        return Ok((new, false, false));
    }
    let stored = s.put(&storage, new);
    shared.gc_wake.notify_one();
    Ok(((*stored).clone(), false, true))
}

fn success_status(info: &ResourceInfo, obj: &Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": obj["metadata"]["name"],
            "group": info.group,
            "kind": info.plural,
            "uid": obj["metadata"]["uid"],
        }
    })
}

pub fn delete(shared: &Shared, t: &Target, q: &Query, body: &[u8]) -> ApiResult<Reply> {
    let opts = delete_opts(q, body)?;
    let mut s = shared.store.lock();
    let (obj, removed, changed) = delete_locked(shared, &mut s, &t.info, &t.key(), &opts)?;
    drop(s);
    let body = if removed { success_status(&t.info, &obj) } else { present(&obj, &t.info) };
    Ok(Reply { code: if removed { 200 } else { 202 }, body, changed })
}

pub fn delete_collection(shared: &Shared, t: &Target, q: &Query, body: &[u8]) -> ApiResult<Reply> {
    let opts = delete_opts(q, body)?;
    let (labels, fields) = selectors(t, q)?;
    let mut s = shared.store.lock();
    let storage = t.info.storage_key();
    let targets: Vec<ObjKey> = s
        .list(&storage, t.namespace.as_deref())
        .iter()
        .filter(|o| labels.matches(o["metadata"].get("labels")) && fields.matches(o))
        .map(|o| crate::store::key_of(o))
        .collect();
    let mut items = Vec::new();
    let mut changed = false;
    for key in targets {
        if let Ok((obj, _, c)) = delete_locked(shared, &mut s, &t.info, &key, &opts) {
            changed |= c;
            items.push(present(&obj, &t.info));
        }
    }
    let rv = s.current_rv();
    drop(s);
    Ok(Reply {
        code: 200,
        body: json!({"kind": format!("{}List", t.info.kind), "apiVersion": t.info.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
        changed,
    })
}

/// Stores an object as given, bypassing validation (for tests of bad cluster state).
pub fn insert_raw(shared: &Shared, obj: Value) -> Result<(), String> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let info = shared
        .registry
        .by_kind(api_version, kind)
        .ok_or_else(|| format!("no served resource for apiVersion {api_version:?} kind {kind:?}"))?;
    let mut obj = obj;
    if obj["metadata"].get("uid").is_none() {
        obj["metadata"]["uid"] = json!(meta::new_uid());
    }
    if obj["metadata"].get("creationTimestamp").is_none() {
        obj["metadata"]["creationTimestamp"] = json!(meta::now());
    }
    let mut s = shared.store.lock();
    s.put(&info.storage_key(), obj);
    Ok(())
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
