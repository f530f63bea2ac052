//! An in-memory Kubernetes API server for tests, demos and benchmarks, spoken to over real HTTP
//! on 127.0.0.1 by an unmodified `kube::Client` or by kubectl.
//!
//! ```no_run
//! # async fn demo() -> Result<(), local_apiserver::Error> {
//! let server = local_apiserver::LocalApiServer::start().await?;
//! let client = server.client();
//! // ... drive the operator with `client`, then inspect:
//! let writes = server.counters().writes();
//! # let _ = (client, writes);
//! # Ok(()) }
//! ```
//!
//! Module map:
//! - serving: `http` (routing, faults, counters, response shapes), `discovery`, `openapi`
//!   (minimal /openapi/v3), `registry` (what is served) and `columns` (printer columns);
//! - verbs: `handlers` (shared types, get, list), `write` (create, update, patch, apply),
//!   `deletion`, `admission` (checks and defaults), `builtin_rules` (built-in validation),
//!   `validation` + `cel_rules` + `cel_cost` (CRD schemas, CEL, rule cost), `tokens` (TokenRequest), `protobuf`
//!   (kubectl's protobuf bodies), `watch`, `table` (Table / PartialObjectMetadata);
//! - state: `store` (objects, the resourceVersion counter, event history), `meta` (metadata);
//! - server-side apply: `managed` (managedFields, apply), `fieldpath` (field sets), `schema`
//!   (list and map merge rules), `patch` (merge, JSON and strategic patches), `selectors`;
//! - controllers: `gc` (finalizers, ownerReferences, namespace and CRD deletion), `workloads`
//!   (the loop running `controllers`: deployment, replicaset, daemonset, scheduling, nodes and
//!   the kubelet stand-in);
//! - authentication and RBAC (`auth`, off unless [`Authorization::Rbac`]): tokens, impersonation,
//!   the RBAC evaluator, escalation checks, the reviews, https, the access audit;
//! - beside the server: `tls_standin` (an HTTPS endpoint with its own CA in front of moto, and a
//!   CONNECT proxy), for the operator's AWS proxy and CA-bundle path;
//! - test controls: `faults`, `counters`, the Kubernetes version (`discovery::version_control` serves
//!   `/local-apiserver/version`; the registry serves the versioned built-in APIs of the version).

// Every handler returns the full Status body the real server would send; it is an error path of a
// test server, so its size does not matter more than keeping handlers plain.
#![allow(clippy::result_large_err)]

mod admission;
mod auth;
mod builtin_rules;
mod cel_cost;
mod cel_rules;
mod columns;
mod controllers;
mod counters;
mod defaults;
mod deletion;
mod discovery;
mod error;
mod faults;
mod fieldpath;
mod gc;
mod handlers;
mod http;
mod managed;
mod meta;
mod openapi;
mod patch;
mod protobuf;
mod registry;
mod scale;
mod schema;
mod selectors;
mod server;
mod store;
mod table;
pub mod tls_standin;
mod tokens;
mod validation;
mod watch;
mod workloads;
mod write;

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

pub use auth::Authorization;
pub use auth::audit::{Access, UnusedGrant};
pub use counters::Counters;
pub use error::Error;
pub use faults::{Faults, Match};
pub use workloads::{ImageFault, KubeletOptions};

/// How to run the server.
#[derive(Debug, Clone)]
pub struct Options {
    /// Reported by `/version` (e.g. "1.33" or "1.34.2"); decides which versioned built-in APIs
    /// are served. Changeable at run time with [`LocalApiServer::set_kubernetes_version`].
    pub kubernetes_version: String,
    /// Run the workload controllers, the scheduler and the kubelet stand-in (see
    /// [`LocalApiServer::set_simulate_workloads`]).
    pub simulate_workloads: bool,
    /// Timing of the kubelet stand-in and the registries whose images need a pull secret.
    pub kubelet: KubeletOptions,
    /// Ready Nodes (`node-0`, `node-1`, ... labelled `kubernetes.io/os: linux`) that exist at
    /// start. A cluster without Nodes schedules nothing.
    pub nodes: usize,
    /// How many change events are kept for watches from an old resourceVersion; a watch from
    /// before the oldest kept event gets 410 Gone.
    pub watch_history: usize,
    /// Interval of BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// Port to bind on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Namespaces that exist at start (the real cluster's defaults).
    pub initial_namespaces: Vec<String>,
    /// Authentication and authorization: off by default; [`Authorization::Rbac`] enforces RBAC
    /// like a real cluster (see the crate README).
    pub authorization: Authorization,
    /// Admission plugins to enable beyond the default set, as kube-apiserver's
    /// `--enable-admission-plugins` names them; only `OwnerReferencesPermissionEnforcement`
    /// (RBAC mode) is implemented.
    pub admission_plugins: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            kubernetes_version: "1.33".into(),
            simulate_workloads: true,
            kubelet: KubeletOptions::default(),
            nodes: 0,
            watch_history: 10_000,
            bookmark_interval: Duration::from_secs(1),
            port: 0,
            initial_namespaces: ["default", "kube-system", "kube-public", "kube-node-lease"].map(String::from).to_vec(),
            authorization: Authorization::AlwaysAllow,
            admission_plugins: Vec::new(),
        }
    }
}

/// A running server. Dropping it shuts the server down.
pub struct LocalApiServer {
    shared: Arc<server::Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
    // Held for its Drop: stops the loop's thread.
    _workloads: workloads::Thread,
}

impl LocalApiServer {
    /// Starts on 127.0.0.1 with a free port and default options.
    pub async fn start() -> Result<LocalApiServer, Error> {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Result<LocalApiServer, Error> {
        let kubernetes_version = discovery::parse_version(&opts.kubernetes_version)
            .map_err(|message| Error::InvalidOption { field: "kubernetes_version", message })?;
        let minor = registry::minor_of(&kubernetes_version).unwrap_or(33);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port))
            .await
            .map_err(|source| Error::Bind { port: opts.port, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind { port: opts.port, source })?;
        let mut auth = auth::AuthState::new(opts.authorization)
            .map_err(|message| Error::InvalidOption { field: "authorization", message })?;
        for plugin in &opts.admission_plugins {
            match plugin.as_str() {
                auth::owner_references::PLUGIN if opts.authorization == Authorization::Rbac => {
                    auth.owner_references_permission_enforcement = true;
                }
                auth::owner_references::PLUGIN => {
                    return Err(Error::InvalidOption {
                        field: "admission_plugins",
                        message: format!("{plugin} needs the RBAC authorization mode"),
                    });
                }
                other => {
                    return Err(Error::InvalidOption {
                        field: "admission_plugins",
                        message: format!(
                            "unsupported admission plugin {other:?}: supported values are \"{}\"",
                            auth::owner_references::PLUGIN
                        ),
                    });
                }
            }
        }
        let shared = Arc::new(server::Shared {
            kubernetes_version: std::sync::RwLock::new(kubernetes_version),
            store: store::Store::new(opts.watch_history),
            registry: registry::Registry::new(minor),
            counters: counters::CounterSink::default(),
            faults: Faults::default(),
            simulate_workloads: AtomicBool::new(opts.simulate_workloads),
            workloads: workloads::Config::new(opts.kubelet.clone()),
            gc_wake: Notify::new(),
            bookmark_interval: opts.bookmark_interval,
            port: AtomicU16::new(addr.port()),
            auth,
        });
        for ns in &opts.initial_namespaces {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            let t = handlers::Target {
                info: shared.registry.lookup("", "v1", "namespaces").ok_or(Error::InvalidOption {
                    field: "initial_namespaces",
                    message: "namespaces are not served".into(),
                })?,
                namespace: None,
                name: None,
                subresource: None,
            };
            let body = serde_json::to_vec(&obj).unwrap_or_default();
            write::create(&shared, &t, &Default::default(), &body, "application/json", "local-apiserver").map_err(
                |e| Error::InvalidOption { field: "initial_namespaces", message: format!("{ns}: {}", e.message) },
            )?;
        }
        if opts.authorization == Authorization::Rbac {
            for obj in auth::rbac::bootstrap_objects() {
                let kind = obj["kind"].as_str().unwrap_or_default().to_string();
                let plural = format!("{}s", kind.to_lowercase());
                let info = shared.registry.lookup(auth::rbac::GROUP, "v1", &plural).ok_or(Error::InvalidOption {
                    field: "authorization",
                    message: format!("{plural} are not served"),
                })?;
                let t = handlers::Target { info, namespace: None, name: None, subresource: None };
                let body = serde_json::to_vec(&obj).unwrap_or_default();
                write::create(&shared, &t, &Default::default(), &body, "application/json", "local-apiserver")
                    .map_err(|e| Error::InvalidOption { field: "authorization", message: e.message })?;
            }
        }
        for i in 0..opts.nodes {
            let node = controllers::nodes::node_object(&format!("node-{i}"), &[("kubernetes.io/os", "linux")], &[])?;
            create_node(&shared, node)?;
        }
        let (tx, rx) = oneshot::channel::<()>();
        let app = http::router(shared.clone());
        let tls = shared.auth.tls.as_ref().map(|t| t.acceptor.clone());
        let serve = tokio::spawn(async move {
            if let Some(acceptor) = tls {
                return auth::tls::serve(listener, app, acceptor, rx).await;
            }
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "local-apiserver stopped");
            }
        });
        let gc = tokio::spawn(gc::run(shared.clone()));
        let workloads = workloads::spawn(shared.clone()).map_err(Error::Thread)?;
        let mut tasks = vec![serve, gc];
        if shared.auth.enabled() {
            tasks.push(tokio::spawn(auth::aggregation::run(shared.clone())));
        }
        Ok(LocalApiServer { shared, addr, shutdown: Some(tx), tasks, _workloads: workloads })
    }

    /// `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT` with RBAC on (the CA is
    /// [`ca_certificate_pem`](Self::ca_certificate_pem)).
    pub fn url(&self) -> String {
        let scheme = if self.shared.auth.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The PEM of the CA that signed the server's certificate (RBAC mode, which serves https).
    pub fn ca_certificate_pem(&self) -> Option<String> {
        self.shared.auth.tls.as_ref().map(|t| t.ca_pem.clone())
    }

    /// A kubeconfig that authenticates as `user` with a bearer token and trusts the server's CA.
    fn token_kubeconfig(&self, user: &str, token: &str, namespace: &str) -> String {
        let ca = match &self.shared.auth.tls {
            Some(tls) => format!("    certificate-authority-data: {}\n", auth::tls::base64(tls.ca_pem.as_bytes())),
            None => String::new(),
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {}\n{ca}contexts:\n\
             - name: local\n  context:\n    cluster: local\n    user: {user:?}\n    namespace: {namespace}\n\
             current-context: local\nusers:\n- name: {user:?}\n  user:\n    token: {token}\npreferences: {{}}\n",
            self.url()
        )
    }

    /// A kube client config for this server without credentials (trusting its CA with RBAC on):
    /// requests with it are `system:anonymous` under RBAC. Set `auth_info` to add an identity.
    pub fn client_config(&self) -> Result<kube::Config, Error> {
        let uri = self
            .url()
            .parse()
            .map_err(|e: axum::http::uri::InvalidUri| Error::InvalidOption { field: "url", message: e.to_string() })?;
        let mut config = kube::Config::new(uri);
        if let Some(tls) = &self.shared.auth.tls {
            config.root_cert = Some(vec![tls.ca_der.clone()]);
        }
        Ok(config)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A kube client for this server (default namespace `default`; with RBAC on, the admin
    /// identity: user `admin` in group `system:masters`).
    pub fn client(&self) -> kube::Client {
        // The URL is always well-formed and the config has no TLS or auth to fail on.
        self.try_client().unwrap_or_else(|e| panic!("building a kube client for {}: {e}", self.url()))
    }

    pub fn try_client(&self) -> Result<kube::Client, Error> {
        let url = self.url();
        let mut config = self.client_config()?;
        if self.shared.auth.enabled() {
            config.auth_info.token = Some(self.shared.auth.admin_token.clone().into());
        }
        kube::Client::try_from(config).map_err(|source| Error::Client { url, source })
    }

    /// A kubeconfig for this server (context `local`, namespace `default`; no credentials, or
    /// with RBAC on the admin token).
    pub fn kubeconfig_yaml(&self) -> String {
        if self.shared.auth.enabled() {
            self.token_kubeconfig(auth::ADMIN_USER, &self.shared.auth.admin_token, "default")
        } else {
            kubeconfig_yaml(&self.url())
        }
    }

    pub fn write_kubeconfig(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// A snapshot of the request counters.
    pub fn counters(&self) -> Counters {
        self.shared.counters.snapshot()
    }

    pub fn reset_counters(&self) {
        self.shared.counters.reset();
    }

    /// The fault controls (shared: changes apply to the running server).
    pub fn faults(&self) -> Faults {
        self.shared.faults.clone()
    }

    /// Stores an object as given (it must have apiVersion, kind and metadata.name, plus
    /// metadata.namespace when namespaced), bypassing validation, admission and managed fields.
    /// Watches see it as ADDED/MODIFIED.
    pub fn insert_raw(&self, obj: serde_json::Value) {
        if let Err(e) = write::insert_raw(&self.shared, obj) {
            panic!("insert_raw: {e}");
        }
    }

    /// Turns the workload controllers, scheduler and kubelet stand-in on or off. Off, nothing
    /// moves (no ReplicaSets, Pods or status changes); turning it on catches every workload up.
    pub fn set_simulate_workloads(&self, on: bool) {
        self.shared.simulate_workloads.store(on, Ordering::Relaxed);
        if on {
            workloads::reconcile_all(&self.shared);
        }
    }

    /// Adds a Node, as a joining kubelet registers it: `labels` as given (the kubelet adds
    /// `kubernetes.io/hostname`, `kubernetes.io/os` and `kubernetes.io/arch` when absent),
    /// `taints` in kubectl's syntax (`key=value:NoSchedule`, `key:NoExecute`). It reports
    /// Ready; DaemonSets place pods on it and pending pods may be scheduled to it.
    pub fn add_node(&self, name: &str, labels: &[(&str, &str)], taints: &[&str]) -> Result<(), Error> {
        create_node(&self.shared, controllers::nodes::node_object(name, labels, taints)?)
    }

    /// Removes a Node; its pods go away (pod GC) and DaemonSets stop counting it. Returns
    /// whether it existed.
    pub fn remove_node(&self, name: &str) -> bool {
        let Some(info) = self.shared.registry.lookup("", "v1", "nodes") else { return false };
        let opts = deletion::DeleteOpts {
            propagation: "Background".into(),
            precondition_rv: None,
            precondition_uid: None,
            dry_run: false,
        };
        let mut s = self.shared.store.lock();
        deletion::delete_locked(&self.shared, &mut s, &info, &(String::new(), name.to_string()), &opts).is_ok()
    }

    /// Sets a Node's Ready condition: not ready (`Unknown`, as when its kubelet stops posting
    /// status) keeps new pods off it and marks its pods not ready; ready again resumes them.
    pub fn set_node_ready(&self, name: &str, ready: bool) -> Result<(), Error> {
        let unknown = || Error::InvalidOption { field: "node", message: format!("no Node named {name:?}") };
        let info = self.shared.registry.lookup("", "v1", "nodes").ok_or_else(unknown)?;
        let mut s = self.shared.store.lock();
        let old = s.get(&info.storage_key(), &(String::new(), name.to_string())).ok_or_else(unknown)?;
        let mut new = (*old).clone();
        new["status"] = controllers::nodes::with_ready(&old, ready);
        let t = handlers::Target {
            info,
            namespace: None,
            name: Some(name.to_string()),
            subresource: Some("status".into()),
        };
        write::finish_write(&self.shared, &mut s, &t, Some(&old), new, false, "kubelet", false)
            .map(|_| ())
            .map_err(|e| Error::InvalidOption { field: "node", message: e.message })
    }

    /// Makes every container running `image` (the exact image string of the pod spec) crash
    /// ([`ImageFault::Crash`]: CrashLoopBackOff with growing restartCount) or never become
    /// ready ([`ImageFault::NeverReady`]). Applies to running pods too.
    pub fn set_image_fault(&self, image: &str, fault: ImageFault) {
        self.shared.workloads.set_fault(image, Some(fault));
    }

    /// Clears the fault of `image`: crashing containers start normally at their next restart.
    pub fn clear_image_fault(&self, image: &str) {
        self.shared.workloads.set_fault(image, None);
    }

    /// Replaces the registries whose images need a pull secret (default `["dhi.io"]`).
    pub fn set_private_registries(&self, registries: &[&str]) {
        let mut k = self.shared.workloads.kubelet.lock().unwrap_or_else(|p| p.into_inner());
        k.private_registries = registries.iter().map(|r| r.to_string()).collect();
    }

    /// Mints a token for the ServiceAccount `namespace/name` through the server's TokenRequest
    /// (the account must exist; one hour validity). With RBAC on, requests with it are
    /// authenticated as `system:serviceaccount:NAMESPACE:NAME`.
    pub fn service_account_token(&self, namespace: &str, name: &str) -> Result<String, Error> {
        let bad = |message: String| Error::InvalidOption { field: "service_account", message };
        let info = self.shared.registry.lookup("", "v1", "serviceaccounts").ok_or_else(|| bad("not served".into()))?;
        let t = handlers::Target {
            info,
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            subresource: Some("token".into()),
        };
        let body = br#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{}}"#;
        let reply = tokens::create_token(&self.shared, &t, body, "application/json")
            .map_err(|e| bad(format!("{namespace}/{name}: {}", e.message)))?;
        reply.body["status"]["token"].as_str().map(str::to_string).ok_or_else(|| bad("no token issued".into()))
    }

    /// A kube client that authenticates with `token` (default namespace `default`).
    pub fn client_for_token(&self, token: &str) -> Result<kube::Client, Error> {
        let url = self.url();
        let mut config = self.client_config()?;
        config.auth_info.token = Some(token.to_string().into());
        kube::Client::try_from(config).map_err(|source| Error::Client { url, source })
    }

    /// A kube client acting as the ServiceAccount `namespace/name`, with a token from
    /// [`service_account_token`](Self::service_account_token).
    pub fn client_for_service_account(&self, namespace: &str, name: &str) -> Result<kube::Client, Error> {
        self.client_for_token(&self.service_account_token(namespace, name)?)
    }

    /// A kubeconfig (context `local`, namespace `namespace`) with a fresh token of the
    /// ServiceAccount `namespace/name`.
    pub fn kubeconfig_yaml_for_service_account(&self, namespace: &str, name: &str) -> Result<String, Error> {
        let token = self.service_account_token(namespace, name)?;
        let user = auth::sa_username(namespace, name);
        Ok(self.token_kubeconfig(&user, &token, namespace))
    }

    pub fn write_kubeconfig_for_service_account(&self, path: &Path, namespace: &str, name: &str) -> Result<(), Error> {
        let yaml = self.kubeconfig_yaml_for_service_account(namespace, name)?;
        std::fs::write(path, yaml)
            .map_err(|e| Error::InvalidOption { field: "path", message: format!("{}: {e}", path.display()) })
    }

    /// The authorised requests `user` made (e.g. `system:serviceaccount:NS:NAME`), one entry per
    /// verb, API group, resource, subresource, namespace and name, with counts. Includes the
    /// `impersonate`, `bind` and `escalate` checks that were allowed. Empty with RBAC off.
    pub fn access_log(&self, user: &str) -> Vec<Access> {
        self.shared.auth.audit.allowed(user)
    }

    /// The requests of `user` that were refused with 403.
    pub fn denied_requests(&self, user: &str) -> Vec<Access> {
        self.shared.auth.audit.denied(user)
    }

    /// What `user`'s (non-default) bindings grant and none of its recorded requests used: one
    /// entry per verb × API group × resource × resource name (or verb × non-resource URL).
    pub fn unused_grants(&self, user: &str) -> Vec<UnusedGrant> {
        self.unused_grants_with(user, &[])
    }

    /// Like [`unused_grants`](Self::unused_grants), counting `also_used` as used too: accesses
    /// collected from other servers (e.g. every test of a suite), so one check covers a suite.
    pub fn unused_grants_with(&self, user: &str, also_used: &[Access]) -> Vec<UnusedGrant> {
        let s = self.shared.store.lock();
        auth::audit::unused_grants(&s, &self.shared.auth.audit, &auth::audit::identity_for(user), also_used)
    }

    /// Forgets the recorded accesses of every user.
    pub fn reset_access_log(&self) {
        self.shared.auth.audit.reset();
    }

    /// The Kubernetes version `/version` reports now, e.g. "1.33" or "1.34.2".
    pub fn kubernetes_version(&self) -> String {
        self.shared.kubernetes_version()
    }

    /// Changes the Kubernetes version while running, as a control-plane upgrade (or downgrade)
    /// does: `/version` (gitVersion, major, minor) reports it from the next request on, and the
    /// built-in APIs served follow it (storage.k8s.io/v1 VolumeAttributesClass from 1.34), in
    /// discovery, OpenAPI and routing. Stored objects, open watches and CRDs are untouched.
    /// Process users do the same with `POST /local-apiserver/version` (see the README).
    pub fn set_kubernetes_version(&self, version: &str) -> Result<(), Error> {
        self.shared
            .set_kubernetes_version(version)
            .map_err(|message| Error::InvalidOption { field: "kubernetes_version", message })
    }

    /// The current resourceVersion (the last one handed out).
    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().current_rv()
    }

    /// How many objects are stored.
    pub fn object_count(&self) -> usize {
        self.shared.store.lock().count()
    }
}

impl Drop for LocalApiServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn create_node(shared: &server::Shared, node: serde_json::Value) -> Result<(), Error> {
    let name = node["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let info = shared
        .registry
        .lookup("", "v1", "nodes")
        .ok_or(Error::InvalidOption { field: "nodes", message: "nodes are not served".into() })?;
    let t = handlers::Target { info, namespace: None, name: Some(name.clone()), subresource: None };
    let body = serde_json::to_vec(&node).unwrap_or_default();
    write::create(shared, &t, &Default::default(), &body, "application/json", "kubelet")
        .map(|_| ())
        .map_err(|e| Error::InvalidOption { field: "nodes", message: format!("{name}: {}", e.message) })
}

/// A kubeconfig pointing at `server` without credentials.
pub fn kubeconfig_yaml(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {server}\n\
         contexts:\n- name: local\n  context:\n    cluster: local\n    user: local\n    namespace: default\n\
         current-context: local\nusers:\n- name: local\n  user: {{}}\npreferences: {{}}\n"
    )
}
