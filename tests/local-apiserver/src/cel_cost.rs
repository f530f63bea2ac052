//! Static cost estimation of CRD validation rules, as the real server does when a CRD is
//! written: each rule's worst-case cost (cel-go's checker cost model) times the number of times
//! its schema node can occur must stay within 10,000,000, and all rules of a schema together
//! within 100,000,000; otherwise the CRD is refused with `Forbidden: estimated rule cost exceeds
//! budget by factor of ...`.
//!
//! Sizes come from the schema like the real server's: `maxLength`, `maxItems` and
//! `maxProperties` when declared, otherwise what fits in a 3 MiB request (an unbounded list of
//! objects may hold 1,048,575 items, an unbounded string 3,145,726 characters). Costs follow
//! cel-go: identifiers and field selections 1, literals 0, list literals 10, map literals 30, a
//! comprehension (`all`, `exists`, `exists_one`, `filter`, `map`) its range size times the cost
//! of one step, string comparison and traversal a tenth of the string size, `matches` the
//! product of string and regex sizes, other calls 1 plus their arguments. This is an estimate of
//! the same model, not cel-go's code: rules far over or far under the budget get the real
//! answer, rules within a few percent of it may not.
//!
//! The same walk finds fields a rule selects that its schema does not declare, which the real
//! server's type check refuses (`undefined field 'x'`).

use std::collections::HashMap;
use std::sync::LazyLock;

use kube::core::cel::cel::common::ast::{Expr, IdedExpr, LiteralValue};
use serde_json::{Value, json};

use crate::cel_rules;

/// The real server's request size limit, which bounds what an unbounded schema can hold.
const MAX_REQUEST: f64 = 3_145_728.0;
/// Per rule (times the cardinality of its node): `StaticEstimatedCostLimit`.
pub const RULE_LIMIT: f64 = 10_000_000.0;
/// All rules of one schema: `StaticEstimatedCRDCostLimit`.
pub const SCHEMA_LIMIT: f64 = 100_000_000.0;

const TRAVERSAL: f64 = 0.1;
const REGEX_FACTOR: f64 = 0.25;

/// What the estimator knows about a value: its schema (when it comes from `self`) and its
/// largest size (characters of a string, items of a list, entries of a map; 1 for scalars).
#[derive(Clone, Copy)]
struct Shape<'a> {
    schema: Option<&'a Value>,
    size: f64,
}

impl<'a> Shape<'a> {
    fn scalar() -> Self {
        Shape { schema: None, size: 1.0 }
    }

    fn of(schema: &'a Value) -> Self {
        Shape { schema: Some(schema), size: max_size(schema) }
    }

    fn sized(size: f64) -> Self {
        Shape { schema: None, size }
    }
}

fn type_of(schema: &Value) -> &str {
    schema.get("type").and_then(Value::as_str).unwrap_or_default()
}

fn num(schema: &Value, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_u64).map(|n| n as f64)
}

fn is_map(schema: &Value) -> bool {
    schema.get("additionalProperties").is_some_and(Value::is_object) && schema.get("properties").is_none()
}

/// The smallest JSON a value of the schema serializes to (the real server's MinSerializedSize).
fn min_size(schema: &Value) -> f64 {
    match type_of(schema) {
        "boolean" => 4.0,
        "number" | "integer" => 1.0,
        "string" => 2.0 + num(schema, "minLength").unwrap_or(0.0),
        _ if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) => 1.0,
        _ => 2.0,
    }
}

/// The largest size a value of the schema can have in one request.
fn max_size(schema: &Value) -> f64 {
    match type_of(schema) {
        "string" => num(schema, "maxLength").unwrap_or_else(|| {
            match (schema.get("enum").and_then(Value::as_array), schema.get("format").and_then(Value::as_str)) {
                (Some(values), _) => {
                    values.iter().filter_map(Value::as_str).map(|s| s.len() as f64).fold(0.0, f64::max)
                }
                (_, Some("date-time")) => 32.0,
                (_, Some("date")) => 12.0,
                (_, Some("duration")) => 64.0,
                _ => MAX_REQUEST - 2.0,
            }
        }),
        "array" => num(schema, "maxItems").unwrap_or_else(|| {
            let item = schema.get("items").map(min_size).unwrap_or(2.0);
            ((MAX_REQUEST - 2.0) / (item + 1.0)).floor()
        }),
        "object" if is_map(schema) => num(schema, "maxProperties").unwrap_or_else(|| {
            let value = schema.get("additionalProperties").map(min_size).unwrap_or(2.0);
            ((MAX_REQUEST - 2.0) / (value + 4.0)).floor()
        }),
        "object" => schema.get("properties").and_then(Value::as_object).map_or(1.0, |p| p.len().max(1) as f64),
        _ if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) => MAX_REQUEST - 2.0,
        _ => 1.0,
    }
}

/// The schema of field `field` (its CEL name) of an object schema.
fn field_schema<'a>(schema: &'a Value, field: &str) -> Option<&'a Value> {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        return props.iter().find(|(k, _)| cel_rules::escape_property(k).as_deref() == Some(field)).map(|(_, v)| v);
    }
    schema.get("additionalProperties").filter(|a| a.is_object())
}

/// The schema of one element: list items, map values (or keys, for comprehensions over a map).
fn element_schema(schema: &Value) -> Option<&Value> {
    match type_of(schema) {
        "array" => schema.get("items"),
        _ => schema.get("additionalProperties").filter(|a| a.is_object()),
    }
}

fn ceil(x: f64) -> f64 {
    x.ceil()
}

/// What rules see of `metadata` at the root and in embedded resources.
static METADATA: LazyLock<Value> = LazyLock::new(
    || json!({"type": "object", "properties": {"name": {"type": "string"}, "generateName": {"type": "string"}}}),
);
static STRING: LazyLock<Value> = LazyLock::new(|| json!({"type": "string"}));

struct Estimator<'a> {
    vars: HashMap<String, Shape<'a>>,
    /// The schema of the object's root (which also exposes apiVersion, kind and metadata).
    root: Option<&'a Value>,
    /// Fields selected on object schemas that do not declare them.
    undefined: Vec<String>,
}

impl<'a> Estimator<'a> {
    /// Worst-case cost and result shape of `e`.
    fn cost(&mut self, e: &IdedExpr) -> (f64, Shape<'a>) {
        match &e.expr {
            Expr::Unspecified => (0.0, Shape::scalar()),
            Expr::Literal(LiteralValue::String(s)) => (0.0, Shape::sized(s.inner().len() as f64)),
            Expr::Literal(LiteralValue::Bytes(_)) => (0.0, Shape::sized(1.0)),
            Expr::Literal(_) => (0.0, Shape::scalar()),
            Expr::Ident(name) => (1.0, self.vars.get(name).copied().unwrap_or_else(Shape::scalar)),
            Expr::Select(sel) => {
                let (c, operand) = self.cost(&sel.operand);
                let child = self.select(operand, &sel.field);
                // has() costs nothing beyond its operand (the real server keeps cel-go's old cost).
                (c + if sel.test { 0.0 } else { 1.0 }, child)
            }
            Expr::List(list) => {
                let mut c = 10.0;
                for el in &list.elements {
                    c += self.cost(el).0;
                }
                (c, Shape::sized(list.elements.len() as f64))
            }
            Expr::Map(map) => {
                let mut c = 30.0;
                for entry in &map.entries {
                    if let kube::core::cel::cel::common::ast::EntryExpr::MapEntry(m) = &entry.expr {
                        c += self.cost(&m.key).0 + self.cost(&m.value).0;
                    }
                }
                (c, Shape::sized(map.entries.len() as f64))
            }
            Expr::Struct(st) => {
                let mut c = 40.0;
                for entry in &st.entries {
                    if let kube::core::cel::cel::common::ast::EntryExpr::StructField(f) = &entry.expr {
                        c += self.cost(&f.value).0;
                    }
                }
                (c, Shape::scalar())
            }
            Expr::Comprehension(comp) => {
                let (range_cost, range) = self.cost(&comp.iter_range);
                let (init_cost, init) = self.cost(&comp.accu_init);
                let n = range.size;
                let element = range.schema.and_then(element_schema);
                let iter = match (range.schema, element) {
                    // Over a map the variable is a key: a string of unknown length.
                    (Some(s), _) if is_map(s) => Shape::sized(1.0),
                    (_, Some(el)) => Shape::of(el),
                    _ => Shape::scalar(),
                };
                // A list accumulator (filter, map) grows to the size of the range.
                let accu = if matches!(comp.accu_init.expr, Expr::List(_)) { Shape::sized(n) } else { init };
                let saved: Vec<(String, Option<Shape<'a>>)> = [&comp.iter_var, &comp.accu_var]
                    .into_iter()
                    .chain(comp.iter_var2.as_ref())
                    .map(|v| (v.clone(), self.vars.get(v).copied()))
                    .collect();
                self.vars.insert(comp.iter_var.clone(), iter);
                if let Some(v2) = &comp.iter_var2 {
                    self.vars.insert(v2.clone(), Shape::scalar());
                }
                self.vars.insert(comp.accu_var.clone(), accu);
                let step = self.cost(&comp.loop_cond).0 + self.cost(&comp.loop_step).0;
                let (result_cost, result) = self.cost(&comp.result);
                for (name, prev) in saved {
                    match prev {
                        Some(p) => self.vars.insert(name, p),
                        None => self.vars.remove(&name),
                    };
                }
                (range_cost + init_cost + n * step + result_cost, result)
            }
            Expr::Call(call) => self.call(&call.func_name, call.target.as_deref(), &call.args),
        }
    }

    /// The shape of `operand.field`, noting fields an object schema does not declare (the real
    /// server's type check refuses them: "undefined field").
    fn select(&mut self, operand: Shape<'a>, field: &str) -> Shape<'a> {
        let Some(s) = operand.schema else {
            return Shape::scalar();
        };
        let typed = self.root.is_some_and(|r| std::ptr::eq(r, s))
            || s.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true));
        match field {
            "apiVersion" | "kind" if typed => return Shape::of(&STRING),
            "metadata" if typed => return Shape::of(&METADATA),
            _ => {}
        }
        if let Some(child) = field_schema(s, field) {
            return Shape::of(child);
        }
        let declares = type_of(s) == "object" && s.get("properties").is_some_and(Value::is_object);
        let open = s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
            || s.get("additionalProperties").is_some_and(|a| a.is_object() || a == &Value::Bool(true));
        if declares && !open && !self.undefined.iter().any(|f| f == field) {
            self.undefined.push(field.to_string());
        }
        Shape::scalar()
    }

    fn call(&mut self, name: &str, target: Option<&IdedExpr>, args: &[IdedExpr]) -> (f64, Shape<'a>) {
        if name == "_?._"
            && let [operand, field] = args
            && let Expr::Literal(LiteralValue::String(f)) = &field.expr
        {
            let (c, shape) = self.cost(operand);
            return (c + 1.0, self.select(shape, f.inner()));
        }
        let t = target.map(|t| self.cost(t));
        let a: Vec<(f64, Shape<'a>)> = args.iter().map(|x| self.cost(x)).collect();
        let sum = t.map_or(0.0, |t| t.0) + a.iter().map(|x| x.0).sum::<f64>();
        let size = |i: usize| a.get(i).map_or(1.0, |x| x.1.size);
        let target_size = t.map_or(1.0, |t| t.1.size);
        let target_shape = t.map(|t| t.1);
        match name {
            "_&&_" | "_||_" => (sum, Shape::scalar()),
            "_?_:_" => {
                let (c, yes, no) = (a[0].0, a.get(1).copied(), a.get(2).copied());
                let branch = |x: Option<(f64, Shape<'a>)>| x.map_or(0.0, |x| x.0);
                let shape = match (yes, no) {
                    (Some(y), Some(n)) if y.1.size >= n.1.size => y.1,
                    (_, Some(n)) => n.1,
                    _ => Shape::scalar(),
                };
                (c + branch(yes).max(branch(no)), shape)
            }
            "_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_" => {
                (ceil(TRAVERSAL * size(0).min(size(1))).max(1.0) + sum, Shape::scalar())
            }
            "@in" => (size(1).max(1.0) + sum, Shape::scalar()),
            "_+_" => {
                let joined = size(0) + size(1);
                let strings = a.iter().any(|x| x.1.schema.is_some_and(|s| type_of(s) == "string"));
                (if strings { ceil(TRAVERSAL * joined) } else { 1.0 } + sum, Shape::sized(joined))
            }
            "_[_]" | "_[?_]" => {
                let element = a.first().and_then(|x| x.1.schema).and_then(element_schema).map(Shape::of);
                (1.0 + sum, element.unwrap_or_else(Shape::scalar))
            }
            "matches" | "find" | "findAll" => {
                let (s, re) = if target.is_some() { (target_size, size(0)) } else { (size(0), size(1)) };
                (ceil(TRAVERSAL * (s + 1.0)) * ceil(REGEX_FACTOR * re) + sum, Shape::sized(s))
            }
            "contains" => (ceil(TRAVERSAL * target_size) * ceil(TRAVERSAL * size(0)) + sum, Shape::scalar()),
            "startsWith" | "endsWith" => (ceil(TRAVERSAL * size(0)) + sum, Shape::scalar()),
            "lowerAscii" | "upperAscii" | "trim" | "replace" | "substring" | "charAt" | "reverse" | "format" => {
                (ceil(TRAVERSAL * target_size) + sum, Shape::sized(target_size))
            }
            "split" => (ceil(TRAVERSAL * target_size) + sum, Shape::sized(target_size)),
            "join" => (ceil(TRAVERSAL * target_size) + sum, Shape::sized(target_size)),
            "indexOf" | "lastIndexOf" => {
                let strings = target_shape.and_then(|s| s.schema).is_none_or(|s| type_of(s) == "string");
                let c = if strings { ceil(TRAVERSAL * target_size) * ceil(TRAVERSAL * size(0)) } else { target_size };
                (c + sum, Shape::scalar())
            }
            "isSorted" | "sum" | "min" | "max" | "distinct" | "flatten" | "slice" | "sort" => {
                (target_size.max(size(0)) + sum, Shape::sized(target_size))
            }
            "size" => (1.0 + sum, Shape::scalar()),
            "quantity" | "isQuantity" | "url" | "isURL" | "ip" | "isIP" | "cidr" | "isCIDR" | "semver" | "isSemver"
            | "validate" | "timestamp" | "duration" | "string" | "bytes" => {
                let input =
                    if target.is_some() && args.is_empty() { target_size } else { size(a.len().saturating_sub(1)) };
                (ceil(TRAVERSAL * input).max(1.0) + sum, Shape::sized(input))
            }
            _ => (1.0 + sum, Shape::scalar()),
        }
    }
}

/// What the real server's compiler finds out about a rule statically.
pub struct Analysis {
    /// Estimated worst-case cost of one evaluation.
    pub cost: f64,
    /// Fields the rule selects that the schema does not declare.
    pub undefined_fields: Vec<String>,
}

/// Estimates a rule at a schema node (`root`: the node is the object's root).
pub fn analyze(expr: &IdedExpr, schema: &Value, root: bool) -> Analysis {
    let self_shape = Shape::of(schema);
    let vars = HashMap::from([("self".to_string(), self_shape), ("oldSelf".to_string(), self_shape)]);
    let mut est = Estimator { vars, root: root.then_some(schema), undefined: Vec::new() };
    let cost = est.cost(expr).0;
    Analysis { cost, undefined_fields: est.undefined }
}

/// How many times the rules of a child node can run per object: its parent's count times the
/// declared `maxItems`/`maxProperties` of the list or map it sits in; None (unbounded) when a
/// container declares none.
pub fn child_cardinality(parent: Option<f64>, container: &Value) -> Option<f64> {
    let declared =
        if type_of(container) == "array" { num(container, "maxItems") } else { num(container, "maxProperties") };
    Some(parent? * declared?)
}

/// The cardinality the real server assumes under an unbounded container: as many values of the
/// node as fit in one request.
pub fn cardinality(bounded: Option<f64>, schema: &Value) -> f64 {
    bounded.unwrap_or_else(|| (MAX_REQUEST / (min_size(schema) + 1.0)).floor())
}

/// The real server's wording for a cost over `limit`.
pub fn exceeds_message(what: &str, cost: f64, limit: f64) -> String {
    let factor = cost / limit;
    let factor = if factor > 100.0 {
        "more than 100x".to_string()
    } else if factor < 1.5 {
        format!("{factor:.6}x")
    } else {
        format!("{factor:.1}x")
    };
    format!(
        "{what} exceeds budget by factor of {factor} (try simplifying the rule(s), or adding maxItems, \
         maxProperties, and maxLength where arrays, maps, and strings are declared)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cost(rule: &str, schema: &Value) -> f64 {
        analyze(&cel_rules::compile(rule).unwrap(), schema, false).cost
    }

    #[test]
    fn unbounded_lists_and_strings_are_sized_by_the_request_limit() {
        let objects = json!({"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}});
        assert_eq!(max_size(&objects), 1_048_575.0);
        assert_eq!(max_size(&json!({"type": "string"})), 3_145_726.0);
        assert_eq!(max_size(&json!({"type": "object", "additionalProperties": {"type": "string"}})), 524_287.0);
        assert_eq!(max_size(&json!({"type": "string", "enum": ["gp3", "io2"]})), 3.0);
    }

    #[test]
    fn costs_follow_the_schema_bounds() {
        let obj = json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}});
        assert_eq!(cost("self.a <= self.b", &obj), 5.0);
        let unbounded = json!({"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "default": {"type": "boolean"}}}});
        let unique = "self.all(c, self.exists_one(d, d.name == c.name))";
        assert!(cost(unique, &unbounded) > 100.0 * RULE_LIMIT);
        let filter = "self.filter(c, c.default).size() <= 1";
        assert!(cost(filter, &unbounded) > RULE_LIMIT);
        let bounded = json!({"type": "array", "maxItems": 16, "items": {"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 63}, "default": {"type": "boolean"}}}});
        assert!(cost(unique, &bounded) < 10_000.0);
        assert!(cost(filter, &bounded) < 1_000.0);
        let flags = json!({"type": "array", "items": {"type": "string"}});
        assert!(cost("self.all(a, a.startsWith('--'))", &flags) < RULE_LIMIT);
        let digest = json!({"type": "string"});
        assert!(cost("self == '' || self.matches('^sha256:[a-f0-9]{64}$')", &digest) < RULE_LIMIT);
        assert!(cost("self.matches('^sha256:[a-f0-9]{64}$') && self.contains(self)", &digest) > RULE_LIMIT);
    }

    #[test]
    fn undeclared_fields_are_found() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "iops": {"type": "integer"},
            "tags": {"type": "object", "additionalProperties": {"type": "string"}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {}},
            "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}}}});
        let undefined = |rule: &str| analyze(&cel_rules::compile(rule).unwrap(), &schema, true).undefined_fields;
        assert_eq!(undefined("!has(self.spec.iopsPerGB) || self.spec.iops > 0"), ["iopsPerGB"]);
        assert_eq!(undefined("self.spec.items.all(i, i.nam != '')"), ["nam"]);
        assert_eq!(undefined("self.spec.?iop.orValue(1) > 0"), ["iop"]);
        assert!(undefined("self.metadata.name != '' && self.kind == 'K' && self.spec.tags.any_key == 'x'").is_empty());
        assert!(undefined("has(self.spec.free.anything) && self.spec.items.all(i, i.name != '')").is_empty());
        assert_eq!(undefined("self.metadata.labels.size() > 0"), ["labels"]);
    }

    #[test]
    fn messages_read_like_the_real_server() {
        let m = exceeds_message("estimated rule cost", 2.0e9, RULE_LIMIT);
        assert!(m.starts_with("estimated rule cost exceeds budget by factor of more than 100x (try simplifying"));
        assert!(exceeds_message("x", 1.6e7, RULE_LIMIT).contains("factor of 1.6x"));
    }
}
