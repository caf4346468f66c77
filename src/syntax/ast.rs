//! The syntax tree of one `.orch` file, with byte spans into its source.
//!
//! Only `src/syntax/` builds it (from pest pairs); the checker reads it and lowers it to `crate::ir`.
//! The formatter prints it back. Everything derives `Serialize` so tests can compare two trees
//! with spans removed (see `strip_spans`).

use serde::{Deserialize, Serialize};

/// A byte range `start..end` in the file's source text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
    pub fn len(self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// `a` or `module.a`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Path {
    pub segments: Vec<Ident>,
    pub span: Span,
}

impl Path {
    pub fn last(&self) -> &Ident {
        self.segments.last().expect("a path has at least one segment")
    }
    pub fn dotted(&self) -> String {
        self.segments.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(".")
    }
}

/// A whole file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Module {
    pub items: Vec<Item>,
    /// Every `//` and `///` comment in source order, for the formatter.
    pub comments: Vec<Comment>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comment {
    pub span: Span,
    /// The text after `//` (or `///`), without the line break.
    pub text: String,
    pub doc: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Item {
    /// The `///` lines right before the item, joined with `\n`, without the slashes.
    pub doc: Option<String>,
    pub kind: ItemKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum ItemKind {
    Use(UseDecl),
    Config(ConfigDecl),
    Secret(SecretDecl),
    Type(TypeDecl),
    Enum(EnumDecl),
    Lifecycle(LifecycleDecl),
    Block(BlockDecl),
    Product(ProductDecl),
    // Boxed: steps and workflows are several times the size of the other items, and a program of
    // 100,000 lines holds thousands of items.
    Step(Box<StepDecl>),
    Workflow(Box<WorkflowDecl>),
    Environment(EnvironmentDecl),
}

impl ItemKind {
    /// The declared name, if the item declares one (`use` declares its alias or module name).
    pub fn name(&self) -> Option<&Ident> {
        match self {
            ItemKind::Use(u) => Some(match &u.target {
                UseTarget::Std { name } => name,
                UseTarget::File { alias, .. } => alias,
            }),
            ItemKind::Config(d) => Some(&d.name),
            ItemKind::Secret(d) => Some(&d.name),
            ItemKind::Type(d) => Some(&d.name),
            ItemKind::Enum(d) => Some(&d.name),
            ItemKind::Lifecycle(d) => Some(&d.name),
            ItemKind::Block(d) => Some(&d.name),
            ItemKind::Product(d) => Some(&d.name),
            ItemKind::Step(d) => Some(&d.name),
            ItemKind::Workflow(d) => Some(&d.name),
            ItemKind::Environment(d) => Some(&d.name),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UseDecl {
    pub target: UseTarget,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum UseTarget {
    /// `use std.NAME`
    Std { name: Ident },
    /// `use "rel/path.orch" as NAME`; `path` is the string's value, `path_span` covers the literal.
    File { path: String, path_span: Span, alias: Ident },
}

/// `config NAME: TYPE = EXPR`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConfigDecl {
    pub name: Ident,
    pub ty: TypeExpr,
    pub value: Expr,
}

/// `secret NAME`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SecretDecl {
    pub name: Ident,
}

/// `type NAME = TYPE`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TypeDecl {
    pub name: Ident,
    pub ty: TypeExpr,
}

/// `enum NAME { a, b, c }`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EnumDecl {
    pub name: Ident,
    pub variants: Vec<Ident>,
}

/// `lifecycle NAME { s1 -> s2 -> s3; s2 -> s4 }`: each chain is one `a -> b -> c` run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LifecycleDecl {
    pub name: Ident,
    pub chains: Vec<Vec<Ident>>,
}

/// `block NAME { field: TYPE [when s1 | s2], ... }`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BlockDecl {
    pub name: Ident,
    pub fields: Vec<FieldDecl>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldDecl {
    pub name: Ident,
    pub ty: TypeExpr,
    /// The states listed after `when`; empty when there is no `when`.
    pub when: Vec<Ident>,
    pub span: Span,
}

/// `product NAME lifecycle L { fixed f: T = LIT; field: TYPE ... }`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProductDecl {
    pub name: Ident,
    pub lifecycle: Path,
    pub members: Vec<ProductMember>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum ProductMember {
    Fixed { name: Ident, ty: TypeExpr, value: Expr, span: Span },
    Field(FieldDecl),
}

/// `environment NAME { config_name = EXPR, ... }`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EnvironmentDecl {
    pub name: Ident,
    pub overrides: Vec<(Ident, Expr)>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TypeExpr {
    pub kind: TypeKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum TypeKind {
    /// `Str`, `Node`, `mod.Node`, or `Node@active` (`state` set).
    Named { path: Path, state: Option<Ident> },
    /// `[T]`
    List(Box<TypeExpr>),
    /// `[K: V]`; the checker requires `K` to be `Str`.
    Map(Box<TypeExpr>, Box<TypeExpr>),
    /// `{ a: T, b: U? }`
    Record(Vec<RecordTypeField>),
    /// `T?`
    Optional(Box<TypeExpr>),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordTypeField {
    pub name: Ident,
    pub ty: TypeExpr,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Param {
    pub name: Ident,
    pub ty: TypeExpr,
    /// Boxed, like the clauses of a step: most parameters have none.
    pub default: Option<Box<Expr>>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Output {
    pub name: Ident,
    pub ty: TypeExpr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepDecl {
    /// `input step ...`: no body; suspends the run until its outputs are given.
    pub input: bool,
    pub name: Ident,
    pub params: Vec<Param>,
    pub outputs: Vec<Output>,
    /// Span of the `-> (...)` output list, for diagnostics about outputs as a whole.
    pub outputs_span: Span,
    // The clauses are boxed: most steps have none, and inline they made a step over 1 KB.
    pub retry: Option<Box<RetryClause>>,
    pub timeout: Option<Box<Clause<Expr>>>,
    pub poll: Option<Box<PollClause>>,
    pub compensate: Option<Clause<Path>>,
    /// The prompt string of an input step.
    pub prompt: Option<Box<Expr>>,
    /// `None` for input steps.
    pub body: Option<Block>,
}

/// A clause with the span of the whole clause (keyword included), for labels.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Clause<T> {
    pub value: T,
    pub span: Span,
}

/// `retry N [backoff MIN..MAX] [factor F]`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RetryClause {
    pub attempts: Expr,
    pub backoff: Option<(Expr, Expr)>,
    pub factor: Option<Expr>,
    pub span: Span,
}

/// `poll every D until EXPR [within D2]`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PollClause {
    pub every: Expr,
    pub until: Expr,
    pub within: Option<Expr>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkflowDecl {
    pub name: Ident,
    pub params: Vec<Param>,
    pub outputs: Vec<Output>,
    pub outputs_span: Span,
    pub body: Flow,
    /// Span of the `{ ... }` around the flow.
    pub body_span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Flow {
    pub kind: FlowKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum FlowKind {
    Call(FlowCall),
    /// `a >> b >> c` (two or more parts).
    Seq(Vec<Flow>),
    /// `a & b & c` (two or more parts).
    Par(Vec<Flow>),
    /// `graph { a, b after a }`
    Graph(Vec<GraphItem>),
    If {
        cond: Expr,
        then: Box<Flow>,
        otherwise: Option<Box<Flow>>,
    },
    For {
        var: Ident,
        iter: Expr,
        limit: Option<Expr>,
        body: Box<Flow>,
    },
    /// `( F )`: kept so the formatter can print what was written.
    Group(Box<Flow>),
}

/// `s`, `s(p: EXPR, ...)`, `s as (k: out, ...)`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowCall {
    pub target: Path,
    /// Explicitly bound parameters, `p: EXPR`.
    pub args: Vec<(Ident, Expr)>,
    /// `as (key: output, ...)`: output `.1` is written under state key `.0`.
    pub renames: Vec<(Ident, Ident)>,
    pub span: Span,
}

/// `call [after a | after (a, b)]`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GraphItem {
    pub call: FlowCall,
    pub after: Vec<Ident>,
    pub span: Span,
}

/// A step body or an `if`/`for` branch: `let` statements and expressions, then a final expression.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    /// The final expression; `None` only when the block is empty `{ }`.
    pub result: Option<Box<Expr>>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Stmt {
    Let { name: Ident, ty: Option<TypeExpr>, value: Expr, span: Span },
    Expr(Expr),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    /// A string literal; parts alternate between text and `${expr}` interpolations.
    Str(Vec<StrPart>),
    /// A duration literal, in milliseconds.
    Duration(u64),
    Bool(bool),
    None,
    Name(Ident),
    /// `{ a: 1, b }`: `value` is `None` for the shorthand `b`.
    Record(Vec<RecordField>),
    List(Vec<Expr>),
    Field(Box<Expr>, Ident),
    Index(Box<Expr>, Box<Expr>),
    Call {
        callee: Box<Expr>,
        args: Vec<Arg>,
    },
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    If {
        cond: Box<Expr>,
        then: Block,
        otherwise: Option<Else>,
    },
    /// `for x in xs [if cond] { e }`
    For {
        var: Ident,
        iter: Box<Expr>,
        filter: Option<Box<Expr>>,
        body: Block,
    },
    /// `e with { a: 1, node.ims_id: 2 }`
    With {
        base: Box<Expr>,
        updates: Vec<(Vec<Ident>, Expr)>,
    },
    As(Box<Expr>, TypeExpr),
    /// `( e )`: kept for the formatter.
    Paren(Box<Expr>),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Else {
    Block(Block),
    /// `else if ...`
    If(Box<Expr>),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum StrPart {
    Text(String),
    Interp(Expr),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordField {
    pub name: Ident,
    pub value: Option<Expr>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnaryOp {
    Not,
    Neg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinaryOp {
    Mul,
    Div,
    Rem,
    Add,
    Sub,
    Coalesce,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Coalesce => "??",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
        }
    }
    /// Binding strength, higher binds tighter (brief §5).
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => 6,
            BinaryOp::Add | BinaryOp::Sub => 5,
            BinaryOp::Coalesce => 4,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => 3,
            BinaryOp::And => 2,
            BinaryOp::Or => 1,
        }
    }
}

/// A tree as JSON with every `span`/`path_span` removed: two files that differ only in layout give
/// equal values.
pub fn strip_spans(module: &Module) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.retain(|k, _| k != "span" && k != "path_span" && k != "outputs_span" && k != "body_span");
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(xs) => xs.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(&module.items).expect("the AST serializes");
    strip(&mut v);
    v
}
