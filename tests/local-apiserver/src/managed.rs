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
        fieldpath::retain_existing(&mut e.set, obj, root, write_only);
    }
    entries.retain(|e| !e.set.is_empty());
}

/// The request's managedFields as the real field manager decodes them (`DecodeManagedFields`):
/// None when an entry is not an object, its operation is not `Apply` or `Update`, its apiVersion
/// is empty, its fieldsType is not `FieldsV1` or its fieldsV1 is not a field set.
fn decode_entries(list: &[Value]) -> Option<Vec<Entry>> {
    list.iter()
        .map(|e| {
            let operation = e.get("operation").and_then(Value::as_str).filter(|o| matches!(*o, "Apply" | "Update"))?;
            let api_version = e.get("apiVersion").and_then(Value::as_str).filter(|v| !v.is_empty())?;
            e.get("fieldsType").and_then(Value::as_str).filter(|t| *t == "FieldsV1")?;
            let fields = match e.get("fieldsV1") {
                None | Some(Value::Null) => FieldSet::default(),
                Some(f @ Value::Object(_)) => fieldpath::from_fields_v1(f),
                Some(_) => return None,
            };
            Some(Entry {
                manager: e.get("manager").and_then(Value::as_str).unwrap_or_default().into(),
                operation: operation.into(),
                api_version: api_version.into(),
                time: e.get("time").and_then(Value::as_str).unwrap_or_default().into(),
                subresource: e.get("subresource").and_then(Value::as_str).unwrap_or_default().into(),
                set: fields,
            })
        })
        .collect()
}

/// Whether the request resets managedFields (`isResetManagedFields`): an empty list, or a list of
/// one entry with every field unset (`[{}]`).
fn is_reset(list: &[Value]) -> bool {
    match list {
        [] => true,
        [only] => only.as_object().is_some_and(|m| {
            m.values().all(|v| v.is_null() || v.as_str().is_some_and(str::is_empty))
                && m.get("fieldsV1").is_none_or(Value::is_null)
        }),
        _ => false,
    }
}

/// The entries a non-apply write starts from, as kube-apiserver's field manager picks them
/// (`decodeLiveOrNew`): a subresource write ignores the request's managedFields; a reset
/// (`[]` or `[{}]`) starts from none; otherwise the request's entries when they decode and are
/// not empty (a client may edit them), else the live object's (a client that does not know the
/// field must not drop it).
fn starting_entries(old: Option<&Value>, new: &Value, subresource: &str) -> Vec<Entry> {
    let live = || old.map(read_entries).unwrap_or_default();
    if !subresource.is_empty() {
        return live();
    }
    match new["metadata"].get("managedFields").and_then(Value::as_array) {
        Some(list) if is_reset(list) => Vec::new(),
        Some(list) => decode_entries(list).filter(|e| !e.is_empty()).unwrap_or_else(live),
        None => live(),
    }
}

/// Records a non-apply write (create, update, patch) by `ctx.manager` on `new`.
pub fn record_update(old: Option<&Value>, new: &mut Value, ctx: &WriteCtx<'_>) {
    let mut entries = starting_entries(old, new, ctx.subresource);
    let changed = fieldpath::changed(old, new, ctx.root, ctx.scope);
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
    fn a_reset_clears_managed_fields_and_other_lists_replace_or_keep_them() {
        let a1 = apply(None, &cm(json!({"a": "1"})), false, &ctx("one")).unwrap();
        for reset in [json!([{}]), json!([])] {
            let mut new = a1.clone();
            new["metadata"]["managedFields"] = reset.clone();
            record_update(Some(&a1), &mut new, &ctx("editor"));
            assert!(new["metadata"].get("managedFields").is_none(), "{reset}: {new}");
        }
        // A reset together with a change: the writer owns what it changed, nothing else is kept.
        let mut new = a1.clone();
        new["metadata"]["managedFields"] = json!([{}]);
        new["data"]["b"] = json!("2");
        record_update(Some(&a1), &mut new, &ctx("editor"));
        let entries = read_entries(&new);
        assert_eq!(entries.iter().map(|e| e.manager.as_str()).collect::<Vec<_>>(), ["editor"]);
        // Entries that do not decode (no fieldsType) leave the live ones; an entry that is not
        // all-empty is no reset.
        for kept in [json!([{"manager": "x", "operation": "Update", "apiVersion": "v1"}]), json!(null)] {
            let mut new = a1.clone();
            new["metadata"]["managedFields"] = kept.clone();
            record_update(Some(&a1), &mut new, &ctx("editor"));
            assert_eq!(read_entries(&new), read_entries(&a1), "{kept}");
        }
        // Entries that decode replace the live ones (a client editing managedFields).
        let mut new = a1.clone();
        new["metadata"]["managedFields"] = json!([{"manager": "other", "operation": "Update", "apiVersion": "v1",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}}]);
        record_update(Some(&a1), &mut new, &ctx("editor"));
        assert_eq!(read_entries(&new).iter().map(|e| e.manager.as_str()).collect::<Vec<_>>(), ["other"]);
        // A subresource write ignores the request's managedFields.
        let mut new = a1.clone();
        new["metadata"]["managedFields"] = json!([{}]);
        let status = WriteCtx { subresource: "status", ..ctx("editor") };
        record_update(Some(&a1), &mut new, &status);
        assert_eq!(read_entries(&new), read_entries(&a1));
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
