//! Run-time values are JSON values (`serde_json::Value`), interpreted through the static type the
//! checker gave each expression: `Duration` is a number of milliseconds, an enum value its
//! variant's name, `none` is `null`, and a subscription an object
//! `{ "id", "customer", "product", "state", "fixed": {...}, "fields": {...} }`. Values are stored
//! and resumed as they are, so a persisted result is exactly what the next step reads.

use super::error::StepError;
use crate::diagnostics::Code;
use crate::ir::{Program, Type};
use serde_json::{json, Map, Value};

pub fn is_subscription(v: &Value) -> bool {
    v.get("product").is_some() && v.get("fields").is_some() && v.get("state").is_some()
}

/// Text of a value, as `str(x)` and `${x}` give it.
pub fn to_text(v: &Value, ty: &Type) -> String {
    let mut out = String::new();
    push_text(&mut out, v, ty);
    out
}

/// Appends `v` as text (see `to_text`) to `out`, without a string of its own: how `"${...}"`
/// builds its string.
pub fn push_text(out: &mut String, v: &Value, ty: &Type) {
    use std::fmt::Write;
    match (v, ty.unwrap_optional()) {
        (Value::Null, _) => out.push_str("none"),
        (Value::String(s), _) => out.push_str(s),
        (Value::Number(n), Type::Duration) => out.push_str(&format_duration(n.as_u64().unwrap_or(0))),
        (Value::Number(n), _) => {
            let _ = write!(out, "{n}");
        }
        (Value::Bool(b), _) => out.push_str(if *b { "true" } else { "false" }),
        (v, _) if is_subscription(v) => out.push_str(v["id"].as_str().unwrap_or_default()),
        (v, _) => {
            let _ = write!(out, "{v}");
        }
    }
}

pub fn format_duration(ms: u64) -> String {
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Checks that a JSON value has type `ty` (the `as` conversion, `-i` values and resume inputs),
/// giving the value in its run-time form.
pub fn conform(v: &Value, ty: &Type, program: &Program) -> Result<Value, String> {
    let bad = || Err(format!("expected `{ty}`, found {}", describe(v)));
    match ty {
        Type::Json | Type::Never => Ok(v.clone()),
        Type::Optional(inner) => {
            if v.is_null() {
                Ok(Value::Null)
            } else {
                conform(v, inner, program)
            }
        }
        Type::Str | Type::Secret => v.as_str().map(|_| v.clone()).map_or_else(bad, Ok),
        Type::Int => match v {
            Value::Number(n) if n.is_i64() => Ok(v.clone()),
            Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0 && f.abs() < 9.0e15) => {
                Ok(json!(n.as_f64().unwrap_or_default() as i64))
            }
            _ => bad(),
        },
        Type::Float => match v {
            Value::Number(n) => Ok(json!(n.as_f64().unwrap_or_default())),
            _ => bad(),
        },
        Type::Bool => v.as_bool().map(|_| v.clone()).map_or_else(bad, Ok),
        Type::Duration => match v {
            Value::Number(n) if n.is_u64() => Ok(v.clone()),
            Value::String(s) => crate::syntax::parse_duration(s)
                .map(|ms| json!(ms))
                .ok_or_else(|| format!("`{s}` is not a duration such as `30s`")),
            _ => bad(),
        },
        Type::List(inner) => match v {
            Value::Array(xs) => {
                xs.iter().map(|x| conform(x, inner, program)).collect::<Result<Vec<_>, _>>().map(Value::Array)
            }
            _ => bad(),
        },
        Type::Map(inner) => match v {
            Value::Object(o) => {
                let mut out = Map::new();
                for (k, x) in o {
                    out.insert(k.clone(), conform(x, inner, program)?);
                }
                Ok(Value::Object(out))
            }
            _ => bad(),
        },
        Type::Record(fields) => match v {
            Value::Object(o) => {
                let mut out = Map::new();
                for (k, ft) in fields {
                    match o.get(k) {
                        Some(x) => {
                            out.insert(k.clone(), conform(x, ft, program).map_err(|e| format!("field `{k}`: {e}"))?);
                        }
                        None if ft.is_optional() => {
                            out.insert(k.clone(), Value::Null);
                        }
                        None => return Err(format!("expected `{ty}`, but field `{k}` is missing")),
                    }
                }
                if let Some(extra) = o.keys().find(|k| !fields.contains_key(*k)) {
                    return Err(format!("expected `{ty}`, but `{extra}` is not one of its fields"));
                }
                Ok(Value::Object(out))
            }
            _ => bad(),
        },
        Type::Block(name) => match (v, program.blocks.get(name)) {
            (Value::Object(o), Some(b)) => {
                let mut out = Map::new();
                for (k, f) in &b.fields {
                    let ft = if f.when.is_empty() { f.ty.clone() } else { f.ty.clone().optional() };
                    match o.get(k) {
                        Some(x) => {
                            out.insert(k.clone(), conform(x, &ft, program).map_err(|e| format!("field `{k}`: {e}"))?);
                        }
                        None if ft.is_optional() => {
                            out.insert(k.clone(), Value::Null);
                        }
                        None => return Err(format!("block `{name}` needs field `{k}`")),
                    }
                }
                Ok(Value::Object(out))
            }
            _ => bad(),
        },
        Type::Enum(name) => match (v, program.enums.get(name)) {
            (Value::String(s), Some(e)) if e.variants.contains(s) => Ok(v.clone()),
            (_, Some(e)) => {
                Err(format!("expected one of {} (enum `{name}`), found {}", e.variants.join(", "), describe(v)))
            }
            _ => bad(),
        },
        Type::Product { name, state } => {
            if !is_subscription(v) || v["product"] != json!(name) {
                return bad();
            }
            if let Some(s) = state {
                if v["state"] != json!(s) {
                    return Err(format!(
                        "expected `{ty}`, but the subscription is in state `{}`",
                        v["state"].as_str().unwrap_or("?")
                    ));
                }
            }
            Ok(v.clone())
        }
    }
}

pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "`none`".into(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {:?}", truncate(s, 40)),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(n).collect::<String>())
    }
}

/// Parses a command-line value (`-i K=V`, `--config K=V`, resume inputs) by its type: `Int`,
/// `Float`, `Bool` and `Duration` literals, `Str` as is, enum values by name, lists, records,
/// maps and `Json` as JSON. Product values are subscription ids and are resolved by the caller.
pub fn parse_cli_value(text: &str, ty: &Type, program: &Program) -> Result<Value, String> {
    match ty {
        Type::Str | Type::Secret => Ok(Value::String(text.to_string())),
        Type::Optional(inner) => {
            if text == "none" {
                Ok(Value::Null)
            } else {
                parse_cli_value(text, inner, program)
            }
        }
        Type::Int => text.trim().parse::<i64>().map(|i| json!(i)).map_err(|_| format!("`{text}` is not an `Int`")),
        Type::Float => text
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("`{text}` is not a finite `Float`")),
        Type::Bool => match text.trim() {
            "true" => Ok(json!(true)),
            "false" => Ok(json!(false)),
            _ => Err(format!("`{text}` is not a `Bool` (true or false)")),
        },
        Type::Duration => crate::syntax::parse_duration(text.trim())
            .map(|ms| json!(ms))
            .ok_or_else(|| format!("`{text}` is not a `Duration` such as `30s`")),
        Type::Enum(_) => conform(&Value::String(text.trim().to_string()), ty, program),
        Type::Product { .. } => Ok(Value::String(text.trim().to_string())),
        _ => {
            let v: Value = serde_json::from_str(text).map_err(|e| format!("`{text}` is not JSON: {e}"))?;
            conform(&v, ty, program)
        }
    }
}

/// Replaces every occurrence of a secret's value with `***`.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(values: impl IntoIterator<Item = String>) -> Redactor {
        let mut secrets: Vec<String> = vec![];
        for s in values.into_iter().filter(|s| !s.is_empty()) {
            // As it appears inside JSON text too (a request body echoed back): `a\b` for `a\b`.
            let quoted = serde_json::to_string(&s).unwrap_or_default();
            let escaped = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or_default();
            if !escaped.is_empty() && escaped != s {
                secrets.push(escaped.to_string());
            }
            secrets.push(s);
        }
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor { secrets }
    }

    /// `s` with every secret replaced by `***`: `s` itself, not a copy, when it holds none.
    pub fn text(&self, s: String) -> String {
        let mut out = s;
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }

    /// `v` with every secret in its strings and keys replaced by `***`.
    pub fn value(&self, v: Value) -> Value {
        if self.secrets.is_empty() {
            return v;
        }
        match v {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(xs) => Value::Array(xs.into_iter().map(|x| self.value(x)).collect()),
            Value::Object(o) => Value::Object(o.into_iter().map(|(k, x)| (self.text(k), self.value(x))).collect()),
            other => other,
        }
    }
}

/// Equality across `Int` and `Float`.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| values_equal(x, y))
        }
        _ => a == b,
    }
}

/// A conversion failure as a step error.
pub fn conversion_error(message: String) -> StepError {
    StepError::coded(Code::RunConversion, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_text_the_way_interpolation_shows_them() {
        let text = |v: Value, ty: Type| to_text(&v, &ty);
        assert_eq!(text(json!(42), Type::Int), "42");
        assert_eq!(text(json!(-7), Type::Int), "-7");
        assert_eq!(text(json!(2.5), Type::Float), "2.5");
        assert_eq!(text(json!(90_000), Type::Duration), "90s");
        assert_eq!(text(json!(true), Type::Bool), "true");
        assert_eq!(text(Value::Null, Type::Optional(Box::new(Type::Int))), "none");
        assert_eq!(text(json!("eu-1"), Type::Str), "eu-1");
        assert_eq!(text(json!([1, 2]), Type::List(Box::new(Type::Int))), "[1,2]");
        let mut out = String::from("id ");
        push_text(&mut out, &json!(7), &Type::Int);
        assert_eq!(out, "id 7", "appended to what is there");
    }
}
