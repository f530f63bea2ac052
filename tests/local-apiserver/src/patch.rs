//! PATCH bodies other than apply: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and
//! strategic merge patch (keyed lists merge by their keys, `$patch: delete|replace` directives,
//! `$retainKeys` and `$setElementOrder` accepted; other lists replaced).

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::schema::{ListKind, Node, Shape, item_key};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

/// Applies a merge, JSON or strategic patch body to `doc`.
pub fn apply_patch(doc: &Value, body: &[u8], type_: PatchType, root: Node<'_>) -> Result<Value, ApiError> {
    match type_ {
        PatchType::Json => {
            let ops: json_patch::Patch =
                serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            let mut out = doc.clone();
            json_patch::patch(&mut out, &ops.0).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?;
            Ok(out)
        }
        PatchType::Merge => {
            let p: Value =
                serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid merge patch: {e}")))?;
            let mut out = doc.clone();
            json_patch::merge(&mut out, &p);
            Ok(out)
        }
        PatchType::Strategic => {
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid strategic merge patch: {e}")))?;
            Ok(strategic_root(doc, &p, root))
        }
        PatchType::Apply => Err(ApiError::internal("apply patches are handled by server-side apply")),
    }
}

fn strategic_root(doc: &Value, patch: &Value, root: Node<'_>) -> Value {
    match (doc, patch) {
        (Value::Object(d), Value::Object(p)) => {
            let mut out = d.clone();
            for (k, pv) in p {
                apply_field(&mut out, k, pv, root.root_field(k));
            }
            Value::Object(out)
        }
        _ => patch.clone(),
    }
}

fn apply_field(out: &mut Map<String, Value>, k: &str, pv: &Value, node: Node<'_>) {
    if k.starts_with("$setElementOrder/") || k == "$retainKeys" || k == "$patch" {
        return;
    }
    if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
        if let (Some(Value::Array(items)), Some(remove)) = (out.get_mut(field), pv.as_array()) {
            items.retain(|i| !remove.contains(i));
        }
        return;
    }
    if pv.is_null() {
        out.remove(k);
        return;
    }
    let merged = match out.get(k) {
        Some(cur) => strategic(cur, pv, node),
        None => strip_directives(pv),
    };
    out.insert(k.to_string(), merged);
}

fn strategic(doc: &Value, patch: &Value, node: Node<'_>) -> Value {
    match (node.shape(), doc, patch) {
        (Shape::Object | Shape::Atomic, Value::Object(d), Value::Object(p)) => {
            if p.get("$patch").and_then(Value::as_str) == Some("replace") {
                return strip_directives(patch);
            }
            let mut out = d.clone();
            if let Some(retain) = p.get("$retainKeys").and_then(Value::as_array) {
                out.retain(|k, _| retain.iter().any(|r| r.as_str() == Some(k)));
            }
            for (k, pv) in p {
                apply_field(&mut out, k, pv, node.field(k));
            }
            Value::Object(out)
        }
        (Shape::List(ListKind::Map(keys)), Value::Array(d), Value::Array(p)) if !keys.is_empty() => {
            let item_node = node.item();
            let mut out = d.clone();
            for pi in p {
                if pi.get("$patch").and_then(Value::as_str) == Some("replace") {
                    return Value::Array(
                        p.iter().filter(|i| i.get("$patch").is_none()).map(strip_directives).collect(),
                    );
                }
                let key = item_key(pi, &keys);
                let pos = out.iter().position(|di| item_key(di, &keys) == key);
                let delete = pi.get("$patch").and_then(Value::as_str) == Some("delete");
                match (pos, delete) {
                    (Some(i), true) => {
                        out.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => out[i] = strategic(&out[i], pi, item_node),
                    (None, false) => out.push(strip_directives(pi)),
                }
            }
            Value::Array(out)
        }
        (Shape::List(ListKind::Set), Value::Array(d), Value::Array(p)) => {
            let mut out = d.clone();
            for pi in p {
                if !out.contains(pi) {
                    out.push(pi.clone());
                }
            }
            Value::Array(out)
        }
        _ => strip_directives(patch),
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), strip_directives(v))).collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}},
               "spec": {"containers": [{"name": "c1", "image": "i1"}, {"name": "c2", "image": "i2"}],
                        "tolerations": [{"key": "x"}]}})
    }

    #[test]
    fn merge_patch_removes_nulls() {
        let root = Node::builtin("api::core::v1::Pod");
        let out =
            apply_patch(&pod(), br#"{"metadata":{"labels":{"a":null,"c":"3"}}}"#, PatchType::Merge, root).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"b": "2", "c": "3"}));
    }

    #[test]
    fn json_patch_ops_and_failed_test_is_rejected() {
        let root = Node::builtin("api::core::v1::Pod");
        let out = apply_patch(
            &pod(),
            br#"[{"op":"replace","path":"/spec/containers/0/image","value":"x"}]"#,
            PatchType::Json,
            root,
        )
        .unwrap();
        assert_eq!(out["spec"]["containers"][0]["image"], "x");
        let err = apply_patch(&pod(), br#"[{"op":"test","path":"/metadata/name","value":"q"}]"#, PatchType::Json, root)
            .unwrap_err();
        assert_eq!(err.code, 422);
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let root = Node::builtin("api::core::v1::Pod");
        let body = concat!(
            r#"{"spec":{"containers":[{"name":"c2","image":"new"},{"name":"c1","$patch":"delete"}],"#,
            r#""tolerations":[{"key":"y"}]}}"#
        )
        .as_bytes();
        let out = apply_patch(&pod(), body, PatchType::Strategic, root).unwrap();
        assert_eq!(out["spec"]["containers"], json!([{"name": "c2", "image": "new"}]));
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "y"}]));
    }
}
