//! Admission of custom resources against their CRD's `openAPIV3Schema`, in the real server's
//! order: prune unknown fields (unless `x-kubernetes-preserve-unknown-fields`) and nulls of
//! non-nullable fields, apply defaults, then validate types, required fields, enums, bounds,
//! patterns, lengths and item counts, list-map key and set item uniqueness, and CEL rules. Every
//! problem becomes a cause with its field path in a 422 Invalid status.
//!
//! Updates follow the apiextensions-apiserver strategies (`strategy.go`, `status_strategy.go`):
//! - a write of the main resource validates the whole object; a write of the status subresource
//!   validates only `status` against the schema (the rest is the stored object's), but the list
//!   uniqueness checks and every CEL rule see the whole object;
//! - validation ratcheting (KEP-4008, `CRDValidationRatcheting`: off before 1.30, on by default
//!   from 1.30, GA and locked on from 1.33): an error of a value the update leaves unchanged is
//!   dropped. Values are correlated with the old object as the real server's `CorrelatedObject`
//!   does (object properties the schema declares, items of `x-kubernetes-list-type: map` lists by
//!   their keys; items of other lists are not correlated, so a changed atomic or set list is
//!   checked whole). A CEL rule that fails on an unchanged value is ratcheted unless it reads
//!   `oldSelf`; an uncorrelatable value counts as unchanged when its nearest correlated ancestor
//!   is; a rule that fails to evaluate is never ratcheted. The list uniqueness checks ratchet as a
//!   whole: new duplicates are refused only when the old object had none. Status writes ratchet
//!   from 1.33 only (kubernetes/kubernetes#129506; before, `status` and every CEL rule were
//!   checked in full on each status write);
//! - CEL rules do not run when the schema checks found a type, required, enum, length or count
//!   error (`hasBlockingErr`): the server says so with one more cause.

use serde_json::{Map, Value};

use crate::cel_cost;
use crate::cel_rules;
use crate::error::Cause;

/// The write being admitted. `old` is the stored object as the storage decoder reads it
/// ([`decode_stored`]: pruned and defaulted), as the real strategies see it.
#[derive(Clone, Copy, Debug)]
pub enum Write<'a> {
    Create,
    /// A create, update, patch or apply of the main resource that replaces `old`.
    Update(&'a Value),
    /// A write of the `status` subresource of `old`.
    Status(&'a Value),
}

/// `CRDValidationRatcheting` at a Kubernetes minor version with its default feature gates:
/// alpha (off) in 1.28 and 1.29, beta (on) from 1.30, GA from 1.33.
pub fn ratcheting_enabled(minor: u32) -> bool {
    minor >= 30
}

/// Whether a write ratchets at `minor`: main resource updates from 1.30, status writes from 1.33
/// (the status strategy passed no ratcheting options before kubernetes/kubernetes#129506).
fn ratchets(write: Write<'_>, minor: u32) -> bool {
    match write {
        Write::Create => false,
        Write::Update(_) => ratcheting_enabled(minor),
        Write::Status(_) => minor >= 33,
    }
}

/// The object as read from storage: unknown fields pruned, nulls of non-nullable fields dropped
/// and defaults applied, as the real server's storage decoder does on every read.
pub fn decode_stored(stored: &Value, schema: &Value) -> Value {
    let mut v = stored.clone();
    if let Value::Object(map) = &mut v {
        prune_object(map, schema, true, "", &mut Vec::new());
    }
    default_value(&mut v, schema);
    v
}

/// The reasons the real server treats as blocking CEL evaluation (`hasBlockingErr`).
const BLOCKING: &[&str] = &[
    "FieldValueNotSupported",
    "FieldValueRequired",
    "FieldValueTooLong",
    "FieldValueTooMany",
    "FieldValueTypeInvalid",
];

/// Prunes and defaults `obj` in place, then returns every validation problem of `write` at the
/// Kubernetes minor version `minor`.
pub fn admit(obj: &mut Value, schema: &Value, write: Write<'_>, minor: u32) -> Vec<Cause> {
    if let Value::Object(map) = obj {
        prune_object(map, schema, true, "", &mut Vec::new());
    }
    default_value(obj, schema);
    let ratchet = ratchets(write, minor);
    let old = match write {
        Write::Create => None,
        Write::Update(o) | Write::Status(o) => Some(o),
    };
    let correlated = old.filter(|_| ratchet);
    let mut causes = Vec::new();
    match write {
        Write::Status(_) => {
            if let (Some(status), Some(status_schema)) =
                (obj.get("status"), schema.get("properties").and_then(|p| p.get("status")))
            {
                let old_status = correlated.and_then(|o| o.get("status"));
                validate(status, status_schema, old_status, "status", &mut causes, false);
            }
        }
        _ => validate(obj, schema, correlated, "", &mut causes, true),
    }
    let mut duplicates = Vec::new();
    list_type_causes(obj, schema, "", &mut duplicates);
    if !duplicates.is_empty() {
        let mut old_duplicates = Vec::new();
        if let Some(o) = old {
            list_type_causes(o, schema, "", &mut old_duplicates);
        }
        if old_duplicates.is_empty() {
            causes.extend(duplicates);
        }
    }
    if causes.iter().any(|c| BLOCKING.contains(&c.reason.as_str())) {
        causes.push(cause(
            "FieldValueInvalid",
            "<nil>",
            "Invalid value: null: some validation rules were not checked because the object was invalid; correct \
             the existing errors to complete validation"
                .into(),
        ));
        return causes;
    }
    let ctx = CelCtx { optional_old_self: ratcheting_enabled(minor) };
    let corr = Corr { old: correlated, parent_unchanged: false };
    validate_cel(obj, schema, old, corr, "", &mut causes, true, &ctx);
    causes
}

/// maxItems/minItems or maxProperties/minProperties, with the real server's messages.
fn size_bounds(
    schema: &Value,
    (max_key, min_key, noun): (&str, &str, &str),
    len: usize,
    path: &str,
    out: &mut Vec<Cause>,
) {
    let len = len as u64;
    if let Some(max) = schema.get(max_key).and_then(Value::as_u64)
        && len > max
    {
        out.push(cause("FieldValueTooMany", path, format!("Too many: {len}: must have at most {max} items")));
    }
    if let Some(min) = schema.get(min_key).and_then(Value::as_u64)
        && len < min
    {
        out.push(cause(
            "FieldValueInvalid",
            path,
            format!("Invalid value: {len}: {path} in body should have at least {min} {noun}"),
        ));
    }
}

/// The schema of property `k` of an object: declared, or the `additionalProperties` schema.
fn property_schema<'a>(schema: &'a Value, k: &str) -> Option<&'a Value> {
    schema
        .get("properties")
        .and_then(|p| p.get(k))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

/// The list-map keys of a `x-kubernetes-list-type: map` array schema (None for other lists).
fn map_list_keys(schema: &Value) -> Option<Vec<&str>> {
    if schema.get("x-kubernetes-list-type").and_then(Value::as_str) != Some("map") {
        return None;
    }
    Some(
        schema
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|k| k.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default(),
    )
}

/// The old item `item` of a map list correlates with: the first whose keys (each present and a
/// scalar) are equal. Items of other lists correlate with nothing.
fn correlate_item<'a>(list_schema: &Value, item: &Value, olds: &'a [Value]) -> Option<&'a Value> {
    let keys = map_list_keys(list_schema)?;
    if keys.is_empty() {
        return None;
    }
    let key_of = |v: &Value| -> Option<Vec<Value>> {
        let m = v.as_object()?;
        keys.iter()
            .map(|k| m.get(*k).filter(|x| matches!(x, Value::Bool(_) | Value::Number(_) | Value::String(_))).cloned())
            .collect()
    };
    let wanted = key_of(item)?;
    olds.iter().find(|o| key_of(o).as_ref() == Some(&wanted))
}

/// Whether `new` equals its correlated `old` as the real server's ratcheting compares them
/// (`CorrelatedObject.CachedDeepEqual`): objects key by key through the schema (a key it does not
/// declare never compares equal), map lists item by item through their keys (so a reordering is
/// no change), other lists and scalars exactly.
fn deep_equal(new: &Value, old: &Value, schema: &Value) -> bool {
    match (new, old) {
        (Value::Object(n), Value::Object(o)) => {
            n.len() == o.len()
                && n.iter().all(|(k, nv)| match (o.get(k), property_schema(schema, k)) {
                    (Some(ov), Some(ps)) => deep_equal(nv, ov, ps),
                    _ => false,
                })
        }
        (Value::Array(n), Value::Array(o)) => {
            if n.len() != o.len() {
                return false;
            }
            if map_list_keys(schema).is_none() {
                return n == o;
            }
            n.iter().all(|item| match (correlate_item(schema, item, o), schema.get("items")) {
                (Some(oi), Some(is)) => deep_equal(item, oi, is),
                _ => false,
            })
        }
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => false,
        _ => new == old,
    }
}

/// Duplicate items of `x-kubernetes-list-type: set` lists and duplicate keys of map lists, over
/// the whole value (the real server's `ValidateListSetsAndMaps`, run apart from the schema checks).
fn list_type_causes(v: &Value, schema: &Value, path: &str, out: &mut Vec<Cause>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if let Some(cs) = schema.get("properties").and_then(|p| p.get(k)) {
                    list_type_causes(child, cs, &join(path, k), out);
                } else if let Some(ap @ Value::Object(_)) = schema.get("additionalProperties") {
                    list_type_causes(child, ap, &format!("{path}[{k}]"), out);
                }
            }
        }
        Value::Array(items) => {
            match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => {
                    for (i, item) in items.iter().enumerate() {
                        if items[..i].contains(item) {
                            out.push(cause(
                                "FieldValueDuplicate",
                                &format!("{path}[{i}]"),
                                format!("Duplicate value: {item}"),
                            ));
                        }
                    }
                }
                Some("map") => {
                    let keys = map_list_keys(schema).unwrap_or_default();
                    let key_of = |item: &Value| -> Value {
                        Value::Object(
                            keys.iter()
                                .map(|k| (k.to_string(), item.get(*k).cloned().unwrap_or(Value::Null)))
                                .collect(),
                        )
                    };
                    for (i, item) in items.iter().enumerate() {
                        let k = key_of(item);
                        if items[..i].iter().any(|prev| key_of(prev) == k) {
                            out.push(cause(
                                "FieldValueDuplicate",
                                &format!("{path}[{i}]"),
                                format!("Duplicate value: {k}"),
                            ));
                        }
                    }
                }
                _ => {}
            }
            if let Some(is) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    list_type_causes(item, is, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn is_true(s: &Value, key: &str) -> bool {
    s.get(key) == Some(&Value::Bool(true))
}

/// Fields of `obj` the schema does not declare (what pruning would drop), as `.spec.x` paths,
/// for `fieldValidation=Strict`.
pub fn unknown_fields(obj: &Value, schema: &Value) -> Vec<String> {
    let mut removed = Vec::new();
    if let Value::Object(map) = obj {
        let mut copy = map.clone();
        prune_object(&mut copy, schema, true, "", &mut removed);
    }
    removed
}

fn prune_object(map: &mut Map<String, Value>, schema: &Value, root: bool, path: &str, removed: &mut Vec<String>) {
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let preserve = is_true(schema, "x-kubernetes-preserve-unknown-fields");
    let embedded = is_true(schema, "x-kubernetes-embedded-resource");
    let keep_meta = root || embedded;
    map.retain(|k, v| {
        if keep_meta && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            return true;
        }
        let child = props.and_then(|p| p.get(k)).or(match additional {
            Some(a @ Value::Object(_)) => Some(a),
            _ => None,
        });
        match child {
            Some(cs) => {
                if v.is_null() && !is_true(cs, "nullable") {
                    return false;
                }
                prune_value(v, cs, &format!("{path}.{k}"), removed);
                true
            }
            None => {
                let keep = preserve || additional == Some(&Value::Bool(true));
                if !keep {
                    removed.push(format!("{path}.{k}"));
                }
                keep
            }
        }
    });
}

fn prune_value(v: &mut Value, schema: &Value, path: &str, removed: &mut Vec<String>) {
    match v {
        Value::Object(m)
            if (schema.get("properties").is_some()
                || schema.get("additionalProperties").is_some()
                || !is_true(schema, "x-kubernetes-preserve-unknown-fields"))
                && (schema.get("type").and_then(Value::as_str) == Some("object")
                    || schema.get("properties").is_some()) =>
        {
            prune_object(m, schema, false, path, removed);
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for (n, i) in items.iter_mut().enumerate() {
                    prune_value(i, is, &format!("{path}[{n}]"), removed);
                }
            }
        }
        _ => {}
    }
}

/// A CRD's structural defaults applied to an object as read from storage: the real server's
/// storage decoder applies them on every read (GET, LIST, WATCH, write responses), not only when
/// a request is decoded, so an object stored before its CRD gained a default reads with it (the
/// stored bytes stay as they are). A default on `status` thus shows on a new object whose status
/// the create dropped.
pub fn default_on_read(v: &mut Value, schema: &Value) {
    default_value(v, schema);
}

fn default_value(v: &mut Value, schema: &Value) {
    match v {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, ps) in props {
                    if !m.contains_key(k)
                        && let Some(d) = ps.get("default")
                    {
                        m.insert(k.clone(), d.clone());
                    }
                }
                for (k, child) in m.iter_mut() {
                    if let Some(ps) = props.get(k) {
                        default_value(child, ps);
                    }
                }
            } else if let Some(ap @ Value::Object(_)) = schema.get("additionalProperties") {
                for child in m.values_mut() {
                    default_value(child, ap);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for i in items {
                    default_value(i, is);
                }
            }
        }
        _ => {}
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_string() } else { format!("{path}.{field}") }
}

fn cause(reason: &str, field: &str, message: String) -> Cause {
    Cause { reason: reason.into(), message, field: field.into() }
}

fn type_ok(v: &Value, want: &str, schema: &Value) -> bool {
    if is_true(schema, "x-kubernetes-int-or-string") {
        return matches!(type_name(v), "integer" | "string");
    }
    match want {
        "number" => v.is_number(),
        "integer" => type_name(v) == "integer" || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        other => type_name(v) == other,
    }
}

/// The schema checks of `v` and its children. `old`: the correlated old value when the write
/// ratchets; a value equal to it reports nothing, nor do its children (the real server drops the
/// errors of an unchanged node, theirs included).
fn validate(v: &Value, schema: &Value, old: Option<&Value>, path: &str, out: &mut Vec<Cause>, root: bool) {
    if old.is_some_and(|o| deep_equal(v, o, schema)) {
        return;
    }
    if v.is_null() {
        if !is_true(schema, "nullable") && !root {
            out.push(cause(
                "FieldValueTypeInvalid",
                path,
                format!(
                    "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                    schema.get("type").and_then(Value::as_str).unwrap_or("object")
                ),
            ));
        }
        return;
    }
    let declared = schema.get("type").and_then(Value::as_str);
    let int_or_string = is_true(schema, "x-kubernetes-int-or-string");
    if let Some(want) = declared.or(if int_or_string { Some("integer,string") } else { None })
        && !type_ok(v, want, schema)
    {
        let got = type_name(v);
        out.push(cause(
            "FieldValueTypeInvalid",
            path,
            format!("Invalid value: \"{got}\": {path} in body must be of type {want}: \"{got}\""),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        out.push(cause(
            "FieldValueNotSupported",
            path,
            format!("Unsupported value: {}: supported values: {}", v, list.join(", ")),
        ));
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            let excl = is_true(schema, "exclusiveMinimum");
            if (excl && n <= min) || (!excl && n < min) {
                let rel = if excl { "greater than" } else { "greater than or equal to" };
                out.push(cause(
                    "FieldValueInvalid",
                    path,
                    format!("Invalid value: {v}: {path} in body should be {rel} {}", num(min)),
                ));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            let excl = is_true(schema, "exclusiveMaximum");
            if (excl && n >= max) || (!excl && n > max) {
                let rel = if excl { "less than" } else { "less than or equal to" };
                out.push(cause(
                    "FieldValueInvalid",
                    path,
                    format!("Invalid value: {v}: {path} in body should be {rel} {}", num(max)),
                ));
            }
        }
        if let Some(m) = schema.get("multipleOf").and_then(Value::as_f64)
            && m > 0.0
            && (n / m).fract() != 0.0
        {
            out.push(cause(
                "FieldValueInvalid",
                path,
                format!("Invalid value: {v}: {path} in body should be a multiple of {}", num(m)),
            ));
        }
    }
    if let Some(s) = v.as_str() {
        let len = s.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            out.push(cause("FieldValueTooLong", path, format!("Too long: may not be more than {max} bytes")));
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            out.push(cause(
                "FieldValueInvalid",
                path,
                format!("Invalid value: {v}: {path} in body should be at least {min} chars long"),
            ));
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
            match regex::Regex::new(p) {
                Ok(re) if !re.is_match(s) => out.push(cause(
                    "FieldValueInvalid",
                    path,
                    format!("Invalid value: {v}: {path} in body should match '{p}'"),
                )),
                Ok(_) => {}
                Err(e) => out.push(cause(
                    "FieldValueInvalid",
                    path,
                    format!("Invalid value: {v}: pattern '{p}' does not compile: {e}"),
                )),
            }
        }
    }
    match v {
        Value::Object(m) => {
            for r in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                if let Some(r) = r.as_str()
                    && !m.contains_key(r)
                {
                    out.push(cause("FieldValueRequired", &join(path, r), "Required value".into()));
                }
            }
            size_bounds(schema, ("maxProperties", "minProperties", "properties"), m.len(), path, out);
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, child) in m {
                if (root || is_true(schema, "x-kubernetes-embedded-resource"))
                    && matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                {
                    continue;
                }
                let old_child = old.and_then(|o| o.get(k));
                if let Some(cs) = props.and_then(|p| p.get(k)) {
                    validate(child, cs, old_child, &join(path, k), out, false);
                } else if let Some(ap @ Value::Object(_)) = schema.get("additionalProperties") {
                    validate(child, ap, old_child, &format!("{path}[{k}]"), out, false);
                }
            }
        }
        Value::Array(items) => {
            size_bounds(schema, ("maxItems", "minItems", "items"), items.len(), path, out);
            if let Some(is) = schema.get("items") {
                let olds = old.and_then(Value::as_array);
                for (i, item) in items.iter().enumerate() {
                    let old_item = olds.and_then(|o| correlate_item(schema, item, o));
                    validate(item, is, old_item, &format!("{path}[{i}]"), out, false);
                }
            }
        }
        _ => {}
    }
    // allOf, anyOf, oneOf and not judge the changed value whole (the real server does not ratchet
    // inside them): their branches get no old value.
    for (key, all) in [("allOf", true), ("anyOf", false), ("oneOf", false)] {
        if let Some(subs) = schema.get(key).and_then(Value::as_array) {
            let results: Vec<Vec<Cause>> = subs
                .iter()
                .map(|s| {
                    let mut c = Vec::new();
                    validate(v, s, None, path, &mut c, root);
                    c
                })
                .collect();
            let passing = results.iter().filter(|c| c.is_empty()).count();
            let ok = match key {
                "allOf" => passing == subs.len(),
                "anyOf" => passing > 0,
                _ => passing == 1,
            };
            if !ok {
                if all {
                    out.extend(results.into_iter().flatten());
                } else {
                    out.push(cause(
                        "FieldValueInvalid",
                        path,
                        format!("Invalid value: {}: {path} in body must validate {key}", show(v)),
                    ));
                }
            }
        }
    }
    if let Some(not) = schema.get("not") {
        let mut c = Vec::new();
        validate(v, not, None, path, &mut c, root);
        if c.is_empty() {
            out.push(cause(
                "FieldValueInvalid",
                path,
                format!("Invalid value: {}: {path} in body must not validate the schema (not)", show(v)),
            ));
        }
    }
}

/// What every CEL evaluation of one write shares.
struct CelCtx {
    /// `optionalOldSelf: true` rules run on creates (with `oldSelf` none) only while
    /// `CRDValidationRatcheting` is on; with it off they wait for an old value like other
    /// transition rules.
    optional_old_self: bool,
}

/// The ratcheting state of one node for CEL rules (the real server's `ratchetingOptions`).
#[derive(Clone, Copy)]
struct Corr<'a> {
    /// The node's correlated old value; None when the write does not ratchet or the node cannot
    /// be correlated (an item of a list that is not a map list, a key the old value lacks).
    old: Option<&'a Value>,
    /// Whether the nearest correlated ancestor is unchanged (false at the root).
    parent_unchanged: bool,
}

impl<'a> Corr<'a> {
    /// Whether errors of this node are ratcheted (`shouldRatchetError`).
    fn unchanged(&self, v: &Value, schema: &Value) -> bool {
        match self.old {
            Some(o) => deep_equal(v, o, schema),
            None => self.parent_unchanged,
        }
    }

    fn child(&self, old: Option<&'a Value>, unchanged: bool) -> Corr<'a> {
        match self.old {
            Some(_) => Corr { old, parent_unchanged: unchanged },
            None => *self,
        }
    }
}

/// Evaluates the CEL rules of every schema node that has a value, depth first. `old`: the value
/// `oldSelf` binds (any update, ratcheting or not); `corr`: the ratcheting correlation.
#[allow(clippy::too_many_arguments)]
fn validate_cel(
    v: &Value,
    schema: &Value,
    old: Option<&Value>,
    corr: Corr<'_>,
    path: &str,
    out: &mut Vec<Cause>,
    root: bool,
    ctx: &CelCtx,
) {
    if v.is_null() {
        // The real server runs no rule on a null value (the surrounding schema's rules may).
        return;
    }
    let unchanged = corr.unchanged(v, schema);
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, child) in m {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let old_child = old.and_then(|o| o.get(k));
                let child_corr = corr.child(corr.old.and_then(|o| o.get(k)), unchanged);
                if let Some(cs) = props.and_then(|p| p.get(k)) {
                    validate_cel(child, cs, old_child, child_corr, &join(path, k), out, false, ctx);
                } else if let Some(ap @ Value::Object(_)) = schema.get("additionalProperties") {
                    validate_cel(child, ap, old_child, child_corr, &format!("{path}[{k}]"), out, false, ctx);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                // Items of map lists correlate with the old item of the same keys (so their
                // transition rules see oldSelf); other items have no old value.
                let old_items = old.and_then(Value::as_array);
                let corr_items = corr.old.and_then(Value::as_array);
                for (i, item) in items.iter().enumerate() {
                    let old_item = old_items.and_then(|olds| correlate_item(schema, item, olds));
                    let child_corr =
                        corr.child(corr_items.and_then(|olds| correlate_item(schema, item, olds)), unchanged);
                    validate_cel(item, is, old_item, child_corr, &format!("{path}[{i}]"), out, false, ctx);
                }
            }
        }
        _ => {}
    }
    // Rules inside allOf apply to the same value (the real server's AllOfValidators), ratcheted
    // only by the node's parent (the real server passes no correlation for the node itself).
    let all_of_corr = Corr { old: None, parent_unchanged: corr.parent_unchanged };
    for sub in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        validate_cel(v, sub, old, all_of_corr, path, out, root, ctx);
    }
    let rules = schema.get("x-kubernetes-validations").and_then(Value::as_array);
    if rules.is_none_or(|r| r.is_empty()) {
        return;
    }
    let type_name = schema.get("type").and_then(Value::as_str).unwrap_or_default();
    let self_value = cel_rules::bind(v, schema, root);
    let old_value = old.map(|o| cel_rules::bind(o, schema, root));
    for rule in rules.into_iter().flatten() {
        let Some(expr) = rule.get("rule").and_then(Value::as_str) else {
            continue;
        };
        let expr = expr.trim();
        let field = match rule.get("fieldPath").and_then(Value::as_str) {
            Some(fp) => join(path, &normalize_field_path(fp)),
            None if path.is_empty() => "<nil>".to_string(),
            None => path.to_string(),
        };
        let node_field = if path.is_empty() { "<nil>" } else { path };
        let message = rule.get("message").and_then(Value::as_str).map(str::trim).filter(|m| !m.is_empty());
        let compiled = match cel_rules::compile(expr) {
            Ok(c) => c,
            Err(e) => {
                out.push(cause(
                    "FieldValueInvalid",
                    node_field,
                    format!("Invalid value: {type_name:?}: rule compile error: {e}"),
                ));
                continue;
            }
        };
        let optional_old_self = is_true(rule, "optionalOldSelf");
        let transition = cel_rules::uses_old_self(&compiled);
        if transition && old.is_none() && !(optional_old_self && ctx.optional_old_self) {
            continue;
        }
        let vars = cel_rules::Vars { self_value: self_value.clone(), old_self: old_value.clone(), optional_old_self };
        match cel_rules::eval(&compiled, &vars) {
            Ok(true) => {}
            // Ratcheting: a rule that ignores oldSelf and fails on an unchanged value is only a
            // warning on the real server.
            Ok(false) if !transition && unchanged => {}
            Ok(false) => {
                let detail = rule
                    .get("messageExpression")
                    .and_then(Value::as_str)
                    .and_then(|m| cel_rules::eval_message(m, &vars))
                    .or_else(|| message.map(str::to_string))
                    .unwrap_or_else(|| format!("failed rule: {expr}"));
                let shown = match v {
                    Value::Object(_) | Value::Array(_) => None,
                    scalar => Some(scalar.to_string()),
                };
                let reason = rule.get("reason").and_then(Value::as_str).unwrap_or("FieldValueInvalid");
                let text = match (reason, shown) {
                    ("FieldValueForbidden", _) => format!("Forbidden: {detail}"),
                    ("FieldValueRequired", _) => format!("Required value: {detail}"),
                    ("FieldValueDuplicate", Some(s)) => format!("Duplicate value: {s}"),
                    ("FieldValueDuplicate", None) => "Duplicate value".to_string(),
                    (_, Some(s)) => format!("Invalid value: {s}: {detail}"),
                    (_, None) => format!("Invalid value: {detail}"),
                };
                out.push(cause(reason, &field, text));
            }
            Err(e) => out.push(cause(
                "FieldValueInvalid",
                node_field,
                format!("Invalid value: {type_name:?}: {e} evaluating rule: {}", message.unwrap_or(expr)),
            )),
        }
    }
}

/// A rule's `fieldPath` (`.a.b`, `.m['key']`) as a field path relative to its node (`a.b`, `m[key]`).
fn normalize_field_path(fp: &str) -> String {
    fp.trim_start_matches('.').replace("['", "[").replace("']", "]")
}

/// Problems with the CEL rules of a CRD schema that the real server refuses when the CRD is
/// written: rules and message expressions that do not compile, and transition rules where
/// `oldSelf` cannot be correlated (inside a list that is not `x-kubernetes-list-type: map`).
/// `path` is the schema's field path, e.g. `spec.versions[0].schema.openAPIV3Schema`.
pub fn crd_rule_causes(schema: &Value, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    let mut total = 0.0;
    check_rules(schema, path, true, None, Some(1.0), &mut total, &mut out);
    if total > cel_cost::SCHEMA_LIMIT {
        let what = "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema";
        let msg = cel_cost::exceeds_message(what, total, cel_cost::SCHEMA_LIMIT);
        out.push(cause("FieldValueForbidden", path, format!("Forbidden: {msg}")));
    }
    out
}

/// Walks a CRD schema checking its rules; `card` is how many times the node can occur (None
/// under an unbounded list or map), `total` sums the rules' estimated costs.
fn check_rules(
    schema: &Value,
    path: &str,
    root: bool,
    uncorrelatable: Option<&str>,
    card: Option<f64>,
    total: &mut f64,
    out: &mut Vec<Cause>,
) {
    for (i, rule) in schema.get("x-kubernetes-validations").and_then(Value::as_array).into_iter().flatten().enumerate()
    {
        let at = format!("{path}.x-kubernetes-validations[{i}]");
        let src = rule.get("rule").and_then(Value::as_str).unwrap_or_default();
        match cel_rules::compile(src) {
            Err(e) => {
                out.push(cause("FieldValueInvalid", &format!("{at}.rule"), format!("Invalid value: {src:?}: {e}")))
            }
            Ok(expr) => {
                let analysis = cel_cost::analyze(&expr, schema, root);
                for field in &analysis.undefined_fields {
                    out.push(cause(
                        "FieldValueInvalid",
                        &format!("{at}.rule"),
                        format!(
                            "Invalid value: {src:?}: compilation failed: ERROR: <input>: undefined field '{field}'"
                        ),
                    ));
                }
                let cost = analysis.cost * cel_cost::cardinality(card, schema);
                *total += cost;
                if cost > cel_cost::RULE_LIMIT {
                    let msg = cel_cost::exceeds_message("estimated rule cost", cost, cel_cost::RULE_LIMIT);
                    out.push(cause("FieldValueForbidden", &format!("{at}.rule"), format!("Forbidden: {msg}")));
                }
                if let Some(within) = uncorrelatable
                    && cel_rules::uses_old_self(&expr)
                {
                    out.push(cause(
                        "FieldValueInvalid",
                        &format!("{at}.rule"),
                        format!(
                            "Invalid value: {src:?}: oldSelf cannot be used on the uncorrelatable portion of the \
                             schema within {within}"
                        ),
                    ));
                }
            }
        }
        if let Some(m) = rule.get("messageExpression").and_then(Value::as_str)
            && let Err(e) = cel_rules::compile(m)
        {
            out.push(cause(
                "FieldValueInvalid",
                &format!("{at}.messageExpression"),
                format!("Invalid value: {m:?}: messageExpression {e}"),
            ));
        }
    }
    for (k, child) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
        check_rules(child, &format!("{path}.properties[{k}]"), false, uncorrelatable, card, total, out);
    }
    if let Some(ap @ Value::Object(_)) = schema.get("additionalProperties") {
        let card = cel_cost::child_cardinality(card, schema);
        check_rules(ap, &format!("{path}.additionalProperties"), false, uncorrelatable, card, total, out);
    }
    if let Some(items) = schema.get("items") {
        let map_list = schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map");
        let within =
            if map_list { uncorrelatable.map(str::to_string) } else { Some(uncorrelatable.unwrap_or(path).into()) };
        let card = cel_cost::child_cardinality(card, schema);
        check_rules(items, &format!("{path}.items"), false, within.as_deref(), card, total, out);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for (i, sub) in schema.get(key).and_then(Value::as_array).into_iter().flatten().enumerate() {
            check_rules(sub, &format!("{path}.{key}[{i}]"), root, uncorrelatable, card, total, out);
        }
    }
}

fn num(f: f64) -> String {
    if f.fract() == 0.0 { format!("{}", f as i64) } else { f.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "x-kubernetes-validations": [
                        {"rule": "self.size <= self.max", "message": "size must not exceed max"}
                    ],
                    "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 10},
                        "max": {"type": "integer", "default": 5},
                        "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
                        "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                        "port": {"x-kubernetes-int-or-string": true},
                        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "immutable": {"type": "string", "x-kubernetes-validations": [
                            {"rule": "self == oldSelf", "message": "is immutable"}
                        ]}
                    }
                }
            }
        })
    }

    #[test]
    fn defaults_pruning_and_success() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"},
                             "spec": {"size": 3, "unknown": 1, "port": "http", "free": {"any": {"thing": 1}}},
                             "extra": 1});
        let causes = admit(&mut obj, &schema(), Write::Create, 33);
        assert!(causes.is_empty(), "{causes:?}");
        assert_eq!(obj["spec"]["max"], 5);
        assert_eq!(obj["spec"]["mode"], "a");
        assert!(obj["spec"].get("unknown").is_none());
        assert!(obj.get("extra").is_none());
        let raw =
            json!({"apiVersion": "x/v1", "kind": "K", "spec": {"size": 3, "unknown": 1, "tags": ["a"]}, "extra": 1});
        // Sorted: map order depends on serde_json's preserve_order, which the workspace turns on.
        let mut unknown = unknown_fields(&raw, &schema());
        unknown.sort();
        assert_eq!(unknown, [".extra", ".spec.unknown"]);
        assert_eq!(obj["spec"]["free"]["any"]["thing"], 1);
    }

    #[test]
    fn every_rule_reports_its_field() {
        let mut obj =
            json!({"spec": {"size": 0, "mode": "c", "name": "ABCDEFG", "tags": ["a", "b", "c"], "port": true}});
        let causes = admit(&mut obj, &schema(), Write::Create, 33);
        let fields: Vec<(&str, &str)> = causes.iter().map(|c| (c.field.as_str(), c.reason.as_str())).collect();
        assert!(fields.contains(&("spec.size", "FieldValueInvalid")), "{fields:?}");
        assert!(fields.contains(&("spec.mode", "FieldValueNotSupported")));
        assert!(fields.contains(&("spec.name", "FieldValueTooLong")));
        assert!(fields.iter().filter(|f| f.0 == "spec.name").count() == 2);
        assert!(fields.contains(&("spec.tags", "FieldValueTooMany")));
        assert!(fields.contains(&("spec.port", "FieldValueTypeInvalid")));
        let mut missing = json!({"spec": {}});
        let causes = admit(&mut missing, &schema(), Write::Create, 33);
        assert_eq!(causes[0].field, "spec.size");
        assert_eq!(causes[0].message, "Required value");
    }

    #[test]
    fn cel_rules_and_transition_rules() {
        let mut too_big = json!({"spec": {"size": 8, "max": 6}});
        let causes = admit(&mut too_big, &schema(), Write::Create, 33);
        assert_eq!(causes.len(), 1);
        assert!(causes[0].message.contains("size must not exceed max"));
        let old = json!({"spec": {"size": 1, "immutable": "a"}});
        let mut changed = json!({"spec": {"size": 1, "immutable": "b"}});
        let causes = admit(&mut changed, &schema(), Write::Update(&old), 33);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.immutable");
        let mut created = json!({"spec": {"size": 1, "immutable": "b"}});
        assert!(admit(&mut created, &schema(), Write::Create, 33).is_empty());
    }

    #[test]
    fn unchanged_invalid_values_ratchet_on_updates_from_1_30() {
        let old = json!({"spec": {"size": 0, "name": "BAD"}});
        for minor in [30, 33] {
            let mut update = json!({"spec": {"size": 0, "name": "BAD", "mode": "b"}});
            assert!(admit(&mut update, &schema(), Write::Update(&old), minor).is_empty(), "1.{minor}");
        }
        // CRDValidationRatcheting is off by default before 1.30: every error counts.
        let mut update = json!({"spec": {"size": 0, "name": "BAD", "mode": "b"}});
        assert_eq!(fields_of(&mut update, Write::Update(&old), 29), ["spec.name", "spec.size"]);
        // A changed invalid value is refused, whatever the version.
        for minor in [30, 33] {
            let mut worse = json!({"spec": {"size": 0, "name": "WORSE"}});
            assert_eq!(fields_of(&mut worse, Write::Update(&old), minor), ["spec.name"], "1.{minor}");
        }
        let mut worse = json!({"spec": {"size": 0, "name": "WORSE"}});
        assert_eq!(fields_of(&mut worse, Write::Update(&old), 29), ["spec.name", "spec.size"]);
    }

    fn fields(causes: &[Cause]) -> Vec<&str> {
        causes.iter().map(|c| c.field.as_str()).collect()
    }

    /// The fields of the causes, sorted (object keys come in serde_json's map order).
    fn fields_of(obj: &mut Value, write: Write<'_>, minor: u32) -> Vec<String> {
        let mut f: Vec<String> = admit(obj, &schema(), write, minor).into_iter().map(|c| c.field).collect();
        f.sort();
        f
    }

    #[test]
    fn status_writes_check_the_status_schema_and_every_rule_but_not_the_spec_schema() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "size": {"type": "integer", "maximum": 10},
                "max": {"type": "integer"}},
                "x-kubernetes-validations": [{"rule": "self.size <= self.max", "message": "size must not exceed max"}]},
            "status": {"type": "object", "properties": {
                "phase": {"type": "string", "enum": ["Ready", "Failed"]},
                "count": {"type": "integer", "minimum": 0}}}}});
        // Stored before the rules tightened: size over its maximum and over max.
        let old = json!({"spec": {"size": 50, "max": 5}, "status": {"count": -1}});
        let status_write = |status: Value, minor: u32| {
            let mut new = json!({"spec": {"size": 50, "max": 5}, "status": status});
            admit(&mut new, &schema, Write::Status(&old), minor).into_iter().map(|c| c.field).collect::<Vec<_>>()
        };
        // 1.33: the spec schema is not checked on a status write, the unchanged spec's rule and the
        // unchanged status count ratchet.
        assert!(status_write(json!({"count": -1, "phase": "Ready"}), 33).is_empty());
        // A changed invalid status value is refused.
        assert_eq!(status_write(json!({"count": -2}), 33), ["status.count"]);
        assert_eq!(status_write(json!({"count": -1, "phase": "Gone"}), 33), ["status.phase", "<nil>"]);
        // 1.30 to 1.32: status writes do not ratchet: the old status error and the spec's rule count.
        assert_eq!(status_write(json!({"count": -1, "phase": "Ready"}), 32), ["status.count", "spec"]);
        assert_eq!(status_write(json!({"count": 1}), 30), ["spec"]);
        assert_eq!(status_write(json!({"count": 1}), 29), ["spec"]);
        // The same spec on a write of the main resource: its schema error is refused unless unchanged.
        let mut main = json!({"spec": {"size": 50, "max": 5, "extra": 1}, "status": {"count": -1}});
        assert!(admit(&mut main, &schema, Write::Update(&old), 33).is_empty());
        let mut main = json!({"spec": {"size": 51, "max": 5}});
        let f: Vec<String> = admit(&mut main, &schema, Write::Update(&old), 33).into_iter().map(|c| c.field).collect();
        assert_eq!(f, ["spec.size", "spec"]);
    }

    #[test]
    fn correlation_follows_list_types() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "atomic": {"type": "array", "items": {"type": "string", "maxLength": 3}},
            "keyed": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"}, "value": {"type": "string", "pattern": "^[a-z]+$"}}}},
            "set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}}}});
        let old = json!({"spec": {"atomic": ["toolong", "ok"], "keyed": [{"name": "a", "value": "BAD"},
            {"name": "b", "value": "ok"}], "set": ["x", "x"]}});
        let write = |spec: Value| {
            let mut new = json!({"spec": spec});
            admit(&mut new, &schema, Write::Update(&old), 33).into_iter().map(|c| c.field).collect::<Vec<_>>()
        };
        // Unchanged, or a map list reordered: nothing is re-checked.
        assert!(write(old["spec"].clone()).is_empty());
        assert!(
            write(json!({"atomic": ["toolong", "ok"], "keyed": [{"name": "b", "value": "ok"},
                {"name": "a", "value": "BAD"}], "set": ["x", "x"]}))
            .is_empty()
        );
        // Another item of an atomic list changed: the list is checked whole.
        assert_eq!(write(json!({"atomic": ["toolong", "new"]})), ["spec.atomic[0]", "<nil>"]);
        // Another item of a map list changed: the unchanged item keeps its error to itself.
        assert!(write(json!({"keyed": [{"name": "a", "value": "BAD"}, {"name": "b", "value": "new"}]})).is_empty());
        assert_eq!(write(json!({"keyed": [{"name": "a", "value": "WORSE"}]})), ["spec.keyed[0].value"]);
        // Duplicates ratchet as a whole: the old object had some, so new ones pass; from none, not.
        assert!(write(json!({"set": ["y", "y", "x", "x"]})).is_empty());
        let clean = json!({"spec": {"set": ["x"]}});
        let mut dup = json!({"spec": {"set": ["x", "x"]}});
        let f: Vec<String> = admit(&mut dup, &schema, Write::Update(&clean), 33).into_iter().map(|c| c.field).collect();
        assert_eq!(f, ["spec.set[1]"]);
    }

    #[test]
    fn cel_ratcheting_spares_neither_transition_rules_nor_evaluation_errors() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "ratio": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "x-kubernetes-validations": [{"rule": "self.a / self.b >= 1", "message": "a must be at least b"}]},
            "grow": {"type": "integer", "x-kubernetes-validations": [
                {"rule": "self > oldSelf", "message": "must grow on every update"}]},
            "names": {"type": "array", "items": {"type": "string", "x-kubernetes-validations": [
                {"rule": "self.startsWith('n')", "message": "must start with n"}]}},
            "other": {"type": "string"}}}}});
        let old = json!({"spec": {"ratio": {"a": 1, "b": 0}, "grow": 1, "names": ["x"]}});
        let mut new = json!({"spec": {"ratio": {"a": 1, "b": 0}, "grow": 1, "names": ["x"], "other": "y"}});
        let causes = admit(&mut new, &schema, Write::Update(&old), 33);
        // Division by zero is an evaluation error (never ratcheted); the transition rule fails on
        // the unchanged value; the item of the unchanged atomic list ratchets through its list.
        let mut f = fields(&causes);
        f.sort();
        assert_eq!(f, ["spec.grow", "spec.ratio"], "{causes:?}");
        let ratio = causes.iter().find(|c| c.field == "spec.ratio").expect("ratio");
        assert!(ratio.message.contains("evaluating rule"), "{causes:?}");
        let mut changed = json!({"spec": {"ratio": {"a": 2, "b": 1}, "grow": 2, "names": ["x", "n"]}});
        let causes = admit(&mut changed, &schema, Write::Update(&old), 33);
        assert_eq!(fields(&causes), ["spec.names[0]"], "{causes:?}");
    }

    #[test]
    fn blocking_errors_stop_cel_and_say_so() {
        // A type error blocks the rules; a pattern error does not.
        let mut typed = json!({"spec": {"size": "three", "max": 1}});
        let causes = admit(&mut typed, &schema(), Write::Create, 33);
        assert_eq!(fields(&causes), ["spec.size", "<nil>"], "{causes:?}");
        assert!(causes[1].message.contains("some validation rules were not checked"), "{causes:?}");
        let mut patterned = json!({"spec": {"size": 3, "max": 1, "name": "BAD"}});
        let causes = admit(&mut patterned, &schema(), Write::Create, 33);
        assert_eq!(fields(&causes), ["spec.name", "spec"], "{causes:?}");
    }

    #[test]
    fn stored_objects_decode_with_defaults_and_without_unknown_fields() {
        let stored = json!({"spec": {"size": 1, "unknown": true}});
        assert_eq!(decode_stored(&stored, &schema()), json!({"spec": {"size": 1, "max": 5, "mode": "a"}}));
    }
}
