//! The resources the server serves: the built-in kinds listed in the issue, plus one entry per
//! served version of every established CustomResourceDefinition. Discovery, routing, tables and
//! validation all read from here, so what is served and what is advertised never disagree.

use std::sync::{Arc, RwLock};

use serde_json::Value;

use crate::columns::{builtin_columns, col};
use crate::schema::Node;

/// One printer column of `kubectl get` tables.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// Where a resource's type information comes from.
#[derive(Debug, Clone)]
pub enum SchemaSource {
    /// A k8s-openapi type path, e.g. `api::apps::v1::Deployment`.
    Builtin(&'static str),
    /// The openAPIV3Schema of a CRD version (None when the CRD declares none).
    Crd { crd_name: String, schema: Option<Arc<Value>> },
}

/// A served group/version/resource.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Has a `/status` subresource: main-resource writes ignore status, `/status` writes only it.
    pub status_subresource: bool,
    /// Has the `serviceaccounts/token` subresource.
    pub token_subresource: bool,
    /// Has the autoscaling/v1 `scale` subresource (Deployments, ReplicaSets).
    pub scale_subresource: bool,
    pub schema: SchemaSource,
    pub columns: Vec<Column>,
}

impl ResourceInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The key of the storage of this resource: all versions of a resource share it.
    pub fn storage_key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    pub fn root_node(&self) -> Node<'_> {
        match &self.schema {
            SchemaSource::Builtin(path) => Node::builtin(path),
            SchemaSource::Crd { schema: Some(s), .. } => Node::Open(s.as_ref()),
            SchemaSource::Crd { schema: None, .. } => Node::Unknown,
        }
    }

    /// Whether the real server keeps `metadata.generation` for this kind.
    pub fn tracks_generation(&self) -> bool {
        self.is_crd()
            || matches!(
                (self.group.as_str(), self.kind.as_str()),
                ("apps", _) | ("policy", "PodDisruptionBudget") | ("apiextensions.k8s.io", "CustomResourceDefinition")
            )
    }

    pub fn is_crd(&self) -> bool {
        matches!(self.schema, SchemaSource::Crd { .. })
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
    type_path: &'static str,
}

const BUILTINS: &[Builtin] = &[
    Builtin {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        namespaced: false,
        short: &["ns"],
        status: true,
        type_path: "api::core::v1::Namespace",
    },
    Builtin {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        namespaced: true,
        short: &["sa"],
        status: false,
        type_path: "api::core::v1::ServiceAccount",
    },
    Builtin {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        namespaced: true,
        short: &[],
        status: false,
        type_path: "api::core::v1::Secret",
    },
    Builtin {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        namespaced: true,
        short: &["cm"],
        status: false,
        type_path: "api::core::v1::ConfigMap",
    },
    Builtin {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        namespaced: true,
        short: &["svc"],
        status: true,
        type_path: "api::core::v1::Service",
    },
    Builtin {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        namespaced: true,
        short: &["ev"],
        status: false,
        type_path: "api::core::v1::Event",
    },
    Builtin {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        namespaced: true,
        short: &["po"],
        status: true,
        type_path: "api::core::v1::Pod",
    },
    Builtin {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        namespaced: false,
        short: &["no"],
        status: true,
        type_path: "api::core::v1::Node",
    },
    Builtin {
        group: "",
        version: "v1",
        kind: "PersistentVolume",
        plural: "persistentvolumes",
        namespaced: false,
        short: &["pv"],
        status: true,
        type_path: "api::core::v1::PersistentVolume",
    },
    Builtin {
        group: "",
        version: "v1",
        kind: "PersistentVolumeClaim",
        plural: "persistentvolumeclaims",
        namespaced: true,
        short: &["pvc"],
        status: true,
        type_path: "api::core::v1::PersistentVolumeClaim",
    },
    Builtin {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        namespaced: true,
        short: &["deploy"],
        status: true,
        type_path: "api::apps::v1::Deployment",
    },
    Builtin {
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        plural: "daemonsets",
        namespaced: true,
        short: &["ds"],
        status: true,
        type_path: "api::apps::v1::DaemonSet",
    },
    Builtin {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        namespaced: true,
        short: &["rs"],
        status: true,
        type_path: "api::apps::v1::ReplicaSet",
    },
    Builtin {
        group: "apps",
        version: "v1",
        kind: "ControllerRevision",
        plural: "controllerrevisions",
        namespaced: true,
        short: &[],
        status: false,
        type_path: "api::apps::v1::ControllerRevision",
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "ClusterRole",
        plural: "clusterroles",
        namespaced: false,
        short: &[],
        status: false,
        type_path: "api::rbac::v1::ClusterRole",
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "ClusterRoleBinding",
        plural: "clusterrolebindings",
        namespaced: false,
        short: &[],
        status: false,
        type_path: "api::rbac::v1::ClusterRoleBinding",
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "Role",
        plural: "roles",
        namespaced: true,
        short: &[],
        status: false,
        type_path: "api::rbac::v1::Role",
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "RoleBinding",
        plural: "rolebindings",
        namespaced: true,
        short: &[],
        status: false,
        type_path: "api::rbac::v1::RoleBinding",
    },
    Builtin {
        group: "storage.k8s.io",
        version: "v1",
        kind: "CSIDriver",
        plural: "csidrivers",
        namespaced: false,
        short: &[],
        status: false,
        type_path: "api::storage::v1::CSIDriver",
    },
    Builtin {
        group: "storage.k8s.io",
        version: "v1",
        kind: "StorageClass",
        plural: "storageclasses",
        namespaced: false,
        short: &["sc"],
        status: false,
        type_path: "api::storage::v1::StorageClass",
    },
    Builtin {
        group: "storage.k8s.io",
        version: "v1",
        kind: "CSINode",
        plural: "csinodes",
        namespaced: false,
        short: &[],
        status: false,
        type_path: "api::storage::v1::CSINode",
    },
    Builtin {
        group: "storage.k8s.io",
        version: "v1",
        kind: "VolumeAttachment",
        plural: "volumeattachments",
        namespaced: false,
        short: &[],
        status: true,
        type_path: "api::storage::v1::VolumeAttachment",
    },
    Builtin {
        group: "policy",
        version: "v1",
        kind: "PodDisruptionBudget",
        plural: "poddisruptionbudgets",
        namespaced: true,
        short: &["pdb"],
        status: true,
        type_path: "api::policy::v1::PodDisruptionBudget",
    },
    Builtin {
        group: "networking.k8s.io",
        version: "v1",
        kind: "NetworkPolicy",
        plural: "networkpolicies",
        namespaced: true,
        short: &["netpol"],
        status: false,
        type_path: "api::networking::v1::NetworkPolicy",
    },
    Builtin {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        namespaced: true,
        short: &[],
        status: false,
        type_path: "api::coordination::v1::Lease",
    },
    Builtin {
        group: "events.k8s.io",
        version: "v1",
        kind: "Event",
        plural: "events",
        namespaced: true,
        short: &["ev"],
        status: false,
        type_path: "api::events::v1::Event",
    },
    Builtin {
        group: "apiextensions.k8s.io",
        version: "v1",
        kind: "CustomResourceDefinition",
        plural: "customresourcedefinitions",
        namespaced: false,
        short: &["crd", "crds"],
        status: true,
        type_path: "apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition",
    },
];

/// Built-in kinds served only from a Kubernetes minor version on (with the real server's
/// default `--runtime-config`: beta APIs are off unless enabled). VolumeAttributesClass went GA
/// as storage.k8s.io/v1 in 1.34; its v1beta1 (1.31-1.33) is off by default, so a default 1.33
/// cluster serves no volumeattributesclasses at all.
const VERSIONED_BUILTINS: &[(u32, Builtin)] = &[(
    34,
    Builtin {
        group: "storage.k8s.io",
        version: "v1",
        kind: "VolumeAttributesClass",
        plural: "volumeattributesclasses",
        namespaced: false,
        short: &["vac"],
        status: false,
        type_path: "api::storage::v1::VolumeAttributesClass",
    },
)];

/// Drops the fields of built-in kinds whose feature gate is off by default at Kubernetes
/// 1.`minor`, as the real server's create/update strategies do (silently, unless the stored
/// object already uses the field). CSIDriver `spec.nodeAllocatableUpdatePeriodSeconds`
/// (MutableCSINodeAllocatableCount) is alpha in 1.33, beta but off by default in 1.34
/// (`pkg/features/kube_features.go` at v1.34.0) and on by default from 1.35
/// (kubernetes/kubernetes#134647).
pub fn drop_disabled_fields(info: &ResourceInfo, minor: u32, old: Option<&Value>, obj: &mut Value) {
    if (info.group.as_str(), info.kind.as_str()) == ("storage.k8s.io", "CSIDriver") && minor < 35 {
        let field = "nodeAllocatableUpdatePeriodSeconds";
        let old_uses = old.is_some_and(|o| o["spec"].get(field).is_some_and(|v| !v.is_null()));
        if !old_uses && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove(field);
        }
    }
}

/// The minor version of a Kubernetes version string ("1.34", "v1.34.2").
pub fn minor_of(kubernetes_version: &str) -> Option<u32> {
    kubernetes_version.trim_start_matches('v').split('.').nth(1)?.parse().ok()
}

fn builtin_infos(minor: u32) -> Vec<Arc<ResourceInfo>> {
    BUILTINS
        .iter()
        .chain(VERSIONED_BUILTINS.iter().filter(|(since, _)| minor >= *since).map(|(_, b)| b))
        .map(|b| {
            Arc::new(ResourceInfo {
                group: b.group.into(),
                version: b.version.into(),
                kind: b.kind.into(),
                plural: b.plural.into(),
                singular: b.kind.to_lowercase(),
                namespaced: b.namespaced,
                short_names: b.short.iter().map(|s| s.to_string()).collect(),
                categories: match b.plural {
                    "pods" | "services" | "deployments" | "daemonsets" | "replicasets" => vec!["all".into()],
                    _ => Vec::new(),
                },
                status_subresource: b.status,
                token_subresource: b.plural == "serviceaccounts",
                scale_subresource: b.group == "apps" && matches!(b.plural, "deployments" | "replicasets"),
                schema: SchemaSource::Builtin(b.type_path),
                columns: builtin_columns(b.plural, b.group),
            })
        })
        .chain(crate::auth::reviews::infos())
        .collect()
}

/// All served resources.
pub struct Registry {
    resources: RwLock<Vec<Arc<ResourceInfo>>>,
}

impl Default for Registry {
    /// The resources of the default version (1.33).
    fn default() -> Self {
        Registry::new(33)
    }
}

impl Registry {
    /// The built-in resources a server of Kubernetes 1.`minor` serves.
    pub fn new(minor: u32) -> Self {
        Registry { resources: RwLock::new(builtin_infos(minor)) }
    }

    /// Serves the built-in resources of Kubernetes 1.`minor` (what a control-plane upgrade or
    /// downgrade changes); CRD-defined resources stay as they are. Objects of a kind that is no
    /// longer served stay stored and come back when it is served again.
    pub fn set_kubernetes_minor(&self, minor: u32) {
        if let Ok(mut all) = self.resources.write() {
            all.retain(|r| r.is_crd());
            let crds = std::mem::take(&mut *all);
            *all = builtin_infos(minor);
            all.extend(crds);
        }
    }

    pub fn all(&self) -> Vec<Arc<ResourceInfo>> {
        self.resources.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// Every resource served at one group/version.
    pub fn served_at(&self, group: &str, version: &str) -> Vec<Arc<ResourceInfo>> {
        self.all().into_iter().filter(|r| r.group == group && r.version == version).collect()
    }

    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.all().into_iter().find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The resource serving `apiVersion`/`kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        self.all().into_iter().find(|r| r.group == group && r.version == version && r.kind == kind)
    }

    /// Any version of `group`/`plural` (for storage-level operations such as garbage collection).
    pub fn any_version(&self, storage_key: &str) -> Option<Arc<ResourceInfo>> {
        self.all().into_iter().find(|r| r.storage_key() == storage_key)
    }

    /// Serves the versions of a CRD (replacing what it served before). The CRD must be valid.
    pub fn register_crd(&self, crd: &Value) {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or_default().to_string();
        let names = &spec["names"];
        let plural = names["plural"].as_str().unwrap_or_default().to_string();
        let kind = names["kind"].as_str().unwrap_or_default().to_string();
        let singular = names["singular"].as_str().map(str::to_string).unwrap_or_else(|| kind.to_lowercase());
        let strings = |v: &Value| -> Vec<String> {
            v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
        };
        let namespaced = spec["scope"].as_str() != Some("Cluster");
        let mut infos = Vec::new();
        for v in spec["versions"].as_array().into_iter().flatten() {
            if v["served"].as_bool() == Some(false) {
                continue;
            }
            let mut columns = vec![col("Name", "string", ".metadata.name", "Name must be unique within a namespace.")];
            columns[0].format = "name".into();
            let printer = v["additionalPrinterColumns"].as_array().cloned().unwrap_or_default();
            for c in &printer {
                columns.push(Column {
                    name: c["name"].as_str().unwrap_or_default().into(),
                    type_: c["type"].as_str().unwrap_or("string").into(),
                    format: c["format"].as_str().unwrap_or_default().into(),
                    description: c["description"].as_str().unwrap_or_default().into(),
                    priority: c["priority"].as_i64().unwrap_or(0),
                    json_path: c["jsonPath"].as_str().unwrap_or_default().into(),
                });
            }
            if printer.is_empty() {
                columns.push(col("Age", "date", ".metadata.creationTimestamp", "Time since creation."));
            }
            infos.push(Arc::new(ResourceInfo {
                group: group.clone(),
                version: v["name"].as_str().unwrap_or_default().into(),
                kind: kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                namespaced,
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
                status_subresource: v["subresources"].get("status").is_some(),
                token_subresource: false,
                scale_subresource: false,
                schema: SchemaSource::Crd {
                    crd_name: name.clone(),
                    schema: v["schema"].get("openAPIV3Schema").map(|s| Arc::new(s.clone())),
                },
                columns,
            }));
        }
        if let Ok(mut all) = self.resources.write() {
            all.retain(|r| !matches!(&r.schema, SchemaSource::Crd { crd_name, .. } if *crd_name == name));
            all.extend(infos);
        }
    }

    /// Stops serving a CRD's resource.
    pub fn unregister_crd(&self, name: &str) {
        if let Ok(mut all) = self.resources.write() {
            all.retain(|r| !matches!(&r.schema, SchemaSource::Crd { crd_name, .. } if crd_name == name));
        }
    }

    /// Groups in discovery order (core first is handled by /api), each with its versions.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in self.all() {
            if r.group.is_empty() {
                continue;
            }
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) => {
                    if !versions.contains(&r.version) {
                        versions.push(r.version.clone());
                    }
                }
                None => out.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        out
    }
}
