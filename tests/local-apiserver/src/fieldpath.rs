//! Field paths and field sets as server-side apply sees them: computing the set of fields an
//! object sets, converting sets to and from the `fieldsV1` wire format, and reading, removing and
//! merging values at those paths under the merge rules of [`crate::schema`].

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::schema::{ListKind, Node, Shape, item_key};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Elem {
    /// `f:name`: an object field or map key.
    Field(String),
    /// `k:{...}`: the item of a keyed list with these key values (canonical JSON).
    Key(String),
    /// `v:...`: the item of a set list with this value (canonical JSON).
    Value(String),
}

pub type Path = Vec<Elem>;

/// A set of owned paths. A path either ends at a leaf (atomic value) or marks the existence of a
/// list item (`"."` in `fieldsV1`).
pub type FieldSet = BTreeSet<Path>;

/// Top-level and metadata fields the server owns; never part of a manager's set.
fn ignored_meta(name: &str) -> bool {
    matches!(
        name,
        "name"
            | "namespace"
            | "uid"
            | "resourceVersion"
            | "generation"
            | "creationTimestamp"
            | "deletionTimestamp"
            | "deletionGracePeriodSeconds"
            | "managedFields"
            | "selfLink"
            | "generateName"
    )
}

/// Which part of an object a set covers: a write to the main resource never owns `status` (when
/// the resource has a status subresource), a write to `/status` owns only `status`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scope {
    All,
    MainWithoutStatus,
    StatusOnly,
}

impl Scope {
    pub fn includes_top(&self, field: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::MainWithoutStatus => field != "status",
            Scope::StatusOnly => field == "status",
        }
    }
}

/// The fields `obj` sets, as a manager applying it would own them.
pub fn collect(obj: &Value, root: Node<'_>, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    if let Some(map) = obj.as_object() {
        for (k, v) in map {
            if k == "apiVersion" || k == "kind" || !scope.includes_top(k) {
                continue;
            }
            let node = root.root_field(k);
            let mut path = vec![Elem::Field(k.clone())];
            if k == "metadata" {
                if let Some(meta) = v.as_object() {
                    for (mk, mv) in meta {
                        if ignored_meta(mk) {
                            continue;
                        }
                        path.push(Elem::Field(mk.clone()));
                        collect_value(mv, node.field(mk), &mut path, &mut out);
                        path.pop();
                    }
                }
                continue;
            }
            collect_value(v, node, &mut path, &mut out);
        }
    }
    out
}

fn collect_value(v: &Value, node: Node<'_>, path: &mut Path, out: &mut FieldSet) {
    match (node.shape(), v) {
        (Shape::Object, Value::Object(map)) if !map.is_empty() => {
            for (k, child) in map {
                path.push(Elem::Field(k.clone()));
                collect_value(child, node.field(k), path, out);
                path.pop();
            }
        }
        (Shape::List(ListKind::Map(keys)), Value::Array(items)) if !keys.is_empty() => {
            let item_node = node.item();
            for item in items {
                path.push(Elem::Key(item_key(item, &keys)));
                out.insert(path.clone());
                if let Some(fields) = item.as_object() {
                    for (k, child) in fields {
                        path.push(Elem::Field(k.clone()));
                        collect_value(child, item_node.field(k), path, out);
                        path.pop();
                    }
                }
                path.pop();
            }
            if items.is_empty() {
                out.insert(path.clone());
            }
        }
        (Shape::List(ListKind::Set), Value::Array(items)) if !items.is_empty() => {
            for item in items {
                path.push(Elem::Value(item.to_string()));
                out.insert(path.clone());
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// Where a path points in `obj`: the value, or `None` when absent.
pub fn get<'v>(obj: &'v Value, path: &[Elem], root: Node<'_>) -> Option<&'v Value> {
    let mut cur = obj;
    let mut node = Node::Unknown;
    for (i, e) in path.iter().enumerate() {
        match e {
            Elem::Field(f) => {
                node = if i == 0 { root.root_field(f) } else { node.field(f) };
                cur = cur.get(f.as_str())?;
            }
            Elem::Key(k) => {
                let keys = match node.shape() {
                    Shape::List(ListKind::Map(keys)) => keys,
                    _ => return None,
                };
                cur = cur.as_array()?.iter().find(|item| &item_key(item, &keys) == k)?;
                node = node.item();
            }
            Elem::Value(v) => {
                cur = cur.as_array()?.iter().find(|item| &item.to_string() == v)?;
                node = Node::Leaf;
            }
        }
    }
    Some(cur)
}

/// Removes the value at `path` from `obj`, then removes objects left empty on the way (but never
/// a top-level field such as `spec`). Returns whether anything was removed.
pub fn remove(obj: &mut Value, path: &[Elem], root: Node<'_>) -> bool {
    fn go(cur: &mut Value, path: &[Elem], node: Node<'_>, depth: usize) -> bool {
        let Some((first, rest)) = path.split_first() else {
            return false;
        };
        match first {
            Elem::Field(f) => {
                let child_node = if depth == 0 { node.root_field(f) } else { node.field(f) };
                let Some(map) = cur.as_object_mut() else {
                    return false;
                };
                if rest.is_empty() {
                    return map.remove(f.as_str()).is_some();
                }
                let Some(child) = map.get_mut(f.as_str()) else {
                    return false;
                };
                let removed = go(child, rest, child_node, depth + 1);
                // Empty maps and lists left behind by a removal go too (labels: {} after the
                // last label, ports: [] after the last port), except top-level fields.
                let emptied =
                    child.as_object().is_some_and(Map::is_empty) || child.as_array().is_some_and(Vec::is_empty);
                if removed && depth > 0 && emptied {
                    map.remove(f.as_str());
                }
                removed
            }
            Elem::Key(k) => {
                let keys = match node.shape() {
                    Shape::List(ListKind::Map(keys)) => keys,
                    _ => return false,
                };
                let Some(items) = cur.as_array_mut() else {
                    return false;
                };
                let Some(idx) = items.iter().position(|item| &item_key(item, &keys) == k) else {
                    return false;
                };
                if rest.is_empty() {
                    items.remove(idx);
                    return true;
                }
                go(&mut items[idx], rest, node.item(), depth + 1)
            }
            Elem::Value(v) => {
                let Some(items) = cur.as_array_mut() else {
                    return false;
                };
                let before = items.len();
                items.retain(|item| &item.to_string() != v);
                items.len() != before
            }
        }
    }
    go(obj, path, root, 0)
}

/// Merges `applied` into `live` (server-side apply): objects field by field, keyed lists by key
/// (items only in `live` stay), set lists by union, everything else replaced by `applied`.
pub fn merge(live: &Value, applied: &Value, node: Node<'_>) -> Value {
    match (node.shape(), live, applied) {
        (Shape::Object, Value::Object(l), Value::Object(a)) => {
            let mut out = l.clone();
            for (k, av) in a {
                let merged = match l.get(k) {
                    Some(lv) => merge(lv, av, node.field(k)),
                    None => av.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Shape::List(ListKind::Map(keys)), Value::Array(l), Value::Array(a)) if !keys.is_empty() => {
            let item_node = node.item();
            let mut out: Vec<Value> = l.clone();
            for ai in a {
                let key = item_key(ai, &keys);
                match out.iter().position(|li| item_key(li, &keys) == key) {
                    Some(idx) => out[idx] = merge(&out[idx], ai, item_node),
                    None => out.push(ai.clone()),
                }
            }
            Value::Array(out)
        }
        (Shape::List(ListKind::Set), Value::Array(l), Value::Array(a)) => {
            let mut out = l.clone();
            for ai in a {
                if !out.contains(ai) {
                    out.push(ai.clone());
                }
            }
            Value::Array(out)
        }
        _ => applied.clone(),
    }
}

/// Merges `applied` into `live` at the root of an object (metadata is typed ObjectMeta).
pub fn merge_root(live: &Value, applied: &Value, root: Node<'_>) -> Value {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            let mut out = l.clone();
            for (k, av) in a {
                let merged = match l.get(k) {
                    Some(lv) => merge(lv, av, root.root_field(k)),
                    None => av.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        _ => applied.clone(),
    }
}

/// `fieldsV1` JSON for a set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for e in path {
            let key = match e {
                Elem::Field(f) => format!("f:{f}"),
                Elem::Key(k) => format!("k:{k}"),
                Elem::Value(v) => format!("v:{v}"),
            };
            let entry = cur.entry(key).or_insert_with(|| Value::Object(Map::new()));
            cur = match entry {
                Value::Object(m) => m,
                // Entries are only ever created as objects above.
                _ => unreachable!("fieldsV1 entries are objects"),
            };
        }
        // A path ending in a list item marks the item itself: ".".
        if matches!(path.last(), Some(Elem::Key(_))) {
            cur.insert(".".into(), Value::Object(Map::new()));
        }
    }
    Value::Object(root)
}

/// The set described by `fieldsV1` JSON. Unknown prefixes (`i:`) are skipped.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn go(v: &Value, path: &mut Path, out: &mut FieldSet) {
        let Some(map) = v.as_object() else { return };
        if map.is_empty() {
            if !path.is_empty() {
                out.insert(path.clone());
            }
            return;
        }
        for (k, child) in map {
            if k == "." {
                out.insert(path.clone());
                continue;
            }
            let elem = if let Some(f) = k.strip_prefix("f:") {
                Elem::Field(f.to_string())
            } else if let Some(key) = k.strip_prefix("k:") {
                Elem::Key(key.to_string())
            } else if let Some(val) = k.strip_prefix("v:") {
                Elem::Value(val.to_string())
            } else {
                continue;
            };
            path.push(elem);
            go(child, path, out);
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    go(v, &mut Vec::new(), &mut out);
    out
}

/// Renders a path the way the real server names conflicting fields: `.spec.replicas`,
/// `.spec.containers[name="app"].image`.
pub fn display(path: &[Elem]) -> String {
    let mut s = String::new();
    for e in path {
        match e {
            Elem::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Elem::Key(k) => {
                let parsed: Value = serde_json::from_str(k).unwrap_or(Value::Null);
                let parts: Vec<String> =
                    parsed.as_object().map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect()).unwrap_or_default();
                s.push_str(&format!("[{}]", parts.join(",")));
            }
            Elem::Value(v) => s.push_str(&format!("[={v}]")),
        }
    }
    s
}

/// Whether `set` contains `path` or any path below it.
pub fn covers_below(set: &FieldSet, path: &[Elem]) -> bool {
    set.range(path.to_vec()..).next().is_some_and(|p| p.starts_with(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(image: &str, env: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "ns", "labels": {"app": "x"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "app", "image": image, "env": env}
            ]}}}
        })
    }

    #[test]
    fn collect_and_round_trip_through_fields_v1() {
        let root = Node::builtin("api::apps::v1::Deployment");
        let obj = deployment("img:1", json!([{"name": "A", "value": "1"}]));
        let set = collect(&obj, root, Scope::All);
        let v1 = to_fields_v1(&set);
        assert_eq!(v1["f:metadata"]["f:labels"]["f:app"], json!({}));
        assert!(v1["f:metadata"].get("f:name").is_none());
        let c = &v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"];
        assert_eq!(c["."], json!({}));
        assert_eq!(c["f:env"]["k:{\"name\":\"A\"}"]["f:value"], json!({}));
        assert_eq!(from_fields_v1(&v1), set);
    }

    #[test]
    fn merge_keeps_other_items_and_replaces_atomic_lists() {
        let root = Node::builtin("api::apps::v1::Deployment");
        let live = deployment("img:1", json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]));
        let applied = deployment("img:2", json!([{"name": "A", "value": "9"}]));
        let merged = merge_root(&live, &applied, root);
        let c = &merged["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "img:2");
        assert_eq!(c["env"], json!([{"name": "A", "value": "9"}, {"name": "B", "value": "2"}]));
    }

    #[test]
    fn get_and_remove_follow_keys() {
        let root = Node::builtin("api::apps::v1::Deployment");
        let mut obj = deployment("img:1", json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]));
        let path = vec![
            Elem::Field("spec".into()),
            Elem::Field("template".into()),
            Elem::Field("spec".into()),
            Elem::Field("containers".into()),
            Elem::Key(r#"{"name":"app"}"#.into()),
            Elem::Field("env".into()),
            Elem::Key(r#"{"name":"B"}"#.into()),
        ];
        assert_eq!(get(&obj, &path, root), Some(&json!({"name": "B", "value": "2"})));
        assert!(remove(&mut obj, &path, root));
        assert_eq!(obj["spec"]["template"]["spec"]["containers"][0]["env"], json!([{"name": "A", "value": "1"}]));
        assert_eq!(display(&path), r#".spec.template.spec.containers[name="app"].env[name="B"]"#);
    }
}
