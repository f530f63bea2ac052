//! Authentication: `Authorization: Bearer TOKEN` with the admin token of the written kubeconfig
//! or a ServiceAccount token this server issued through TokenRequest (also `kubectl create
//! token`); no credentials make the request `system:anonymous` (the real server's default
//! `--anonymous-auth=true`); an unknown, expired or revoked token (its ServiceAccount was deleted
//! or recreated, or it was issued for another audience) is 401 Unauthorized. Then impersonation
//! (`Impersonate-User`, `-Group`, `-Uid`, `-Extra-KEY`, i.e. `kubectl --as/--as-group`), each
//! authorised by the `impersonate` verb on users, groups, serviceaccounts, uids or userextras like
//! the real filter.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use axum::http::HeaderMap;

use super::request_info::Attrs;
use super::{ANONYMOUS, AUTHENTICATED, UNAUTHENTICATED, UserInfo, rbac, split_sa_username};
use crate::error::ApiError;
use crate::server::Shared;

/// A ServiceAccount token this server issued.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub jti: String,
    /// Unix seconds.
    pub expires: i64,
    /// The `aud` claim: the API server accepts only tokens meant for it.
    pub audiences: Vec<String>,
}

/// The tokens issued by TokenRequest (the real issuer signs them; this one remembers them).
#[derive(Default)]
pub struct TokenRegistry {
    tokens: Mutex<HashMap<String, IssuedToken>>,
}

impl TokenRegistry {
    pub fn remember(&self, token: &str, issued: IssuedToken) {
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let now = jiff::Timestamp::now().as_second();
        t.retain(|_, i| i.expires > now);
        t.insert(token.to_string(), issued);
    }

    fn lookup(&self, token: &str) -> Option<IssuedToken> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner()).get(token).cloned()
    }
}

pub fn unauthorized() -> ApiError {
    ApiError::new(401, "Unauthorized", "Unauthorized")
}

/// The user a bearer token stands for when it is valid for one of `audiences`, with the
/// audiences it was accepted for; None when it is not a valid token of this server for them.
pub fn user_for_token_with_audiences(
    shared: &Shared,
    token: &str,
    audiences: &[String],
) -> Option<(UserInfo, Vec<String>)> {
    if token == shared.auth.admin_token {
        return Some((UserInfo::admin(), audiences.to_vec()));
    }
    let issued = shared.auth.tokens.lookup(token)?;
    if issued.expires <= jiff::Timestamp::now().as_second() {
        return None;
    }
    // A token for another audience (e.g. sts.amazonaws.com for IRSA) is not for this server.
    let accepted: Vec<String> = audiences.iter().filter(|a| issued.audiences.contains(a)).cloned().collect();
    if accepted.is_empty() {
        return None;
    }
    // The token is bound to the ServiceAccount's uid: deleting the account revokes it.
    let sa = shared.store.lock().get("/serviceaccounts", &(issued.namespace.clone(), issued.name.clone()))?;
    if sa["metadata"]["uid"].as_str() != Some(issued.uid.as_str()) {
        return None;
    }
    let mut user = UserInfo::service_account(&issued.namespace, &issued.name, &issued.uid);
    user.extra.insert("authentication.kubernetes.io/credential-id".into(), vec![format!("JTI={}", issued.jti)]);
    Some((user, accepted))
}

/// The user a bearer token stands for, when it is valid for this API server's audience.
pub fn user_for_token(shared: &Shared, token: &str) -> Option<UserInfo> {
    user_for_token_with_audiences(shared, token, &[crate::tokens::DEFAULT_AUDIENCE.to_string()]).map(|(u, _)| u)
}

pub fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(UserInfo::anonymous());
    };
    let value = value.to_str().map_err(|_| unauthorized())?.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Basic and other schemes are not accepted by any authenticator of this server.
        return Err(unauthorized());
    }
    if token.is_empty() {
        return Ok(UserInfo::anonymous());
    }
    user_for_token(shared, token).ok_or_else(unauthorized)
}

fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()).collect()
}

/// `%XX` unescaping of impersonated extra keys.
fn unescape(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = key.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Applies the impersonation headers: each requested identity part must be allowed by the
/// `impersonate` verb for the requester, else 403 as from the real impersonation filter.
pub fn impersonate(shared: &Shared, requester: UserInfo, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
    let user = header_values(headers, "impersonate-user").first().map(|s| s.to_string());
    let groups_requested: Vec<String> =
        header_values(headers, "impersonate-group").into_iter().map(str::to_string).collect();
    let uid = header_values(headers, "impersonate-uid").first().map(|s| s.to_string());
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-")
            && let Ok(v) = value.to_str()
        {
            extra.entry(unescape(key)).or_default().push(v.to_string());
        }
    }
    let Some(username) = user else {
        if !groups_requested.is_empty() || !extra.is_empty() || uid.is_some() {
            return Err(ApiError::internal(
                "Internal error occurred: requested impersonation of groups, extra or uid without impersonating a user",
            ));
        }
        return Ok(requester);
    };
    // The checks, in the real filter's order: user (or service account), groups, extras, uid.
    let mut checks: Vec<Attrs> = Vec::new();
    let mut groups = groups_requested.clone();
    match split_sa_username(&username) {
        Some((ns, name)) => {
            checks.push(Attrs::resource("impersonate", "", "serviceaccounts", ns, name));
            if groups_requested.is_empty() {
                groups = vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{ns}")];
            }
        }
        None => checks.push(Attrs::resource("impersonate", "", "users", "", &username)),
    }
    for g in &groups_requested {
        checks.push(Attrs::resource("impersonate", "", "groups", "", g));
    }
    for (k, vs) in &extra {
        for v in vs {
            let mut a = Attrs::resource("impersonate", "authentication.k8s.io", "userextras", "", v);
            a.subresource = k.clone();
            checks.push(a);
        }
    }
    if let Some(u) = &uid {
        checks.push(Attrs::resource("impersonate", "authentication.k8s.io", "uids", "", u));
    }
    for a in &checks {
        let decision = {
            let s = shared.store.lock();
            rbac::authorize(&s, &requester, a)
        };
        if !decision.allowed {
            shared.auth.audit.record_denied(&requester.name, a);
            return Err(rbac::forbidden(&requester, a, &decision.reason));
        }
        shared.auth.audit.record_allowed(&requester.name, a);
    }
    if username == ANONYMOUS {
        if !groups.iter().any(|g| g == UNAUTHENTICATED) {
            groups.push(UNAUTHENTICATED.into());
        }
    } else if !groups.iter().any(|g| g == AUTHENTICATED || g == UNAUTHENTICATED) {
        groups.push(AUTHENTICATED.into());
    }
    Ok(UserInfo { name: username, uid: uid.unwrap_or_default(), groups, extra })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_keys_are_unescaped() {
        assert_eq!(unescape("example.com%2fscopes"), "example.com/scopes");
        assert_eq!(unescape("plain"), "plain");
        assert_eq!(unescape("bad%zz"), "bad%zz");
    }
}
