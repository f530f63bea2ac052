//! Field paths and field sets as server-side apply sees them: computing the set of fields an
//! object sets, converting sets to and from the `fieldsV1` wire format, and reading, removing and
//! merging values at those paths under the merge rules of [`crate::schema`].

use std::collections::{BTreeSet, HashMap};

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
    walk_top(obj, None, root, scope)
}

/// Of the fields `new` sets ([`collect`]), those whose value differs from `old`'s, each side read
/// as [`get`] reads it (every field when there is no `old`). One walk of both objects instead of
/// two `get`s from the root per field.
pub fn changed(old: Option<&Value>, new: &Value, root: Node<'_>, scope: Scope) -> FieldSet {
    match old {
        Some(old) => walk_top(new, Some(old), root, scope),
        None => collect(new, root, scope),
    }
}

/// What [`get`] finds at the current path of a [`changed`] walk, in the new and the old object.
#[derive(Clone, Copy)]
struct Sides<'v> {
    new: Option<&'v Value>,
    old: Option<&'v Value>,
}

impl<'v> Sides<'v> {
    fn field(self, name: &str) -> Sides<'v> {
        Sides { new: self.new.and_then(|v| v.get(name)), old: self.old.and_then(|v| v.get(name)) }
    }

    /// The items of a list on each side by their path element, the first of equal ones (as
    /// [`get`] finds them).
    fn items(self, elem: impl Fn(&Value) -> String) -> [HashMap<String, &'v Value>; 2] {
        [self.new, self.old].map(|side| {
            let mut by = HashMap::new();
            for item in side.and_then(Value::as_array).into_iter().flatten() {
                by.entry(elem(item)).or_insert(item);
            }
            by
        })
    }
}

/// Adds the current path to `out`: always in a plain collect (`sides` None), else when the two
/// sides differ.
fn insert(out: &mut FieldSet, path: &Path, sides: Option<Sides<'_>>) {
    if sides.is_none_or(|s| s.new != s.old) {
        out.insert(path.clone());
    }
}

fn walk_top(obj: &Value, old: Option<&Value>, root: Node<'_>, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    if let Some(map) = obj.as_object() {
        let sides = old.map(|old| Sides { new: Some(obj), old: Some(old) });
        for (k, v) in map {
            if k == "apiVersion" || k == "kind" || !scope.includes_top(k) {
                continue;
            }
            let node = root.root_field(k);
            let mut path = vec![Elem::Field(k.clone())];
            let field_sides = sides.map(|s| s.field(k));
            if k == "metadata" {
                if let Some(meta) = v.as_object() {
                    for (mk, mv) in meta {
                        if ignored_meta(mk) {
                            continue;
                        }
                        path.push(Elem::Field(mk.clone()));
                        collect_value(mv, field_sides.map(|s| s.field(mk)), node.field(mk), &mut path, &mut out);
                        path.pop();
                    }
                }
                continue;
            }
            collect_value(v, field_sides, node, &mut path, &mut out);
        }
    }
    out
}

fn collect_value(v: &Value, sides: Option<Sides<'_>>, node: Node<'_>, path: &mut Path, out: &mut FieldSet) {
    match (node.shape(), v) {
        (Shape::Object, Value::Object(map)) if !map.is_empty() => {
            for (k, child) in map {
                path.push(Elem::Field(k.clone()));
                collect_value(child, sides.map(|s| s.field(k)), node.field(k), path, out);
                path.pop();
            }
        }
        (Shape::List(ListKind::Map(keys)), Value::Array(items)) if !keys.is_empty() => {
            let item_node = node.item();
            let by_key = sides.map(|s| s.items(|item| item_key(item, &keys)));
            for item in items {
                let key = item_key(item, &keys);
                let item_sides = by_key
                    .as_ref()
                    .map(|[new, old]| Sides { new: new.get(&key).copied(), old: old.get(&key).copied() });
                path.push(Elem::Key(key));
                insert(out, path, item_sides);
                if let Some(fields) = item.as_object() {
                    for (k, child) in fields {
                        path.push(Elem::Field(k.clone()));
                        collect_value(child, item_sides.map(|s| s.field(k)), item_node.field(k), path, out);
                        path.pop();
                    }
                }
                path.pop();
            }
            if items.is_empty() {
                insert(out, path, sides);
            }
        }
        (Shape::List(ListKind::Set), Value::Array(items)) if !items.is_empty() => {
            let by_value = sides.map(|s| s.items(Value::to_string));
            for item in items {
                let value = item.to_string();
                let item_sides = by_value
                    .as_ref()
                    .map(|[new, old]| Sides { new: new.get(&value).copied(), old: old.get(&value).copied() });
                path.push(Elem::Value(value));
                insert(out, path, item_sides);
                path.pop();
            }
        }
        _ => insert(out, path, sides),
    }
}

/// Keeps the paths of `set` that [`get`] finds in `obj`, and those `keep` keeps. One walk of
/// `obj` for the whole set: paths sharing a prefix resolve it once, and a list's item keys are
/// computed once.
pub fn retain_existing(set: &mut FieldSet, obj: &Value, root: Node<'_>, keep: impl Fn(&Path) -> bool) {
    let paths: Vec<(usize, &Path)> = set.iter().enumerate().collect();
    let mut found = vec![false; paths.len()];
    find_existing(&paths, 0, obj, root, &mut found);
    // `retain` visits in the order `iter` enumerated.
    let mut flags = found.into_iter();
    set.retain(|p| flags.next().unwrap_or(false) || keep(p));
}

/// Marks in `found` the paths of `paths` (sorted, sharing the first `depth` elements, which
/// resolve to `cur` at `node`) whose remaining elements resolve in `cur` as [`get`] resolves them.
fn find_existing(paths: &[(usize, &Path)], depth: usize, cur: &Value, node: Node<'_>, found: &mut [bool]) {
    let (mut item_keys, mut item_values): (Option<Vec<String>>, Option<Vec<String>>) = (None, None);
    let mut i = 0;
    while i < paths.len() {
        let (index, path) = paths[i];
        let Some(e) = path.get(depth) else {
            found[index] = true;
            i += 1;
            continue;
        };
        let mut j = i + 1;
        while j < paths.len() && paths[j].1.get(depth) == Some(e) {
            j += 1;
        }
        let child = match e {
            Elem::Field(f) => {
                cur.get(f.as_str()).map(|c| (c, if depth == 0 { node.root_field(f) } else { node.field(f) }))
            }
            Elem::Key(k) => match (node.shape(), cur.as_array()) {
                (Shape::List(ListKind::Map(keys)), Some(items)) => item_keys
                    .get_or_insert_with(|| items.iter().map(|item| item_key(item, &keys)).collect())
                    .iter()
                    .position(|x| x == k)
                    .map(|at| (&items[at], node.item())),
                _ => None,
            },
            Elem::Value(v) => cur.as_array().and_then(|items| {
                item_values
                    .get_or_insert_with(|| items.iter().map(Value::to_string).collect())
                    .iter()
                    .position(|x| x == v)
                    .map(|at| (&items[at], Node::Leaf))
            }),
        };
        if let Some((child, child_node)) = child {
            find_existing(&paths[i..j], depth + 1, child, child_node, found);
        }
        i = j;
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

    /// `changed` and `retain_existing` read every path as `get` does: checked against the
    /// path-by-path formulation on pairs of objects that differ in leaves, keyed items (some
    /// duplicated, as a PUT may send them), set items and shapes.
    #[test]
    fn one_walk_reads_paths_as_get_does() {
        let root = Node::builtin("api::apps::v1::Deployment");
        let mut objects = vec![
            deployment("img:1", json!([{"name": "A", "value": "1"}])),
            deployment("img:2", json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])),
            deployment("img:1", json!([{"name": "A", "value": "2"}, {"name": "A", "value": "3", "x": 1}])),
            deployment("img:1", json!([])),
            deployment("img:1", json!("not a list")),
            deployment("img:1", json!([{"name": "B"}, {"value": "orphan"}])),
        ];
        let mut extra = deployment("img:1", json!([{"name": "A", "value": "1"}]));
        extra["metadata"]["finalizers"] = json!(["a", "b", "a"]);
        extra["metadata"]["labels"] = json!({});
        extra["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "side", "ports": [{"containerPort": 80, "protocol": "TCP"}]}));
        objects.push(extra);
        let mut other = objects[6].clone();
        other["metadata"]["finalizers"] = json!(["b"]);
        other["spec"]["replicas"] = json!({"odd": "shape"});
        objects.push(other);
        for scope in [Scope::All, Scope::MainWithoutStatus] {
            for old in &objects {
                for new in &objects {
                    let by_get: FieldSet = collect(new, root, scope)
                        .into_iter()
                        .filter(|p| get(old, p, root) != get(new, p, root))
                        .collect();
                    assert_eq!(changed(Some(old), new, root, scope), by_get, "{old} -> {new}");
                    let mut set = collect(old, root, Scope::All);
                    set.insert(vec![Elem::Field("spec".into()), Elem::Field("gone".into())]);
                    let kept: FieldSet =
                        set.iter().filter(|p| get(new, p, root).is_some() || p.len() == 1).cloned().collect();
                    retain_existing(&mut set, new, root, |p| p.len() == 1);
                    assert_eq!(set, kept, "{old} in {new}");
                }
            }
        }
        assert_eq!(changed(None, &objects[0], root, Scope::All), collect(&objects[0], root, Scope::All));
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
