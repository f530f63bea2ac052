//! Decoding of Kubernetes protobuf request bodies for the few kinds kubectl's generator
//! subcommands create with protobuf (`kubectl create namespace|configmap|secret|serviceaccount`,
//! `kubectl create token`, and the reviews of `kubectl auth can-i` and `kubectl auth whoami`).
//! The body is the `k8s\0` envelope around a `runtime.Unknown` whose `raw` field holds the
//! object; fields are decoded by the field numbers of the Kubernetes `generated.proto` files.
//! Server-owned metadata (timestamps, managedFields) is skipped; other kinds get 415.

use serde_json::{Map, Value, json};

/// How one protobuf field maps to JSON.
enum F {
    Str(&'static str),
    Bool(&'static str),
    Int(&'static str),
    Msg(&'static str, Msg),
    RepStr(&'static str),
    RepMsg(&'static str, Msg),
    MapStr(&'static str),
    MapBytes(&'static str),
}

type Msg = &'static [(u64, F)];

const OWNER_REF: Msg = &[
    (1, F::Str("kind")),
    (3, F::Str("name")),
    (4, F::Str("uid")),
    (5, F::Str("apiVersion")),
    (6, F::Bool("controller")),
    (7, F::Bool("blockOwnerDeletion")),
];

const OBJECT_META: Msg = &[
    (1, F::Str("name")),
    (2, F::Str("generateName")),
    (3, F::Str("namespace")),
    (5, F::Str("uid")),
    (6, F::Str("resourceVersion")),
    (7, F::Int("generation")),
    (11, F::MapStr("labels")),
    (12, F::MapStr("annotations")),
    (13, F::RepMsg("ownerReferences", OWNER_REF)),
    (14, F::RepStr("finalizers")),
];

const NAMESPACE: Msg = &[(1, F::Msg("metadata", OBJECT_META)), (2, F::Msg("spec", &[(1, F::RepStr("finalizers"))]))];

const CONFIG_MAP: Msg = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::MapStr("data")),
    (3, F::MapBytes("binaryData")),
    (4, F::Bool("immutable")),
];

const SECRET: Msg = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::MapBytes("data")),
    (3, F::Str("type")),
    (4, F::MapStr("stringData")),
    (5, F::Bool("immutable")),
];

const OBJECT_REF: Msg = &[
    (1, F::Str("kind")),
    (2, F::Str("namespace")),
    (3, F::Str("name")),
    (4, F::Str("uid")),
    (5, F::Str("apiVersion")),
    (6, F::Str("resourceVersion")),
    (7, F::Str("fieldPath")),
];

const SERVICE_ACCOUNT: Msg = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::RepMsg("secrets", OBJECT_REF)),
    (3, F::RepMsg("imagePullSecrets", &[(1, F::Str("name"))])),
    (4, F::Bool("automountServiceAccountToken")),
];

const RESOURCE_ATTRIBUTES: Msg = &[
    (1, F::Str("namespace")),
    (2, F::Str("verb")),
    (3, F::Str("group")),
    (4, F::Str("version")),
    (5, F::Str("resource")),
    (6, F::Str("subresource")),
    (7, F::Str("name")),
];

const NON_RESOURCE_ATTRIBUTES: Msg = &[(1, F::Str("path")), (2, F::Str("verb"))];

/// SelfSubjectAccessReview, SubjectAccessReview and LocalSubjectAccessReview (`kubectl auth can-i`).
const ACCESS_REVIEW: Msg = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (
        2,
        F::Msg(
            "spec",
            &[
                (1, F::Msg("resourceAttributes", RESOURCE_ATTRIBUTES)),
                (2, F::Msg("nonResourceAttributes", NON_RESOURCE_ATTRIBUTES)),
                (3, F::Str("user")),
                (4, F::RepStr("groups")),
                (6, F::Str("uid")),
            ],
        ),
    ),
];

const RULES_REVIEW: Msg = &[(1, F::Msg("metadata", OBJECT_META)), (2, F::Msg("spec", &[(1, F::Str("namespace"))]))];

const TOKEN_REVIEW: Msg =
    &[(1, F::Msg("metadata", OBJECT_META)), (2, F::Msg("spec", &[(1, F::Str("token")), (2, F::RepStr("audiences"))]))];

const SELF_SUBJECT_REVIEW: Msg = &[(1, F::Msg("metadata", OBJECT_META))];

/// `kubectl create token`.
const TOKEN_REQUEST: Msg = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (
        2,
        F::Msg(
            "spec",
            &[
                (1, F::RepStr("audiences")),
                (
                    3,
                    F::Msg(
                        "boundObjectRef",
                        &[(1, F::Str("kind")), (2, F::Str("apiVersion")), (3, F::Str("name")), (4, F::Str("uid"))],
                    ),
                ),
                (4, F::Int("expirationSeconds")),
            ],
        ),
    ),
];

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.varint()? as usize;
        let end = self.pos.checked_add(len).filter(|e| *e <= self.buf.len()).ok_or("truncated field")?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn skip(&mut self, wire: u64) -> Result<(), String> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.advance(8),
            2 => self.bytes().map(|_| ()),
            5 => self.advance(4),
            w => Err(format!("unsupported wire type {w}")),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), String> {
        if self.pos + n > self.buf.len() {
            return Err("truncated field".into());
        }
        self.pos += n;
        Ok(())
    }

    /// (field number, wire type) pairs until the end.
    fn next_key(&mut self) -> Result<Option<(u64, u64)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let k = self.varint()?;
        Ok(Some((k >> 3, k & 7)))
    }
}

fn text(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8 in a string field".to_string())
}

/// Standard base64 with padding (also used for Secret `stringData`).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for (i, shift) in [18, 12, 6, 0].iter().enumerate() {
            out.push(if i <= chunk.len() { T[((n >> shift) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// A map entry message: key = 1, value = 2.
fn entry(b: &[u8], value_bytes: bool) -> Result<(String, Value), String> {
    let mut r = Reader { buf: b, pos: 0 };
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    while let Some((field, wire)) = r.next_key()? {
        match (field, wire) {
            (1, 2) => k = text(r.bytes()?)?,
            (2, 2) => {
                let raw = r.bytes()?;
                v = if value_bytes { json!(base64(raw)) } else { json!(text(raw)?) };
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok((k, v))
}

fn message(b: &[u8], msg: Msg) -> Result<Value, String> {
    let mut r = Reader { buf: b, pos: 0 };
    let mut out = Map::new();
    while let Some((field, wire)) = r.next_key()? {
        let Some((_, f)) = msg.iter().find(|(n, _)| *n == field) else {
            r.skip(wire)?;
            continue;
        };
        match (f, wire) {
            (F::Str(n), 2) => {
                out.insert(n.to_string(), json!(text(r.bytes()?)?));
            }
            (F::Bool(n), 0) => {
                out.insert(n.to_string(), json!(r.varint()? != 0));
            }
            (F::Int(n), 0) => {
                out.insert(n.to_string(), json!(r.varint()? as i64));
            }
            (F::Msg(n, m), 2) => {
                out.insert(n.to_string(), message(r.bytes()?, m)?);
            }
            (F::RepStr(n), 2) => {
                let s = text(r.bytes()?)?;
                if let Some(a) = out.entry(n.to_string()).or_insert_with(|| json!([])).as_array_mut() {
                    a.push(json!(s));
                }
            }
            (F::RepMsg(n, m), 2) => {
                let v = message(r.bytes()?, m)?;
                if let Some(a) = out.entry(n.to_string()).or_insert_with(|| json!([])).as_array_mut() {
                    a.push(v);
                }
            }
            (F::MapStr(n) | F::MapBytes(n), 2) => {
                let (k, v) = entry(r.bytes()?, matches!(f, F::MapBytes(_)))?;
                if let Some(m) = out.entry(n.to_string()).or_insert_with(|| json!({})).as_object_mut() {
                    m.insert(k, v);
                }
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok(Value::Object(out))
}

/// Decodes a protobuf body of `kind` (apiVersion `api_version`) to its JSON form.
pub fn decode(body: &[u8], api_version: &str, kind: &str) -> Result<Value, String> {
    let msg = match (api_version, kind) {
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Secret") => SECRET,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview" | "SubjectAccessReview" | "LocalSubjectAccessReview") => {
            ACCESS_REVIEW
        }
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => RULES_REVIEW,
        ("authentication.k8s.io/v1", "TokenReview") => TOKEN_REVIEW,
        ("authentication.k8s.io/v1", "SelfSubjectReview") => SELF_SUBJECT_REVIEW,
        ("authentication.k8s.io/v1", "TokenRequest") => TOKEN_REQUEST,
        _ => {
            return Err(format!(
                "protobuf bodies are supported for Namespace, ConfigMap, Secret, ServiceAccount, TokenRequest and the \
                 access reviews only, not {kind}"
            ));
        }
    };
    let inner = body.strip_prefix(b"k8s\0").ok_or("missing the k8s protobuf envelope")?;
    let mut r = Reader { buf: inner, pos: 0 };
    let mut raw: Option<&[u8]> = None;
    while let Some((field, wire)) = r.next_key()? {
        match (field, wire) {
            (2, 2) => raw = Some(r.bytes()?),
            (_, w) => r.skip(w)?,
        }
    }
    let mut obj = message(raw.ok_or("the envelope has no object")?, msg)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3 | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn decodes_a_secret_in_its_envelope() {
        let meta = [field(1, b"pull"), field(3, b"ns"), field(11, &[field(1, b"a"), field(2, b"b")].concat())].concat();
        let secret = [
            field(1, &meta),
            field(2, &[field(1, b".dockerconfigjson"), field(2, b"{}")].concat()),
            field(3, b"kubernetes.io/dockerconfigjson"),
        ]
        .concat();
        let unknown = [field(1, &[field(1, b"v1"), field(2, b"Secret")].concat()), field(2, &secret)].concat();
        let body = [b"k8s\0".as_slice(), &unknown].concat();
        let v = decode(&body, "v1", "Secret").unwrap();
        assert_eq!(v["metadata"]["name"], "pull");
        assert_eq!(v["metadata"]["labels"]["a"], "b");
        assert_eq!(v["data"][".dockerconfigjson"], "e30=");
        assert_eq!(v["type"], "kubernetes.io/dockerconfigjson");
        assert!(decode(&body, "apps/v1", "Deployment").is_err());
        assert!(decode(b"nope", "v1", "Secret").is_err());
    }
}
