//! The merge structure of object types: which values are structs merged field by field, which
//! are maps, which lists merge by key (and on which keys), which are sets and which are atomic.
//!
//! Built-in kinds use `builtin_schema.json`, generated from k8s-openapi by
//! `tools/gen_builtin_schema.py` (the OpenAPI `x-kubernetes-list-type`, `-list-map-keys` and
//! `-map-type` markers). Custom resources use the markers in their CRD's `openAPIV3Schema`.
//! Server-side apply, managed fields and strategic merge patch all walk objects through [`Node`].

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
pub struct BuiltinField {
    /// Container: struct, list or map.
    c: String,
    /// Element or struct type path, absent for scalars.
    t: Option<String>,
    /// Strategy: atomic/map/set for lists, atomic/granular for maps.
    s: Option<String>,
    /// Keys of a map-type list.
    k: Option<Vec<String>>,
}

type BuiltinTypes = HashMap<String, HashMap<String, BuiltinField>>;

fn builtin_types() -> &'static BuiltinTypes {
    static TYPES: OnceLock<BuiltinTypes> = OnceLock::new();
    TYPES.get_or_init(|| {
        // The file is generated and checked in; a parse failure is a build defect caught by tests.
        serde_json::from_str(include_str!("builtin_schema.json")).unwrap_or_default()
    })
}

const OBJECT_META: &str = "apimachinery::pkg::apis::meta::v1::ObjectMeta";

/// How a value merges.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// An object merged field by field (a struct or a granular map).
    Object,
    /// Replaced as a whole.
    Atomic,
    /// A list.
    List(ListKind),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ListKind {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// A position in a type: describes one value.
#[derive(Debug, Clone, Copy)]
pub enum Node<'a> {
    /// No type information: objects merge field by field, lists are atomic.
    Unknown,
    /// A scalar or other leaf.
    Leaf,
    /// A built-in struct type by its k8s-openapi path.
    Struct(&'static str),
    /// A field of a built-in struct (list or map, or a struct reference).
    Field(&'static BuiltinField),
    /// A node of a CRD openAPIV3Schema.
    Open(&'a Value),
}

impl<'a> Node<'a> {
    /// The root node of a built-in type, `None` when the generated table lacks it.
    pub fn builtin(type_path: &str) -> Node<'static> {
        match builtin_types().get_key_value(type_path) {
            Some((k, _)) => Node::Struct(k.as_str()),
            None => Node::Unknown,
        }
    }

    pub fn shape(&self) -> Shape {
        match self {
            Node::Unknown => Shape::Object,
            Node::Leaf => Shape::Atomic,
            Node::Struct(path) => {
                if builtin_types().get(*path).is_some_and(|f| f.contains_key("__atomic")) {
                    Shape::Atomic
                } else {
                    Shape::Object
                }
            }
            Node::Field(f) => match f.c.as_str() {
                "struct" => f.t.as_deref().map(|t| Node::builtin(t).shape()).unwrap_or(Shape::Atomic),
                "list" => Shape::List(match (f.s.as_deref(), &f.k) {
                    (Some("map"), Some(keys)) => ListKind::Map(keys.clone()),
                    (Some("set"), _) => ListKind::Set,
                    _ => ListKind::Atomic,
                }),
                "map" if f.s.as_deref() == Some("atomic") => Shape::Atomic,
                "map" => Shape::Object,
                _ => Shape::Atomic,
            },
            Node::Open(s) => open_shape(s),
        }
    }

    /// The node of field `name` of an object (or of a map's values).
    pub fn field(&self, name: &str) -> Node<'a> {
        match self {
            Node::Unknown => Node::Unknown,
            Node::Leaf => Node::Leaf,
            Node::Struct(path) => match builtin_types().get(*path).and_then(|fields| fields.get(name)) {
                Some(f) if f.c == "struct" => f.t.as_deref().map(Node::builtin).unwrap_or(Node::Leaf),
                Some(f) => Node::Field(f),
                None if *path == OBJECT_META => Node::Leaf,
                None => Node::Leaf,
            },
            Node::Field(f) => match f.c.as_str() {
                // A granular map: every value has the element type.
                "map" => f.t.as_deref().map(Node::builtin).unwrap_or(Node::Leaf),
                _ => Node::Leaf,
            },
            Node::Open(s) => {
                if name == "metadata" && s.get("x-kubernetes-embedded-resource").is_some() {
                    return Node::builtin(OBJECT_META);
                }
                if let Some(p) = s.get("properties").and_then(|p| p.get(name)) {
                    return Node::Open(p);
                }
                match s.get("additionalProperties") {
                    Some(ap @ Value::Object(_)) => Node::Open(ap),
                    _ if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) => Node::Unknown,
                    _ => Node::Unknown,
                }
            }
        }
    }

    /// The node of the items of a list.
    pub fn item(&self) -> Node<'a> {
        match self {
            Node::Unknown => Node::Unknown,
            Node::Field(f) => f.t.as_deref().map(Node::builtin).unwrap_or(Node::Leaf),
            Node::Open(s) => s.get("items").map(Node::Open).unwrap_or(Node::Unknown),
            _ => Node::Leaf,
        }
    }

    /// The root node of a custom resource: its schema, with `metadata` typed as ObjectMeta.
    pub fn root_field(&self, name: &str) -> Node<'a> {
        if name == "metadata" { Node::builtin(OBJECT_META) } else { self.field(name) }
    }
}

fn open_shape(s: &Value) -> Shape {
    if s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return Shape::Atomic;
    }
    match s.get("type").and_then(Value::as_str) {
        Some("object") => {
            if s.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic") {
                Shape::Atomic
            } else {
                Shape::Object
            }
        }
        Some("array") => Shape::List(match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => ListKind::Map(
                s.get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|keys| keys.iter().filter_map(|k| k.as_str().map(str::to_string)).collect())
                    .unwrap_or_default(),
            ),
            Some("set") => ListKind::Set,
            _ => ListKind::Atomic,
        }),
        None if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) => Shape::Object,
        None if s.get("properties").is_some() => Shape::Object,
        _ => Shape::Atomic,
    }
}

/// The value of key field `k` of a keyed list item, with the defaults the real server applies
/// before merging (`protocol` defaults to TCP for ports).
pub fn key_value(item: &Value, k: &str) -> Value {
    match item.get(k) {
        Some(v) => v.clone(),
        None if k == "protocol" => Value::String("TCP".into()),
        None => Value::Null,
    }
}

/// The canonical key of a keyed list item: `{"k1":v1,"k2":v2}` with sorted key names, as in
/// `fieldsV1` (`k:{...}`).
pub fn item_key(item: &Value, keys: &[String]) -> String {
    let mut sorted: Vec<&String> = keys.iter().collect();
    sorted.sort();
    let parts: Vec<String> =
        sorted.iter().map(|k| format!("{}:{}", Value::String((*k).clone()), key_value(item, k))).collect();
    format!("{{{}}}", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_spec_lists_have_the_real_strategies() {
        let pod = Node::builtin("api::core::v1::Pod");
        let spec = pod.field("spec");
        assert_eq!(spec.field("containers").shape(), Shape::List(ListKind::Map(vec!["name".into()])));
        assert_eq!(spec.field("tolerations").shape(), Shape::List(ListKind::Atomic));
        assert_eq!(spec.field("volumes").shape(), Shape::List(ListKind::Map(vec!["name".into()])));
        assert_eq!(spec.field("nodeSelector").shape(), Shape::Atomic);
        let container = spec.field("containers").item();
        assert_eq!(
            container.field("ports").shape(),
            Shape::List(ListKind::Map(vec!["containerPort".into(), "protocol".into()]))
        );
        assert_eq!(container.field("env").shape(), Shape::List(ListKind::Map(vec!["name".into()])));
        assert_eq!(container.field("volumeMounts").shape(), Shape::List(ListKind::Map(vec!["mountPath".into()])));
        assert_eq!(container.field("image").shape(), Shape::Atomic);
        let meta = pod.field("metadata");
        assert_eq!(meta.field("labels").shape(), Shape::Object);
        assert_eq!(meta.field("finalizers").shape(), Shape::List(ListKind::Set));
    }

    #[test]
    fn rbac_rules_are_atomic_and_label_selectors_atomic() {
        let role = Node::builtin("api::rbac::v1::ClusterRole");
        assert_eq!(role.field("rules").shape(), Shape::List(ListKind::Atomic));
        let dep = Node::builtin("api::apps::v1::Deployment");
        assert_eq!(dep.field("spec").field("selector").shape(), Shape::Atomic);
        assert_eq!(dep.field("status").field("conditions").shape(), Shape::List(ListKind::Map(vec!["type".into()])));
    }

    #[test]
    fn item_keys_are_canonical() {
        let item = serde_json::json!({"protocol": "UDP", "containerPort": 53, "name": "dns"});
        assert_eq!(
            item_key(&item, &["containerPort".into(), "protocol".into()]),
            r#"{"containerPort":53,"protocol":"UDP"}"#
        );
        let tcp = serde_json::json!({"containerPort": 80});
        assert_eq!(
            item_key(&tcp, &["protocol".into(), "containerPort".into()]),
            r#"{"containerPort":80,"protocol":"TCP"}"#
        );
    }
}
