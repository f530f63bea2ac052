//! The `serviceaccounts/{name}/token` subresource (TokenRequest): returns a JWT whose claims
//! carry the requested audiences, expiry and service account identity, like the real issuer's
//! tokens. The signature is not verifiable; instead the server remembers each token it issued,
//! and `auth::authn` accepts exactly those (until they expire or the ServiceAccount is deleted).

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, Cause, Target as ErrTarget};
use crate::handlers::{Reply, Target, parse_body};
use crate::server::Shared;

fn b64url(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        let chars = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for c in chars.iter().take(chunk.len() + 1) {
            out.push(T[*c as usize] as char);
        }
    }
    out
}

pub const DEFAULT_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

pub fn create_token(shared: &Shared, t: &Target, body: &[u8], content_type: &str) -> ApiResult<Reply> {
    let req: Value = if body.is_empty() { json!({}) } else { parse_body(body, content_type)? };
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let sa = {
        let s = shared.store.lock();
        s.get(&t.info.storage_key(), &t.key())
    }
    .ok_or_else(|| ApiError::not_found(&ErrTarget { group: "", resource: "serviceaccounts", name: &name }))?;
    let audiences: Vec<Value> = match req["spec"]["audiences"].as_array() {
        Some(a) if !a.is_empty() => a.clone(),
        _ => vec![json!(DEFAULT_AUDIENCE)],
    };
    let expiration = req["spec"]["expirationSeconds"].as_i64().unwrap_or(3600);
    if expiration < 600 {
        return Err(ApiError::invalid(
            "TokenRequest",
            "authentication.k8s.io",
            &name,
            vec![Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {expiration}: may not specify a duration less than 10 minutes"),
                field: "spec.expirationSeconds".into(),
            }],
        ));
    }
    let now = jiff::Timestamp::now();
    let iat = now.as_second();
    let exp = iat + expiration;
    let sa_uid = sa["metadata"]["uid"].clone();
    let jti = crate::meta::new_uid();
    let claims = json!({
        "aud": audiences,
        "exp": exp,
        "iat": iat,
        "nbf": iat,
        "iss": DEFAULT_AUDIENCE,
        "sub": format!("system:serviceaccount:{ns}:{name}"),
        "jti": jti,
        "kubernetes.io": {
            "namespace": ns,
            "serviceaccount": {"name": name, "uid": sa_uid},
        },
    });
    let header = json!({"alg": "RS256", "kid": "local-apiserver"});
    let token = format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes()),
        b64url(format!("local-apiserver-signature-{}", crate::meta::new_uid()).as_bytes())
    );
    shared.auth.tokens.remember(
        &token,
        crate::auth::authn::IssuedToken {
            namespace: ns.clone(),
            name: name.clone(),
            uid: sa_uid.as_str().unwrap_or_default().to_string(),
            jti,
            expires: exp,
            audiences: audiences.iter().filter_map(|a| a.as_str().map(str::to_string)).collect(),
        },
    );
    let expires = jiff::Timestamp::from_second(exp).unwrap_or(now).strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    Ok(Reply {
        code: 201,
        body: json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": Value::Null},
            "spec": {
                "audiences": audiences,
                "expirationSeconds": expiration,
                "boundObjectRef": req["spec"].get("boundObjectRef").cloned().unwrap_or(Value::Null),
            },
            "status": {"token": token, "expirationTimestamp": expires},
        }),
        changed: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_without_padding() {
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
    }
}
