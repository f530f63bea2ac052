//! managedFields and server-side apply.
//!
//! Every write records which manager owns which fields (`metadata.managedFields`, one entry per
//! manager, operation and subresource). Updates (create, PUT, patches) give the writer the
//! fields whose values it changed and take them from everyone else. Apply merges the applied
//! configuration into the live object, reports conflicts with other owners (409 naming them)
//! unless forced, and removes fields the manager applied before but omits now when nobody else
//! owns them.

use serde_json::{Map, Value, json};

use crate::error::{ApiError, Cause};
use crate::fieldpath::{self, Elem, FieldSet, Scope};
use crate::meta;
use crate::schema::Node;

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub set: FieldSet,
}

impl Entry {
    fn is(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }
}

pub fn read_entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or_default().into(),
            operation: e["operation"].as_str().unwrap_or("Update").into(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().into(),
            time: e["time"].as_str().unwrap_or_default().into(),
            subresource: e["subresource"].as_str().unwrap_or_default().into(),
            set: fieldpath::from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

pub fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.set.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fieldpath::to_fields_v1(&e.set),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if let Some(m) = obj["metadata"].as_object_mut() {
        if list.is_empty() {
            m.remove("managedFields");
        } else {
            m.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Where a write lands.
pub struct WriteCtx<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: &'a str,
    pub root: Node<'a>,
    pub scope: Scope,
}

fn set_entry(entries: &mut Vec<Entry>, ctx: &WriteCtx<'_>, operation: &str, set: FieldSet) {
    match entries.iter_mut().find(|e| e.is(ctx.manager, operation, ctx.subresource)) {
        Some(e) => {
            if e.set != set || e.api_version != ctx.api_version {
                e.set = set;
                e.api_version = ctx.api_version.to_string();
                e.time = meta::now();
            }
        }
        None => entries.push(Entry {
            manager: ctx.manager.into(),
            operation: operation.into(),
            api_version: ctx.api_version.into(),
            time: meta::now(),
            subresource: ctx.subresource.into(),
            set,
        }),
    }
}

/// Drops paths that no longer exist in `obj` from every entry, and empty entries.
fn prune(entries: &mut Vec<Entry>, obj: &Value, root: Node<'_>) {
    // Secret `stringData` is write-only (folded into `data`): its owners keep it, as on a real
    // server, so re-applying the same stringData stays a no-op.
    let write_only = |p: &fieldpath::Path| {
        matches!(p.first(), Some(fieldpath::Elem::Field(f)) if f == "stringData")
            && obj.get("kind").and_then(Value::as_str) == Some("Secret")
    };
    for e in entries.iter_mut() {
        e.set.retain(|p| write_only(p) || fieldpath::get(obj, p, root).is_some());
    }
    entries.retain(|e| !e.set.is_empty());
}

/// Records a non-apply write (create, update, patch) by `ctx.manager` on `new`.
pub fn record_update(old: Option<&Value>, new: &mut Value, ctx: &WriteCtx<'_>) {
    let mut entries = old.map(read_entries).unwrap_or_default();
    let new_set = fieldpath::collect(new, ctx.root, ctx.scope);
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| match old {
            Some(o) => fieldpath::get(o, p, ctx.root) != fieldpath::get(new, p, ctx.root),
            None => true,
        })
        .cloned()
        .collect();
    for e in entries.iter_mut() {
        if !e.is(ctx.manager, "Update", ctx.subresource) {
            e.set.retain(|p| !changed.contains(p));
        }
    }
    if !changed.is_empty() {
        let mut mine = entries
            .iter()
            .find(|e| e.is(ctx.manager, "Update", ctx.subresource))
            .map(|e| e.set.clone())
            .unwrap_or_default();
        mine.extend(changed);
        set_entry(&mut entries, ctx, "Update", mine);
    }
    prune(&mut entries, new, ctx.root);
    write_entries(new, &entries);
}

/// Keeps only the top-level fields a write in `scope` may set (plus metadata for main writes).
fn scoped(applied: &Value, scope: Scope) -> Value {
    let mut out = Map::new();
    if let Some(m) = applied.as_object() {
        for (k, v) in m {
            let keep = match scope {
                Scope::StatusOnly => k == "status",
                _ => scope.includes_top(k),
            };
            if keep {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// Server-side apply of `applied` by `ctx.manager` onto `live` (None when creating).
/// Returns the new object with managedFields updated, or 409 listing conflicts.
pub fn apply(live: Option<&Value>, applied: &Value, force: bool, ctx: &WriteCtx<'_>) -> Result<Value, ApiError> {
    let empty = json!({});
    let live_v = live.unwrap_or(&empty);
    let mut entries = live.map(read_entries).unwrap_or_default();
    let applied = scoped(applied, ctx.scope);
    let new_set = fieldpath::collect(&applied, ctx.root, ctx.scope);

    let mut conflicts: Vec<(fieldpath::Path, String, String)> = Vec::new();
    for e in &entries {
        if e.manager == ctx.manager {
            continue;
        }
        for p in e.set.intersection(&new_set) {
            if matches!(p.last(), Some(Elem::Key(_))) {
                continue;
            }
            if fieldpath::get(&applied, p, ctx.root) != fieldpath::get(live_v, p, ctx.root) {
                conflicts.push((p.clone(), e.manager.clone(), e.api_version.clone()));
            }
        }
    }
    if !conflicts.is_empty() {
        if !force {
            return Err(conflict_error(&conflicts));
        }
        for (p, m, _) in &conflicts {
            for e in entries.iter_mut().filter(|e| &e.manager == m) {
                e.set.remove(p);
            }
        }
    }

    let mut merged = fieldpath::merge_root(live_v, &applied, ctx.root);
    let previous =
        entries.iter().find(|e| e.is(ctx.manager, "Apply", ctx.subresource)).map(|e| e.set.clone()).unwrap_or_default();
    let others: FieldSet = entries
        .iter()
        .filter(|e| !e.is(ctx.manager, "Apply", ctx.subresource))
        .flat_map(|e| e.set.iter().cloned())
        .collect();
    // Deepest paths first so removing an item does not hide a path below it.
    let removals: FieldSet = previous
        .difference(&new_set)
        .filter(|p| !fieldpath::covers_below(&others, p) && !fieldpath::covers_below(&new_set, p))
        .filter(|p| !is_key_field(p))
        .cloned()
        .collect();
    // A path below one that is removed goes with it; removing it first could break the
    // item's key and hide the item.
    for p in &removals {
        if (1..p.len()).any(|n| removals.contains(&p[..n])) {
            continue;
        }
        fieldpath::remove(&mut merged, p, ctx.root);
    }
    // Fields now owned by this apply are no longer owned by the same manager's Update entry.
    for e in entries.iter_mut() {
        if e.is(ctx.manager, "Update", ctx.subresource) {
            e.set.retain(|p| !new_set.contains(p));
        }
    }
    set_entry(&mut entries, ctx, "Apply", new_set);
    prune(&mut entries, &merged, ctx.root);
    write_entries(&mut merged, &entries);
    Ok(merged)
}

/// Whether a path is a key field of the keyed list item it is in (`k:{"name":"a"}` / `f:name`):
/// it lives as long as the item, never on its own.
fn is_key_field(p: &[Elem]) -> bool {
    match p {
        [.., Elem::Key(k), Elem::Field(f)] => serde_json::from_str::<Value>(k).is_ok_and(|key| key.get(f).is_some()),
        _ => false,
    }
}

fn conflict_error(conflicts: &[(fieldpath::Path, String, String)]) -> ApiError {
    let n = conflicts.len();
    let lines: Vec<String> = conflicts
        .iter()
        .map(|(p, m, v)| format!("conflict with \"{m}\" using {v}: {}", fieldpath::display(p)))
        .collect();
    let message = if n == 1 {
        format!("Apply failed with 1 conflict: {}", lines[0])
    } else {
        format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
    };
    let mut e = ApiError::new(409, "Conflict", message);
    e.causes = conflicts
        .iter()
        .map(|(p, m, v)| Cause {
            reason: "FieldManagerConflict".into(),
            message: format!("conflict with \"{m}\" using {v}"),
            field: fieldpath::display(p),
        })
        .collect();
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(manager: &'a str) -> WriteCtx<'a> {
        WriteCtx {
            manager,
            api_version: "v1",
            subresource: "",
            root: Node::builtin("api::core::v1::ConfigMap"),
            scope: Scope::All,
        }
    }

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d"}, "data": data})
    }

    #[test]
    fn omitted_fields_are_removed_and_others_survive() {
        let a1 = apply(None, &cm(json!({"a": "1", "b": "2"})), false, &ctx("one")).unwrap();
        let b = apply(Some(&a1), &cm(json!({"c": "3"})), false, &ctx("two")).unwrap();
        let a2 = apply(Some(&b), &cm(json!({"a": "1"})), false, &ctx("one")).unwrap();
        assert_eq!(a2["data"], json!({"a": "1", "c": "3"}));
        let entries = read_entries(&a2);
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn conflicts_name_the_manager_unless_forced() {
        let a1 = apply(None, &cm(json!({"a": "1"})), false, &ctx("one")).unwrap();
        let err = apply(Some(&a1), &cm(json!({"a": "2"})), false, &ctx("two")).unwrap_err();
        assert_eq!(err.code, 409);
        assert!(err.message.contains("conflict with \"one\""), "{}", err.message);
        assert_eq!(err.causes[0].field, ".data.a");
        // Same value is shared ownership, not a conflict.
        assert!(apply(Some(&a1), &cm(json!({"a": "1"})), false, &ctx("two")).is_ok());
        let forced = apply(Some(&a1), &cm(json!({"a": "2"})), true, &ctx("two")).unwrap();
        assert_eq!(forced["data"]["a"], "2");
        assert!(read_entries(&forced).iter().all(|e| e.manager == "two"));
    }

    #[test]
    fn updates_take_ownership_of_changed_fields() {
        let a1 = apply(None, &cm(json!({"a": "1", "b": "1"})), false, &ctx("one")).unwrap();
        let mut updated = a1.clone();
        updated["data"]["a"] = json!("9");
        record_update(Some(&a1), &mut updated, &ctx("editor"));
        let entries = read_entries(&updated);
        let editor = entries.iter().find(|e| e.manager == "editor").unwrap();
        assert_eq!(editor.operation, "Update");
        assert_eq!(editor.set.len(), 1);
        let err = apply(Some(&updated), &cm(json!({"a": "1", "b": "1"})), false, &ctx("one")).unwrap_err();
        assert!(err.message.contains("editor"));
    }
}
