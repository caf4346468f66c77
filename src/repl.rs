//! `orchc repl`: an interactive session over the same checker and interpreter as `check` and
//! `run`.
//!
//! The session is source text: every declaration typed (or `:load`ed) is appended to it and the
//! whole is checked like a file with `check::check_source`; a declaration with errors is shown
//! with its diagnostics and left out. `let` bindings are kept as statements: an expression is
//! checked as the last `let` of a hidden step whose body holds the session's bindings, so it is
//! typed exactly as in a step body, then evaluated by the interpreter's evaluator
//! (`run::eval`; bindings keep the value they got when they were entered, nothing runs twice).
//! `:run` starts a run with `run::start` (live progress; a suspended run continues with
//! `:resume`), and `:step` runs one step the same way, as the only call of a hidden workflow.
//! Runs go to an in-memory SQLite store unless `--db` is given.
//!
//! [`Session`] is the core and knows nothing of terminals; [`run`] puts rustyline in front of it:
//! continuation lines while brackets are open, history in `$XDG_STATE_HOME/orch/history` (or
//! `~/.orch_history`), Tab completion of commands, keywords and names in scope.

use crate::check::check_source;
use crate::diagnostics::{render_human, Code, HumanStyle, Severity, Source};
use crate::ir::{self, Builtin, Program, StepKind, Type};
use crate::run::eval::{self, Ctx, Locals};
use crate::run::progress::Progress;
use crate::run::store::{SqliteStore, Store};
use crate::run::value::{format_duration, is_subscription, Redactor};
use crate::run::RunRequest;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const EVAL_STEP: &str = "__repl_eval";
const EVAL_VALUE: &str = "__repl_value";

pub const COMMANDS: &[&str] = &[":type", ":load", ":run", ":resume", ":step", ":state", ":help", ":quit"];

/// Every keyword, for completion: the reserved words and the contextual ones.
pub fn keywords() -> impl Iterator<Item = &'static str> {
    crate::syntax::RESERVED.iter().chain(crate::syntax::CONTEXTUAL).copied()
}

use crate::syntax::DECLARATION_KEYWORDS as DECL_WORDS;

const HELP: &str = "\
Type an expression to evaluate it and see its type, `let NAME = EXPR` to bind a name, or a
declaration (type, enum, block, product, lifecycle, config, secret, step, workflow, use) to add it
to the session. Input continues on the next line while brackets are open.

  :type EXPR              the type of EXPR, without evaluating it
  :load FILE              add the declarations of FILE to the session
  :step STEP k=v ...      run one step ad hoc and print its outputs
  :run WORKFLOW k=v ...   run a workflow, with live progress
  :resume RUN k=v ...     give a suspended run the outputs of its input step
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
    /// Where the session's relative imports resolve (the directory of the last file loaded).
    dir: PathBuf,
    /// Where `:load` paths resolve: the directory the session started in.
    cwd: PathBuf,
    /// The last program that checked (declarations only), for completion and `:state`.
    program: Option<Program>,
    /// The store for `:run` (`None`: in memory).
    pub db: Option<PathBuf>,
    store: Option<Arc<dyn Store>>,
    /// Ids of the runs this session started.
    runs: Vec<String>,
    /// Draw live progress (a terminal) or print plain lines.
    pub live_progress: bool,
    rt: tokio::runtime::Runtime,
}

impl Default for Session {
    fn default() -> Self {
        Session::new(std::env::current_dir().unwrap_or_default(), None)
    }
}

impl Session {
    pub fn new(dir: PathBuf, db: Option<PathBuf>) -> Session {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the async runtime starts");
        let mut s = Session {
            decls: String::new(),
            lets: Vec::new(),
            cwd: dir.clone(),
            dir,
            program: None,
            db,
            store: None,
            runs: Vec::new(),
            live_progress: false,
            rt,
        };
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
                "type" | "t" => match self.signature(rest) {
                    Some(sig) => Reply::Out(sig),
                    None => match self.typed_expr(rest) {
                        Ok((_, ty, _)) => Reply::Out(format!("{rest} : {ty}")),
                        Err(e) => Reply::Err(e),
                    },
                },
                "load" | "l" => self.load(rest),
                "state" => Reply::Out(self.state()),
                "step" => self.step_command(rest),
                "run" => self.run_command(rest),
                "resume" => self.resume_command(rest),
                other => Reply::Err(format!("unknown command `:{other}`; the commands: {}", COMMANDS.join(" "))),
            };
        }
        let first = trimmed.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap_or("");
        let second = trimmed[first.len()..].trim_start();
        if DECL_WORDS.contains(&first) || trimmed.starts_with("///") || (first == "input" && second.starts_with("step"))
        {
            return self.declare(trimmed, "<input>");
        }
        if first == "let" {
            return self.bind(trimmed);
        }
        match self.eval_expr(trimmed) {
            Ok(t) => Reply::Out(format!("{} : {}", show(&t.value, &t.ty, self.program.as_ref()), t.ty)),
            Err(e) => Reply::Err(e),
        }
    }

    /// `:type` of a step or workflow name: its signature.
    fn signature(&self, name: &str) -> Option<String> {
        let p = self.program.as_ref()?;
        let params = |ps: &[ir::Param]| {
            ps.iter()
                .map(|p| format!("{}: {}{}", p.name, p.ty, if p.default.is_some() { " = ..." } else { "" }))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let outputs = |os: &indexmap::IndexMap<String, Type>| {
            os.iter().map(|(k, t)| format!("{k}: {t}")).collect::<Vec<_>>().join(", ")
        };
        if let Some(s) = p.steps.get(name).filter(|_| name != EVAL_STEP) {
            let kw = if matches!(s.kind, StepKind::Input { .. }) { "input step" } else { "step" };
            return Some(format!("{kw} {name}({}) -> ({})", params(&s.params), outputs(&s.outputs)));
        }
        let w = p.workflows.get(name)?;
        Some(format!("workflow {name}({}) -> ({})", params(&w.params), outputs(&w.outputs)))
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

    /// The errors among `diags`, rendered. `user` is where the text just typed sits in the checked
    /// source (offset, text): a diagnostic all of whose labels fall inside it is shown against
    /// that text alone, so it points at what was typed rather than at the hidden scaffolding.
    fn errors_of(&self, diags: &[crate::diagnostics::Diagnostic], user: Option<(usize, &str, &str)>) -> String {
        let style = HumanStyle { color: false, width: 100 };
        diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| match user {
                // Labels past the typed text (an unterminated string runs into the scaffolding
                // after it) are shown at its end.
                Some((start, text, name))
                    if d.source.as_ref().is_some_and(|s| s.name == "<repl>")
                        && !d.labels.is_empty()
                        && d.labels.iter().all(|l| l.span.start >= start) =>
                {
                    let mut local = d.clone();
                    local.source = Some(Source::new(name, text));
                    for l in &mut local.labels {
                        let from = (l.span.start - start).min(text.len());
                        let to = l.span.end.saturating_sub(start).clamp(from, text.len());
                        l.span = crate::syntax::ast::Span::new(from, to);
                    }
                    render_human(&local, style)
                }
                _ => render_human(d, style),
            })
            .collect()
    }

    /// Adds declarations to the session; `name` names `text` in diagnostics.
    fn declare(&mut self, text: &str, name: &str) -> Reply {
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
            None => {
                Reply::Err(self.errors_of(&result.diagnostics, Some((candidate.len() - text.len() - 1, text, name))))
            }
        }
    }

    fn load(&mut self, path: &str) -> Reply {
        if path.is_empty() {
            return Reply::Err("usage: :load FILE".into());
        }
        let p = self.cwd.join(path);
        let text = match std::fs::read_to_string(&p) {
            // A leading byte order mark is not part of the text.
            Ok(t) => t.strip_prefix('\u{feff}').map(str::to_string).unwrap_or(t),
            Err(e) => return Reply::Err(format!("orch::io::read: cannot read `{path}`: {e}")),
        };
        let old_dir = std::mem::replace(&mut self.dir, p.parent().map(Path::to_path_buf).unwrap_or_default());
        match self.declare(&text, path) {
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
                // Earlier bindings stay (later ones may depend on them); the new one shadows.
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
        let (program, block) = self.hidden_program(&[value_let(expr)], Some(expr.trim().trim_end_matches(';')))?;
        match block.stmts.last() {
            Some(ir::Stmt::Let { value, .. }) => {
                let (ty, value) = (value.ty.clone(), value.clone());
                Ok((program, ty, value))
            }
            _ => Err("internal: the hidden step lost its last statement".into()),
        }
    }

    /// Checks the session with a hidden step holding the bindings and `extra` statements.
    /// `user`: the text just typed, which is inside the last of `extra`.
    fn hidden_program(&self, extra: &[String], user: Option<&str>) -> Result<(Program, ir::Block), String> {
        let mut text = format!("{}\nstep {EVAL_STEP}() -> () {{\n", self.decls);
        // Where the last statement starts: the text just typed is in it.
        let mut last_start = text.len();
        // Each statement ends with `;` so that an unfinished one cannot swallow the next.
        for s in self.lets.iter().map(|l| &l.1).chain(extra) {
            text.push_str("  ");
            last_start = text.len();
            text.push_str(s.trim().trim_end_matches(';'));
            text.push_str(";\n");
        }
        text.push_str("  {}\n}\n");
        let result = check_source("<repl>", &text, &self.dir);
        let Some(program) = result.program else {
            // The typed text is the whole last statement, or the expression inside `value_let`'s.
            let last = &text[last_start..];
            let at = user.and_then(|u| {
                let inner = value_let("").find('\n').map_or(0, |n| n + 1);
                let offset = if last.starts_with(&value_let("")[..inner]) && last[inner..].starts_with(u) {
                    inner
                } else if last.starts_with(u) {
                    0
                } else {
                    return None;
                };
                Some((last_start + offset, u, "<input>"))
            });
            return Err(self.errors_of(&result.diagnostics, at));
        };
        let block = match program.steps.get(EVAL_STEP).map(|s| &s.kind) {
            Some(StepKind::Body(b)) => b.clone(),
            _ => return Err("internal: the hidden step is missing".into()),
        };
        Ok((program, block))
    }

    /// What the interpreter's evaluator needs: configs (defaults), secrets from the environment,
    /// and `log` lines printed as they come.
    fn context(&self, program: Arc<Program>) -> Result<Ctx, String> {
        let secrets: HashMap<String, String> = program
            .secrets
            .iter()
            .filter_map(|n| std::env::var(crate::run::secret_var(n)).ok().map(|v| (n.clone(), v)))
            .collect();
        let mut ctx = Ctx {
            program: program.clone(),
            configs: HashMap::new(),
            redactor: Redactor::new(secrets.values().cloned()),
            secrets,
            run: serde_json::json!({ "id": "repl", "workflow": "", "env": "" }),
            http: reqwest::Client::new(),
            // Lines come as `STEP: message`; at the prompt there is no step.
            log: Arc::new(|line: &str| println!("log: {}", line.strip_prefix(": ").unwrap_or(line))),
        };
        for (name, def) in &program.configs {
            let v = self
                .rt
                .block_on(eval::eval(&ctx, &mut Locals::default(), &def.default))
                .map_err(|e| format!("config `{name}`: {}", e.message))?;
            ctx.configs.insert(name.clone(), v);
        }
        Ok(ctx)
    }

    /// Checks and evaluates `extra` after the bindings; gives the value bound to `name`.
    fn run_hidden(&mut self, extra: &[String], name: &str) -> Result<Typed, String> {
        let user = extra
            .last()
            .map(|s| s.trim().trim_end_matches(';'))
            .filter(|s| s.starts_with("let ") && !s.starts_with("let __repl"));
        let (program, block) =
            self.hidden_program(extra, user.or_else(|| extra.last().and_then(|s| user_of_value_let(s))))?;
        let ctx = self.context(Arc::new(program))?;
        let mut locals = Locals::new(self.lets.iter().map(|(n, _, t)| (n.clone(), t.value.clone())));
        let mut found = None;
        for stmt in block.stmts.iter().skip(self.lets.len()) {
            match stmt {
                ir::Stmt::Let { name: n, value } => {
                    let v = self.rt.block_on(eval::eval(&ctx, &mut locals, value)).map_err(step_error)?;
                    if n == name {
                        found = Some(Typed { value: v.clone(), ty: value.ty.clone() });
                    }
                    locals.push(n, v);
                }
                ir::Stmt::Expr(e) => {
                    self.rt.block_on(eval::eval(&ctx, &mut locals, e)).map_err(step_error)?;
                }
            }
        }
        found.ok_or_else(|| format!("internal: `{name}` was not bound"))
    }

    fn state(&self) -> String {
        let mut out = String::new();
        if self.lets.is_empty() {
            out.push_str("no bindings\n");
        }
        for (i, (n, _, t)) in self.lets.iter().enumerate() {
            if self.lets[i + 1..].iter().any(|(m, _, _)| m == n) {
                continue; // shadowed
            }
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
        if let Some(store) = &self.store {
            let _ = store.each_run(&mut |r| {
                if self.runs.contains(&r.id) {
                    let shown =
                        r.workflow.strip_prefix("__repl_step_").map_or(r.workflow.clone(), |s| format!(":step {s}"));
                    out.push_str(&format!("run {} {} {}\n", r.id, shown, r.status));
                }
                true
            });
        }
        out.push_str(&format!(
            "store: {}\n",
            self.db.as_ref().map_or("in memory".to_string(), |p| p.display().to_string())
        ));
        out
    }

    /// `:step STEP k=v ...`: runs one step through the interpreter, as the only call of a hidden
    /// workflow (so retries, timeouts, polling and the store behave as in a run), and prints its
    /// outputs.
    fn step_command(&mut self, rest: &str) -> Reply {
        let mut words = rest.split_whitespace();
        let Some(name) = words.next() else {
            return Reply::Err("usage: :step STEP k=v ...".into());
        };
        let Some(step) = self.program.as_ref().and_then(|p| p.steps.get(name)).filter(|_| name != EVAL_STEP).cloned()
        else {
            return Reply::Err(format!("no step `{name}`; the steps: {}", self.step_names().join(", ")));
        };
        let inputs: Vec<(String, String)> = match words.map(crate::run::split_assignment).collect() {
            Ok(v) => v,
            Err(e) => return Reply::Err(e.to_string()),
        };
        if let Some((k, _)) = inputs.iter().find(|(k, _)| !step.params.iter().any(|p| &p.name == k)) {
            return Reply::Err(format!("step `{name}` has no parameter `{k}`"));
        }
        // The hidden workflow takes the given parameters and those without a default.
        let params: Vec<String> = step
            .params
            .iter()
            .filter(|p| inputs.iter().any(|(k, _)| k == &p.name) || p.default.is_none())
            .map(|p| format!("{}: {}", p.name, p.ty))
            .collect();
        let outputs: Vec<String> = step.outputs.iter().map(|(k, t)| format!("{k}: {t}")).collect();
        let wf = format!("__repl_step_{}", name.replace('.', "_"));
        let text = format!(
            "{}\nworkflow {wf}({}) -> ({}) {{\n  {name}\n}}\n",
            self.decls,
            params.join(", "),
            outputs.join(", ")
        );
        let result = check_source("<repl>", &text, &self.dir);
        let Some(program) = result.program else {
            return Reply::Err(self.errors_of(&result.diagnostics, None));
        };
        self.start_run(program, &wf, inputs)
    }

    fn step_names(&self) -> Vec<String> {
        self.program.as_ref().map_or(vec![], |p| p.steps.keys().filter(|k| *k != EVAL_STEP).cloned().collect())
    }

    /// `:run WORKFLOW k=v ...`: a run through the interpreter, with live progress, in the
    /// session's store.
    fn run_command(&mut self, rest: &str) -> Reply {
        let mut words = rest.split_whitespace();
        let Some(name) = words.next() else {
            return Reply::Err("usage: :run WORKFLOW k=v ...".into());
        };
        let inputs: Vec<(String, String)> = match words.map(crate::run::split_assignment).collect() {
            Ok(v) => v,
            Err(e) => return Reply::Err(e.to_string()),
        };
        let Some(program) = self.program.clone() else {
            return Reply::Err("the session does not check".into());
        };
        if !program.workflows.contains_key(name) {
            let names: Vec<&str> = program.workflows.keys().map(String::as_str).collect();
            return Reply::Err(format!("no workflow `{name}`; the workflows: {}", names.join(", ")));
        }
        self.start_run(program, name, inputs)
    }

    /// `:resume RUN k=v ...`
    fn resume_command(&mut self, rest: &str) -> Reply {
        let mut words = rest.split_whitespace();
        let Some(id) = words.next() else {
            return Reply::Err("usage: :resume RUN k=v ...".into());
        };
        let inputs: Vec<(String, String)> = match words.map(crate::run::split_assignment).collect() {
            Ok(v) => v,
            Err(e) => return Reply::Err(e.to_string()),
        };
        let store = match self.store() {
            Ok(s) => s,
            Err(e) => return Reply::Err(e),
        };
        let run = match store.run(id) {
            Ok(Some(r)) => r,
            Ok(None) => return Reply::Err(format!("there is no run `{id}`")),
            Err(e) => return Reply::Err(e.to_string()),
        };
        let program: Program = match crate::run::store::from_json(&run.program) {
            Ok(p) => p,
            Err(e) => return Reply::Err(format!("run {id}: its program cannot be read: {e}")),
        };
        let progress = Arc::new(Progress::new(self.live_progress, false));
        let outcome = self.rt.block_on(crate::run::resume(store, id, &inputs, &[], progress));
        self.report(outcome, &program, &run.workflow)
    }

    fn start_run(&mut self, program: Program, workflow: &str, inputs: Vec<(String, String)>) -> Reply {
        let store = match self.store() {
            Ok(s) => s,
            Err(e) => return Reply::Err(e),
        };
        let req = RunRequest {
            program: program.clone(),
            workflow: workflow.to_string(),
            inputs,
            inputs_json: None,
            env: None,
            configs: vec![],
            secrets: vec![],
        };
        let progress = Arc::new(Progress::new(self.live_progress, false));
        let outcome = self.rt.block_on(crate::run::start(store, req, progress));
        self.report(outcome, &program, workflow)
    }

    /// How a run stands: its outputs with their types, the input it waits for, or its error.
    fn report(
        &mut self,
        outcome: Result<crate::run::RunOutcome, crate::run::error::RunError>,
        program: &Program,
        workflow: &str,
    ) -> Reply {
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => return Reply::Err(format!("error[{}]: {e}", e.code())),
        };
        let outputs = program.workflows.get(workflow).map(|w| w.outputs.clone()).unwrap_or_default();
        if !self.runs.contains(&outcome.run_id) {
            self.runs.push(outcome.run_id.clone());
        }
        let mut out = format!("run {} {}", outcome.run_id, outcome.status);
        match outcome.status.as_str() {
            "completed" => {
                for (k, ty) in &outputs {
                    let v = outcome.outputs.as_ref().and_then(|o| o.get(k)).cloned().unwrap_or(Value::Null);
                    out.push_str(&format!("\n{k} = {} : {ty}", show(&v, ty, Some(program))));
                }
                Reply::Out(out)
            }
            "suspended" => {
                if let Some((step, prompt)) = &outcome.waiting {
                    out.push_str(&format!("\nwaiting for input step `{step}`"));
                    if let Some(p) = prompt {
                        out.push_str(&format!(": {p}"));
                    }
                    out.push_str(&format!("\ncontinue it with :resume {} KEY=VALUE ...", outcome.run_id));
                }
                Reply::Out(out)
            }
            _ => {
                if let Some(e) = &outcome.error {
                    let code = e.get("code").and_then(Value::as_str).unwrap_or("orch::run");
                    let message = e.get("message").and_then(Value::as_str).unwrap_or("");
                    out.push_str(&format!("\nerror[{code}]: {message}"));
                }
                Reply::Err(out)
            }
        }
    }

    /// The session's store, opened on first use: in memory unless `--db` was given.
    fn store(&mut self) -> Result<Arc<dyn Store>, String> {
        if self.store.is_none() {
            let s = match &self.db {
                Some(p) => SqliteStore::open(p),
                None => SqliteStore::in_memory(),
            }
            .map_err(|e| format!("cannot open the store: {e}"))?;
            self.store = Some(Arc::new(s));
        }
        Ok(self.store.clone().expect("just opened"))
    }
}

/// The hidden statement that gives an expression typed at the prompt its value; the expression
/// is on its own lines, so diagnostics show it as typed.
fn value_let(expr: &str) -> String {
    format!("let {EVAL_VALUE} = (\n{}\n)", expr.trim().trim_end_matches(';'))
}

/// The expression inside a statement made by [`value_let`].
fn user_of_value_let(stmt: &str) -> Option<&str> {
    stmt.strip_prefix(&format!("let {EVAL_VALUE} = (\n"))?.strip_suffix("\n)")
}

fn step_error(e: crate::run::error::StepError) -> String {
    match e.code {
        Some(code) => format!("error[{}]: {}", code.as_str(), e.message),
        None => format!("error: {}", e.message),
    }
}

// ---------------------------------------------------------------------------------------------
// Values

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
        Type::Duration => v.as_u64().map(format_duration).unwrap_or_else(|| v.to_string()),
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
        Type::Product { .. } if is_subscription(v) => {
            let name = v["product"].as_str().unwrap_or("?");
            let def = program.and_then(|p| p.products.get(name));
            let fields = record_text(
                &v["fields"],
                |k| def.and_then(|d| d.fields.get(k)).map(|f| f.ty.clone()).unwrap_or(Type::Json),
                program,
            );
            format!(
                "{name}@{} {{ id: {}, customer: {}, fields: {fields} }}",
                v["state"].as_str().unwrap_or("?"),
                quote(v["id"].as_str().unwrap_or("")),
                quote(v["customer"].as_str().unwrap_or(""))
            )
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
            let key = |k: &str| {
                let word = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if word {
                    k.to_string()
                } else {
                    quote(k)
                }
            };
            let parts: Vec<String> =
                m.iter().map(|(k, x)| format!("{}: {}", key(k), show(x, &ty_of(k), program))).collect();
            format!("{{ {} }}", parts.join(", "))
        }
        None => v.to_string(),
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
            let (start, found) = completions(line, pos, &self.names);
            Ok((start, found.into_iter().map(|c| Pair { display: c.clone(), replacement: c }).collect()))
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

/// What Tab offers at byte `pos` of `line`: where the word being completed starts, and the
/// commands (for a word starting with `:` at the start of the line), or the keywords and `names`
/// that start with it.
pub fn completions(line: &str, pos: usize, names: &[String]) -> (usize, Vec<String>) {
    let before = &line[..pos];
    let start = before
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '.' || *c == ':'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let word = &before[start..];
    if word.is_empty() {
        return (start, vec![]);
    }
    let pool: Vec<&str> = if start == 0 && word.starts_with(':') {
        COMMANDS.to_vec()
    } else {
        let mut pool: Vec<&str> = keywords().collect();
        pool.extend(names.iter().map(String::as_str));
        pool
    };
    let mut found: Vec<String> = pool.into_iter().filter(|c| c.starts_with(word)).map(str::to_string).collect();
    found.sort();
    found.dedup();
    (start, found)
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
    session.live_progress = is_terminal::IsTerminal::is_terminal(&std::io::stderr());
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
            // A line that is not UTF-8 is skipped; the session goes on.
            Err(ReadlineError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                eprintln!("error[{}]: the line is not UTF-8 text; it was skipped", Code::IoRead);
            }
            Err(e) => {
                eprintln!("error[{}]: cannot read the next line: {e}", Code::IoRead);
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
