//! Authentication and authorization as kube-apiserver does them, when
//! [`Authorization::Rbac`](crate::Authorization) is on:
//! - `authn`: bearer tokens (the admin token of the written kubeconfig, ServiceAccount tokens from
//!   TokenRequest), anonymous requests, impersonation headers;
//! - `request_info`: the request attributes the real `RequestInfoFactory` derives from a path;
//! - `rbac`: the RBAC evaluator over the stored Roles, ClusterRoles and bindings, the default
//!   cluster roles, and the 403 bodies;
//! - `escalation`: the RBAC storage's escalation checks (`escalate`, `bind`, covering rules);
//! - `owner_references`: the OwnerReferencesPermissionEnforcement admission plugin, when enabled;
//! - `reviews`: SelfSubjectAccessReview, SubjectAccessReview, LocalSubjectAccessReview,
//!   SelfSubjectRulesReview, TokenReview and SelfSubjectReview;
//! - `audit`: which authorised requests each user made, and which granted rules went unused;
//! - `aggregation`: the ClusterRole aggregation controller;
//! - `tls`: the https listener of the RBAC mode (client-go sends credentials only over https).
//!
//! Off ([`Authorization::AlwaysAllow`](crate::Authorization)), no request is authenticated and
//! every request is allowed, as before. `validation` (defaults and validation of the RBAC kinds)
//! and the reviews apply in both modes.

pub mod aggregation;
pub mod audit;
pub mod authn;
pub mod escalation;
pub mod owner_references;
pub mod rbac;
pub mod request_info;
pub mod reviews;
pub mod tls;
pub mod validation;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{HeaderMap, Method};

use crate::error::ApiError;
use crate::handlers::Query;
use crate::server::Shared;

/// Which authorizer the server runs (kube-apiserver's `--authorization-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Authorization {
    /// No authentication, every request allowed (the library default).
    #[default]
    AlwaysAllow,
    /// Bearer-token authentication and RBAC authorization, like a real cluster; the written
    /// kubeconfig and [`LocalApiServer::client`](crate::LocalApiServer::client) use the admin
    /// identity (user `admin`, group `system:masters`).
    Rbac,
}

impl std::str::FromStr for Authorization {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "AlwaysAllow" => Ok(Authorization::AlwaysAllow),
            "RBAC" => Ok(Authorization::Rbac),
            other => {
                Err(format!("unsupported authorization mode {other:?}: supported values are \"AlwaysAllow\", \"RBAC\""))
            }
        }
    }
}

/// An authenticated identity (Kubernetes `user.Info`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

pub const ADMIN_USER: &str = "admin";
pub const MASTERS: &str = "system:masters";
pub const AUTHENTICATED: &str = "system:authenticated";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
pub const ANONYMOUS: &str = "system:anonymous";

impl UserInfo {
    pub fn admin() -> UserInfo {
        UserInfo { name: ADMIN_USER.into(), groups: vec![MASTERS.into(), AUTHENTICATED.into()], ..Default::default() }
    }

    pub fn anonymous() -> UserInfo {
        UserInfo { name: ANONYMOUS.into(), groups: vec![UNAUTHENTICATED.into()], ..Default::default() }
    }

    /// `system:serviceaccount:NS:NAME` with the ServiceAccount groups.
    pub fn service_account(namespace: &str, name: &str, uid: &str) -> UserInfo {
        UserInfo {
            name: sa_username(namespace, name),
            uid: uid.into(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                AUTHENTICATED.into(),
            ],
            extra: BTreeMap::new(),
        }
    }

    pub fn is_privileged(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS)
    }
}

pub fn sa_username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// `system:serviceaccount:NS:NAME` split into (NS, NAME).
pub fn split_sa_username(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

/// The authentication and authorization state of one server.
pub struct AuthState {
    pub mode: Authorization,
    /// The bearer token of the admin kubeconfig.
    pub admin_token: String,
    pub tokens: authn::TokenRegistry,
    pub audit: audit::AuditLog,
    /// The CA and acceptor of the https listener (RBAC mode only).
    pub tls: Option<tls::Tls>,
    /// The OwnerReferencesPermissionEnforcement admission plugin is on (RBAC mode only).
    pub owner_references_permission_enforcement: bool,
}

impl AuthState {
    pub fn new(mode: Authorization) -> Result<AuthState, String> {
        Ok(AuthState {
            mode,
            admin_token: format!("local-apiserver-admin-{}", crate::meta::new_uid()),
            tokens: authn::TokenRegistry::default(),
            audit: audit::AuditLog::default(),
            tls: if mode == Authorization::Rbac { Some(tls::generate()?) } else { None },
            owner_references_permission_enforcement: false,
        })
    }

    pub fn enabled(&self) -> bool {
        self.mode == Authorization::Rbac
    }
}

/// Who makes the request being handled, and the name its path addresses (empty for a create).
#[derive(Debug)]
pub struct Requester {
    pub user: UserInfo,
    pub request_name: String,
}

tokio::task_local! {
    static CURRENT: Option<Arc<Requester>>;
}

/// Runs `f` (a synchronous request handler) for `requester`, so the RBAC storage checks and the
/// reviews see who is asking.
pub fn with_requester<R>(requester: Option<Arc<Requester>>, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(requester, f)
}

/// The requester of the request being handled, when authentication is on.
pub fn current() -> Option<Arc<Requester>> {
    CURRENT.try_with(|u| u.clone()).ok().flatten()
}

/// Authenticates, applies impersonation and authorizes one HTTP request, before it is routed
/// (as the real filter chain does: a request nobody may make is 403 even for an unknown path).
/// Returns the effective requester, or None when authorization is off.
pub fn admit_request(
    shared: &Shared,
    method: &Method,
    path: &str,
    q: &Query,
    headers: &HeaderMap,
) -> Result<Option<Arc<Requester>>, ApiError> {
    if !shared.auth.enabled() {
        return Ok(None);
    }
    let authenticated = authn::authenticate(shared, headers)?;
    let user = authn::impersonate(shared, authenticated, headers)?;
    let attrs = request_info::from_request(method, path, q);
    let decision = {
        let s = shared.store.lock();
        rbac::authorize(&s, &user, &attrs)
    };
    if decision.allowed {
        shared.auth.audit.record_allowed(&user.name, &attrs);
        let request_name = if attrs.verb == "create" { String::new() } else { attrs.name };
        Ok(Some(Arc::new(Requester { user, request_name })))
    } else {
        shared.auth.audit.record_denied(&user.name, &attrs);
        Err(rbac::forbidden(&user, &attrs, &decision.reason))
    }
}

/// A patch (server-side apply) that creates its object is also authorised as `create` of that
/// name, as kube-apiserver's patch handler does (its create validation is wrapped in an
/// authorizer check with `Verb: "create"` and the object's name). So `patch` alone does not let a
/// client create objects, and `create` limited by resourceNames works for apply.
pub fn authorize_create_by_apply(
    shared: &Shared,
    s: &crate::store::Inner,
    t: &crate::handlers::Target,
) -> Result<(), ApiError> {
    if !shared.auth.enabled() {
        return Ok(());
    }
    let Some(requester) = current() else { return Ok(()) };
    let attrs = request_info::Attrs::resource(
        "create",
        &t.info.group,
        &t.info.plural,
        t.namespace.as_deref().unwrap_or_default(),
        t.name.as_deref().unwrap_or_default(),
    );
    let decision = rbac::authorize(s, &requester.user, &attrs);
    if decision.allowed {
        shared.auth.audit.record_allowed(&requester.user.name, &attrs);
        Ok(())
    } else {
        shared.auth.audit.record_denied(&requester.user.name, &attrs);
        Err(rbac::forbidden(&requester.user, &attrs, &decision.reason))
    }
}
