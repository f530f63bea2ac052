//! CRD `x-kubernetes-validations` rules, evaluated with the `cel` crate (cel-rust 0.15).
//!
//! `self` is the value at the schema node carrying the rule, `oldSelf` the value at the same
//! place in the stored object. Transition rules (those mentioning `oldSelf`) are evaluated only
//! on updates where the old value exists, like the real server (unless `optionalOldSelf`, in
//! which case `oldSelf` is null on create). Kubernetes-specific CEL libraries (`quantity()`,
//! `url()`, `ip()`, `cidr()`, `format.named()`) are not available: rules using them report an
//! evaluation error as the real server reports a compile error.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

/// Converts JSON to a CEL value with integers as `int` (CEL compares int with int only).
pub fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => match n.as_u64() {
                Some(u) => cel::Value::UInt(u),
                None => cel::Value::Float(n.as_f64().unwrap_or(0.0)),
            },
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(m) => {
            let map: HashMap<String, cel::Value> = m.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::from(map)
        }
    }
}

/// Whether a rule refers to `oldSelf` (a transition rule).
pub fn is_transition_rule(rule: &str) -> bool {
    rule.contains("oldSelf")
}

/// Evaluates one rule. `Ok(true)` passes, `Ok(false)` fails, `Err` is a compile or evaluation
/// error (reported as invalid, like the real server).
pub fn eval(rule: &str, self_value: &Value, old_self: Option<&Value>) -> Result<bool, String> {
    let program = cel::Program::compile(rule).map_err(|e| format!("compilation failed: {e}"))?;
    let mut ctx = cel::Context::default();
    ctx.add_variable_from_value("self", to_cel(self_value));
    ctx.add_variable_from_value("oldSelf", old_self.map(to_cel).unwrap_or(cel::Value::Null));
    match program.execute(&ctx) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("rule did not evaluate to a bool: {other:?}")),
        Err(e) => Err(format!("evaluation failed: {e}")),
    }
}

/// Evaluates a `messageExpression` to a string, if it yields one.
pub fn eval_message(expr: &str, self_value: &Value, old_self: Option<&Value>) -> Option<String> {
    let program = cel::Program::compile(expr).ok()?;
    let mut ctx = cel::Context::default();
    ctx.add_variable_from_value("self", to_cel(self_value));
    ctx.add_variable_from_value("oldSelf", old_self.map(to_cel).unwrap_or(cel::Value::Null));
    match program.execute(&ctx) {
        Ok(cel::Value::String(s)) => Some(s.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubernetes_style_rules_evaluate() {
        let spec = json!({"min": 1, "max": 3, "names": ["a", "bb"], "mode": "fast"});
        assert_eq!(eval("self.min <= self.max", &spec, None), Ok(true));
        assert_eq!(eval("self.min > self.max", &spec, None), Ok(false));
        assert_eq!(eval("has(self.mode)", &spec, None), Ok(true));
        assert_eq!(eval("!has(self.other) || self.other > 0", &spec, None), Ok(true));
        assert_eq!(eval("self.names.all(n, size(n) <= 2)", &spec, None), Ok(true));
        assert_eq!(eval("self.names.exists(n, n == 'bb')", &spec, None), Ok(true));
        assert_eq!(eval("self.mode.matches('^(fast|slow)$')", &spec, None), Ok(true));
        assert_eq!(eval("size(self.names) < 2", &spec, None), Ok(false));
        assert_eq!(eval("self.mode.startsWith('fa')", &spec, None), Ok(true));
    }

    #[test]
    fn transition_rules_see_old_self() {
        let old = json!("a");
        assert_eq!(eval("self == oldSelf", &json!("a"), Some(&old)), Ok(true));
        assert_eq!(eval("self == oldSelf", &json!("b"), Some(&old)), Ok(false));
        assert!(is_transition_rule("self == oldSelf"));
        assert!(eval("self.(", &json!(1), None).is_err());
        assert_eq!(eval_message("'got ' + self", &json!("x"), None), Some("got x".into()));
    }
}
