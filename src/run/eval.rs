//! Expressions of the checked IR, and every built-in of the brief (§5).

use super::error::StepError;
use super::value::{self, conform, conversion_error, is_subscription, to_text, values_equal, Redactor};
use crate::diagnostics::Code;
use crate::ir::{self, Builtin, Expr, ExprKind as K, HttpMethod, InterpPart, Literal, Program, Type};
use crate::syntax::ast::{BinaryOp, UnaryOp};
use futures::future::{BoxFuture, Either, Ready};
use futures::FutureExt;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// What every expression of a run can see.
pub struct Ctx {
    pub program: Arc<Program>,
    pub configs: HashMap<String, Value>,
    pub secrets: HashMap<String, String>,
    pub redactor: Redactor,
    /// `run`: `{ id, workflow, env }`.
    pub run: Value,
    pub http: reqwest::Client,
    /// Where `log(...)` lines go (already redacted).
    pub log: Arc<dyn Fn(&str) + Send + Sync>,
}

/// Local names: parameters, `let` bindings, loop variables (or, in flow expressions, state keys),
/// and where the running step call is in the run (its idempotency key derives from that).
#[derive(Clone, Default)]
pub struct Locals {
    vars: Vec<(String, Value)>,
    /// The step call's path in the run (empty outside a step).
    pub path: String,
    /// Which step is running, for `log` lines.
    pub step: String,
}

impl Locals {
    pub fn new(vars: impl IntoIterator<Item = (String, Value)>) -> Locals {
        Locals { vars: vars.into_iter().collect(), ..Default::default() }
    }
    pub fn push(&mut self, name: &str, v: Value) {
        self.vars.push((name.to_string(), v));
    }
    fn get(&self, name: &str) -> Option<&Value> {
        self.vars.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v)
    }
    fn len(&self) -> usize {
        self.vars.len()
    }
    fn truncate(&mut self, n: usize) {
        self.vars.truncate(n)
    }
}

/// An expression's value: at once, or a future to wait for.
pub type Eval<'a> = Either<Ready<Result<Value, StepError>>, BoxFuture<'a, Result<Value, StepError>>>;

/// The value of `e`. A leaf (a literal, a name, a field path over a local) is read at once,
/// without the boxed future that the rest needs (the evaluation recurses): 2% of the
/// interpreter's instructions in a `for` of short steps.
pub fn eval<'a>(ctx: &'a Ctx, locals: &'a mut Locals, e: &'a Expr) -> Eval<'a> {
    match leaf(ctx, locals, e) {
        Some(v) => Either::Left(futures::future::ready(Ok(v))),
        None => Either::Right(async move { eval_inner(ctx, locals, e).await.map_err(|err| err.at(e.loc)) }.boxed()),
    }
}

/// The value of an expression that needs no evaluation of sub-expressions; `None` for the others
/// (and for a field path over a local that holds nothing there, which `eval_inner` turns into
/// `none` or an error).
fn leaf(ctx: &Ctx, locals: &Locals, e: &Expr) -> Option<Value> {
    Some(match &e.kind {
        K::Lit(l) => match l {
            Literal::None => Value::Null,
            Literal::Bool(b) => json!(b),
            Literal::Int(i) => json!(i),
            Literal::Float(f) => json!(f),
            Literal::Str(s) => json!(s),
            Literal::Duration(d) => json!(d),
        },
        K::Local(name) => locals.get(name).cloned().unwrap_or(Value::Null),
        K::Config(name) => ctx.configs.get(name).cloned().unwrap_or(Value::Null),
        K::Secret(name) => ctx.secrets.get(name).map(|s| json!(s)).unwrap_or(Value::Null),
        K::Run => ctx.run.clone(),
        K::EnumValue { variant, .. } => json!(variant),
        K::Field(..) => place(locals, e)?.clone(),
        _ => return None,
    })
}

async fn eval_block(ctx: &Ctx, locals: &mut Locals, b: &ir::Block) -> Result<Value, StepError> {
    let mark = locals.len();
    for s in &b.stmts {
        match s {
            ir::Stmt::Let { name, value } => {
                let v = eval(ctx, locals, value).await?;
                locals.push(name, v);
            }
            ir::Stmt::Expr(x) => {
                eval(ctx, locals, x).await?;
            }
        }
    }
    let r = eval(ctx, locals, &b.result).await;
    locals.truncate(mark);
    r
}

/// Evaluates a step body (a block) with the given locals.
pub async fn eval_body(ctx: &Ctx, locals: &mut Locals, b: &ir::Block) -> Result<Value, StepError> {
    eval_block(ctx, locals, b).await
}

async fn eval_inner(ctx: &Ctx, locals: &mut Locals, e: &Expr) -> Result<Value, StepError> {
    Ok(match &e.kind {
        // Read by `eval` before it comes here.
        K::Lit(_) | K::Local(_) | K::Config(_) | K::Secret(_) | K::Run | K::EnumValue { .. } => {
            leaf(ctx, locals, e).unwrap_or(Value::Null)
        }
        K::Interp(parts) => {
            // Sized once for the usual case (its text and short values), not grown part by part.
            let texts: usize = parts.iter().map(|p| if let InterpPart::Text(t) = p { t.len() } else { 16 }).sum();
            let mut out = String::with_capacity(texts);
            for p in parts {
                match p {
                    InterpPart::Text(t) => out.push_str(t),
                    InterpPart::Expr(x) => {
                        let v = eval(ctx, locals, x).await?;
                        value::push_text(&mut out, &v, &x.ty);
                    }
                }
            }
            Value::String(out)
        }
        K::Record(fields) => {
            let mut m = Map::with_capacity(fields.len());
            for (k, x) in fields {
                let v = eval(ctx, locals, x).await?;
                m.insert(k.clone(), v);
            }
            Value::Object(m)
        }
        K::List(xs) => {
            let mut out = vec![];
            for x in xs {
                out.push(eval(ctx, locals, x).await?);
            }
            Value::Array(out)
        }
        // `eval` has read it in place when it could (`leaf`): here the base must be evaluated.
        K::Field(base, f) => {
            let b = eval(ctx, locals, base).await?;
            field(&b, f)
        }
        K::Index(base, i) => {
            let b = eval(ctx, locals, base).await?;
            let i = eval(ctx, locals, i).await?;
            match (&b, &i) {
                (Value::Array(xs), Value::Number(n)) => {
                    let n = n.as_i64().unwrap_or(-1);
                    let idx = if n < 0 { xs.len() as i64 + n } else { n };
                    match xs.get(idx as usize).filter(|_| idx >= 0) {
                        Some(v) => v.clone(),
                        None if base.ty == Type::Json => Value::Null,
                        None => {
                            return Err(StepError::permanent(format!(
                                "index {n} is out of range for a list of {}",
                                xs.len()
                            )))
                        }
                    }
                }
                (Value::Object(o), Value::String(k)) => match o.get(k) {
                    Some(v) => v.clone(),
                    None if base.ty == Type::Json => Value::Null,
                    None => return Err(StepError::permanent(format!("the map has no key {k:?}"))),
                },
                (Value::Null, _) | (_, Value::Null) => Value::Null,
                _ => Value::Null,
            }
        }
        K::Unary(op, x) => {
            let v = eval(ctx, locals, x).await?;
            match (op, &v) {
                (UnaryOp::Not, Value::Bool(b)) => json!(!b),
                (UnaryOp::Neg, Value::Number(n)) if n.is_i64() => json!(-n.as_i64().unwrap_or(0)),
                (UnaryOp::Neg, Value::Number(n)) => json!(-n.as_f64().unwrap_or(0.0)),
                _ => return Err(StepError::permanent(format!("cannot apply `{op:?}` to {}", value::describe(&v)))),
            }
        }
        K::Binary(op, a, b) => binary(ctx, locals, *op, a, b, &e.ty).await?,
        K::If { cond, then, otherwise } => {
            let c = eval(ctx, locals, cond).await?;
            if c == json!(true) {
                eval_block(ctx, locals, then).await?
            } else if let Some(o) = otherwise {
                eval_block(ctx, locals, o).await?
            } else {
                Value::Null
            }
        }
        K::For { var, iter, filter, body } => {
            let xs = match eval(ctx, locals, iter).await? {
                Value::Array(xs) => xs,
                Value::Null => vec![],
                other => {
                    return Err(StepError::permanent(format!("`for` needs a list, found {}", value::describe(&other))))
                }
            };
            let mut out = vec![];
            for x in xs {
                let mark = locals.len();
                locals.push(var, x);
                let keep = match filter {
                    Some(f) => eval(ctx, locals, f).await? == json!(true),
                    None => true,
                };
                if keep {
                    out.push(eval_block(ctx, locals, body).await?);
                }
                locals.truncate(mark);
            }
            Value::Array(out)
        }
        K::With { base, updates } => {
            let mut v = eval(ctx, locals, base).await?;
            let sub = is_subscription(&v);
            for (path, x) in updates {
                let nv = eval(ctx, locals, x).await?;
                let target = if sub { &mut v["fields"] } else { &mut v };
                set_path(target, path, nv);
            }
            v
        }
        K::As(x, ty) => {
            let v = eval(ctx, locals, x).await?;
            conform(&v, ty, &ctx.program).map_err(|m| conversion_error(format!("`as {ty}`: {m}")))?
        }
        K::NewSubscription { product, customer, fields } => {
            let def = ctx
                .program
                .products
                .get(product)
                .ok_or_else(|| StepError::permanent(format!("unknown product `{product}`")))?;
            let initial =
                ctx.program.lifecycles.get(&def.lifecycle).map(|l| l.initial().to_string()).unwrap_or_default();
            let customer = eval(ctx, locals, customer).await?;
            let mut fixed = Map::new();
            for (k, (_, x)) in &def.fixed {
                let v = eval(ctx, locals, x).await?;
                fixed.insert(k.clone(), v);
            }
            let mut fs = Map::new();
            for k in def.fields.keys() {
                fs.insert(k.clone(), Value::Null);
            }
            for (k, x) in fields {
                let v = eval(ctx, locals, x).await?;
                fs.insert(k.clone(), v);
            }
            // Blocks given as records get every field, `none` where not given.
            for (k, fd) in &def.fields {
                if let (Type::Block(b), Some(Value::Object(o))) = (fd.ty.unwrap_optional(), fs.get_mut(k)) {
                    if let Some(bd) = ctx.program.blocks.get(b) {
                        for bk in bd.fields.keys() {
                            o.entry(bk.clone()).or_insert(Value::Null);
                        }
                    }
                }
            }
            json!({
                "id": uuid::Uuid::new_v4().to_string(),
                "customer": customer,
                "product": product,
                "state": initial,
                "fixed": fixed,
                "fields": fs,
            })
        }
        K::Transition { sub, state } => {
            let mut v = eval(ctx, locals, sub).await?;
            let product = v["product"].as_str().unwrap_or_default().to_string();
            // The checker knows the state only where the type says it (`P@s`); a plain `P` is
            // checked here, against the subscription's current state.
            let from = v["state"].as_str().unwrap_or_default().to_string();
            let lifecycle = ctx.program.products.get(&product).and_then(|p| ctx.program.lifecycles.get(&p.lifecycle));
            if let Some(lc) = lifecycle.filter(|lc| !lc.allows(&from, state)) {
                return Err(StepError::coded(
                    Code::LifecycleBadTransition,
                    format!("lifecycle `{}` has no transition from `{from}` to `{state}`", lc.name),
                ));
            }
            let missing = missing_fields(&ctx.program, &product, &v["fields"], state);
            if !missing.is_empty() {
                return Err(StepError::coded(
                    Code::RunLifecycleFields,
                    format!("`{product}` cannot enter state `{state}`: {} must be set first", missing.join(", ")),
                ));
            }
            v["state"] = json!(state);
            v
        }
        K::Builtin { func, args } => builtin(ctx, locals, *func, args, e).await?,
    })
}

/// Fields required in `state` and not set (`node.loopback` for a block's field).
pub fn missing_fields(program: &Program, product: &str, fields: &Value, state: &str) -> Vec<String> {
    let mut missing = vec![];
    let Some(def) = program.products.get(product) else { return missing };
    let required =
        |ty: &Type, when: &[String]| if when.is_empty() { !ty.is_optional() } else { when.iter().any(|w| w == state) };
    for (k, fd) in &def.fields {
        let v = &fields[k];
        if required(&fd.ty, &fd.when) && v.is_null() {
            missing.push(format!("`{k}`"));
            continue;
        }
        if let (Type::Block(b), Value::Object(o)) = (fd.ty.unwrap_optional(), v) {
            if let Some(bd) = program.blocks.get(b) {
                for (bk, bf) in &bd.fields {
                    if required(&bf.ty, &bf.when) && o.get(bk).is_none_or(Value::is_null) {
                        missing.push(format!("`{k}.{bk}`"));
                    }
                }
            }
        }
    }
    missing
}

fn field(b: &Value, f: &str) -> Value {
    field_ref(b, f).cloned().unwrap_or(Value::Null)
}

fn field_ref<'v>(b: &'v Value, f: &str) -> Option<&'v Value> {
    if is_subscription(b) {
        return match f {
            "id" | "customer" | "state" => b.get(f),
            _ => b["fixed"].get(f).or_else(|| b["fields"].get(f)),
        };
    }
    b.get(f)
}

/// The value a local, or a field path over a local, names, borrowed: `r.json.ok` reads one field
/// of a response without copying the whole response first. `None`: not such an expression, or
/// nothing there (evaluated the usual way, which gives `none`).
fn place<'v>(locals: &'v Locals, e: &Expr) -> Option<&'v Value> {
    match &e.kind {
        K::Local(name) => locals.get(name),
        K::Field(base, f) => field_ref(place(locals, base)?, f),
        _ => None,
    }
}

fn set_path(v: &mut Value, path: &[String], nv: Value) {
    match path {
        [] => *v = nv,
        [first, rest @ ..] => {
            if !v.is_object() {
                *v = Value::Object(Map::new());
            }
            let slot = v.as_object_mut().expect("an object").entry(first.clone()).or_insert(Value::Null);
            set_path(slot, rest, nv);
        }
    }
}

/// A `Float` value; `None` for infinities and NaN, which JSON (and so the store) cannot hold.
fn finite(f: f64) -> Option<Value> {
    serde_json::Number::from_f64(f).map(Value::Number)
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

async fn binary(
    ctx: &Ctx,
    locals: &mut Locals,
    op: BinaryOp,
    a: &Expr,
    b: &Expr,
    ty: &Type,
) -> Result<Value, StepError> {
    let l = eval(ctx, locals, a).await?;
    match op {
        BinaryOp::And if l == json!(false) => return Ok(json!(false)),
        BinaryOp::Or if l == json!(true) => return Ok(json!(true)),
        BinaryOp::Coalesce if !l.is_null() => return Ok(l),
        _ => {}
    }
    let r = eval(ctx, locals, b).await?;
    let int_result = *ty == Type::Int || *ty == Type::Duration;
    let arith = |f: fn(f64, f64) -> f64, i: fn(i64, i64) -> Option<i64>| -> Result<Value, StepError> {
        match (num(&l), num(&r)) {
            (Some(x), Some(y)) if int_result => match (l.as_i64(), r.as_i64()) {
                (Some(x), Some(y)) => i(x, y).map(|v| json!(v)).ok_or_else(|| {
                    StepError::permanent(format!(
                        "arithmetic overflow or division by zero in `{x} {} {y}`",
                        op.symbol()
                    ))
                }),
                _ => Ok(json!(f(x, y) as i64)),
            },
            (Some(x), Some(y)) => finite(f(x, y))
                .ok_or_else(|| StepError::permanent(format!("arithmetic overflow in `{l} {} {r}`", op.symbol()))),
            _ => Err(StepError::permanent(format!(
                "`{}` needs numbers, found {} and {}",
                op.symbol(),
                value::describe(&l),
                value::describe(&r)
            ))),
        }
    };
    Ok(match op {
        BinaryOp::Coalesce | BinaryOp::And | BinaryOp::Or => r,
        BinaryOp::Add => match (&l, &r) {
            (Value::String(x), Value::String(y)) => json!(format!("{x}{y}")),
            (Value::Array(x), Value::Array(y)) => Value::Array(x.iter().chain(y).cloned().collect()),
            _ => arith(|x, y| x + y, i64::checked_add)?,
        },
        BinaryOp::Sub => arith(|x, y| x - y, i64::checked_sub)?,
        BinaryOp::Mul => arith(|x, y| x * y, i64::checked_mul)?,
        BinaryOp::Div => {
            if num(&r) == Some(0.0) {
                return Err(StepError::permanent("division by zero"));
            }
            arith(|x, y| x / y, i64::checked_div)?
        }
        BinaryOp::Rem => {
            if num(&r) == Some(0.0) {
                return Err(StepError::permanent("division by zero"));
            }
            arith(|x, y| x % y, i64::checked_rem)?
        }
        BinaryOp::Eq => json!(values_equal(&l, &r)),
        BinaryOp::Ne => json!(!values_equal(&l, &r)),
        BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
            let ord = match (&l, &r) {
                (Value::String(x), Value::String(y)) => x.partial_cmp(y),
                _ => num(&l).zip(num(&r)).and_then(|(x, y)| x.partial_cmp(&y)),
            };
            let Some(ord) = ord else {
                return Err(StepError::permanent(format!(
                    "cannot compare {} and {}",
                    value::describe(&l),
                    value::describe(&r)
                )));
            };
            json!(match op {
                BinaryOp::Lt => ord.is_lt(),
                BinaryOp::Le => ord.is_le(),
                BinaryOp::Gt => ord.is_gt(),
                _ => ord.is_ge(),
            })
        }
    })
}

fn str_arg(v: &Option<Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

async fn builtin(
    ctx: &Ctx,
    locals: &mut Locals,
    func: Builtin,
    args: &[Option<Expr>],
    call: &Expr,
) -> Result<Value, StepError> {
    let mut vals: Vec<Option<Value>> = vec![];
    for a in args {
        vals.push(match a {
            Some(x) => Some(eval(ctx, locals, x).await?),
            None => None,
        });
    }
    let arg_ty = |i: usize| args.get(i).and_then(|a| a.as_ref()).map(|a| a.ty.clone()).unwrap_or(Type::Json);
    let s = |i: usize| str_arg(&vals[i]);
    Ok(match func {
        // Boxed: inline, these large futures would make every `eval` future (boxed for the
        // recursion) as large, above the sizes the allocator serves from its fast per-thread cache.
        Builtin::Http(method) => http(ctx, method, &vals).boxed().await?,
        Builtin::Exec => exec(ctx, &vals).boxed().await?,
        Builtin::Sleep => {
            let ms = vals[0].as_ref().and_then(Value::as_u64).unwrap_or(0);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            json!({})
        }
        Builtin::Now => json!(time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()),
        Builtin::Uuid => json!(uuid::Uuid::new_v4().to_string()),
        Builtin::Log => {
            let text = vals[0].as_ref().map(|v| to_text(v, &arg_ty(0))).unwrap_or_default();
            (ctx.log)(&format!("{}: {}", locals.step, ctx.redactor.text(text)));
            json!({})
        }
        Builtin::Fail => {
            let retryable = vals[1].as_ref().and_then(Value::as_bool).unwrap_or(false);
            let msg = ctx.redactor.text(s(0));
            return Err(StepError { message: msg, retryable, code: None, loc: Some(call.loc) });
        }
        Builtin::IdempotencyKey => json!(idempotency_key(ctx.run["id"].as_str().unwrap_or_default(), &locals.path)),
        Builtin::Len => json!(match &vals[0] {
            Some(Value::String(x)) => x.chars().count(),
            Some(Value::Array(x)) => x.len(),
            Some(Value::Object(x)) => x.len(),
            _ => 0,
        }),
        Builtin::Upper => json!(s(0).to_uppercase()),
        Builtin::Lower => json!(s(0).to_lowercase()),
        Builtin::Trim => json!(s(0).trim()),
        Builtin::Split => {
            let (x, sep) = (s(0), s(1));
            if sep.is_empty() {
                json!(x.chars().map(|c| c.to_string()).collect::<Vec<_>>())
            } else {
                json!(x.split(sep.as_str()).collect::<Vec<_>>())
            }
        }
        Builtin::Join => {
            let xs: Vec<String> = match &vals[0] {
                Some(Value::Array(xs)) => xs.iter().map(|x| to_text(x, &Type::Str)).collect(),
                _ => vec![],
            };
            json!(xs.join(&s(1)))
        }
        Builtin::Replace => json!(s(0).replace(&s(1), &s(2))),
        Builtin::Contains => json!(match (&vals[0], &vals[1]) {
            (Some(Value::String(h)), Some(Value::String(n))) => h.contains(n.as_str()),
            (Some(Value::Array(xs)), Some(x)) => xs.iter().any(|y| values_equal(x, y)),
            (Some(Value::Object(o)), Some(Value::String(k))) => o.contains_key(k),
            _ => false,
        }),
        Builtin::StartsWith => json!(s(0).starts_with(&s(1))),
        Builtin::EndsWith => json!(s(0).ends_with(&s(1))),
        Builtin::Range => {
            let a = vals[0].as_ref().and_then(Value::as_i64).unwrap_or(0);
            let (lo, hi) = match vals[1].as_ref().and_then(Value::as_i64) {
                Some(b) => (a, b),
                None => (0, a),
            };
            // In i128: `hi - lo` overflows i64 for far-apart bounds.
            if i128::from(hi) - i128::from(lo) > 10_000_000 {
                return Err(StepError::permanent(format!(
                    "range({lo}, {hi}) is too long (at most 10,000,000 elements)"
                )));
            }
            json!((lo..hi).collect::<Vec<_>>())
        }
        Builtin::Keys => json!(match &vals[0] {
            Some(Value::Object(o)) => o.keys().cloned().collect::<Vec<_>>(),
            _ => vec![],
        }),
        Builtin::Str => json!(vals[0].as_ref().map(|v| to_text(v, &arg_ty(0))).unwrap_or_default()),
        Builtin::Int => match &vals[0] {
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => json!(i),
                // A float is truncated toward zero, when the result is an `Int`.
                None => match n.as_f64().filter(|f| f.is_finite() && f.abs() < 9.2e18) {
                    Some(f) => json!(f.trunc() as i64),
                    None => return Err(StepError::permanent(format!("int: {n} is out of the range of `Int`"))),
                },
            },
            Some(Value::String(x)) => json!(x
                .trim()
                .parse::<i64>()
                .map_err(|_| StepError::permanent(format!("int: {x:?} is not a whole number")))?),
            Some(Value::Bool(b)) => json!(*b as i64),
            other => {
                return Err(StepError::permanent(format!(
                    "int: cannot convert {}",
                    other.as_ref().map_or("nothing".into(), value::describe)
                )))
            }
        },
        Builtin::Float => match &vals[0] {
            Some(Value::Number(n)) => json!(n.as_f64().unwrap_or(0.0)),
            Some(Value::String(x)) => json!(x
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(finite)
                .ok_or_else(|| StepError::permanent(format!("float: {x:?} is not a finite number")))?),
            other => {
                return Err(StepError::permanent(format!(
                    "float: cannot convert {}",
                    other.as_ref().map_or("nothing".into(), value::describe)
                )))
            }
        },
        Builtin::JsonParse => {
            let text = s(0);
            serde_json::from_str(&text).map_err(|e| StepError::permanent(format!("json_parse: {e}")))?
        }
        Builtin::ToJson => json!(vals[0].as_ref().unwrap_or(&Value::Null).to_string()),
        Builtin::Env => match std::env::var(s(0)) {
            Ok(v) => json!(v),
            Err(_) => match &vals[1] {
                Some(Value::String(d)) => json!(d),
                _ => return Err(StepError::permanent(format!("env: `{}` is not set and has no default", s(0)))),
            },
        },
    })
}

fn str_map(v: &Option<Value>) -> Vec<(String, String)> {
    match v {
        Some(Value::Object(o)) => o.iter().map(|(k, v)| (k.clone(), to_text(v, &Type::Str))).collect(),
        _ => vec![],
    }
}

/// The largest response body `http.*` reads: a body goes into the run's state and may be stored
/// with the step's outputs, so it is bounded like the payloads of other workflow engines.
const MAX_BODY: usize = 64 << 20;

async fn http(ctx: &Ctx, method: HttpMethod, vals: &[Option<Value>]) -> Result<Value, StepError> {
    let url = str_arg(&vals[0]);
    let m = match method {
        HttpMethod::Get => reqwest::Method::GET,
        HttpMethod::Post => reqwest::Method::POST,
        HttpMethod::Put => reqwest::Method::PUT,
        HttpMethod::Patch => reqwest::Method::PATCH,
        HttpMethod::Delete => reqwest::Method::DELETE,
    };
    let parsed = reqwest::Url::parse(&url);
    let shown = ctx.redactor.text(url);
    // What cannot be sent at all fails permanently, saying why (not reqwest's `builder error`).
    let parsed = parsed.map_err(|e| StepError::permanent(format!("{m} {shown}: invalid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(StepError::permanent(format!(
            "{m} {shown}: invalid URL: the scheme must be http or https, not `{}`",
            parsed.scheme()
        )));
    }
    let mut req = ctx.http.request(m.clone(), parsed);
    if let Some(body) = vals[1].as_ref().filter(|v| !v.is_null()) {
        req = req.json(body);
    }
    for (k, v) in str_map(&vals[2]) {
        // orch names cannot hold `-`, header names nearly always do: `content_type` is sent as
        // `content-type` (underscores in header names are rare and dropped by many proxies).
        let k = k.replace('_', "-");
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            return Err(StepError::permanent(format!("{m} {shown}: `{k}` is not a valid header name")));
        }
        if reqwest::header::HeaderValue::from_str(&v).is_err() {
            return Err(StepError::permanent(format!(
                "{m} {shown}: the value of header `{k}` is not valid: it holds a newline, another control \
                 character or a character outside ASCII"
            )));
        }
        req = req.header(k, v);
    }
    if let Some(ms) = vals[3].as_ref().and_then(Value::as_u64) {
        req = req.timeout(std::time::Duration::from_millis(ms));
    }
    let mut resp = req.send().await.map_err(|e| {
        let builder = e.is_builder();
        let message = ctx.redactor.text(format!("{m} {shown}: {}", causes(&e.without_url())));
        if builder {
            StepError::permanent(message)
        } else {
            StepError::retryable(message)
        }
    })?;
    let status = resp.status().as_u16();
    let mut headers = Map::with_capacity(resp.headers().len());
    for (k, v) in resp.headers() {
        headers.insert(k.to_string(), Value::String(ctx.redactor.text(v.to_str().unwrap_or_default().to_string())));
    }
    // Read in chunks, to refuse a body past the limit before it is all in memory.
    let mut bytes: Vec<u8> = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| StepError::retryable(format!("{m} {shown}: reading the body: {}", causes(&e.without_url()))))?
    {
        if bytes.len() + chunk.len() > MAX_BODY {
            return Err(StepError::permanent(format!(
                "{m} {shown}: the response body is larger than {} MiB, the most a step may read",
                MAX_BODY >> 20
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    let body = ctx.redactor.text(utf8_lossy(bytes));
    if status == 429 || status >= 500 {
        return Err(StepError::retryable(format!("{m} {shown}: HTTP {status}: {}", snippet(&body))));
    }
    if status >= 400 {
        return Err(StepError::permanent(format!("{m} {shown}: HTTP {status}: {}", snippet(&body))));
    }
    let json_body = serde_json::from_str(&body).unwrap_or(Value::Null);
    // Built in place: `json!` would copy the headers and the body.
    let mut response = Map::with_capacity(4);
    response.insert("status".into(), status.into());
    response.insert("headers".into(), Value::Object(headers));
    response.insert("body".into(), Value::String(body));
    response.insert("json".into(), json_body);
    Ok(Value::Object(response))
}

/// `bytes` as text, without a copy when they are valid UTF-8.
fn utf8_lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// An error with its causes: `error sending request: client error (Connect): tcp connect error:
/// Connection refused (os error 111)`.
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.ends_with(&part) {
            text = format!("{text}: {part}");
        }
        source = cause.source();
    }
    text
}

fn snippet(s: &str) -> String {
    let t: String = s.chars().take(200).collect();
    t.trim().to_string()
}

async fn exec(ctx: &Ctx, vals: &[Option<Value>]) -> Result<Value, StepError> {
    let program = str_arg(&vals[0]);
    let args: Vec<String> = match &vals[1] {
        Some(Value::Array(xs)) => xs.iter().map(|x| to_text(x, &Type::Str)).collect(),
        _ => vec![],
    };
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&args).kill_on_drop(true);
    for (k, v) in str_map(&vals[2]) {
        cmd.env(k, v);
    }
    if let Some(Value::String(cwd)) = &vals[3] {
        // Otherwise spawning fails with ENOENT, which reads as if the program were missing.
        if !std::path::Path::new(cwd).is_dir() {
            return Err(StepError::permanent(format!(
                "exec {program}: the working directory `{cwd}` does not exist or is not a directory"
            )));
        }
        cmd.current_dir(cwd);
    }
    let stdin = match &vals[4] {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let check = vals[5].as_ref().and_then(Value::as_bool).unwrap_or(true);
    cmd.stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() });
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    own_group(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| StepError::permanent(format!("exec {program}: {e}")))?;
    // Kills the child's whole process group (its own children too) when the attempt is dropped
    // before the child is done: a step timeout, or the end of the run.
    let mut group = GroupKill(child.id());
    // And the same when orchc itself dies.
    let watch = child.id().and_then(super::watchdog::Watch::start);
    // Fed while stdout and stderr are read: a child that writes as it reads (`cat`) would
    // otherwise fill its output pipe and wait for us while we wait for it.
    if let (Some(pipe), Some(input)) = (child.stdin.take(), stdin) {
        feed_stdin(pipe, input);
    }
    let out = child.wait_with_output().await.map_err(|e| StepError::permanent(format!("exec {program}: {e}")))?;
    // Done: whatever the child left running on purpose (with its output elsewhere) is its own.
    group.0 = None;
    if let Some(watch) = watch {
        watch.release();
    }
    // -1 when the child was killed by a signal.
    let code = out.status.code().unwrap_or(-1);
    let stdout = ctx.redactor.text(utf8_lossy(out.stdout));
    let stderr = ctx.redactor.text(utf8_lossy(out.stderr));
    if check && code != 0 {
        let how = {
            use std::os::unix::process::ExitStatusExt;
            match out.status.signal() {
                Some(n) => format!("was killed by signal {n}"),
                None => format!("exited with {code}"),
            }
        };
        let said = snippet(if stderr.trim().is_empty() { &stdout } else { &stderr });
        let said = if said.is_empty() { said } else { format!(": {said}") };
        return Err(StepError::permanent(format!("exec {program} {how}{said}")));
    }
    Ok(json!({ "code": code, "stdout": stdout, "stderr": stderr }))
}

/// The child leads a process group of its own, so that it can be killed with everything it
/// started; on Linux it also gets SIGKILL when orchc dies (even by `kill -9`), so that a resumed
/// run does not run the step again beside it.
fn own_group(cmd: &mut tokio::process::Command) {
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    {
        // SAFETY: the closure calls only async-signal-safe functions (getppid, prctl, raise).
        let parent = unsafe { libc::getpid() };
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // orchc died before the prctl: no signal will come.
                if libc::getppid() != parent {
                    libc::raise(libc::SIGKILL);
                }
                Ok(())
            });
        }
    }
}

/// The process group of a running `exec` child, killed (SIGKILL) when dropped while set.
struct GroupKill(Option<u32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.and_then(|id| i32::try_from(id).ok()).filter(|id| *id > 0) {
            // SAFETY: a plain kill(2) of the group the child leads.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// Writes a child's stdin on a thread of its own, then closes it. SIGPIPE is blocked on that
/// thread (orchc keeps its default disposition), so a child that exits without reading all of its
/// input ends the writing with EPIPE instead of ending orchc.
fn feed_stdin(pipe: tokio::process::ChildStdin, input: String) {
    let Ok(fd) = pipe.into_owned_fd() else { return };
    std::thread::spawn(move || {
        #[cfg(unix)]
        // SAFETY: changes only this thread's signal mask, with a set built here.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        let mut file = std::fs::File::from(fd);
        let _ = std::io::Write::write_all(&mut file, input.as_bytes());
    });
}

/// The same for every attempt of one step call in one run. Computed only when a body asks for it.
pub fn idempotency_key(run: &str, path: &str) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let digest = Sha256::digest(format!("{run}/{path}").as_bytes());
    digest.iter().take(16).fold(String::with_capacity(32), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}
