//! Response shapes other than the full object: `meta.k8s.io/v1` Table (what `kubectl get`
//! prints, columns from the resource's printer columns) and PartialObjectMetadata(List) (what
//! kube-rs metadata watches request), chosen from the `Accept` header.

use serde_json::{Value, json};

use crate::meta;
use crate::registry::{Column, ResourceInfo};

/// What the client asked for in `Accept`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format {
    Full,
    Table,
    Metadata,
}

pub fn format_from_accept(accept: &str) -> Format {
    // Alternatives are comma-separated, preferred first.
    for alt in accept.split(',') {
        let alt = alt.trim();
        if alt.contains("as=Table") {
            return Format::Table;
        }
        if alt.contains("as=PartialObjectMetadata") {
            return Format::Metadata;
        }
        if alt.starts_with("application/json") || alt.starts_with("*/*") || alt.starts_with("application/yaml") {
            return Format::Full;
        }
    }
    Format::Full
}

pub fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

pub fn partial_metadata_list(items: &[Value], list_meta: Value) -> Value {
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "items": items.iter().map(partial_metadata).collect::<Vec<_>>(),
    })
}

fn column_definitions(info: &ResourceInfo) -> Value {
    Value::Array(
        info.columns
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": if c.type_ == "date" { "string" } else { c.type_.as_str() },
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect(),
    )
}

/// One Table for `objects`. `include_object`: `None`, `Metadata` (default) or `Object`.
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    list_meta: Value,
    include_object: &str,
    with_columns: bool,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = info.columns.iter().map(|c| cell(c, o)).collect();
            let object = match include_object {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => partial_metadata(o),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": if with_columns { column_definitions(info) } else { json!([]) },
        "rows": rows,
    })
}

fn cell(c: &Column, obj: &Value) -> Value {
    match c.json_path.as_str() {
        "printer:pod-status" => return json!(crate::controllers::kubelet::printed_status(obj)),
        "printer:pod-restarts" => return json!(crate::controllers::kubelet::printed_restarts(obj)),
        "printer:node-selector" => {
            let pairs: Vec<String> = obj["spec"]["template"]["spec"]["nodeSelector"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect())
                .unwrap_or_default();
            return json!(if pairs.is_empty() { "<none>".to_string() } else { pairs.join(",") });
        }
        _ => {}
    }
    if let Some(rest) = c.json_path.strip_prefix("ratio:") {
        let (a, b) = rest.split_once(':').unwrap_or((rest, ""));
        let count = |p: &str| -> i64 {
            match eval(obj, p) {
                Some(Value::Array(a)) => a.len() as i64,
                Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
                Some(other) => other.as_array().map(|a| a.len() as i64).unwrap_or(1),
                None => 0,
            }
        };
        let total = if b == ".spec.replicas" && obj["spec"].get("replicas").is_none() { 1 } else { count(b) };
        return json!(format!("{}/{}", count(a), total));
    }
    let v = eval(obj, &c.json_path);
    match (c.type_.as_str(), v) {
        ("date", Some(Value::String(s))) => json!(meta::human_age(meta::age_seconds(&s))),
        (_, Some(Value::Array(items))) => json!(
            items
                .iter()
                .map(|i| i.as_str().map(str::to_string).unwrap_or_else(|| i.to_string()))
                .collect::<Vec<_>>()
                .join(",")
        ),
        (_, Some(v)) => v,
        ("integer" | "number", None) => json!(0),
        (_, None) => json!("<none>"),
    }
}

/// Evaluates the JSONPath subset used by printer columns: `.a.b`, `.a[0]`, `.a[*].b` and
/// `.a[?(@.k=="v")].b` (the filter form returns every match).
pub fn eval(obj: &Value, path: &str) -> Option<Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}').trim_start_matches('$');
    let mut cur: Vec<Value> = vec![obj.clone()];
    let mut multi = false;
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let name = &r[..end];
            rest = &r[end..];
            if name.is_empty() {
                continue;
            }
            cur = cur.iter().filter_map(|v| v.get(name).cloned()).collect();
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            if inner == "*" {
                multi = true;
                cur = cur.iter().filter_map(Value::as_array).flatten().cloned().collect();
            } else if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                multi = true;
                let (k, want) = filter.split_once("==")?;
                let want = want.trim().trim_matches('"').trim_matches('\'');
                cur = cur
                    .iter()
                    .filter_map(Value::as_array)
                    .flatten()
                    .filter(|item| match item.get(k.trim()) {
                        Some(Value::String(s)) => s == want,
                        // Booleans and numbers compare by value (`@.ready==true`).
                        Some(Value::Bool(b)) => want == if *b { "true" } else { "false" },
                        Some(Value::Number(n)) => want.parse::<f64>().ok() == n.as_f64(),
                        Some(_) => false,
                        None => false,
                    })
                    .cloned()
                    .collect();
            } else {
                let idx: usize = inner.parse().ok()?;
                cur = cur.iter().filter_map(|v| v.get(idx).cloned()).collect();
            }
        } else {
            return None;
        }
    }
    match (multi, cur.len()) {
        (_, 0) => None,
        (false, _) => cur.into_iter().next(),
        (true, 1) => cur.into_iter().next(),
        (true, _) => Some(Value::Array(cur)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        assert_eq!(
            format_from_accept(
                "application/json;as=Table;v=v1;g=meta.k8s.io,\
                 application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
            ),
            Format::Table
        );
        assert_eq!(
            format_from_accept("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
            Format::Metadata
        );
        assert_eq!(format_from_accept("application/json, */*"), Format::Full);
    }

    #[test]
    fn json_path_subset() {
        let o = json!({"status": {"conditions": [{"type": "Ready", "status": "True"},
                                                 {"type": "X", "status": "False"}]},
                       "spec": {"items": [{"n": 1}, {"n": 2}]}});
        assert_eq!(eval(&o, ".status.conditions[?(@.type==\"Ready\")].status"), Some(json!("True")));
        assert_eq!(eval(&o, ".spec.items[1].n"), Some(json!(2)));
        assert_eq!(eval(&o, ".spec.items[*].n"), Some(json!([1, 2])));
        assert_eq!(eval(&o, ".spec.missing"), None);
    }
}
