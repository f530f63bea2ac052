//! The OwnerReferencesPermissionEnforcement admission plugin (kube-apiserver's
//! `plugin/pkg/admission/gc`), on when the server is started with it
//! ([`Options::admission_plugins`](crate::Options), `--enable-admission-plugins`):
//! - changing an existing object's `ownerReferences` needs `delete` on that object (a create may
//!   set them: its author could as well not have created it);
//! - setting `blockOwnerDeletion: true` on a reference (new, or newly true) needs `update` on the
//!   owner's `finalizers` subresource, by the owner's name (in the object's namespace when the
//!   owner kind is namespaced), since it stops the owner's foreground deletion.
//!
//! Both refusals are 403 with the real plugin's words. `pods/status` is exempt, as there.

use std::sync::Arc;

use serde_json::Value;

use super::request_info::Attrs;
use super::{current, rbac};
use crate::error::ApiResult;
use crate::handlers::Target;
use crate::server::Shared;
use crate::store::Inner;

/// The plugin's name, as `--enable-admission-plugins` spells it.
pub const PLUGIN: &str = "OwnerReferencesPermissionEnforcement";

fn refs(obj: Option<&Value>) -> Vec<Value> {
    obj.and_then(|o| o["metadata"]["ownerReferences"].as_array()).cloned().unwrap_or_default()
}

fn blocks(r: &Value) -> bool {
    r["blockOwnerDeletion"].as_bool() == Some(true)
}

/// The admission check of a write of `new` (replacing `old`) to `t` by the request's user.
pub fn check(shared: &Shared, s: &Inner, t: &Target, old: Option<&Arc<Value>>, new: &Value) -> ApiResult<()> {
    if !shared.auth.enabled() || !shared.auth.owner_references_permission_enforcement {
        return Ok(());
    }
    if t.info.group.is_empty() && t.info.plural == "pods" && t.subresource.as_deref() == Some("status") {
        return Ok(());
    }
    let Some(requester) = current() else { return Ok(()) };
    let user = &requester.user;
    let (old_refs, new_refs) = (refs(old.map(|o| o.as_ref())), refs(Some(new)));
    let changing = match old {
        None => !new_refs.is_empty(),
        Some(_) => old_refs != new_refs,
    };
    if !changing {
        return Ok(());
    }
    let namespace = t.namespace.clone().unwrap_or_default();
    let name = new["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let forbidden = |msg: String| rbac::forbidden_error(&t.info.group, &t.info.plural, &name, &msg);
    let allowed = |a: &Attrs| {
        let ok = rbac::authorize(s, user, a).allowed;
        if ok {
            shared.auth.audit.record_allowed(&user.name, a);
        } else {
            shared.auth.audit.record_denied(&user.name, a);
        }
        ok
    };
    if old.is_some() {
        let mut delete = Attrs::resource("delete", &t.info.group, &t.info.plural, &namespace, &name);
        delete.subresource = t.subresource.clone().unwrap_or_default();
        if !allowed(&delete) {
            return Err(forbidden("cannot set an ownerRef on a resource you can't delete: , <nil>".into()));
        }
    }
    let newly_blocking =
        new_refs.iter().filter(|r| blocks(r)).filter(|r| !old_refs.iter().any(|o| o["uid"] == r["uid"] && blocks(o)));
    for r in newly_blocking {
        let (api_version, kind) =
            (r["apiVersion"].as_str().unwrap_or_default(), r["kind"].as_str().unwrap_or_default());
        let Some(owner) = shared.registry.by_kind(api_version, kind) else {
            return Err(forbidden(format!(
                "cannot set blockOwnerDeletion in this case because cannot find RESTMapping for APIVersion \
                 {api_version} Kind {kind}: no matches for kind {kind:?} in version {api_version:?}"
            )));
        };
        let owner_ns = if owner.namespaced { namespace.as_str() } else { "" };
        let mut finalizers =
            Attrs::resource("update", &owner.group, &owner.plural, owner_ns, r["name"].as_str().unwrap_or_default());
        finalizers.subresource = "finalizers".into();
        if !allowed(&finalizers) {
            return Err(forbidden(
                "cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers \
                 on: , <nil>"
                    .into(),
            ));
        }
    }
    Ok(())
}
