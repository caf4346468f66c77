//! The checked program: names resolved, types known, flows as data.
//!
//! The checker (`crate::check`) builds it from the AST; the interpreter (`crate::run`) executes it
//! and never looks at syntax. It is serializable because every run stores the program it started
//! with, and it keeps source locations (`Loc`) so runtime errors can point at the source.
//!
//! Names of items from imported modules are qualified with the module's alias path as written at
//! the first import (`lifecycles.Standard`); items of the root file are unqualified.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod types;
pub use types::Type;

/// A location in one of the program's source files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loc {
    /// Index into `Program::files`.
    pub file: u32,
    pub start: u32,
    pub end: u32,
    /// 1-based.
    pub line: u32,
    /// 1-based, in characters.
    pub column: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceFile {
    /// As the user named it (relative to the current directory), or `std/NAME.orch`.
    pub name: String,
    pub text: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Program {
    pub files: Vec<SourceFile>,
    pub enums: IndexMap<String, EnumDef>,
    pub lifecycles: IndexMap<String, LifecycleDef>,
    pub blocks: IndexMap<String, BlockDef>,
    pub products: IndexMap<String, ProductDef>,
    pub configs: IndexMap<String, ConfigDef>,
    /// Secret names, as declared (lower case); read from `ORCH_SECRET_<UPPER>` or `--secret`.
    pub secrets: Vec<String>,
    pub environments: IndexMap<String, EnvironmentDef>,
    pub steps: IndexMap<String, StepDef>,
    pub workflows: IndexMap<String, WorkflowDef>,
}

impl Program {
    /// A stable hash of the program, stored with each run.
    pub fn hash(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("the program serializes");
        let digest = Sha256::digest(&bytes);
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnumDef {
    pub name: String,
    pub variants: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LifecycleDef {
    pub name: String,
    /// In order of first appearance; `states[0]` is the initial state.
    pub states: Vec<String>,
    /// Allowed transitions `(from, to)`.
    pub edges: Vec<(String, String)>,
}

impl LifecycleDef {
    pub fn initial(&self) -> &str {
        &self.states[0]
    }
    pub fn allows(&self, from: &str, to: &str) -> bool {
        self.edges.iter().any(|(a, b)| a == from && b == to)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockDef {
    pub name: String,
    pub fields: IndexMap<String, FieldDef>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldDef {
    /// The declared type; a field with `when` states is optional outside them.
    pub ty: Type,
    /// States in which the field is required; empty means "always as declared".
    pub when: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProductDef {
    pub name: String,
    pub lifecycle: String,
    /// `fixed` inputs with their literal values.
    pub fixed: IndexMap<String, (Type, Expr)>,
    pub fields: IndexMap<String, FieldDef>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigDef {
    pub name: String,
    pub ty: Type,
    pub default: Expr,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentDef {
    pub name: String,
    pub overrides: IndexMap<String, Expr>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Param {
    pub name: String,
    pub ty: Type,
    /// Boxed: most parameters have none, and an expression is large inline.
    pub default: Option<Box<Expr>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepDef {
    pub name: String,
    pub params: Vec<Param>,
    pub outputs: IndexMap<String, Type>,
    pub kind: StepKind,
    pub retry: RetryPolicy,
    /// Limit of one attempt, in milliseconds.
    pub timeout_ms: Option<u64>,
    pub poll: Option<PollPolicy>,
    /// Name of the step that compensates this one.
    pub compensate: Option<String>,
    pub loc: Loc,
}

impl StepDef {
    /// The secrets the step reads: in its body or prompt, its parameters' defaults, its `poll`
    /// condition.
    pub fn secrets(&self) -> std::collections::BTreeSet<String> {
        let mut found = std::collections::BTreeSet::new();
        let mut note = |e: &Expr| {
            if let ExprKind::Secret(name) = &e.kind {
                found.insert(name.clone());
            }
        };
        match &self.kind {
            StepKind::Body(block) => block.each(&mut note),
            StepKind::Input { prompt } => prompt.iter().for_each(|p| p.each(&mut note)),
        }
        self.params.iter().filter_map(|p| p.default.as_ref()).for_each(|d| d.each(&mut note));
        if let Some(poll) = &self.poll {
            poll.until.each(&mut note);
        }
        found
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StepKind {
    /// A step with a body; the block's result is a record of the outputs.
    Body(Block),
    /// An input step: suspends the run until its outputs are given. The prompt is an
    /// interpolated string over the parameters.
    Input { prompt: Option<Expr> },
}

/// `retry N backoff MIN..MAX factor F`, with the brief's defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 without `retry`).
    pub attempts: u32,
    pub min_ms: u64,
    pub max_ms: u64,
    pub factor: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 1, min_ms: 1_000, max_ms: 60_000, factor: 2.0 }
    }
}

impl RetryPolicy {
    /// The wait before attempt `k + 1` (k is 1-based: the wait after the first attempt is
    /// `delay_after(1)`): `min(MAX, MIN * F^(k-1))`.
    pub fn delay_after(&self, k: u32) -> u64 {
        let d = self.min_ms as f64 * self.factor.powi(k.saturating_sub(1) as i32);
        if d.is_finite() {
            (d as u64).min(self.max_ms)
        } else {
            self.max_ms
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PollPolicy {
    pub every_ms: u64,
    /// A `Bool` expression over the parameters and the outputs of the last run of the body.
    pub until: Expr,
    pub within_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowDef {
    pub name: String,
    pub params: Vec<Param>,
    pub outputs: IndexMap<String, Type>,
    pub flow: Flow,
    pub loc: Loc,
}

/// Every node carries an `id`, unique within its workflow and stable for a given program: the
/// interpreter persists results under it (prefixed by the ids of enclosing workflow calls and
/// `for` iterations), so a resumed run can match a stored result to its place in the flow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Flow {
    Call(Call),
    Seq {
        id: String,
        items: Vec<Flow>,
    },
    Par {
        id: String,
        branches: Vec<Flow>,
    },
    /// Nodes with edges `(before, after)` as indexes into `nodes`, computed from data needs and
    /// `after` clauses; acyclic (checked). A node may start when every node before it is done;
    /// it reads the state as it is then (a key that existed before the graph and that another
    /// node overwrites is read before that node runs: the edge goes from reader to writer).
    Graph {
        id: String,
        nodes: Vec<Call>,
        edges: Vec<(usize, usize)>,
    },
    If {
        id: String,
        cond: Expr,
        then: Box<Flow>,
        otherwise: Option<Box<Flow>>,
    },
    /// Runs `body` once per element of `iter`, at most `limit` at a time, with `var` a state key
    /// inside. Each key in `collects` written by the body becomes a list, in element order.
    For {
        id: String,
        var: String,
        iter: Expr,
        limit: u32,
        body: Box<Flow>,
        collects: Vec<String>,
    },
}

impl Flow {
    pub fn id(&self) -> &str {
        match self {
            Flow::Call(c) => &c.id,
            Flow::Seq { id, .. }
            | Flow::Par { id, .. }
            | Flow::Graph { id, .. }
            | Flow::If { id, .. }
            | Flow::For { id, .. } => id,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub id: String,
    pub target: CallTarget,
    /// Every parameter of the target, in declaration order, with where its value comes from.
    pub args: Vec<(String, ArgSource)>,
    /// `(state key, output name)`: where each output of the target is written.
    pub writes: Vec<(String, String)>,
    pub loc: Loc,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CallTarget {
    Step(String),
    Workflow(String),
}

impl CallTarget {
    pub fn name(&self) -> &str {
        match self {
            CallTarget::Step(n) | CallTarget::Workflow(n) => n,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ArgSource {
    /// The state key of this name.
    Key(String),
    /// An explicit `p: EXPR` evaluated over the state (boxed: most arguments are keys).
    Expr(Box<Expr>),
    /// The parameter's default (from `Param::default`), because the state has no such key.
    Default,
    /// The state key, which is optional at this point; the default applies when it is absent.
    KeyOrDefault(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub result: Box<Expr>,
}

impl Block {
    /// Calls `f` on every expression of the block, each before the expressions inside it.
    pub fn each<'a>(&'a self, f: &mut impl FnMut(&'a Expr)) {
        for stmt in &self.stmts {
            match stmt {
                Stmt::Let { value: e, .. } | Stmt::Expr(e) => e.each(f),
            }
        }
        self.result.each(f);
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Stmt {
    Let { name: String, value: Expr },
    Expr(Expr),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Expr {
    pub kind: ExprKind,
    pub ty: Type,
    pub loc: Loc,
}

impl Expr {
    /// The names it reads (`Local`): parameters, state keys, and names bound inside it.
    pub fn names(&self) -> std::collections::HashSet<&str> {
        let mut names = std::collections::HashSet::new();
        self.each(&mut |x| {
            if let ExprKind::Local(name) = &x.kind {
                names.insert(name.as_str());
            }
        });
        names
    }

    /// Calls `f` on this expression and every expression inside it, each before those inside it.
    pub fn each<'a>(&'a self, f: &mut impl FnMut(&'a Expr)) {
        f(self);
        match &self.kind {
            ExprKind::Lit(_)
            | ExprKind::Local(_)
            | ExprKind::Config(_)
            | ExprKind::Secret(_)
            | ExprKind::Run
            | ExprKind::EnumValue { .. } => {}
            ExprKind::Interp(parts) => parts.iter().for_each(|p| {
                if let InterpPart::Expr(x) = p {
                    x.each(f)
                }
            }),
            ExprKind::Record(fields) => fields.iter().for_each(|(_, x)| x.each(f)),
            ExprKind::List(xs) => xs.iter().for_each(|x| x.each(f)),
            ExprKind::Field(x, _) | ExprKind::Unary(_, x) | ExprKind::As(x, _) => x.each(f),
            ExprKind::Index(a, b) | ExprKind::Binary(_, a, b) => {
                a.each(f);
                b.each(f)
            }
            ExprKind::If { cond, then, otherwise } => {
                cond.each(f);
                then.each(f);
                otherwise.iter().for_each(|o| o.each(f));
            }
            ExprKind::For { iter, filter, body, .. } => {
                iter.each(f);
                filter.iter().for_each(|x| x.each(f));
                body.each(f);
            }
            ExprKind::With { base, updates } => {
                base.each(f);
                updates.iter().for_each(|(_, x)| x.each(f))
            }
            ExprKind::NewSubscription { customer, fields, .. } => {
                customer.each(f);
                fields.iter().for_each(|(_, x)| x.each(f))
            }
            ExprKind::Transition { sub, .. } => sub.each(f),
            ExprKind::Builtin { args, .. } => args.iter().flatten().for_each(|x| x.each(f)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Literal {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Milliseconds.
    Duration(u64),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ExprKind {
    Lit(Literal),
    /// A string with `${}` parts; each part's value is converted to text as `str(x)` does.
    Interp(Vec<InterpPart>),
    /// A `let` binding, a step or workflow parameter, a `for` variable, or (in flow expressions) a
    /// state key.
    Local(String),
    Config(String),
    Secret(String),
    /// The record `{ id, workflow, env }` of the current run.
    Run,
    EnumValue {
        enum_name: String,
        variant: String,
    },
    Record(Vec<(String, Expr)>),
    List(Vec<Expr>),
    /// Field of a record, block, map-as-record, `Json` (gives `Json`, `none` when absent) or
    /// subscription (`id`, `customer`, `state`, fixed inputs, fields).
    Field(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Unary(crate::syntax::ast::UnaryOp, Box<Expr>),
    /// `and`, `or` and `??` evaluate their right side only when needed.
    Binary(crate::syntax::ast::BinaryOp, Box<Expr>, Box<Expr>),
    If {
        cond: Box<Expr>,
        then: Block,
        otherwise: Option<Block>,
    },
    For {
        var: String,
        iter: Box<Expr>,
        filter: Option<Box<Expr>>,
        body: Block,
    },
    /// Sets fields along dotted paths; on a subscription the paths go into its fields.
    With {
        base: Box<Expr>,
        updates: Vec<(Vec<String>, Expr)>,
    },
    /// `Json` to `ty`, checked at run time (`orch::run::conversion`).
    As(Box<Expr>, Type),
    /// `P.new(customer: c, ...)`: a new subscription in the lifecycle's initial state.
    NewSubscription {
        product: String,
        customer: Box<Expr>,
        fields: Vec<(String, Expr)>,
    },
    /// `transition(sub, state)`: checks at run time that every field required in `state` is set
    /// (`orch::run::lifecycle_fields`).
    Transition {
        sub: Box<Expr>,
        state: String,
    },
    /// A built-in function. `args` follows the built-in's parameter list (`Builtin::params`):
    /// one entry per parameter, `None` where the call did not give it.
    Builtin {
        func: Builtin,
        args: Vec<Option<Expr>>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum InterpPart {
    Text(String),
    Expr(Expr),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Builtin {
    Http(HttpMethod),
    Exec,
    Sleep,
    Now,
    Uuid,
    Log,
    Fail,
    IdempotencyKey,
    Len,
    Upper,
    Lower,
    Trim,
    Split,
    Join,
    Replace,
    Contains,
    StartsWith,
    EndsWith,
    Range,
    Keys,
    Str,
    Int,
    Float,
    JsonParse,
    ToJson,
    Env,
}

impl Builtin {
    /// Parameter names in order; a call's arguments are matched to these by position, then by name.
    pub fn params(self) -> &'static [&'static str] {
        match self {
            Builtin::Http(_) => &["url", "json", "headers", "timeout"],
            Builtin::Exec => &["program", "args", "env", "cwd", "stdin", "check"],
            Builtin::Sleep => &["duration"],
            Builtin::Now | Builtin::Uuid | Builtin::IdempotencyKey => &[],
            Builtin::Log => &["msg"],
            Builtin::Fail => &["msg", "retryable"],
            Builtin::Len => &["x"],
            Builtin::Upper | Builtin::Lower | Builtin::Trim => &["s"],
            Builtin::Split => &["s", "sep"],
            Builtin::Join => &["xs", "sep"],
            Builtin::Replace => &["s", "from", "to"],
            Builtin::Contains => &["haystack", "x"],
            Builtin::StartsWith | Builtin::EndsWith => &["s", "p"],
            Builtin::Range => &["a", "b"],
            Builtin::Keys => &["map"],
            Builtin::Str | Builtin::Int | Builtin::Float => &["x"],
            Builtin::JsonParse => &["s"],
            Builtin::ToJson => &["x"],
            Builtin::Env => &["name", "default"],
        }
    }

    /// Effectful built-ins may be called only inside step bodies (`orch::type::effect`).
    pub fn is_effectful(self) -> bool {
        matches!(
            self,
            Builtin::Http(_)
                | Builtin::Exec
                | Builtin::Sleep
                | Builtin::Now
                | Builtin::Uuid
                | Builtin::Log
                | Builtin::Fail
                | Builtin::IdempotencyKey
        )
    }

    /// The name as written in source (`http.post`, `starts_with`).
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Http(HttpMethod::Get) => "http.get",
            Builtin::Http(HttpMethod::Post) => "http.post",
            Builtin::Http(HttpMethod::Put) => "http.put",
            Builtin::Http(HttpMethod::Patch) => "http.patch",
            Builtin::Http(HttpMethod::Delete) => "http.delete",
            Builtin::Exec => "exec",
            Builtin::Sleep => "sleep",
            Builtin::Now => "now",
            Builtin::Uuid => "uuid",
            Builtin::Log => "log",
            Builtin::Fail => "fail",
            Builtin::IdempotencyKey => "idempotency_key",
            Builtin::Len => "len",
            Builtin::Upper => "upper",
            Builtin::Lower => "lower",
            Builtin::Trim => "trim",
            Builtin::Split => "split",
            Builtin::Join => "join",
            Builtin::Replace => "replace",
            Builtin::Contains => "contains",
            Builtin::StartsWith => "starts_with",
            Builtin::EndsWith => "ends_with",
            Builtin::Range => "range",
            Builtin::Keys => "keys",
            Builtin::Str => "str",
            Builtin::Int => "int",
            Builtin::Float => "float",
            Builtin::JsonParse => "json_parse",
            Builtin::ToJson => "to_json",
            Builtin::Env => "env",
        }
    }

    pub const ALL: &'static [Builtin] = &[
        Builtin::Http(HttpMethod::Get),
        Builtin::Http(HttpMethod::Post),
        Builtin::Http(HttpMethod::Put),
        Builtin::Http(HttpMethod::Patch),
        Builtin::Http(HttpMethod::Delete),
        Builtin::Exec,
        Builtin::Sleep,
        Builtin::Now,
        Builtin::Uuid,
        Builtin::Log,
        Builtin::Fail,
        Builtin::IdempotencyKey,
        Builtin::Len,
        Builtin::Upper,
        Builtin::Lower,
        Builtin::Trim,
        Builtin::Split,
        Builtin::Join,
        Builtin::Replace,
        Builtin::Contains,
        Builtin::StartsWith,
        Builtin::EndsWith,
        Builtin::Range,
        Builtin::Keys,
        Builtin::Str,
        Builtin::Int,
        Builtin::Float,
        Builtin::JsonParse,
        Builtin::ToJson,
        Builtin::Env,
    ];

    pub fn from_name(name: &str) -> Option<Builtin> {
        Builtin::ALL.iter().copied().find(|b| b.name() == name)
    }
}

#[cfg(test)]
mod tests {
    /// The waits between attempts of a step declared with `clauses`, as the checker builds its
    /// policy: `min(MAX, MIN * F^(k-1))` after attempt k (section 6).
    fn waits(clauses: &str) -> (u32, Vec<u64>) {
        let src = format!(
            "step s() -> (ok: Bool)\n  {clauses}\n{{\n  {{ ok: true }}\n}}\nworkflow w() -> (ok: Bool) {{\n  s\n}}\n"
        );
        let checked = crate::check::check_source("backoff.orch", &src, std::path::Path::new("."));
        let program = checked.program.unwrap_or_else(|| panic!("{clauses}: {:?}", checked.diagnostics));
        let retry = &program.steps["s"].retry;
        (retry.attempts, (1..retry.attempts).map(|k| retry.delay_after(k)).collect())
    }

    #[test]
    fn retries_wait_by_the_backoff_formula_of_section_6() {
        // Defaults: MIN = 1s, MAX = 60s, F = 2.0, no jitter.
        assert_eq!(waits("retry 9"), (9, vec![1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]));
        assert_eq!(waits("retry 4 backoff 200ms..5s"), (4, vec![200, 400, 800]));
        // The factor, and the cap reached before the growth would pass it.
        assert_eq!(waits("retry 4 backoff 200ms..500ms factor 3"), (4, vec![200, 500, 500]));
        assert_eq!(waits("retry 4 backoff 100ms..1s factor 1.5"), (4, vec![100, 150, 225]));
        assert_eq!(waits("retry 3 backoff 2s..2s factor 1"), (3, vec![2_000, 2_000]));
        // One attempt without `retry`: no wait at all.
        assert_eq!(waits(""), (1, vec![]));
        // From the 53rd attempt on, 1,000,000^(k-1) is more than a float holds: still MAX.
        let (attempts, long) = waits("retry 200 backoff 1s..1m factor 1000000");
        assert_eq!((attempts, long[0], long.len()), (200, 1_000, 199));
        assert!(long[1..].iter().all(|&w| w == 60_000), "{long:?}");
    }
}
