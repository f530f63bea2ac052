//! Admission of custom resources against their CRD's `openAPIV3Schema`, in the real server's
//! order: prune unknown fields (unless `x-kubernetes-preserve-unknown-fields`) and nulls of
//! non-nullable fields, apply defaults, then validate types, required fields, enums, bounds,
//! patterns, lengths, item counts, list-map key uniqueness and CEL rules. Every problem becomes
//! a cause with its field path in a 422 Invalid status.

use serde_json::{Map, Value};

use crate::cel_cost;
use crate::cel_rules;
use crate::error::Cause;

/// Prunes and defaults `obj` in place, then returns every validation problem.
pub fn admit(obj: &mut Value, schema: &Value, old: Option<&Value>) -> Vec<Cause> {
    if let Value::Object(map) = obj {
        prune_object(map, schema, true, "", &mut Vec::new());
    }
    default_value(obj, schema);
    let mut causes = Vec::new();
    validate(obj, schema, old, "", &mut causes, true, false);
    // Like the real server, CEL rules run only on objects that pass the structural checks
    // (a rule reading a missing required field would only add noise).
    if causes.is_empty() {
        validate(obj, schema, old, "", &mut causes, true, true);
    }
    // Validation ratcheting (GA in Kubernetes 1.33): an invalid value that an update leaves
    // unchanged does not fail the update, so status writes succeed on an object whose spec
    // bypassed validation earlier.
    if let Some(old) = old {
        causes.retain(|c| value_at(obj, &c.field).is_none() || value_at(obj, &c.field) != value_at(old, &c.field));
    }
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

/// The value at a field path like `spec.items[0].name`.
fn value_at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            let idx = idx.trim_end_matches(']');
            cur = match idx.parse::<usize>() {
                Ok(i) => cur.get(i)?,
                Err(_) => cur.get(idx.trim_matches('"'))?,
            };
        }
    }
    Some(cur)
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

fn validate(v: &Value, schema: &Value, old: Option<&Value>, path: &str, out: &mut Vec<Cause>, root: bool, cel: bool) {
    if cel {
        validate_cel(v, schema, old, path, out, root);
        return;
    }
    // Validation ratcheting (GA in 1.33): a value an update leaves unchanged is not re-checked,
    // so objects stored under an older, laxer schema stay updatable.
    if !root && old == Some(v) {
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
                    validate(child, cs, old_child, &join(path, k), out, false, cel);
                } else if let Some(ap @ Value::Object(_)) = schema.get("additionalProperties") {
                    validate(child, ap, old_child, &format!("{path}[{k}]"), out, false, cel);
                }
            }
        }
        Value::Array(items) => {
            size_bounds(schema, ("maxItems", "minItems", "items"), items.len(), path, out);
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
                    let keys: Vec<&str> = schema
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|k| k.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
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
                    validate(item, is, None, &format!("{path}[{i}]"), out, false, cel);
                }
            }
        }
        _ => {}
    }
    for (key, all) in [("allOf", true), ("anyOf", false), ("oneOf", false)] {
        if let Some(subs) = schema.get(key).and_then(Value::as_array) {
            let results: Vec<Vec<Cause>> = subs
                .iter()
                .map(|s| {
                    let mut c = Vec::new();
                    validate(v, s, old, path, &mut c, root, cel);
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
        validate(v, not, old, path, &mut c, root, cel);
        if c.is_empty() {
            out.push(cause(
                "FieldValueInvalid",
                path,
                format!("Invalid value: {}: {path} in body must not validate the schema (not)", show(v)),
            ));
        }
    }
}

/// Evaluates the CEL rules of every schema node that has a value, depth first.
fn validate_cel(v: &Value, schema: &Value, old: Option<&Value>, path: &str, out: &mut Vec<Cause>, root: bool) {
    if v.is_null() {
        // The real server runs no rule on a null value (the surrounding schema's rules may).
        return;
    }
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, child) in m {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let old_child = old.and_then(|o| o.get(k));
                if let Some(cs) = props.and_then(|p| p.get(k)) {
                    validate_cel(child, cs, old_child, &join(path, k), out, false);
                } else if let Some(ap @ Value::Object(_)) = schema.get("additionalProperties") {
                    validate_cel(child, ap, old_child, &format!("{path}[{k}]"), out, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                // Items of map lists correlate with the old item of the same keys (so their
                // transition rules see oldSelf); other items have no old value.
                let keys: Vec<&str> = match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                    Some("map") => schema
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|k| k.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                let old_items = old.and_then(Value::as_array);
                for (i, item) in items.iter().enumerate() {
                    let old_item = if keys.is_empty() {
                        None
                    } else {
                        old_items.and_then(|olds| olds.iter().find(|o| keys.iter().all(|k| o.get(*k) == item.get(*k))))
                    };
                    validate_cel(item, is, old_item, &format!("{path}[{i}]"), out, false);
                }
            }
        }
        _ => {}
    }
    // Rules inside allOf apply to the same value (the real server's AllOfValidators).
    for sub in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        validate_cel(v, sub, old, path, out, root);
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
        if transition && old.is_none() && !optional_old_self {
            continue;
        }
        // Ratcheting: an unchanged value is not re-checked by rules that ignore oldSelf.
        if !transition && old == Some(v) {
            continue;
        }
        let vars = cel_rules::Vars { self_value: self_value.clone(), old_self: old_value.clone(), optional_old_self };
        match cel_rules::eval(&compiled, &vars) {
            Ok(true) => {}
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
        let causes = admit(&mut obj, &schema(), None);
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
        let causes = admit(&mut obj, &schema(), None);
        let fields: Vec<(&str, &str)> = causes.iter().map(|c| (c.field.as_str(), c.reason.as_str())).collect();
        assert!(fields.contains(&("spec.size", "FieldValueInvalid")), "{fields:?}");
        assert!(fields.contains(&("spec.mode", "FieldValueNotSupported")));
        assert!(fields.contains(&("spec.name", "FieldValueTooLong")));
        assert!(fields.iter().filter(|f| f.0 == "spec.name").count() == 2);
        assert!(fields.contains(&("spec.tags", "FieldValueTooMany")));
        assert!(fields.contains(&("spec.port", "FieldValueTypeInvalid")));
        let mut missing = json!({"spec": {}});
        let causes = admit(&mut missing, &schema(), None);
        assert_eq!(causes[0].field, "spec.size");
        assert_eq!(causes[0].message, "Required value");
    }

    #[test]
    fn cel_rules_and_transition_rules() {
        let mut too_big = json!({"spec": {"size": 8, "max": 6}});
        let causes = admit(&mut too_big, &schema(), None);
        assert_eq!(causes.len(), 1);
        assert!(causes[0].message.contains("size must not exceed max"));
        let old = json!({"spec": {"size": 1, "immutable": "a"}});
        let mut changed = json!({"spec": {"size": 1, "immutable": "b"}});
        let causes = admit(&mut changed, &schema(), Some(&old));
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.immutable");
        let mut created = json!({"spec": {"size": 1, "immutable": "b"}});
        assert!(admit(&mut created, &schema(), None).is_empty());
    }

    #[test]
    fn unchanged_invalid_values_ratchet() {
        let old = json!({"spec": {"size": 0, "name": "BAD"}});
        let mut update = json!({"spec": {"size": 0, "name": "BAD", "mode": "b"}});
        assert!(admit(&mut update, &schema(), Some(&old)).is_empty());
        let mut worse = json!({"spec": {"size": 0, "name": "WORSE"}});
        let causes = admit(&mut worse, &schema(), Some(&old));
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.name");
    }
}
