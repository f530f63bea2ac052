//! Verifies the driver's RBAC that the chart (a cluster admin) installed: the ClusterRoles and
//! bindings of the sidecars and node plugin, and the leases Role, as `render::rbac::driver_rbac`
//! defines them for the driver version this operator carries (and the snapshot-controller's, as
//! `snapshot_controller_rbac`). The operator never writes RBAC: it watches these objects, each by
//! name, and reports what is missing, so its token cannot grant a rule. A check reads the watches
//! and costs no request; a change to one of the objects triggers a reconcile.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use tokio::sync::mpsc;

use crate::aws::pv_watch::watcher_config;
use crate::render::rbac::{DriverRbac, SNAPSHOTTER_ROLE, driver_rbac, snapshot_controller_rbac};

/// The (group, resource, verb) triples `required` grants that `held` does not. A rule limited by
/// resourceNames covers nothing here: the driver needs its rules for every object.
pub fn missing_rules(required: &[PolicyRule], held: &[PolicyRule]) -> Vec<String> {
    let has = |list: &Option<Vec<String>>, x: &str| list.iter().flatten().any(|v| v == x || v == "*");
    let mut out = Vec::new();
    for r in required {
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                let missing: Vec<&str> = r
                    .verbs
                    .iter()
                    .filter(|v| {
                        !held.iter().any(|h| {
                            h.resource_names.as_ref().is_none_or(Vec::is_empty)
                                && has(&h.api_groups, g)
                                && has(&h.resources, res)
                                && (h.verbs.iter().any(|hv| hv == *v || hv == "*"))
                        })
                    })
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() {
                    let group = if g.is_empty() { "core" } else { g };
                    out.push(format!("{} on {group}/{res}", missing.join("/")));
                }
            }
        }
    }
    out
}

fn binds(role_ref: &RoleRef, subjects: &Option<Vec<Subject>>, want_ref: &RoleRef, want: &[Subject]) -> Vec<String> {
    let mut out = Vec::new();
    if role_ref.kind != want_ref.kind || role_ref.name != want_ref.name {
        out.push(format!(
            "refers to {} {:?} instead of {} {:?}",
            role_ref.kind, role_ref.name, want_ref.kind, want_ref.name
        ));
    }
    for w in want {
        let bound =
            subjects.iter().flatten().any(|s| s.kind == w.kind && s.name == w.name && s.namespace == w.namespace);
        if !bound {
            out.push(format!("does not bind ServiceAccount {}/{}", w.namespace.as_deref().unwrap_or_default(), w.name));
        }
    }
    out
}

/// What the watch of one named RBAC object knows: what the check compares.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    /// The watch has not listed yet.
    Unknown,
    /// Listed: no object of that name.
    Absent,
    /// A ClusterRole's or Role's rules.
    Rules(Vec<PolicyRule>),
    /// A binding's roleRef and subjects.
    Binding(RoleRef, Option<Vec<Subject>>),
    /// The first list failed (the API server's words).
    Error(String),
}

/// The RBAC kinds the driver's set holds, and what the check keeps of each object.
trait Watched: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static {
    fn seen(self) -> Seen;
}

impl Watched for ClusterRole {
    fn seen(self) -> Seen {
        Seen::Rules(self.rules.unwrap_or_default())
    }
}

impl Watched for Role {
    fn seen(self) -> Seen {
        Seen::Rules(self.rules.unwrap_or_default())
    }
}

impl Watched for ClusterRoleBinding {
    fn seen(self) -> Seen {
        Seen::Binding(self.role_ref, self.subjects)
    }
}

impl Watched for RoleBinding {
    fn seen(self) -> Seen {
        Seen::Binding(self.role_ref, self.subjects)
    }
}

/// (kind, name) of one watched object.
type Key = (String, String);

/// The driver's and the snapshot-controller's RBAC objects in the driver namespace, each watched
/// on its own by name (`fieldSelector metadata.name=NAME`, which RBAC authorises as that name, so
/// the operator's grant is `list`/`watch` limited by `resourceNames` to exactly these objects).
/// A check reads what the watches hold and costs no request; a change to one of these objects (an
/// admin deleting or narrowing a role) triggers a reconcile of every driver within a watch event.
pub struct RbacWatch {
    namespace: String,
    seen: BTreeMap<Key, Arc<Mutex<Seen>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for RbacWatch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl RbacWatch {
    /// Starts the watches of every object of [`driver_rbac`] and [`snapshot_controller_rbac`] in
    /// `namespace` (the install-time driver namespace). `changed` is sent (without waiting: a full
    /// queue already holds a trigger) when an object changes after its first list.
    pub fn start(client: &Client, namespace: &str, changed: mpsc::Sender<()>) -> Self {
        let mut w = Self { namespace: namespace.to_string(), seen: BTreeMap::new(), tasks: Vec::new() };
        for set in [driver_rbac(namespace), snapshot_controller_rbac(namespace)] {
            for o in &set.cluster_roles {
                w.watch(Api::<ClusterRole>::all(client.clone()), o.metadata.name.as_deref(), &changed);
            }
            for o in &set.cluster_role_bindings {
                w.watch(Api::<ClusterRoleBinding>::all(client.clone()), o.metadata.name.as_deref(), &changed);
            }
            for o in &set.roles {
                w.watch(Api::<Role>::namespaced(client.clone(), namespace), o.metadata.name.as_deref(), &changed);
            }
            for o in &set.role_bindings {
                let api = Api::<RoleBinding>::namespaced(client.clone(), namespace);
                w.watch(api, o.metadata.name.as_deref(), &changed);
            }
        }
        w
    }

    fn watch<K: Watched>(&mut self, api: Api<K>, name: Option<&str>, changed: &mpsc::Sender<()>) {
        let Some(name) = name else { return };
        let key = (K::kind(&()).into_owned(), name.to_string());
        if self.seen.contains_key(&key) {
            return;
        }
        let cfg = watcher_config().fields(&format!("metadata.name={name}"));
        let stream = watcher(api, cfg).default_backoff();
        let slot = Arc::new(Mutex::new(Seen::Unknown));
        let (st, changed) = (slot.clone(), changed.clone());
        self.tasks.push(tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            // What the list in progress found: a re-list after an error replaces the state only
            // once complete, so a dropped watch does not flip the condition.
            let mut listing = Seen::Absent;
            while let Some(ev) = stream.next().await {
                let next = match ev {
                    Err(e) => {
                        tracing::debug!(error = %e, "driver RBAC watch retrying");
                        if let Ok(mut s) = st.lock()
                            && matches!(*s, Seen::Unknown | Seen::Error(_))
                        {
                            *s = Seen::Error(super::pods::watch_error(&e));
                        }
                        continue;
                    }
                    Ok(watcher::Event::Init) => {
                        listing = Seen::Absent;
                        continue;
                    }
                    Ok(watcher::Event::InitApply(o)) => {
                        listing = o.seen();
                        continue;
                    }
                    Ok(watcher::Event::InitDone) => std::mem::replace(&mut listing, Seen::Absent),
                    Ok(watcher::Event::Apply(o)) => o.seen(),
                    Ok(watcher::Event::Delete(_)) => Seen::Absent,
                };
                let trigger = st
                    .lock()
                    .map(|mut s| {
                        let before = std::mem::replace(&mut *s, next);
                        before != *s && !matches!(before, Seen::Unknown)
                    })
                    .unwrap_or(false);
                if trigger {
                    let _ = changed.try_send(());
                }
            }
        }));
        self.seen.insert(key, slot);
    }

    /// Completes once every watch has listed once (or failed to: the check reports that), for
    /// the readiness gate: no RBAC verdict is taken before.
    pub fn synced(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let slots: Vec<_> = self.seen.values().cloned().collect();
        async move {
            while slots.iter().any(|s| s.lock().map(|s| *s == Seen::Unknown).unwrap_or(false)) {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }

    /// What the watch of `kind` `name` holds; a problem for `shown` when it is not there.
    fn get(&self, kind: &str, name: &str, shown: &str, problems: &mut Vec<String>) -> Option<Seen> {
        let seen = self
            .seen
            .get(&(kind.to_string(), name.to_string()))
            .and_then(|s| s.lock().ok().map(|s| s.clone()))
            .unwrap_or(Seen::Unknown);
        match seen {
            Seen::Absent => problems.push(format!("{shown} is missing")),
            Seen::Error(e) => problems.push(format!("{shown} cannot be read: {e}")),
            Seen::Unknown => problems.push(format!("{shown} has not been read yet")),
            s => return Some(s),
        }
        None
    }

    /// What is wrong with the driver's RBAC in the driver namespace; empty when everything the
    /// driver needs is granted. The snapshotter's role counts only while the snapshot API is
    /// installed.
    pub fn check(&self, snapshot_api: bool) -> Vec<String> {
        self.check_set(&driver_rbac(&self.namespace), |name| name == SNAPSHOTTER_ROLE && !snapshot_api)
    }

    /// What is wrong with the snapshot-controller's RBAC (chart value
    /// `snapshotController.rbac.create`), checked while the operator runs the snapshot-controller.
    pub fn check_snapshot_controller(&self) -> Vec<String> {
        let mut problems = self.check_set(&snapshot_controller_rbac(&self.namespace), |_| false);
        if !problems.is_empty() {
            problems.push(
                "the chart installs the snapshot-controller's RBAC with the value snapshotController.rbac.create=true"
                    .to_string(),
            );
        }
        problems
    }

    fn check_set(&self, want: &DriverRbac, skip: impl Fn(&str) -> bool) -> Vec<String> {
        let mut problems = Vec::new();
        let namespace = &self.namespace;
        for (role, binding) in want.cluster_roles.iter().zip(&want.cluster_role_bindings) {
            let name = role.metadata.name.clone().unwrap_or_default();
            if skip(&name) {
                continue;
            }
            let shown = format!("ClusterRole {name}");
            if let Some(Seen::Rules(live)) = self.get("ClusterRole", &name, &shown, &mut problems) {
                let missing = missing_rules(role.rules.as_deref().unwrap_or_default(), &live);
                if !missing.is_empty() {
                    problems.push(format!("{shown} lacks {}", missing.join(", ")));
                }
            }
            let binding_name = binding.metadata.name.clone().unwrap_or_default();
            let shown = format!("ClusterRoleBinding {binding_name}");
            if let Some(Seen::Binding(role_ref, subjects)) =
                self.get("ClusterRoleBinding", &binding_name, &shown, &mut problems)
            {
                for p in binds(&role_ref, &subjects, &binding.role_ref, binding.subjects.as_deref().unwrap_or_default())
                {
                    problems.push(format!("{shown} {p}"));
                }
            }
        }
        for (role, binding) in want.roles.iter().zip(&want.role_bindings) {
            let name = role.metadata.name.clone().unwrap_or_default();
            let shown = format!("Role {namespace}/{name}");
            if let Some(Seen::Rules(live)) = self.get("Role", &name, &shown, &mut problems) {
                let missing = missing_rules(role.rules.as_deref().unwrap_or_default(), &live);
                if !missing.is_empty() {
                    problems.push(format!("{shown} lacks {}", missing.join(", ")));
                }
            }
            let binding_name = binding.metadata.name.clone().unwrap_or_default();
            let shown = format!("RoleBinding {namespace}/{binding_name}");
            if let Some(Seen::Binding(role_ref, subjects)) =
                self.get("RoleBinding", &binding_name, &shown, &mut problems)
            {
                for p in binds(&role_ref, &subjects, &binding.role_ref, binding.subjects.as_deref().unwrap_or_default())
                {
                    problems.push(format!("{shown} {p}"));
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(v: serde_json::Value) -> Vec<PolicyRule> {
        serde_json::from_value(v).expect("rules")
    }

    #[test]
    fn missing_verbs_are_named_per_resource() {
        let required = rules(json!([{"apiGroups": [""], "resources": ["persistentvolumes", "nodes"],
            "verbs": ["get", "create"]}]));
        let held = rules(json!([
            {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["get", "create"]},
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["create"], "resourceNames": ["n1"]},
        ]));
        assert_eq!(missing_rules(&required, &held), ["create on core/nodes"]);
        let wildcard = rules(json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]));
        assert!(missing_rules(&required, &wildcard).is_empty());
    }
}
