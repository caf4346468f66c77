//! `orchc repl`: an interactive session over the same checker, and a small evaluator of checked
//! expressions and step bodies.
//!
//! The session is source text: every declaration typed (or `:load`ed) is appended to it and the
//! whole is checked like a file with `check::check_source`; a declaration with errors is shown
//! with its diagnostics and left out. `let` bindings are kept as statements: an expression is
//! checked as the last `let` of a hidden step whose body holds the session's bindings, so it is
//! typed exactly as in a step body, then evaluated (bindings keep the value they got when they
//! were entered; nothing runs twice).
//!
//! [`Session`] is the core and knows nothing of terminals; [`run`] puts rustyline in front of it:
//! continuation lines while brackets are open, history in `$XDG_STATE_HOME/orch/history` (or
//! `~/.orch_history`), Tab completion of commands, keywords and names in scope.

use crate::check::check_source;
use crate::diagnostics::{render_human, HumanStyle, Severity};
use crate::ir::{self, Builtin, ExprKind, InterpPart, Literal, Program, StepKind, Type};
use crate::syntax::ast::{BinaryOp, UnaryOp};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

const EVAL_STEP: &str = "__repl_eval";
const EVAL_VALUE: &str = "__repl_value";

pub const COMMANDS: &[&str] = &[":type", ":load", ":run", ":step", ":state", ":help", ":quit"];

pub const KEYWORDS: &[&str] = &[
    "use",
    "config",
    "secret",
    "type",
    "enum",
    "block",
    "product",
    "lifecycle",
    "step",
    "workflow",
    "environment",
    "let",
    "if",
    "else",
    "for",
    "in",
    "as",
    "with",
    "true",
    "false",
    "none",
    "and",
    "or",
    "not",
    "fixed",
    "when",
    "input",
    "graph",
    "after",
    "limit",
    "retry",
    "backoff",
    "factor",
    "timeout",
    "compensate",
    "poll",
    "every",
    "until",
    "within",
];

const DECL_WORDS: &[&str] =
    &["use", "config", "secret", "type", "enum", "block", "product", "lifecycle", "step", "workflow", "environment"];

const HELP: &str = "\
Type an expression to evaluate it and see its type, `let NAME = EXPR` to bind a name, or a
declaration (type, enum, block, product, lifecycle, config, secret, step, workflow, use) to add it
to the session. Input continues on the next line while brackets are open.

  :type EXPR              the type of EXPR, without evaluating it
  :load FILE              add the declarations of FILE to the session
  :step STEP k=v ...      run one step ad hoc and print its outputs
  :run WORKFLOW k=v ...   run a workflow
  :state                  the session's bindings and declarations
  :help                   this text
  :quit                   leave (also Ctrl-D)
";

/// What one line of input gave.
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// Text to print (may be empty).
    Out(String),
    /// An error to print; the session is unchanged.
    Err(String),
    Quit,
}

/// A value with its type, as the evaluator gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct Typed {
    pub value: Value,
    pub ty: Type,
}

pub struct Session {
    /// The declarations entered so far, as source text.
    decls: String,
    /// `let` statements entered so far, with the values they got.
    lets: Vec<(String, String, Typed)>,
    /// Where relative imports and `:load` paths resolve.
    dir: PathBuf,
    /// The last program that checked (declarations only), for completion and `:state`.
    program: Option<Program>,
    /// The store for `:run` (`None`: in memory).
    pub db: Option<PathBuf>,
}

impl Default for Session {
    fn default() -> Self {
        Session::new(std::env::current_dir().unwrap_or_default(), None)
    }
}

impl Session {
    pub fn new(dir: PathBuf, db: Option<PathBuf>) -> Session {
        let mut s = Session { decls: String::new(), lets: Vec::new(), dir, program: None, db };
        s.program = check_source("<repl>", "", &s.dir).program;
        s
    }

    /// Handles one complete input (possibly several lines).
    pub fn handle(&mut self, input: &str) -> Reply {
        let trimmed = input.trim();
        if trimmed.is_empty() || trimmed.starts_with("//") && !trimmed.contains('\n') {
            return Reply::Out(String::new());
        }
        if let Some(cmd) = trimmed.strip_prefix(':') {
            let (name, rest) = cmd.split_once(char::is_whitespace).unwrap_or((cmd, ""));
            let rest = rest.trim();
            return match name {
                "quit" | "q" => Reply::Quit,
                "help" | "h" => Reply::Out(HELP.to_string()),
                "type" | "t" => match self.typed_expr(rest) {
                    Ok((_, ty, _)) => Reply::Out(format!("{rest} : {ty}")),
                    Err(e) => Reply::Err(e),
                },
                "load" | "l" => self.load(rest),
                "state" => Reply::Out(self.state()),
                "step" => self.step_command(rest),
                "run" => self.run_command(rest),
                other => Reply::Err(format!("unknown command `:{other}`; the commands: {}", COMMANDS.join(" "))),
            };
        }
        let first = trimmed.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap_or("");
        let second = trimmed[first.len()..].trim_start();
        if DECL_WORDS.contains(&first) || trimmed.starts_with("///") || (first == "input" && second.starts_with("step"))
        {
            return self.declare(trimmed);
        }
        if first == "let" {
            return self.bind(trimmed);
        }
        match self.eval_expr(trimmed) {
            Ok(t) => Reply::Out(format!("{} : {}", show(&t.value, &t.ty, self.program.as_ref()), t.ty)),
            Err(e) => Reply::Err(e),
        }
    }

    /// Names in scope, for completion.
    pub fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = self.lets.iter().map(|(n, _, _)| n.clone()).collect();
        if let Some(p) = &self.program {
            out.extend(p.steps.keys().filter(|k| *k != EVAL_STEP).cloned());
            out.extend(p.workflows.keys().cloned());
            out.extend(p.configs.keys().cloned());
            out.extend(p.secrets.iter().cloned());
            out.extend(p.enums.keys().cloned());
            out.extend(p.blocks.keys().cloned());
            out.extend(p.products.keys().cloned());
            out.extend(p.lifecycles.keys().cloned());
        }
        out.extend(Builtin::ALL.iter().map(|b| b.name().to_string()));
        out.sort();
        out.dedup();
        out
    }

    fn errors_of(&self, diags: &[crate::diagnostics::Diagnostic]) -> String {
        let style = HumanStyle { color: false, width: 100 };
        diags.iter().filter(|d| d.severity == Severity::Error).map(|d| render_human(d, style)).collect()
    }

    fn declare(&mut self, text: &str) -> Reply {
        let candidate = if self.decls.is_empty() { format!("{text}\n") } else { format!("{}\n{text}\n", self.decls) };
        let result = check_source("<repl>", &candidate, &self.dir);
        match result.program {
            Some(p) => {
                self.decls = candidate.trim_end().to_string();
                self.program = Some(p);
                let added: Vec<String> = crate::syntax::parse(text)
                    .map(|m| m.items.iter().filter_map(|i| i.kind.name().map(|n| n.name.clone())).collect())
                    .unwrap_or_default();
                Reply::Out(if added.is_empty() { "ok".into() } else { format!("defined {}", added.join(", ")) })
            }
            None => Reply::Err(self.errors_of(&result.diagnostics)),
        }
    }

    fn load(&mut self, path: &str) -> Reply {
        if path.is_empty() {
            return Reply::Err("usage: :load FILE".into());
        }
        let p = self.dir.join(path);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) => return Reply::Err(format!("orch::io::read: cannot read `{path}`: {e}")),
        };
        let old_dir = std::mem::replace(&mut self.dir, p.parent().map(Path::to_path_buf).unwrap_or_default());
        match self.declare(&text) {
            Reply::Err(e) => {
                self.dir = old_dir;
                Reply::Err(e)
            }
            Reply::Out(_) => Reply::Out(format!("loaded {path}")),
            Reply::Quit => Reply::Quit,
        }
    }

    fn bind(&mut self, text: &str) -> Reply {
        let rest = text["let".len()..].trim_start();
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if name.is_empty() {
            return Reply::Err("expected a name after `let`".into());
        }
        if !rest.contains('=') {
            return Reply::Err("expected `let NAME = EXPR`".into());
        }
        // Check the whole statement (with its type annotation, if any) as the hidden step does.
        match self.run_hidden(&[text.to_string()], &name) {
            Ok(t) => {
                let shown = format!("{name} = {} : {}", show(&t.value, &t.ty, self.program.as_ref()), t.ty);
                self.lets.retain(|(n, _, _)| *n != name);
                self.lets.push((name, text.to_string(), t));
                Reply::Out(shown)
            }
            Err(e) => Reply::Err(e),
        }
    }

    fn eval_expr(&mut self, expr: &str) -> Result<Typed, String> {
        self.run_hidden(&[value_let(expr)], EVAL_VALUE)
    }

    fn typed_expr(&mut self, expr: &str) -> Result<(Program, Type, ir::Expr), String> {
        if expr.is_empty() {
            return Err("usage: :type EXPR".into());
        }
        let (program, block) = self.hidden_program(&[value_let(expr)])?;
        match block.stmts.last() {
            Some(ir::Stmt::Let { value, .. }) => {
                let (ty, value) = (value.ty.clone(), value.clone());
                Ok((program, ty, value))
            }
            _ => Err("internal: the hidden step lost its last statement".into()),
        }
    }

    /// Checks the session with a hidden step holding the bindings and `extra` statements.
    fn hidden_program(&self, extra: &[String]) -> Result<(Program, ir::Block), String> {
        let mut body = String::new();
        // Each statement ends with `;` so that an unfinished one cannot swallow the next.
        for s in self.lets.iter().map(|l| &l.1).chain(extra) {
            body.push_str("  ");
            body.push_str(s.trim().trim_end_matches(';'));
            body.push_str(";\n");
        }
        let text = format!("{}\nstep {EVAL_STEP}() -> () {{\n{body}  {{}}\n}}\n", self.decls);
        let result = check_source("<repl>", &text, &self.dir);
        let Some(program) = result.program else {
            return Err(self.errors_of(&result.diagnostics));
        };
        let block = match program.steps.get(EVAL_STEP).map(|s| &s.kind) {
            Some(StepKind::Body(b)) => b.clone(),
            _ => return Err("internal: the hidden step is missing".into()),
        };
        Ok((program, block))
    }

    /// Checks and evaluates `extra` after the bindings; gives the value bound to `name`.
    fn run_hidden(&mut self, extra: &[String], name: &str) -> Result<Typed, String> {
        let (program, block) = self.hidden_program(extra)?;
        let mut ev = Eval::new(&program);
        for (n, _, t) in &self.lets {
            ev.bind(n, t.value.clone());
        }
        let mut found = None;
        for stmt in block.stmts.iter().skip(self.lets.len()) {
            match stmt {
                ir::Stmt::Let { name: n, value } => {
                    let v = ev.eval(value)?;
                    if n == name {
                        found = Some(Typed { value: v.clone(), ty: value.ty.clone() });
                    }
                    ev.bind(n, v);
                }
                ir::Stmt::Expr(e) => {
                    ev.eval(e)?;
                }
            }
        }
        let out = found.ok_or_else(|| format!("internal: `{name}` was not bound"))?;
        for line in ev.logs.drain(..) {
            println!("log: {line}");
        }
        Ok(out)
    }

    fn state(&self) -> String {
        let mut out = String::new();
        if self.lets.is_empty() {
            out.push_str("no bindings\n");
        }
        for (n, _, t) in &self.lets {
            out.push_str(&format!("let {n} = {} : {}\n", show(&t.value, &t.ty, self.program.as_ref()), t.ty));
        }
        if let Some(p) = &self.program {
            let list = |kind: &str, names: Vec<&String>, out: &mut String| {
                if !names.is_empty() {
                    let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
                    out.push_str(&format!("{kind}: {}\n", names.join(", ")));
                }
            };
            list("workflows", p.workflows.keys().collect(), &mut out);
            list("steps", p.steps.keys().filter(|k| *k != EVAL_STEP).collect(), &mut out);
            list("configs", p.configs.keys().collect(), &mut out);
            list("secrets", p.secrets.iter().collect(), &mut out);
            list("products", p.products.keys().collect(), &mut out);
            list("blocks", p.blocks.keys().collect(), &mut out);
            list("enums", p.enums.keys().collect(), &mut out);
            list("lifecycles", p.lifecycles.keys().collect(), &mut out);
        }
        out.push_str(&format!(
            "store: {}\n",
            self.db.as_ref().map_or("in memory".to_string(), |p| p.display().to_string())
        ));
        out
    }

    /// `:step STEP k=v ...`: runs one step's body once with the given parameters.
    fn step_command(&mut self, rest: &str) -> Reply {
        let mut words = rest.split_whitespace();
        let Some(name) = words.next() else {
            return Reply::Err("usage: :step STEP k=v ...".into());
        };
        let Some(program) = self.program.clone() else {
            return Reply::Err("the session does not check".into());
        };
        let Some(step) = program.steps.get(name) else {
            return Reply::Err(format!("no step `{name}`; the steps: {}", self.step_names().join(", ")));
        };
        let mut given = Map::new();
        for w in words {
            let Some((k, v)) = w.split_once('=') else {
                return Reply::Err(format!("expected `NAME=VALUE`, found `{w}`"));
            };
            given.insert(k.to_string(), Value::String(v.to_string()));
        }
        let mut ev = Eval::new(&program);
        for p in &step.params {
            match given.remove(&p.name) {
                Some(Value::String(raw)) => match parse_input(&raw, &p.ty) {
                    Ok(v) => ev.bind(&p.name, v),
                    Err(e) => return Reply::Err(format!("parameter `{}`: {e}", p.name)),
                },
                _ => match &p.default {
                    Some(d) => match ev.eval(d) {
                        Ok(v) => ev.bind(&p.name, v),
                        Err(e) => return Reply::Err(e),
                    },
                    None if p.ty.is_optional() => ev.bind(&p.name, Value::Null),
                    None => {
                        return Reply::Err(format!("missing parameter `{}: {}` (give {}=VALUE)", p.name, p.ty, p.name))
                    }
                },
            }
        }
        if let Some(k) = given.keys().next() {
            return Reply::Err(format!("step `{name}` has no parameter `{k}`"));
        }
        let body = match &step.kind {
            StepKind::Body(b) => b.clone(),
            StepKind::Input { .. } => {
                return Reply::Err(format!("`{name}` is an input step: it waits for someone to give its outputs"))
            }
        };
        let started = std::time::Instant::now();
        let result = loop {
            let r = ev.block(&body);
            let Some(poll) = &step.poll else { break r };
            let Ok(out) = &r else { break r };
            let mut check = ev.fork();
            if let Value::Object(m) = out {
                for (k, v) in m {
                    check.bind(k, v.clone());
                }
            }
            match check.eval(&poll.until) {
                Ok(Value::Bool(true)) => break r,
                Ok(_) => {}
                Err(e) => break Err(e),
            }
            if poll.within_ms.is_some_and(|w| started.elapsed().as_millis() as u64 >= w) {
                break Err("orch::run::poll_timeout: the poll condition did not hold in time".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(poll.every_ms));
        };
        let mut out = String::new();
        for line in ev.logs.drain(..) {
            out.push_str(&format!("log: {line}\n"));
        }
        match result {
            Ok(Value::Object(m)) => {
                for (k, ty) in &step.outputs {
                    let v = m.get(k).cloned().unwrap_or(Value::Null);
                    out.push_str(&format!("{k} = {} : {ty}\n", show(&v, ty, Some(&program))));
                }
                if step.outputs.is_empty() {
                    out.push_str("done (no outputs)\n");
                }
                Reply::Out(out.trim_end().to_string())
            }
            Ok(other) => Reply::Err(format!("the step's body gave {other}, not a record")),
            Err(e) => Reply::Err(format!("{out}step `{name}` failed: {e}")),
        }
    }

    fn step_names(&self) -> Vec<String> {
        self.program.as_ref().map_or(vec![], |p| p.steps.keys().filter(|k| *k != EVAL_STEP).cloned().collect())
    }

    fn run_command(&mut self, rest: &str) -> Reply {
        let Some(name) = rest.split_whitespace().next() else {
            return Reply::Err("usage: :run WORKFLOW k=v ...".into());
        };
        if !self.program.as_ref().is_some_and(|p| p.workflows.contains_key(name)) {
            let names: Vec<String> = self.program.as_ref().map_or(vec![], |p| p.workflows.keys().cloned().collect());
            return Reply::Err(format!("no workflow `{name}`; the workflows: {}", names.join(", ")));
        }
        Reply::Err(
            "`:run` needs the durable interpreter, which is not in this build yet; use `:step` to run steps one by one"
                .into(),
        )
    }
}

/// The hidden statement that gives an expression typed at the prompt its value; the expression
/// is on its own lines, so diagnostics show it as typed.
fn value_let(expr: &str) -> String {
    format!("let {EVAL_VALUE} = (\n{}\n)", expr.trim().trim_end_matches(';'))
}

// ---------------------------------------------------------------------------------------------
// Values

/// Parses a `k=v` value by the parameter's type (brief §9).
pub fn parse_input(raw: &str, ty: &Type) -> Result<Value, String> {
    let bad = || format!("`{raw}` is not a {ty}");
    match ty.unwrap_optional() {
        Type::Str | Type::Secret => Ok(Value::String(raw.to_string())),
        Type::Int => raw.parse::<i64>().map(Value::from).map_err(|_| bad()),
        Type::Float => raw.parse::<f64>().map(Value::from).map_err(|_| bad()),
        Type::Bool => match raw {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(bad()),
        },
        Type::Duration => crate::syntax::parse_duration(raw).map(Value::from).ok_or_else(bad),
        Type::Enum(_) => Ok(Value::String(raw.to_string())),
        _ => serde_json::from_str(raw).map_err(|e| format!("{}: {e}", bad())),
    }
}

fn duration_text(ms: u64) -> String {
    for (unit, scale) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms > 0 && ms.is_multiple_of(scale) {
            return format!("{}{unit}", ms / scale);
        }
    }
    format!("{ms}ms")
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '$' => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A value in orch syntax, as its type says.
pub fn show(v: &Value, ty: &Type, program: Option<&Program>) -> String {
    if v.is_null() && !matches!(ty, Type::Json) {
        return "none".into();
    }
    match ty {
        Type::Secret => "***".into(),
        Type::Str => v.as_str().map(quote).unwrap_or_else(|| v.to_string()),
        Type::Duration => v.as_u64().map(duration_text).unwrap_or_else(|| v.to_string()),
        Type::Float => match v.as_f64() {
            Some(f) if f.fract() == 0.0 && f.is_finite() => format!("{f:.1}"),
            Some(f) => f.to_string(),
            None => v.to_string(),
        },
        Type::Optional(t) => show(v, t, program),
        Type::Enum(_) => v.as_str().unwrap_or("?").to_string(),
        Type::List(t) => match v.as_array() {
            Some(xs) => format!("[{}]", xs.iter().map(|x| show(x, t, program)).collect::<Vec<_>>().join(", ")),
            None => v.to_string(),
        },
        Type::Map(t) => record_text(v, |_| (**t).clone(), program),
        Type::Record(fields) => record_text(v, |k| fields.get(k).cloned().unwrap_or(Type::Json), program),
        Type::Block(b) => {
            let fields = program.and_then(|p| p.blocks.get(b)).map(|b| b.fields.clone()).unwrap_or_default();
            record_text(v, |k| fields.get(k).map(|f| f.ty.clone()).unwrap_or(Type::Json), program)
        }
        Type::Product { name, .. } => {
            let def = program.and_then(|p| p.products.get(name));
            record_text(
                v,
                |k| {
                    def.and_then(|d| {
                        d.fields.get(k).map(|f| f.ty.clone()).or_else(|| d.fixed.get(k).map(|f| f.0.clone()))
                    })
                    .unwrap_or(Type::Json)
                },
                program,
            )
        }
        _ => v.to_string(),
    }
}

fn record_text(v: &Value, ty_of: impl Fn(&str) -> Type, program: Option<&Program>) -> String {
    match v.as_object() {
        Some(m) if m.is_empty() => "{}".into(),
        Some(m) => {
            let parts: Vec<String> = m.iter().map(|(k, x)| format!("{k}: {}", show(x, &ty_of(k), program))).collect();
            format!("{{ {} }}", parts.join(", "))
        }
        None => v.to_string(),
    }
}

/// `str(x)` of a value of type `ty`.
fn to_text(v: &Value, ty: &Type) -> String {
    match (v, ty.unwrap_optional()) {
        (Value::String(s), _) => s.clone(),
        (Value::Null, _) => "none".into(),
        (Value::Number(n), Type::Duration) => n.as_u64().map(duration_text).unwrap_or_else(|| n.to_string()),
        (Value::Number(n), Type::Float) => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.fract() == 0.0 {
                format!("{f:.1}")
            } else {
                f.to_string()
            }
        }
        (other, _) => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// The evaluator of checked expressions

struct Eval<'p> {
    program: &'p Program,
    scope: Vec<(String, Value)>,
    logs: Vec<String>,
}

/// A float result; infinities and NaN (from `/ 0.0`) are errors, not silent `none`s.
fn finite(f: f64) -> Result<Value, String> {
    if f.is_finite() {
        Ok(Value::from(f))
    } else {
        Err(format!("the result is not a finite number ({f}); division by zero?"))
    }
}

fn num(v: &Value) -> Result<f64, String> {
    v.as_f64().ok_or_else(|| format!("expected a number, found {v}"))
}

fn int(v: &Value) -> Result<i64, String> {
    v.as_i64().ok_or_else(|| format!("expected an integer, found {v}"))
}

fn string(v: &Value) -> Result<&str, String> {
    v.as_str().ok_or_else(|| format!("expected a string, found {v}"))
}

impl<'p> Eval<'p> {
    fn new(program: &'p Program) -> Eval<'p> {
        Eval { program, scope: Vec::new(), logs: Vec::new() }
    }

    fn fork(&self) -> Eval<'p> {
        Eval { program: self.program, scope: self.scope.clone(), logs: Vec::new() }
    }

    fn bind(&mut self, name: &str, v: Value) {
        self.scope.push((name.to_string(), v));
    }

    fn lookup(&self, name: &str) -> Result<Value, String> {
        self.scope
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("`{name}` has no value here"))
    }

    fn block(&mut self, b: &ir::Block) -> Result<Value, String> {
        let mark = self.scope.len();
        let r = (|| {
            for s in &b.stmts {
                match s {
                    ir::Stmt::Let { name, value } => {
                        let v = self.eval(value)?;
                        self.bind(name, v);
                    }
                    ir::Stmt::Expr(e) => {
                        self.eval(e)?;
                    }
                }
            }
            self.eval(&b.result)
        })();
        self.scope.truncate(mark);
        r
    }

    fn eval(&mut self, e: &ir::Expr) -> Result<Value, String> {
        Ok(match &e.kind {
            ExprKind::Lit(l) => match l {
                Literal::None => Value::Null,
                Literal::Bool(b) => Value::Bool(*b),
                Literal::Int(i) => Value::from(*i),
                Literal::Float(f) => Value::from(*f),
                Literal::Str(s) => Value::String(s.clone()),
                Literal::Duration(ms) => Value::from(*ms),
            },
            ExprKind::Interp(parts) => {
                let mut s = String::new();
                for p in parts {
                    match p {
                        InterpPart::Text(t) => s.push_str(t),
                        InterpPart::Expr(x) => {
                            let v = self.eval(x)?;
                            s.push_str(&to_text(&v, &x.ty));
                        }
                    }
                }
                Value::String(s)
            }
            ExprKind::Local(n) => self.lookup(n)?,
            ExprKind::Config(n) => {
                let def = self.program.configs.get(n).ok_or_else(|| format!("no config `{n}`"))?;
                self.eval(&def.default)?
            }
            ExprKind::Secret(n) => {
                let var = format!("ORCH_SECRET_{}", n.to_uppercase());
                Value::String(std::env::var(&var).map_err(|_| format!("secret `{n}` is not set (set {var})"))?)
            }
            ExprKind::Run => serde_json::json!({ "id": "repl", "workflow": "", "env": "" }),
            ExprKind::EnumValue { variant, .. } => Value::String(variant.clone()),
            ExprKind::Record(fields) => {
                let mut m = Map::new();
                for (k, x) in fields {
                    m.insert(k.clone(), self.eval(x)?);
                }
                Value::Object(m)
            }
            ExprKind::List(xs) => Value::Array(xs.iter().map(|x| self.eval(x)).collect::<Result<_, _>>()?),
            ExprKind::Field(b, f) => {
                let v = self.eval(b)?;
                v.get(f).cloned().unwrap_or(Value::Null)
            }
            ExprKind::Index(b, i) => {
                let v = self.eval(b)?;
                let i = self.eval(i)?;
                match (&v, &i) {
                    (Value::Array(xs), Value::Number(n)) => {
                        let n = n.as_i64().unwrap_or(-1);
                        xs.get(usize::try_from(n).map_err(|_| format!("index {n} is negative"))?)
                            .cloned()
                            .ok_or_else(|| format!("index {n} is out of range (the list has {})", xs.len()))?
                    }
                    (Value::Object(m), Value::String(k)) => m.get(k).cloned().unwrap_or(Value::Null),
                    _ => Value::Null,
                }
            }
            ExprKind::Unary(op, x) => {
                let v = self.eval(x)?;
                match op {
                    UnaryOp::Not => Value::Bool(!v.as_bool().ok_or("expected a Bool")?),
                    UnaryOp::Neg if x.ty == Type::Float => Value::from(-num(&v)?),
                    UnaryOp::Neg => Value::from(int(&v)?.checked_neg().ok_or("integer overflow")?),
                }
            }
            ExprKind::Binary(op, l, r) => self.binary(*op, l, r)?,
            ExprKind::If { cond, then, otherwise } => {
                if self.eval(cond)?.as_bool().unwrap_or(false) {
                    self.block(then)?
                } else {
                    match otherwise {
                        Some(b) => self.block(b)?,
                        None => Value::Null,
                    }
                }
            }
            ExprKind::For { var, iter, filter, body } => {
                let xs = match self.eval(iter)? {
                    Value::Array(xs) => xs,
                    other => return Err(format!("`for` needs a list, found {other}")),
                };
                let mut out = Vec::new();
                for x in xs {
                    self.bind(var, x);
                    let keep = match filter {
                        Some(f) => self.eval(f)?.as_bool().unwrap_or(false),
                        None => true,
                    };
                    if keep {
                        out.push(self.block(body)?);
                    }
                    self.scope.pop();
                }
                Value::Array(out)
            }
            ExprKind::With { base, updates } => {
                let mut v = self.eval(base)?;
                for (path, x) in updates {
                    let new = self.eval(x)?;
                    let mut cur = &mut v;
                    for (i, seg) in path.iter().enumerate() {
                        if !cur.is_object() {
                            *cur = Value::Object(Map::new());
                        }
                        let m = cur.as_object_mut().expect("an object");
                        if i + 1 == path.len() {
                            m.insert(seg.clone(), new.clone());
                            break;
                        }
                        cur = m.entry(seg.clone()).or_insert(Value::Object(Map::new()));
                    }
                }
                v
            }
            ExprKind::As(x, ty) => {
                let v = self.eval(x)?;
                if !conforms(&v, ty, self.program) {
                    return Err(format!("orch::run::conversion: {v} is not a {ty}"));
                }
                v
            }
            ExprKind::NewSubscription { product, customer, fields } => {
                let def = self.program.products.get(product).ok_or_else(|| format!("no product `{product}`"))?;
                let state =
                    self.program.lifecycles.get(&def.lifecycle).map(|l| l.initial().to_string()).unwrap_or_default();
                let mut m = Map::new();
                m.insert("id".into(), Value::String(uuid::Uuid::new_v4().to_string()));
                m.insert("customer".into(), self.eval(customer)?);
                m.insert("product".into(), Value::String(product.clone()));
                m.insert("state".into(), Value::String(state));
                for (k, (_, x)) in &def.fixed {
                    let v = self.eval(x)?;
                    m.insert(k.clone(), v);
                }
                for (k, x) in fields {
                    m.insert(k.clone(), self.eval(x)?);
                }
                Value::Object(m)
            }
            ExprKind::Transition { sub, state } => {
                let mut v = self.eval(sub)?;
                let product = v.get("product").and_then(Value::as_str).unwrap_or("").to_string();
                if let Some(def) = self.program.products.get(&product) {
                    let mut missing = Vec::new();
                    for (fname, f) in &def.fields {
                        required_missing(self.program, fname, f, state, v.get(fname), &mut missing);
                    }
                    if !missing.is_empty() {
                        return Err(format!(
                            "orch::run::lifecycle_fields: `{state}` needs {} set",
                            missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
                        ));
                    }
                }
                if let Some(m) = v.as_object_mut() {
                    m.insert("state".into(), Value::String(state.clone()));
                }
                v
            }
            ExprKind::Builtin { func, args } => self.builtin(*func, args)?,
        })
    }

    fn binary(&mut self, op: BinaryOp, l: &ir::Expr, r: &ir::Expr) -> Result<Value, String> {
        match op {
            BinaryOp::And => {
                return Ok(Value::Bool(
                    self.eval(l)?.as_bool().unwrap_or(false) && self.eval(r)?.as_bool().unwrap_or(false),
                ))
            }
            BinaryOp::Or => {
                return Ok(Value::Bool(
                    self.eval(l)?.as_bool().unwrap_or(false) || self.eval(r)?.as_bool().unwrap_or(false),
                ))
            }
            BinaryOp::Coalesce => {
                let v = self.eval(l)?;
                return if v.is_null() { self.eval(r) } else { Ok(v) };
            }
            _ => {}
        }
        let a = self.eval(l)?;
        let b = self.eval(r)?;
        let float = l.ty.unwrap_optional() == &Type::Float || r.ty.unwrap_optional() == &Type::Float;
        let overflow = || "integer overflow".to_string();
        Ok(match op {
            BinaryOp::Add => match (&a, &b) {
                (Value::String(x), Value::String(y)) => Value::String(format!("{x}{y}")),
                (Value::Array(x), Value::Array(y)) => Value::Array(x.iter().chain(y).cloned().collect()),
                _ if float => finite(num(&a)? + num(&b)?)?,
                _ => Value::from(int(&a)?.checked_add(int(&b)?).ok_or_else(overflow)?),
            },
            BinaryOp::Sub if float => finite(num(&a)? - num(&b)?)?,
            BinaryOp::Sub => Value::from(int(&a)?.checked_sub(int(&b)?).ok_or_else(overflow)?),
            BinaryOp::Mul if float => finite(num(&a)? * num(&b)?)?,
            BinaryOp::Mul => Value::from(int(&a)?.checked_mul(int(&b)?).ok_or_else(overflow)?),
            BinaryOp::Div if float => finite(num(&a)? / num(&b)?)?,
            BinaryOp::Div => Value::from(int(&a)?.checked_div(int(&b)?).ok_or("division by zero")?),
            BinaryOp::Rem if float => finite(num(&a)? % num(&b)?)?,
            BinaryOp::Rem => Value::from(int(&a)?.checked_rem(int(&b)?).ok_or("division by zero")?),
            BinaryOp::Eq | BinaryOp::Ne => {
                let same = if a.is_number() && b.is_number() { num(&a)? == num(&b)? } else { a == b };
                Value::Bool(same == (op == BinaryOp::Eq))
            }
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                let ord = match (&a, &b) {
                    (Value::String(x), Value::String(y)) => x.cmp(y),
                    _ => num(&a)?.partial_cmp(&num(&b)?).ok_or("not comparable")?,
                };
                use std::cmp::Ordering::*;
                Value::Bool(match op {
                    BinaryOp::Lt => ord == Less,
                    BinaryOp::Le => ord != Greater,
                    BinaryOp::Gt => ord == Greater,
                    _ => ord != Less,
                })
            }
            BinaryOp::And | BinaryOp::Or | BinaryOp::Coalesce => unreachable!("handled above"),
        })
    }

    fn builtin(&mut self, func: Builtin, args: &[Option<ir::Expr>]) -> Result<Value, String> {
        let mut vals = Vec::new();
        for a in args {
            vals.push(match a {
                Some(x) => Some((self.eval(x)?, x.ty.clone())),
                None => None,
            });
        }
        let arg = |i: usize| -> Result<&Value, String> {
            vals.get(i)
                .and_then(|v| v.as_ref())
                .map(|v| &v.0)
                .ok_or_else(|| format!("{}: missing argument", func.name()))
        };
        let opt = |i: usize| vals.get(i).and_then(|v| v.as_ref()).map(|v| &v.0).filter(|v| !v.is_null());
        Ok(match func {
            Builtin::Len => match arg(0)? {
                Value::String(s) => Value::from(s.chars().count()),
                Value::Array(xs) => Value::from(xs.len()),
                Value::Object(m) => Value::from(m.len()),
                other => return Err(format!("len of {other}")),
            },
            Builtin::Upper => Value::String(string(arg(0)?)?.to_uppercase()),
            Builtin::Lower => Value::String(string(arg(0)?)?.to_lowercase()),
            Builtin::Trim => Value::String(string(arg(0)?)?.trim().to_string()),
            Builtin::Split => {
                Value::Array(string(arg(0)?)?.split(string(arg(1)?)?).map(|s| Value::String(s.to_string())).collect())
            }
            Builtin::Join => {
                let xs = arg(0)?.as_array().ok_or("join needs a list")?;
                let parts: Vec<String> =
                    xs.iter().map(|x| x.as_str().map(str::to_string).unwrap_or(x.to_string())).collect();
                Value::String(parts.join(string(arg(1)?)?))
            }
            Builtin::Replace => Value::String(string(arg(0)?)?.replace(string(arg(1)?)?, string(arg(2)?)?)),
            Builtin::Contains => match arg(0)? {
                Value::String(s) => Value::Bool(s.contains(string(arg(1)?)?)),
                Value::Array(xs) => Value::Bool(xs.contains(arg(1)?)),
                other => return Err(format!("contains on {other}")),
            },
            Builtin::StartsWith => Value::Bool(string(arg(0)?)?.starts_with(string(arg(1)?)?)),
            Builtin::EndsWith => Value::Bool(string(arg(0)?)?.ends_with(string(arg(1)?)?)),
            Builtin::Range => {
                let (a, b) = match opt(1) {
                    Some(b) => (int(arg(0)?)?, int(b)?),
                    None => (0, int(arg(0)?)?),
                };
                if b.saturating_sub(a) > 10_000_000 {
                    return Err("range: more than 10,000,000 elements".into());
                }
                Value::Array((a..b).map(Value::from).collect())
            }
            Builtin::Keys => Value::Array(
                arg(0)?.as_object().map(|m| m.keys().cloned().map(Value::String).collect()).unwrap_or_default(),
            ),
            Builtin::Str => {
                let (v, ty) = vals[0].as_ref().ok_or("str: missing argument")?;
                Value::String(to_text(v, ty))
            }
            Builtin::Int => match arg(0)? {
                Value::String(s) => {
                    Value::from(s.trim().parse::<i64>().map_err(|_| format!("int: `{s}` is not an integer"))?)
                }
                Value::Number(n) => Value::from(n.as_f64().unwrap_or(0.0).trunc() as i64),
                other => return Err(format!("int of {other}")),
            },
            Builtin::Float => Value::from(match arg(0)? {
                Value::String(s) => s.trim().parse::<f64>().map_err(|_| format!("float: `{s}` is not a number"))?,
                v => num(v)?,
            }),
            Builtin::JsonParse => serde_json::from_str(string(arg(0)?)?).map_err(|e| format!("json_parse: {e}"))?,
            Builtin::ToJson => Value::String(arg(0)?.to_string()),
            Builtin::Env => {
                let name = string(arg(0)?)?;
                match (std::env::var(name), opt(1)) {
                    (Ok(v), _) => Value::String(v),
                    (Err(_), Some(d)) => d.clone(),
                    (Err(_), None) => return Err(format!("env: `{name}` is not set")),
                }
            }
            Builtin::Log => {
                let msg = arg(0)?;
                self.logs.push(msg.as_str().map(str::to_string).unwrap_or(msg.to_string()));
                Value::Object(Map::new())
            }
            Builtin::Now => {
                let now = time::OffsetDateTime::now_utc();
                Value::String(now.format(&time::format_description::well_known::Rfc3339).map_err(|e| e.to_string())?)
            }
            Builtin::Uuid => Value::String(uuid::Uuid::new_v4().to_string()),
            Builtin::IdempotencyKey => Value::String(format!("repl-{}", uuid::Uuid::new_v4())),
            Builtin::Sleep => {
                std::thread::sleep(std::time::Duration::from_millis(arg(0)?.as_u64().unwrap_or(0)));
                Value::Object(Map::new())
            }
            Builtin::Fail => {
                let msg = arg(0)?;
                return Err(format!("fail: {}", msg.as_str().map(str::to_string).unwrap_or(msg.to_string())));
            }
            Builtin::Exec => {
                let program = string(arg(0)?)?.to_string();
                let mut cmd = std::process::Command::new(&program);
                if let Some(Value::Array(xs)) = opt(1) {
                    cmd.args(xs.iter().map(|x| x.as_str().map(str::to_string).unwrap_or(x.to_string())));
                }
                if let Some(Value::Object(m)) = opt(2) {
                    for (k, v) in m {
                        cmd.env(k, v.as_str().unwrap_or_default());
                    }
                }
                if let Some(Value::String(d)) = opt(3) {
                    cmd.current_dir(d);
                }
                let stdin = opt(4).and_then(Value::as_str).map(str::to_string);
                cmd.stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() });
                cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
                let mut child = cmd.spawn().map_err(|e| format!("exec `{program}`: {e}"))?;
                if let (Some(s), Some(mut pipe)) = (stdin, child.stdin.take()) {
                    use std::io::Write;
                    let _ = pipe.write_all(s.as_bytes());
                }
                let out = child.wait_with_output().map_err(|e| format!("exec `{program}`: {e}"))?;
                let code = out.status.code().unwrap_or(-1);
                let check = opt(5).and_then(Value::as_bool).unwrap_or(true);
                if check && code != 0 {
                    return Err(format!("exec `{program}` exited with {code}"));
                }
                serde_json::json!({
                    "code": code,
                    "stdout": String::from_utf8_lossy(&out.stdout),
                    "stderr": String::from_utf8_lossy(&out.stderr),
                })
            }
            Builtin::Http(_) => {
                return Err(format!(
                    "`{}` needs the interpreter's HTTP client, which is not in this build yet",
                    func.name()
                ))
            }
        })
    }
}

fn required_missing(
    program: &Program,
    name: &str,
    f: &ir::FieldDef,
    state: &str,
    v: Option<&Value>,
    missing: &mut Vec<String>,
) {
    let present = v.is_some_and(|v| !v.is_null());
    if f.when.iter().any(|s| s == state) && !present {
        missing.push(name.to_string());
    }
    if let (Type::Block(b), Some(v)) = (&f.ty, v) {
        if let Some(def) = program.blocks.get(b) {
            for (k, sub) in &def.fields {
                required_missing(program, &format!("{name}.{k}"), sub, state, v.get(k), missing);
            }
        }
    }
}

/// Whether a JSON value has the shape of `ty` (for `as`).
fn conforms(v: &Value, ty: &Type, program: &Program) -> bool {
    match ty {
        Type::Json | Type::Never => true,
        Type::Optional(t) => v.is_null() || conforms(v, t, program),
        Type::Str | Type::Secret => v.is_string(),
        Type::Int | Type::Duration => v.is_i64() || v.is_u64(),
        Type::Float => v.is_number(),
        Type::Bool => v.is_boolean(),
        Type::List(t) => v.as_array().is_some_and(|xs| xs.iter().all(|x| conforms(x, t, program))),
        Type::Map(t) => v.as_object().is_some_and(|m| m.values().all(|x| conforms(x, t, program))),
        Type::Record(fields) => v
            .as_object()
            .is_some_and(|m| fields.iter().all(|(k, t)| conforms(m.get(k).unwrap_or(&Value::Null), t, program))),
        Type::Enum(e) => {
            v.as_str().is_some_and(|s| program.enums.get(e).is_some_and(|d| d.variants.iter().any(|x| x == s)))
        }
        Type::Block(_) | Type::Product { .. } => v.is_object(),
    }
}

// ---------------------------------------------------------------------------------------------
// The terminal front end

mod term {
    use super::*;
    use rustyline::completion::{Completer, Pair};
    use rustyline::validate::{ValidationContext, ValidationResult, Validator};
    use rustyline::{Context, Helper, Highlighter, Hinter};

    #[derive(Helper, Highlighter, Hinter)]
    pub struct OrchHelper {
        pub names: Vec<String>,
    }

    impl Completer for OrchHelper {
        type Candidate = Pair;
        fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
            let before = &line[..pos];
            let start = before
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == ':'))
                .map_or(0, |i| i + 1);
            let word = &before[start..];
            let pool: Vec<&str> = if start == 0 && word.starts_with(':') {
                COMMANDS.to_vec()
            } else {
                KEYWORDS.iter().copied().chain(self.names.iter().map(String::as_str)).collect()
            };
            let mut found: Vec<&str> = pool.into_iter().filter(|c| c.starts_with(word) && !word.is_empty()).collect();
            found.sort();
            found.dedup();
            Ok((
                start,
                found.into_iter().map(|c| Pair { display: c.to_string(), replacement: c.to_string() }).collect(),
            ))
        }
    }

    impl Validator for OrchHelper {
        fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
            Ok(if open_brackets(ctx.input()) > 0 {
                ValidationResult::Incomplete
            } else {
                ValidationResult::Valid(None)
            })
        }
    }
}

/// How many brackets are open at the end of `text` (strings and comments skipped).
pub fn open_brackets(text: &str) -> i64 {
    let mut depth = 0i64;
    let mut chars = text.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if in_str {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' | '\n' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
    }
    depth
}

/// The history file: `$XDG_STATE_HOME/orch/history`, else `~/.orch_history`.
pub fn history_path() -> Option<PathBuf> {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        return Some(PathBuf::from(state).join("orch").join("history"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".orch_history"))
}

/// Runs the interactive session; returns the exit status.
pub fn run(file: Option<&Path>, db: Option<PathBuf>) -> i32 {
    use rustyline::error::ReadlineError;
    use rustyline::history::DefaultHistory;
    use rustyline::{CompletionType, Config, Editor};
    let mut session = Session::new(std::env::current_dir().unwrap_or_default(), db);
    println!("orch repl — :help for help, :quit to leave");
    if let Some(f) = file {
        match session.handle(&format!(":load {}", f.display())) {
            Reply::Out(s) => println!("{s}"),
            Reply::Err(e) => eprintln!("{e}"),
            Reply::Quit => return 0,
        }
    }
    let config = Config::builder().completion_type(CompletionType::List).auto_add_history(false).build();
    let mut rl: Editor<term::OrchHelper, DefaultHistory> = match Editor::with_config(config) {
        Ok(rl) => rl,
        Err(e) => {
            eprintln!("orchc repl: cannot start the line editor: {e}");
            return 2;
        }
    };
    rl.set_helper(Some(term::OrchHelper { names: session.names() }));
    let history = history_path();
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    loop {
        match rl.readline("orch> ") {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = rl.add_history_entry(line.as_str());
                }
                match session.handle(&line) {
                    Reply::Out(s) if s.is_empty() => {}
                    Reply::Out(s) => println!("{s}"),
                    Reply::Err(e) => eprintln!("{}", e.trim_end()),
                    Reply::Quit => break,
                }
                if let Some(h) = rl.helper_mut() {
                    h.names = session.names();
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("orchc repl: {e}");
                break;
            }
        }
    }
    if let Some(h) = &history {
        if let Some(dir) = h.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = rl.save_history(h);
    }
    0
}
