//! CRD `x-kubernetes-validations` rules, evaluated with the CEL implementation kube's own `cel`
//! feature uses (`kube::core::cel`: the `kube-cel` crate over `cel` 0.13), so the workspace builds
//! one CEL implementation and the operator's client-side rule checks (`kube::core::cel`) and this
//! server agree.
//!
//! The environment is the Kubernetes one: the standard CEL functions plus the Kubernetes
//! libraries `kube-cel` ports (`quantity`, `url`, `ip`, `cidr`, `format.*` named formats with
//! `.validate()`, `semver`, lists, sets, regex `find`/`findAll`, strings extensions, `math`,
//! `base64`), optional syntax (`self.?field`, `optional.of`, `.orValue()`), and values typed by
//! the schema as the real server types them: `format: date-time`/`date` strings are timestamps,
//! `format: duration` durations, `format: byte` bytes, `type: number` doubles, declared property
//! names escaped (`__dash__`, `__dot__`, `__slash__`, `__underscores__`, `__namespace__` ...),
//! map keys (`additionalProperties`) verbatim, and the root exposes only `apiVersion`, `kind`
//! and `metadata.name`/`metadata.generateName`.
//!
//! `self` is the value at the schema node carrying the rule, `oldSelf` the value at the same
//! place in the stored object. Transition rules (those referring to `oldSelf`) run only on
//! updates where the old value exists, unless the rule sets `optionalOldSelf: true`; then
//! `oldSelf` is a CEL optional (`optional.none()` on create) for every evaluation, as in the real
//! server.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use kube::core::cel::KubeCelExt;
use kube::core::cel::cel;
use serde_json::Value;

pub use cel::parser::Expression;

thread_local! {
    /// The Kubernetes CEL environment: standard functions plus every `kube-cel` library.
    static BASE: cel::Context<'static> = {
        let mut ctx = cel::Context::default();
        ctx.register_all();
        ctx
    };
}

/// CEL reserved words: a property with one of these names is `__name__` in CEL.
const RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// The CEL name of a declared property, or None when the real server makes it inaccessible
/// (names outside `[a-zA-Z_.-/][a-zA-Z0-9_.-/]*`).
pub fn escape_property(name: &str) -> Option<String> {
    let ok_first = |c: char| c.is_ascii_alphabetic() || matches!(c, '_' | '.' | '-' | '/');
    let mut chars = name.chars();
    if !chars.next().is_some_and(ok_first) || !chars.all(|c| ok_first(c) || c.is_ascii_digit()) {
        return None;
    }
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    Some(
        name.replace("__", "__underscores__")
            .replace('.', "__dot__")
            .replace('-', "__dash__")
            .replace('/', "__slash__"),
    )
}

thread_local! {
    /// Parsed rules by source: parsing costs about a millisecond (debug build) and every write of
    /// a custom resource evaluates each rule once per value it applies to.
    static PARSED: RefCell<HashMap<String, Rc<Expression>>> = RefCell::new(HashMap::new());
}

/// Rules kept parsed per thread; past this the cache starts over (CRDs have far fewer).
const PARSED_MAX: usize = 4096;

/// Parses a rule (with CEL optional syntax, which Kubernetes enables). The error reads like the
/// real server's compile errors.
pub fn compile(rule: &str) -> Result<Rc<Expression>, String> {
    if let Some(hit) = PARSED.with(|p| p.borrow().get(rule).cloned()) {
        return Ok(hit);
    }
    let parsed = cel::parser::Parser::new()
        .enable_optional_syntax(true)
        .parse(rule)
        .map_err(|e| format!("compilation failed: {e}"))?;
    let parsed = Rc::new(parsed);
    PARSED.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() >= PARSED_MAX {
            p.clear();
        }
        p.insert(rule.to_string(), parsed.clone());
    });
    Ok(parsed)
}

/// Whether a compiled rule refers to `oldSelf` (a transition rule).
pub fn uses_old_self(expr: &Expression) -> bool {
    expr.references().has_variable("oldSelf")
}

fn string(s: &str) -> cel::Value {
    cel::Value::String(Arc::new(s.to_string()))
}

fn map(entries: HashMap<String, cel::Value>) -> cel::Value {
    cel::Value::from(entries)
}

fn is_true(schema: &Value, key: &str) -> bool {
    schema.get(key) == Some(&Value::Bool(true))
}

/// A string typed by its schema's `format`, as the real server binds it; strings that do not
/// parse stay strings (structural validation reports them).
fn typed_string(s: &str, schema: &Value) -> cel::Value {
    if is_true(schema, "x-kubernetes-int-or-string") {
        return string(s);
    }
    let parsed = match schema.get("format").and_then(Value::as_str) {
        Some("date-time") => cel::functions::timestamp(Arc::new(s.to_string())).ok(),
        Some("date") => cel::functions::timestamp(Arc::new(format!("{s}T00:00:00Z"))).ok(),
        Some("duration") => cel::functions::duration(Arc::new(s.to_string())).ok(),
        Some("byte") => decode_base64(s).map(|b| cel::Value::Bytes(Arc::new(b))),
        _ => None,
    };
    parsed.unwrap_or_else(|| string(s))
}

/// Standard base64 (with or without padding), as `format: byte` values are.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Converts JSON to the CEL value the real server binds for `schema`. Integers stay `int`
/// (CEL compares int with int only) unless the schema says `number`.
pub fn to_cel(v: &Value, schema: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) if schema.get("type").and_then(Value::as_str) == Some("number") => {
            cel::Value::Float(n.as_f64().unwrap_or(0.0))
        }
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => typed_string(s, schema),
        Value::Array(a) => {
            let items = schema.get("items").unwrap_or(&Value::Null);
            cel::Value::List(Arc::new(a.iter().map(|i| to_cel(i, items)).collect()))
        }
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let mut out = HashMap::with_capacity(m.len());
            for (k, child) in m {
                if let Some(ps) = props.and_then(|p| p.get(k)) {
                    if let Some(name) = escape_property(k) {
                        out.insert(name, to_cel(child, ps));
                    }
                } else if let Some(ap) = additional {
                    out.insert(k.clone(), to_cel(child, ap));
                } else if props.is_none() {
                    // Schemaless (x-kubernetes-preserve-unknown-fields) objects: keys as they are.
                    out.insert(k.clone(), to_cel(child, &Value::Null));
                }
            }
            if is_true(schema, "x-kubernetes-embedded-resource") {
                embed_type_meta(&mut out, m);
            }
            map(out)
        }
    }
}

/// `apiVersion`, `kind` and the part of `metadata` rules can read (name and generateName).
fn embed_type_meta(out: &mut HashMap<String, cel::Value>, obj: &serde_json::Map<String, Value>) {
    for key in ["apiVersion", "kind"] {
        out.insert(key.into(), string(obj.get(key).and_then(Value::as_str).unwrap_or_default()));
    }
    let mut meta = HashMap::new();
    for key in ["name", "generateName"] {
        if let Some(s) = obj.get("metadata").and_then(|m| m.get(key)).and_then(Value::as_str) {
            meta.insert(key.to_string(), string(s));
        }
    }
    out.insert("metadata".into(), map(meta));
}

/// The value `self` is bound to at a schema node (`root`: the object itself).
pub fn bind(v: &Value, schema: &Value, root: bool) -> cel::Value {
    let bound = to_cel(v, schema);
    match (root, &bound, v.as_object()) {
        (true, cel::Value::Map(m), Some(obj)) => {
            let mut entries: HashMap<String, cel::Value> = m
                .map
                .iter()
                .filter_map(|(k, v)| match k {
                    cel::objects::Key::String(s) => Some((s.to_string(), v.clone())),
                    _ => None,
                })
                .collect();
            embed_type_meta(&mut entries, obj);
            map(entries)
        }
        _ => bound,
    }
}

/// `self` and `oldSelf` of one rule evaluation.
pub struct Vars {
    pub self_value: cel::Value,
    /// The correlated old value, when the write is an update and one exists.
    pub old_self: Option<cel::Value>,
    /// `optionalOldSelf: true`: `oldSelf` is bound as a CEL optional.
    pub optional_old_self: bool,
}

fn run(expr: &Expression, vars: &Vars) -> Result<cel::Value, cel::ExecutionError> {
    BASE.with(|base| {
        let mut ctx = base.new_inner_scope();
        ctx.add_variable_from_value("self", vars.self_value.clone());
        let old = if vars.optional_old_self {
            let opt = match &vars.old_self {
                Some(o) => cel::objects::OptionalValue::of(o.clone()),
                None => cel::objects::OptionalValue::none(),
            };
            Some(cel::Value::Opaque(Arc::new(opt)))
        } else {
            vars.old_self.clone()
        };
        if let Some(old) = old {
            ctx.add_variable_from_value("oldSelf", old);
        }
        cel::Value::resolve(expr, &ctx)
    })
}

/// Evaluates one compiled rule. `Ok(true)` passes, `Ok(false)` fails, `Err` is an evaluation
/// error worded like the real server's (`<error> evaluating rule: <rule or message>`).
pub fn eval(expr: &Expression, vars: &Vars) -> Result<bool, String> {
    match run(expr, vars) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("rule did not evaluate to a bool: {}", other.type_of())),
        Err(cel::ExecutionError::NoSuchOverload) => {
            Err("'no such overload': call arguments did not match a supported operator, function or macro signature"
                .into())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Evaluates a `messageExpression`: its string, unless it fails, is blank or has line breaks
/// (then the real server falls back to `message`).
pub fn eval_message(expr: &str, vars: &Vars) -> Option<String> {
    let parsed = compile(expr).ok()?;
    match run(&parsed, vars) {
        Ok(cel::Value::String(s)) if !s.trim().is_empty() && !s.contains('\n') => Some(s.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(rule: &str, self_value: &Value, schema: &Value) -> Result<bool, String> {
        let expr = compile(rule)?;
        eval(&expr, &Vars { self_value: to_cel(self_value, schema), old_self: None, optional_old_self: false })
    }

    #[test]
    fn kubernetes_style_rules_evaluate() {
        let spec = json!({"min": 1, "max": 3, "names": ["a", "bb"], "mode": "fast"});
        let any = json!({});
        assert_eq!(check("self.min <= self.max", &spec, &any), Ok(true));
        assert_eq!(check("self.min > self.max", &spec, &any), Ok(false));
        assert_eq!(check("has(self.mode)", &spec, &any), Ok(true));
        assert_eq!(check("!has(self.other) || self.other > 0", &spec, &any), Ok(true));
        assert_eq!(check("self.names.all(n, size(n) <= 2)", &spec, &any), Ok(true));
        assert_eq!(check("self.names.exists(n, n == 'bb')", &spec, &any), Ok(true));
        assert_eq!(check("self.mode.matches('^(fast|slow)$')", &spec, &any), Ok(true));
        assert_eq!(check("size(self.names) < 2", &spec, &any), Ok(false));
        assert_eq!(check("self.mode.startsWith('fa')", &spec, &any), Ok(true));
    }

    #[test]
    fn kubernetes_libraries_are_available() {
        let s = json!("x");
        let any = json!({});
        for rule in [
            "quantity('1Gi').isGreaterThan(quantity('500Mi'))",
            "isQuantity('10Gi') && !isQuantity('ten')",
            "isURL('https://example.com/a') && url('https://example.com/a').getHost() == 'example.com'",
            "isIP('10.0.0.1') && cidr('10.0.0.0/8').containsIP(ip('10.1.2.3'))",
            "!format.dns1123Label().validate('ok-name').hasValue()",
            "[1, 2, 3].isSorted() && [1, 2, 3].sum() == 6 && [3, 1].min() == 1 && [1, 2, 1].lastIndexOf(1) == 2",
            "'abc 123'.find('[0-9]+') == '123' && 'a1b2'.findAll('[0-9]') == ['1', '2']",
            "'Hello'.lowerAscii() == 'hello' && 'a,b'.split(',') == ['a', 'b']",
        ] {
            assert_eq!(check(rule, &s, &any), Ok(true), "{rule}");
        }
    }

    #[test]
    fn values_are_typed_by_the_schema() {
        let schema = json!({"type": "object", "properties": {
            "at": {"type": "string", "format": "date-time"},
            "every": {"type": "string", "format": "duration"},
            "ratio": {"type": "number"},
            "x-y": {"type": "string"},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}}
        }});
        let v = json!({"at": "2026-01-02T03:04:05Z", "every": "90s", "ratio": 1, "x-y": "a", "namespace": "n",
                       "labels": {"app.kubernetes.io/name": "x"}});
        assert_eq!(check("self.at > timestamp('2026-01-01T00:00:00Z')", &v, &schema), Ok(true));
        assert_eq!(check("self.every == duration('1m30s')", &v, &schema), Ok(true));
        assert_eq!(check("self.ratio == 1.0", &v, &schema), Ok(true));
        assert_eq!(check("self.x__dash__y == 'a' && self.__namespace__ == 'n'", &v, &schema), Ok(true));
        assert_eq!(check("self.labels['app.kubernetes.io/name'] == 'x'", &v, &schema), Ok(true));
        assert_eq!(escape_property("a__b.c/d"), Some("a__underscores__b__dot__c__slash__d".into()));
        assert_eq!(escape_property("1abc"), None);
    }

    #[test]
    fn transition_rules_see_old_self() {
        let expr = compile("self == oldSelf").unwrap();
        assert!(uses_old_self(&expr));
        let vars = |new: &str, old: Option<&str>, optional| Vars {
            self_value: string(new),
            old_self: old.map(string),
            optional_old_self: optional,
        };
        assert_eq!(eval(&expr, &vars("a", Some("a"), false)), Ok(true));
        assert_eq!(eval(&expr, &vars("b", Some("a"), false)), Ok(false));
        let opt = compile("!oldSelf.hasValue() || self == oldSelf.value()").unwrap();
        assert_eq!(eval(&opt, &vars("b", None, true)), Ok(true));
        assert_eq!(eval(&opt, &vars("b", Some("a"), true)), Ok(false));
        assert!(compile("self.(").unwrap_err().starts_with("compilation failed: "));
        assert!(!uses_old_self(&compile("self.size > 1").unwrap()));
        let msg = eval_message("'got ' + self", &vars("x", None, false));
        assert_eq!(msg, Some("got x".into()));
        assert_eq!(eval_message("'  '", &vars("x", None, false)), None);
    }
}
