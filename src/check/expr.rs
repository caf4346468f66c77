//! Expressions: their types (brief §5), the effect and secret rules, and lowering to `ir::Expr`.

use super::error::{CheckError, ModId};
use super::load::ItemTag;
use super::Checker;
use crate::diagnostics::Code;
use crate::ir::{self, Builtin, ExprKind as K, Literal, Type};
use crate::syntax::ast::{self, BinaryOp, ExprKind, Span, UnaryOp};
use indexmap::IndexMap;

/// The names visible to an expression, innermost last.
pub struct Scope {
    frames: Vec<Vec<(String, Type)>>,
    /// Effectful built-ins are allowed (step bodies only).
    pub effects: bool,
    /// Where the expression is, for `orch::type::effect` ("a workflow's flow").
    pub place: &'static str,
    /// Every local name read, in order, when `track_reads` is set (flows use it to know which
    /// state keys an expression reads; step bodies do not need it).
    pub reads: Vec<(String, Span)>,
    pub track_reads: bool,
}

impl Scope {
    pub fn new(effects: bool, place: &'static str) -> Scope {
        Scope { frames: vec![], effects, place, reads: vec![], track_reads: !effects }
    }
    pub fn constant() -> Scope {
        Scope::new(false, "a constant value")
    }
    pub fn push_all(&mut self, names: Vec<(String, Type)>) {
        self.frames.push(names);
    }
    pub fn pop_frame(&mut self) {
        self.frames.pop();
    }
    fn bind(&mut self, name: String, ty: Type) {
        if self.frames.is_empty() {
            self.frames.push(vec![]);
        }
        self.frames.last_mut().expect("a frame").push((name, ty));
    }
    fn get(&self, name: &str) -> Option<&Type> {
        self.frames.iter().rev().flat_map(|f| f.iter().rev()).find(|(n, _)| n == name).map(|(_, t)| t)
    }
    pub fn names(&self) -> Vec<String> {
        self.frames.iter().flatten().map(|(n, _)| n.clone()).collect()
    }
}

fn response_type() -> Type {
    Type::Record(IndexMap::from([
        ("status".to_string(), Type::Int),
        ("headers".to_string(), Type::Map(Box::new(Type::Str))),
        ("body".to_string(), Type::Str),
        ("json".to_string(), Type::Json),
    ]))
}

fn exec_result_type() -> Type {
    Type::Record(IndexMap::from([
        ("code".to_string(), Type::Int),
        ("stdout".to_string(), Type::Str),
        ("stderr".to_string(), Type::Str),
    ]))
}

fn str_map() -> Type {
    Type::Map(Box::new(Type::Str))
}

/// Whether a built-in's parameter may receive a secret (brief §5).
fn secret_ok(func: Builtin, param: &str) -> bool {
    match func {
        Builtin::Http(_) => matches!(param, "headers" | "json"),
        Builtin::Exec => matches!(param, "env" | "args" | "stdin"),
        _ => false,
    }
}

/// A type with every `Secret` read as `Str`: where secrets are allowed, they are checked as text.
fn declassify(t: &Type) -> Type {
    match t {
        Type::Secret => Type::Str,
        Type::List(x) => Type::List(Box::new(declassify(x))),
        Type::Map(x) => Type::Map(Box::new(declassify(x))),
        Type::Optional(x) => Type::Optional(Box::new(declassify(x))),
        Type::Record(fs) => Type::Record(fs.iter().map(|(k, v)| (k.clone(), declassify(v))).collect()),
        t => t.clone(),
    }
}

impl Checker {
    fn lower(&self, m: ModId, span: Span, kind: K, ty: Type) -> ir::Expr {
        ir::Expr { kind, ty, loc: self.loc(m, span) }
    }

    fn poison(&self, m: ModId, span: Span) -> ir::Expr {
        self.lower(m, span, K::Lit(Literal::None), Type::Never)
    }

    /// Reports `orch::secret::leak` or `orch::type::mismatch` when `v` does not fit `expected`.
    /// Returns whether it fits.
    pub fn expect(&mut self, m: ModId, v: &ir::Expr, span: Span, expected: &Type, decl: Option<Span>) -> bool {
        if v.ty.contains_secret() && !expected.contains_secret() {
            let e = self.leak_error(m, v, span, format!("a secret cannot be used as `{expected}` here"));
            self.err(e);
            return false;
        }
        if self.fits(&v.ty, expected) {
            return true;
        }
        let mut e = CheckError::new(
            Code::TypeMismatch,
            Self::at(m, span),
            format!("expected `{expected}`, found `{}`", v.ty),
            format!("this is `{}`", v.ty),
        );
        if let Some(d) = decl {
            e = e.label(Self::at(m, d), format!("`{expected}` is expected because of this"));
        }
        if let Type::Optional(inner) = &v.ty {
            if self.fits(inner, expected) {
                e = e.help(format!("the value may be `none`; give a default with `?? ...` to get a `{inner}`"));
            }
        }
        self.err(e);
        false
    }

    /// `let` statements and expression statements, in a new frame the caller pops.
    pub fn block_stmts(&mut self, m: ModId, scope: &mut Scope, stmts: &[ast::Stmt]) -> Vec<ir::Stmt> {
        scope.push_all(vec![]);
        let mut out = vec![];
        for s in stmts {
            match s {
                ast::Stmt::Let { name, ty, value, .. } => {
                    let declared = ty.as_ref().map(|t| (self.resolve_type(m, t), t.span));
                    let v = self.expr(m, scope, value, declared.as_ref().map(|d| &d.0));
                    let t = match declared {
                        Some((t, span)) => {
                            self.expect(m, &v, value.span, &t, Some(span));
                            t
                        }
                        None => v.ty.clone(),
                    };
                    scope.bind(name.name.clone(), t);
                    out.push(ir::Stmt::Let { name: name.name.clone(), value: v });
                }
                ast::Stmt::Expr(e) => {
                    let v = self.expr(m, scope, e, None);
                    out.push(ir::Stmt::Expr(v));
                }
            }
        }
        out
    }

    fn block(&mut self, m: ModId, scope: &mut Scope, b: &ast::Block, expected: Option<&Type>) -> ir::Block {
        let stmts = self.block_stmts(m, scope, &b.stmts);
        let result = match &b.result {
            Some(r) => self.expr(m, scope, r, expected),
            None => self.lower(m, b.span, K::Record(vec![]), Type::unit()),
        };
        scope.pop_frame();
        ir::Block { stmts, result: Box::new(result) }
    }

    /// Checks and lowers an expression. `expected` guides bare enum values, `none`, `[]` and record
    /// literals; the caller checks the result against it with `expect`.
    pub fn expr(&mut self, m: ModId, scope: &mut Scope, e: &ast::Expr, expected: Option<&Type>) -> ir::Expr {
        let span = e.span;
        match &e.kind {
            ExprKind::Int(i) => self.lower(m, span, K::Lit(Literal::Int(*i)), Type::Int),
            ExprKind::Float(f) => self.lower(m, span, K::Lit(Literal::Float(*f)), Type::Float),
            ExprKind::Duration(d) => self.lower(m, span, K::Lit(Literal::Duration(*d)), Type::Duration),
            ExprKind::Bool(b) => self.lower(m, span, K::Lit(Literal::Bool(*b)), Type::Bool),
            ExprKind::None => {
                let ty = match expected {
                    Some(t @ Type::Optional(_)) => t.clone(),
                    Some(Type::Json) => Type::Json,
                    _ => Type::Optional(Box::new(Type::Never)),
                };
                self.lower(m, span, K::Lit(Literal::None), ty)
            }
            ExprKind::Str(parts) => {
                if parts.iter().all(|p| matches!(p, ast::StrPart::Text(_))) {
                    let text: String = parts
                        .iter()
                        .map(|p| match p {
                            ast::StrPart::Text(t) => t.as_str(),
                            ast::StrPart::Interp(_) => "",
                        })
                        .collect();
                    return self.lower(m, span, K::Lit(Literal::Str(text)), Type::Str);
                }
                let mut out = vec![];
                let mut secret = false;
                for p in parts {
                    match p {
                        ast::StrPart::Text(t) => out.push(ir::InterpPart::Text(t.clone())),
                        ast::StrPart::Interp(x) => {
                            let v = self.expr(m, scope, x, None);
                            secret |= v.ty.contains_secret();
                            out.push(ir::InterpPart::Expr(v));
                        }
                    }
                }
                // A string built by interpolating a secret is a secret.
                let ty = if secret { Type::Secret } else { Type::Str };
                self.lower(m, span, K::Interp(out), ty)
            }
            ExprKind::Name(id) => self.name(m, scope, id, expected),
            ExprKind::Paren(inner) => self.expr(m, scope, inner, expected),
            ExprKind::Record(fields) => {
                let mut out = vec![];
                let mut types = IndexMap::new();
                // Field types the context expects, to guide bare enum values and nested literals.
                let (hint_fields, hint_all): (Option<IndexMap<String, Type>>, Option<Type>) =
                    match expected.map(Type::unwrap_optional) {
                        Some(Type::Record(fs)) => (Some(fs.clone()), None),
                        Some(Type::Map(v)) => (None, Some((**v).clone())),
                        Some(Type::Block(b)) => match self.block_view(b, None) {
                            Type::Record(fs) => (Some(fs), None),
                            _ => (None, None),
                        },
                        _ => (None, None),
                    };
                let hint = |name: &str| -> Option<Type> {
                    hint_fields.as_ref().and_then(|fs| fs.get(name).cloned()).or_else(|| hint_all.clone())
                };
                for f in fields {
                    let want = hint(&f.name.name);
                    let v = match &f.value {
                        Some(v) => self.expr(m, scope, v, want.as_ref()),
                        None => self.name(m, scope, &f.name, want.as_ref()),
                    };
                    if types.insert(f.name.name.clone(), v.ty.clone()).is_some() {
                        self.err(CheckError::new(
                            Code::NameDuplicate,
                            Self::at(m, f.name.span),
                            format!("field `{}` is given twice", f.name.name),
                            "given again here",
                        ));
                    }
                    out.push((f.name.name.clone(), v));
                }
                if let Some(want_fields) = hint_fields.as_ref().filter(|_| self.literal_checked_by_caller != Some(span))
                {
                    if self.record_literal_fields(m, span, fields, &types, want_fields, expected) {
                        // Reported as missing or unknown fields; the literal stands for the type the
                        // context wants, so the caller does not add a mismatch on top.
                        let ty = expected.map(Type::unwrap_optional).cloned().unwrap_or(Type::Never);
                        return self.lower(m, span, K::Record(out), ty);
                    }
                }
                self.lower(m, span, K::Record(out), Type::Record(types))
            }
            ExprKind::List(items) => {
                let elem_hint = match expected.map(Type::unwrap_optional) {
                    Some(Type::List(t)) => Some((**t).clone()),
                    _ => None,
                };
                let mut out = vec![];
                let mut elem: Option<Type> = None;
                for it in items {
                    let v = self.expr(m, scope, it, elem_hint.as_ref());
                    elem = match elem {
                        None => Some(v.ty.clone()),
                        Some(t) => match self.join(&t, &v.ty) {
                            Some(j) => Some(j),
                            None => {
                                self.err(CheckError::new(
                                    Code::TypeMismatch,
                                    Self::at(m, it.span),
                                    format!("list elements must have one type: `{t}`, then `{}`", v.ty),
                                    format!("this is `{}`", v.ty),
                                ));
                                Some(t)
                            }
                        },
                    };
                    out.push(v);
                }
                let elem = elem.or(elem_hint).unwrap_or(Type::Never);
                self.lower(m, span, K::List(out), Type::List(Box::new(elem)))
            }
            ExprKind::Field(base, field) => self.field(m, scope, e, base, field, expected),
            ExprKind::Index(base, index) => {
                let b = self.expr(m, scope, base, None);
                let (want, out) = match b.ty.unwrap_optional() {
                    _ if b.ty.is_optional() => {
                        self.err(
                            CheckError::new(
                                Code::TypeMismatch,
                                Self::at(m, base.span),
                                format!("cannot index `{}`: it may be `none`", b.ty),
                                "may be `none`",
                            )
                            .help("give a default with `??` first"),
                        );
                        (None, Type::Never)
                    }
                    Type::List(t) => (Some(Type::Int), (**t).clone()),
                    Type::Map(t) => (Some(Type::Str), (**t).clone()),
                    Type::Json => (None, Type::Json),
                    Type::Never => (None, Type::Never),
                    other => {
                        self.err(CheckError::new(
                            Code::TypeMismatch,
                            Self::at(m, base.span),
                            format!("cannot index `{other}`; only lists, maps and `Json` can be indexed"),
                            format!("this is `{other}`"),
                        ));
                        (None, Type::Never)
                    }
                };
                let i = self.expr(m, scope, index, want.as_ref());
                match want {
                    Some(w) => {
                        self.expect(m, &i, index.span, &w, None);
                    }
                    None if b.ty == Type::Json && !matches!(i.ty, Type::Int | Type::Str | Type::Never) => {
                        self.err(CheckError::new(
                            Code::TypeMismatch,
                            Self::at(m, index.span),
                            format!("a `Json` value is indexed by `Int` or `Str`, not `{}`", i.ty),
                            "bad index",
                        ));
                    }
                    None => {}
                }
                self.lower(m, span, K::Index(Box::new(b), Box::new(i)), out)
            }
            ExprKind::Call { callee, args } => self.call(m, scope, e, callee, args),
            ExprKind::Unary(op, x) => {
                let v = self.expr(m, scope, x, None);
                let ty = match (op, &v.ty) {
                    (_, Type::Never) => Type::Never,
                    (UnaryOp::Not, Type::Bool) => Type::Bool,
                    (UnaryOp::Neg, t @ (Type::Int | Type::Float | Type::Duration)) => t.clone(),
                    (op, t) => {
                        let want = if *op == UnaryOp::Not { "`Bool`" } else { "a number" };
                        self.err(CheckError::new(
                            Code::TypeMismatch,
                            Self::at(m, x.span),
                            format!("expected {want}, found `{t}`"),
                            format!("this is `{t}`"),
                        ));
                        Type::Never
                    }
                };
                self.lower(m, span, K::Unary(*op, Box::new(v)), ty)
            }
            ExprKind::Binary(op, a, b) => self.binary(m, scope, span, *op, a, b, expected),
            ExprKind::If { cond, then, otherwise } => {
                let c = self.expr(m, scope, cond, Some(&Type::Bool));
                self.expect(m, &c, cond.span, &Type::Bool, None);
                let t = self.block(m, scope, then, expected);
                let (o, ty) = match otherwise {
                    None => {
                        let ty =
                            if t.result.ty == Type::unit() { Type::unit() } else { t.result.ty.clone().optional() };
                        (None, ty)
                    }
                    Some(els) => {
                        let ob = match els {
                            ast::Else::Block(b) => self.block(m, scope, b, expected),
                            ast::Else::If(x) => {
                                let v = self.expr(m, scope, x, expected);
                                ir::Block { stmts: vec![], result: Box::new(v) }
                            }
                        };
                        let ty = match self.join(&t.result.ty, &ob.result.ty) {
                            Some(j) => j,
                            None => {
                                let els_span = match els {
                                    ast::Else::Block(b) => b.result.as_ref().map_or(b.span, |r| r.span),
                                    ast::Else::If(x) => x.span,
                                };
                                self.err(
                                    CheckError::new(
                                        Code::TypeMismatch,
                                        Self::at(m, els_span),
                                        format!(
                                            "the branches of `if` differ: `{}` and `{}`",
                                            t.result.ty, ob.result.ty
                                        ),
                                        format!("this is `{}`", ob.result.ty),
                                    )
                                    .label(
                                        Self::at(m, then.result.as_ref().map_or(then.span, |r| r.span)),
                                        format!("this is `{}`", t.result.ty),
                                    ),
                                );
                                Type::Never
                            }
                        };
                        (Some(ob), ty)
                    }
                };
                self.lower(m, span, K::If { cond: Box::new(c), then: t, otherwise: o }, ty)
            }
            ExprKind::For { var, iter, filter, body } => {
                let it = self.expr(m, scope, iter, None);
                let elem = match it.ty.clone() {
                    Type::List(t) => *t,
                    Type::Json | Type::Never => it.ty.clone(),
                    other => {
                        self.err(CheckError::new(
                            Code::TypeMismatch,
                            Self::at(m, iter.span),
                            format!("`for` goes over a list, not `{other}`"),
                            format!("this is `{other}`"),
                        ));
                        Type::Never
                    }
                };
                scope.push_all(vec![(var.name.clone(), elem)]);
                let f = filter.as_ref().map(|c| {
                    let v = self.expr(m, scope, c, Some(&Type::Bool));
                    self.expect(m, &v, c.span, &Type::Bool, None);
                    Box::new(v)
                });
                let want_elem = match expected.map(Type::unwrap_optional) {
                    Some(Type::List(t)) => Some((**t).clone()),
                    _ => None,
                };
                let b = self.block(m, scope, body, want_elem.as_ref());
                scope.pop_frame();
                let ty = Type::List(Box::new(b.result.ty.clone()));
                self.lower(m, span, K::For { var: var.name.clone(), iter: Box::new(it), filter: f, body: b }, ty)
            }
            ExprKind::With { base, updates } => {
                let b = self.expr(m, scope, base, None);
                let mut out = vec![];
                for (path, value) in updates {
                    let target = self.path_type(m, &b.ty, path);
                    let v = self.expr(m, scope, value, target.as_ref().map(|(_, declared)| declared));
                    if let Some((_, declared)) = &target {
                        self.expect(m, &v, value.span, declared, None);
                    }
                    out.push((path.iter().map(|p| p.name.clone()).collect(), v));
                }
                let ty = b.ty.clone();
                self.lower(m, span, K::With { base: Box::new(b), updates: out }, ty)
            }
            ExprKind::As(x, t) => {
                let v = self.expr(m, scope, x, None);
                let target = self.resolve_type(m, t);
                if v.ty.contains_secret() {
                    let err = self.leak_error(m, &v, x.span, "a secret cannot be converted with `as`".into());
                    self.err(err);
                } else if !matches!(v.ty, Type::Json | Type::Never) && !self.fits(&v.ty, &target) {
                    self.err(
                        CheckError::new(
                            Code::TypeMismatch,
                            Self::at(m, x.span),
                            format!("`as` converts a `Json` value; this is `{}`", v.ty),
                            format!("this is `{}`", v.ty),
                        )
                        .help("use `str`, `int` or `float` to convert between scalar types"),
                    );
                }
                self.lower(m, span, K::As(Box::new(v), target.clone()), target)
            }
        }
    }

    /// A bare name: a local (or state key), a config, a secret, `run`, or an enum value where an
    /// enum is expected.
    fn name(&mut self, m: ModId, scope: &mut Scope, id: &ast::Ident, expected: Option<&Type>) -> ir::Expr {
        let span = id.span;
        if let Some(t) = scope.get(&id.name) {
            let t = t.clone();
            if scope.track_reads {
                scope.reads.push((id.name.clone(), span));
            }
            return self.lower(m, span, K::Local(id.name.clone()), t);
        }
        if let Some(Type::Enum(en)) = expected.map(Type::unwrap_optional) {
            if self.enums.get(en).is_some_and(|d| d.variants.contains(&id.name)) {
                let kind = K::EnumValue { enum_name: en.clone(), variant: id.name.clone() };
                return self.lower(m, span, kind, Type::Enum(en.clone()));
            }
        }
        if let Some(found) = self.lookup(m, &[id.name.as_str()]) {
            if let Some(v) = self.item_value(m, span, &found) {
                return v;
            }
        }
        if id.name == "run" {
            let ty = Type::Record(IndexMap::from([
                ("id".to_string(), Type::Str),
                ("workflow".to_string(), Type::Str),
                ("env".to_string(), Type::Str),
            ]));
            return self.lower(m, span, K::Run, ty);
        }
        let mut e = CheckError::new(
            Code::NameUnknown,
            Self::at(m, span),
            format!("unknown name `{}`", id.name),
            "not defined here",
        );
        if let Some(Type::Enum(en)) = expected.map(Type::unwrap_optional) {
            if let Some(d) = self.enums.get(en) {
                e = e.help(format!("`{en}` has the values: {}", d.variants.join(", ")));
            }
        } else if let Some(found) = self.lookup(m, &[id.name.as_str()]) {
            e = CheckError::new(
                Code::NameUnknown,
                Self::at(m, span),
                format!("`{}` is {}, not a value", id.name, found.tag.describe()),
                "not a value",
            );
        } else {
            let mut candidates = scope.names();
            candidates.extend(self.modules[m].items.keys().cloned());
            if let Some(c) = candidates.iter().find(|c| super::edit_distance(c, &id.name) <= 2) {
                e = e.help(format!("did you mean `{c}`?"));
            } else if scope.place == "a workflow's flow" {
                e = e.help("in a flow, expressions read state keys: workflow parameters and outputs of earlier steps");
            }
        }
        self.err(e);
        self.poison(m, span)
    }

    /// A config or secret as a value.
    fn item_value(&self, m: ModId, span: Span, found: &super::Found) -> Option<ir::Expr> {
        match found.tag {
            ItemTag::Config => {
                let ty = self.configs.get(&found.qname).map(|c| c.ty.clone()).unwrap_or(Type::Never);
                Some(self.lower(m, span, K::Config(found.qname.clone()), ty))
            }
            ItemTag::Secret => Some(self.lower(m, span, K::Secret(found.qname.clone()), Type::Secret)),
            _ => None,
        }
    }

    /// `e.f`: an item of an imported module, an enum value, or a field of a value.
    fn field(
        &mut self,
        m: ModId,
        scope: &mut Scope,
        whole: &ast::Expr,
        base: &ast::Expr,
        field: &ast::Ident,
        expected: Option<&Type>,
    ) -> ir::Expr {
        let span = whole.span;
        if let Some(path) = item_path(base) {
            if scope.get(path[0]).is_none() {
                // `module.config`, `Enum.value`, `module.Enum.value`
                if path.len() == 1 && self.modules[m].imports.contains_key(path[0]) {
                    if let Some(found) = self.lookup(m, &[path[0], field.name.as_str()]) {
                        if let Some(v) = self.item_value(m, span, &found) {
                            return v;
                        }
                        self.err(CheckError::new(
                            Code::NameUnknown,
                            Self::at(m, span),
                            format!("`{}.{}` is {}, not a value", path[0], field.name, found.tag.describe()),
                            "not a value",
                        ));
                    } else {
                        self.err(CheckError::new(
                            Code::NameUnknown,
                            Self::at(m, field.span),
                            format!("module `{}` has no `{}`", path[0], field.name),
                            "not in that module",
                        ));
                    }
                    return self.poison(m, span);
                }
                if let Some(found) = self.lookup(m, &path) {
                    if found.tag == ItemTag::Enum {
                        let variants = self.enums.get(&found.qname).map(|d| d.variants.clone()).unwrap_or_default();
                        if !variants.contains(&field.name) {
                            self.err(
                                CheckError::new(
                                    Code::TypeUnknownField,
                                    Self::at(m, field.span),
                                    format!("enum `{}` has no value `{}`", found.qname, field.name),
                                    "no such value",
                                )
                                .help(format!("the values are: {}", variants.join(", "))),
                            );
                            return self.poison(m, span);
                        }
                        let kind = K::EnumValue { enum_name: found.qname.clone(), variant: field.name.clone() };
                        return self.lower(m, span, kind, Type::Enum(found.qname));
                    }
                }
            }
        }
        let _ = expected;
        let b = self.expr(m, scope, base, None);
        let ty = self.field_type(m, &b.ty, field, base.span);
        self.lower(m, span, K::Field(Box::new(b), field.name.clone()), ty)
    }

    /// The type of field `f` of a value of type `t` (reporting unknown fields).
    fn field_type(&mut self, m: ModId, t: &Type, f: &ast::Ident, base_span: Span) -> Type {
        let unknown = |this: &mut Checker, what: String, known: Vec<String>| {
            let mut e = CheckError::new(
                Code::TypeUnknownField,
                Self::at(m, f.span),
                format!("{what} has no field `{}`", f.name),
                "unknown field",
            );
            if !known.is_empty() {
                e = e.help(format!("its fields are: {}", known.join(", ")));
            }
            this.err(e);
            Type::Never
        };
        match t {
            Type::Never => Type::Never,
            Type::Json => Type::Json,
            Type::Optional(_) => {
                self.err(
                    CheckError::new(
                        Code::TypeMismatch,
                        Self::at(m, base_span),
                        format!("cannot read `.{}` of `{t}`: it may be `none`", f.name),
                        "may be `none`",
                    )
                    .help("give a default with `??` first"),
                );
                Type::Never
            }
            Type::Record(fs) => match fs.get(&f.name) {
                Some(ft) => ft.clone(),
                None => unknown(self, format!("`{t}`"), fs.keys().cloned().collect()),
            },
            Type::Map(v) => (**v).clone(),
            Type::Block(b) => match self.block_view(b, None) {
                Type::Record(fs) => match fs.get(&f.name) {
                    Some(ft) => ft.clone(),
                    None => unknown(self, format!("block `{b}`"), fs.keys().cloned().collect()),
                },
                _ => Type::Never,
            },
            Type::Product { name, state } => {
                if matches!(f.name.as_str(), "id" | "customer" | "state") {
                    return Type::Str;
                }
                let Some(p) = self.products.get(name) else { return Type::Never };
                if let Some((ft, _)) = p.fixed.get(&f.name) {
                    return ft.clone();
                }
                match p.fields.get(&f.name) {
                    Some(fd) => {
                        let ft = Self::field_in_state(&fd.ty, &fd.when, state.as_deref());
                        // A block field is seen through the product's state.
                        match ft {
                            Type::Block(b) => self.block_view(&b, state.as_deref()),
                            Type::Optional(inner) => match *inner {
                                Type::Block(b) => self.block_view(&b, state.as_deref()).optional(),
                                other => other.optional(),
                            },
                            other => other,
                        }
                    }
                    None => {
                        let mut known: Vec<String> = vec!["id".into(), "customer".into(), "state".into()];
                        known.extend(p.fixed.keys().cloned());
                        known.extend(p.fields.keys().cloned());
                        unknown(self, format!("product `{name}`"), known)
                    }
                }
            }
            other => unknown(self, format!("`{other}`"), vec![]),
        }
    }

    /// The type at a dotted path inside a value, for `with` updates.
    /// The type a `with` path reaches (as it reads), and the type a new value there must have: the
    /// field's declared type, so a `T?` field takes `none` and a `when` field takes a `T`.
    fn path_type(&mut self, m: ModId, base: &Type, path: &[ast::Ident]) -> Option<(Type, Type)> {
        let mut t = base.clone();
        let mut declared = None;
        for (i, seg) in path.iter().enumerate() {
            // Inner optional blocks are updated in place, as the brief's `node.ims_id` does.
            let cur = if i == 0 { t.clone() } else { t.unwrap_optional().clone() };
            let cur = match cur {
                Type::Product { name, .. } => Type::Product { name, state: None },
                other => other,
            };
            if let Type::Product { name, .. } = &cur {
                if matches!(seg.name.as_str(), "id" | "customer" | "state")
                    || self.products.get(name).is_some_and(|p| p.fixed.contains_key(&seg.name))
                {
                    self.err(CheckError::new(
                        Code::TypeMismatch,
                        Self::at(m, seg.span),
                        format!("`{}` of a subscription cannot be changed with `with`", seg.name),
                        "read-only",
                    ));
                    return None;
                }
            }
            let next = match &cur {
                Type::Record(_) | Type::Block(_) | Type::Product { .. } | Type::Json | Type::Never => {
                    self.field_type(m, &cur, seg, seg.span)
                }
                other => {
                    self.err(CheckError::new(
                        Code::TypeMismatch,
                        Self::at(m, seg.span),
                        format!("`with` updates records, blocks and subscriptions, not `{other}`"),
                        "cannot update this",
                    ));
                    return None;
                }
            };
            if next == Type::Never {
                return None;
            }
            declared = match &cur {
                Type::Block(b) => self.blocks.get(b).and_then(|d| d.fields.get(&seg.name)).map(|f| f.ty.clone()),
                Type::Product { name, .. } => {
                    self.products.get(name).and_then(|d| d.fields.get(&seg.name)).map(|f| f.ty.clone())
                }
                _ => None,
            };
            t = next;
        }
        let declared = declared.unwrap_or_else(|| t.clone());
        Some((t, declared))
    }

    #[allow(clippy::too_many_arguments)]
    fn binary(
        &mut self,
        m: ModId,
        scope: &mut Scope,
        span: Span,
        op: BinaryOp,
        a: &ast::Expr,
        b: &ast::Expr,
        expected: Option<&Type>,
    ) -> ir::Expr {
        let l = self.expr(m, scope, a, None);
        let r_hint = match op {
            BinaryOp::Coalesce => Some(l.ty.unwrap_optional().clone()),
            BinaryOp::Eq | BinaryOp::Ne => Some(l.ty.clone()),
            _ => expected.cloned(),
        };
        let r = self.expr(m, scope, b, r_hint.as_ref());
        let (lt, rt) = (l.ty.clone(), r.ty.clone());
        let mismatch = |this: &mut Checker, msg: String| {
            this.err(CheckError::new(
                Code::TypeMismatch,
                Self::at(m, span),
                msg,
                format!("`{lt}` {} `{rt}`", op.symbol()),
            ));
            Type::Never
        };
        let ty = if lt == Type::Never || rt == Type::Never {
            match op {
                BinaryOp::Eq
                | BinaryOp::Ne
                | BinaryOp::Lt
                | BinaryOp::Le
                | BinaryOp::Gt
                | BinaryOp::Ge
                | BinaryOp::And
                | BinaryOp::Or => Type::Bool,
                BinaryOp::Coalesce => {
                    if lt == Type::Never {
                        rt.clone()
                    } else {
                        lt.unwrap_optional().clone()
                    }
                }
                _ => {
                    if lt == Type::Never {
                        rt.clone()
                    } else {
                        lt.clone()
                    }
                }
            }
        } else {
            match op {
                BinaryOp::Add if (lt == Type::Str || lt == Type::Secret) && (rt == Type::Str || rt == Type::Secret) => {
                    if lt == Type::Secret || rt == Type::Secret {
                        Type::Secret
                    } else {
                        Type::Str
                    }
                }
                BinaryOp::Add if matches!((&lt, &rt), (Type::List(_), Type::List(_))) => match self.join(&lt, &rt) {
                    Some(j) => j,
                    None => mismatch(self, format!("cannot join `{lt}` and `{rt}`")),
                },
                BinaryOp::Add | BinaryOp::Sub if lt == Type::Duration && rt == Type::Duration => Type::Duration,
                BinaryOp::Mul | BinaryOp::Div if lt == Type::Duration && rt == Type::Int => Type::Duration,
                BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => match (&lt, &rt) {
                    (Type::Int, Type::Int) => Type::Int,
                    (Type::Int | Type::Float, Type::Int | Type::Float) => Type::Float,
                    _ => mismatch(self, format!("`{}` does not apply to `{lt}` and `{rt}`", op.symbol())),
                },
                BinaryOp::Coalesce => {
                    if !lt.is_optional() && lt != Type::Json {
                        mismatch(self, format!("`??` needs an optional value on its left; `{lt}` is never `none`"))
                    } else if lt == Type::Json {
                        Type::Json
                    } else {
                        let inner = lt.unwrap_optional().clone();
                        match self.join(&inner, &rt) {
                            Some(j) => j,
                            None => mismatch(self, format!("the default `{rt}` does not fit `{inner}`")),
                        }
                    }
                }
                BinaryOp::Eq | BinaryOp::Ne => {
                    if self.join(&lt, &rt).is_none() {
                        mismatch(self, format!("cannot compare `{lt}` with `{rt}`"));
                    }
                    Type::Bool
                }
                BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                    let ok = matches!(
                        (&lt, &rt),
                        (Type::Int | Type::Float, Type::Int | Type::Float)
                            | (Type::Str, Type::Str)
                            | (Type::Duration, Type::Duration)
                    );
                    if !ok {
                        mismatch(self, format!("cannot order `{lt}` and `{rt}`"));
                    }
                    Type::Bool
                }
                BinaryOp::And | BinaryOp::Or => {
                    if lt != Type::Bool || rt != Type::Bool {
                        mismatch(self, format!("`{}` needs `Bool` on both sides", op.symbol()));
                    }
                    Type::Bool
                }
            }
        };
        // Only `+` may build a secret (a header value, say); comparing or measuring one leaks it.
        if op != BinaryOp::Add && (lt.contains_secret() || rt.contains_secret()) {
            let (v, s) = if lt.contains_secret() { (&l, a.span) } else { (&r, b.span) };
            let e = self.leak_error(m, v, s, format!("a secret cannot be used with `{}`", op.symbol()));
            self.err(e);
        }
        self.lower(m, span, K::Binary(op, Box::new(l), Box::new(r)), ty)
    }

    fn call(
        &mut self,
        m: ModId,
        scope: &mut Scope,
        whole: &ast::Expr,
        callee: &ast::Expr,
        args: &[ast::Arg],
    ) -> ir::Expr {
        let span = whole.span;
        let path = item_path(callee);
        let local = path.as_ref().is_some_and(|p| scope.get(p[0]).is_some());
        if let (Some(path), false) = (path, local) {
            // `P.new(...)` / `module.P.new(...)`
            if path.len() >= 2 && *path.last().expect("non-empty") == "new" {
                if let Some(found) = self.lookup(m, &path[..path.len() - 1]) {
                    if found.tag == ItemTag::Product {
                        return self.new_subscription(m, scope, span, &found.qname, args);
                    }
                }
            }
            if path == ["transition"] {
                return self.transition(m, scope, span, args);
            }
            let name = path.join(".");
            // A module imported as `http` may shadow a built-in of the same name only for its items.
            let shadowed = path.len() == 2 && self.lookup(m, &path).is_some();
            if let (Some(func), false) = (Builtin::from_name(&name), shadowed) {
                return self.builtin(m, scope, span, func, args);
            }
            if let Some(found) = self.lookup(m, &path) {
                if matches!(found.tag, ItemTag::Step | ItemTag::Workflow) {
                    self.err(
                        CheckError::new(
                            Code::NameUnknown,
                            Self::at(m, callee.span),
                            format!(
                                "`{name}` is {}; steps and workflows are called in flows, not in expressions",
                                found.tag.describe()
                            ),
                            "not a function",
                        )
                        .help("compose it in a workflow with `>>`"),
                    );
                    return self.poison(m, span);
                }
            }
            let mut e = CheckError::new(
                Code::NameUnknown,
                Self::at(m, callee.span),
                format!("unknown function `{name}`"),
                "no such function",
            );
            if let Some(b) = Builtin::ALL.iter().find(|b| super::edit_distance(b.name(), &name) <= 2) {
                e = e.help(format!("did you mean `{}`?", b.name()));
            }
            self.err(e);
            for a in args {
                self.expr(m, scope, &a.value, None);
            }
            return self.poison(m, span);
        }
        self.err(CheckError::new(
            Code::NameUnknown,
            Self::at(m, callee.span),
            "this is not a function",
            "not a function",
        ));
        self.poison(m, span)
    }

    /// Matches call arguments to parameter names: positional first, then by name.
    fn match_args<'a>(
        &mut self,
        m: ModId,
        span: Span,
        fname: &str,
        params: &[&str],
        args: &'a [ast::Arg],
    ) -> Option<Vec<Option<&'a ast::Arg>>> {
        let mut out: Vec<Option<&ast::Arg>> = vec![None; params.len()];
        let mut ok = true;
        let mut pos = 0;
        for a in args {
            let idx = match &a.name {
                None => {
                    let i = pos;
                    pos += 1;
                    if i >= params.len() {
                        self.err(CheckError::new(
                            Code::TypeArity,
                            Self::at(m, span),
                            format!(
                                "`{fname}` takes at most {} argument{}, {} given",
                                params.len(),
                                if params.len() == 1 { "" } else { "s" },
                                args.len()
                            ),
                            "too many arguments",
                        ));
                        return None;
                    }
                    i
                }
                Some(n) => match params.iter().position(|p| *p == n.name) {
                    Some(i) => i,
                    None => {
                        self.err(
                            CheckError::new(
                                Code::TypeArity,
                                Self::at(m, n.span),
                                format!("`{fname}` has no parameter `{}`", n.name),
                                "unknown parameter",
                            )
                            .help(format!("its parameters are: {}", params.join(", "))),
                        );
                        ok = false;
                        continue;
                    }
                },
            };
            if out[idx].is_some() {
                self.err(CheckError::new(
                    Code::TypeArity,
                    Self::at(m, a.value.span),
                    format!("`{}` of `{fname}` is given twice", params[idx]),
                    "given again",
                ));
                ok = false;
            }
            out[idx] = Some(a);
        }
        ok.then_some(out)
    }

    fn builtin(&mut self, m: ModId, scope: &mut Scope, span: Span, func: Builtin, args: &[ast::Arg]) -> ir::Expr {
        if func.is_effectful() && !scope.effects {
            self.err(
                CheckError::new(
                    Code::TypeEffect,
                    Self::at(m, span),
                    format!(
                        "`{}` has effects and may be called only inside a step body, not in {}",
                        func.name(),
                        scope.place
                    ),
                    "effectful call",
                )
                .help("move it into a step"),
            );
        }
        let params = func.params();
        let Some(matched) = self.match_args(m, span, func.name(), params, args) else {
            for a in args {
                self.expr(m, scope, &a.value, None);
            }
            return self.poison(m, span);
        };
        // (expected type, required); `None` type: checked below by the built-in's own rule.
        let spec: Vec<(Option<Type>, bool)> = match func {
            Builtin::Http(_) => vec![
                (Some(Type::Str), true),
                (Some(Type::Json), false),
                (Some(str_map()), false),
                (Some(Type::Duration), false),
            ],
            Builtin::Exec => vec![
                (Some(Type::Str), true),
                (Some(Type::List(Box::new(Type::Str))), false),
                (Some(str_map()), false),
                (Some(Type::Str), false),
                (Some(Type::Str), false),
                (Some(Type::Bool), false),
            ],
            Builtin::Sleep => vec![(Some(Type::Duration), true)],
            Builtin::Now | Builtin::Uuid | Builtin::IdempotencyKey => vec![],
            Builtin::Log => vec![(None, true)],
            Builtin::Fail => vec![(Some(Type::Str), true), (Some(Type::Bool), false)],
            Builtin::Len | Builtin::Str | Builtin::Int | Builtin::Float | Builtin::ToJson => vec![(None, true)],
            Builtin::Upper | Builtin::Lower | Builtin::Trim | Builtin::JsonParse => vec![(Some(Type::Str), true)],
            Builtin::Split => vec![(Some(Type::Str), true), (Some(Type::Str), true)],
            Builtin::Join => vec![(Some(Type::List(Box::new(Type::Str))), true), (Some(Type::Str), true)],
            Builtin::Replace => vec![(Some(Type::Str), true), (Some(Type::Str), true), (Some(Type::Str), true)],
            Builtin::Contains => vec![(None, true), (None, true)],
            Builtin::StartsWith | Builtin::EndsWith => vec![(Some(Type::Str), true), (Some(Type::Str), true)],
            Builtin::Range => vec![(Some(Type::Int), true), (Some(Type::Int), false)],
            Builtin::Keys => vec![(None, true)],
            Builtin::Env => vec![(Some(Type::Str), true), (Some(Type::Str.optional()), false)],
        };
        let mut lowered: Vec<Option<ir::Expr>> = vec![];
        let mut missing = vec![];
        for (i, (want, required)) in spec.iter().enumerate() {
            match matched[i] {
                None => {
                    if *required {
                        missing.push(params[i]);
                    }
                    lowered.push(None);
                }
                Some(a) => {
                    let v = self.expr(m, scope, &a.value, want.as_ref());
                    if let Some(w) = want {
                        if secret_ok(func, params[i]) {
                            let plain = Checker::declassify_expr(&v);
                            self.expect(m, &plain, a.value.span, w, None);
                        } else {
                            self.expect(m, &v, a.value.span, w, None);
                        }
                    } else if v.ty.contains_secret() {
                        let e = self.leak_error(
                            m,
                            &v,
                            a.value.span,
                            format!("a secret cannot be passed to `{}`", func.name()),
                        );
                        self.err(e);
                    }
                    lowered.push(Some(v));
                }
            }
        }
        if !missing.is_empty() {
            self.err(CheckError::new(
                Code::TypeArity,
                Self::at(m, span),
                format!(
                    "`{}` needs {}",
                    func.name(),
                    missing.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(" and ")
                ),
                "missing arguments",
            ));
            return self.poison(m, span);
        }
        let arg_ty = |i: usize| lowered[i].as_ref().map(|v| v.ty.clone()).unwrap_or(Type::Never);
        let arg_span = |i: usize| matched[i].map(|a| a.value.span).unwrap_or(span);
        let result = match func {
            Builtin::Http(_) => response_type(),
            Builtin::Exec => exec_result_type(),
            Builtin::Sleep | Builtin::Log => Type::unit(),
            Builtin::Now | Builtin::Uuid | Builtin::IdempotencyKey => Type::Str,
            Builtin::Fail => Type::Never,
            Builtin::Len => {
                let t = arg_ty(0);
                if !matches!(t, Type::Str | Type::List(_) | Type::Map(_) | Type::Record(_) | Type::Json | Type::Never) {
                    self.bad_arg(m, arg_span(0), func, "a string, list or map", &t);
                }
                Type::Int
            }
            Builtin::Upper | Builtin::Lower | Builtin::Trim | Builtin::Replace | Builtin::Join => Type::Str,
            Builtin::Split => Type::List(Box::new(Type::Str)),
            Builtin::Contains => {
                let (h, x) = (arg_ty(0), arg_ty(1));
                let ok = match &h {
                    Type::Str => matches!(x, Type::Str | Type::Never),
                    Type::List(e) => self.join(e, &x).is_some(),
                    Type::Map(_) => matches!(x, Type::Str | Type::Never),
                    Type::Json | Type::Never => true,
                    _ => false,
                };
                if !ok {
                    self.bad_arg(
                        m,
                        arg_span(0),
                        func,
                        "a string with a string, a list with an element, or a map with a key",
                        &h,
                    );
                }
                Type::Bool
            }
            Builtin::StartsWith | Builtin::EndsWith => Type::Bool,
            Builtin::Range => Type::List(Box::new(Type::Int)),
            Builtin::Keys => {
                let t = arg_ty(0);
                if !matches!(t, Type::Map(_) | Type::Record(_) | Type::Json | Type::Never) {
                    self.bad_arg(m, arg_span(0), func, "a map", &t);
                }
                Type::List(Box::new(Type::Str))
            }
            Builtin::Str | Builtin::ToJson => Type::Str,
            Builtin::Int => {
                let t = arg_ty(0);
                if !matches!(t, Type::Str | Type::Int | Type::Float | Type::Json | Type::Duration | Type::Never) {
                    self.bad_arg(m, arg_span(0), func, "a string or number", &t);
                }
                Type::Int
            }
            Builtin::Float => {
                let t = arg_ty(0);
                if !matches!(t, Type::Str | Type::Int | Type::Float | Type::Json | Type::Never) {
                    self.bad_arg(m, arg_span(0), func, "a string or number", &t);
                }
                Type::Float
            }
            Builtin::JsonParse => Type::Json,
            Builtin::Env => Type::Str,
        };
        self.lower(m, span, K::Builtin { func, args: lowered }, result)
    }

    fn declassify_expr(v: &ir::Expr) -> ir::Expr {
        ir::Expr { kind: K::Lit(Literal::None), ty: declassify(&v.ty), loc: v.loc }
    }

    fn bad_arg(&mut self, m: ModId, span: Span, func: Builtin, want: &str, got: &Type) {
        self.err(CheckError::new(
            Code::TypeMismatch,
            Self::at(m, span),
            format!("`{}` takes {want}, not `{got}`", func.name()),
            format!("this is `{got}`"),
        ));
    }

    /// `P.new(customer: c, field: v, ...)`: every field required in the initial state is given.
    fn new_subscription(
        &mut self,
        m: ModId,
        scope: &mut Scope,
        span: Span,
        product: &str,
        args: &[ast::Arg],
    ) -> ir::Expr {
        let Some(def) = self.products.get(product).cloned() else { return self.poison(m, span) };
        let initial = self.lifecycles.get(&def.lifecycle).map(|l| l.initial().to_string());
        let mut customer = None;
        let mut fields = vec![];
        for a in args {
            let Some(name) = &a.name else {
                self.err(
                    CheckError::new(
                        Code::TypeArity,
                        Self::at(m, a.value.span),
                        format!("`{product}.new` takes named arguments only"),
                        "name this argument",
                    )
                    .help("write `customer: ...` and one `field: value` per field"),
                );
                self.expr(m, scope, &a.value, None);
                continue;
            };
            if name.name == "customer" {
                let v = self.expr(m, scope, &a.value, Some(&Type::Str));
                self.expect(m, &v, a.value.span, &Type::Str, None);
                customer = Some(v);
                continue;
            }
            let Some(fd) = def.fields.get(&name.name) else {
                let what =
                    if def.fixed.contains_key(&name.name) { "is fixed and cannot be given" } else { "is not a field" };
                let mut known: Vec<String> = vec!["customer".into()];
                known.extend(def.fields.keys().cloned());
                self.err(
                    CheckError::new(
                        Code::TypeUnknownField,
                        Self::at(m, name.span),
                        format!("`{}` {what} of product `{product}`", name.name),
                        "unknown field",
                    )
                    .help(format!("`{product}.new` takes: {}", known.join(", "))),
                );
                self.expr(m, scope, &a.value, None);
                continue;
            };
            let want = Self::field_in_state(&fd.ty, &fd.when, initial.as_deref());
            self.literal_checked_by_caller = Some(a.value.span);
            let v = self.expr(m, scope, &a.value, Some(&want));
            self.literal_checked_by_caller = None;
            self.check_field_value(m, &a.value, &v, &want, initial.as_deref());
            fields.push((name.name.clone(), v));
        }
        let mut missing: Vec<String> = vec![];
        if customer.is_none() {
            missing.push("customer".into());
        }
        for (fname, fd) in &def.fields {
            let t = Self::field_in_state(&fd.ty, &fd.when, initial.as_deref());
            if !t.is_optional() && !fields.iter().any(|(n, _)| n == fname) {
                missing.push(fname.clone());
            }
        }
        if !missing.is_empty() {
            self.err(CheckError::new(
                Code::TypeMissingField,
                Self::at(m, span),
                format!(
                    "`{product}.new` lacks {}, required in the initial state `{}`",
                    missing.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", "),
                    initial.as_deref().unwrap_or("?")
                ),
                "missing fields",
            ));
        }
        let customer = customer.unwrap_or_else(|| self.poison(m, span));
        let ty = Type::Product { name: product.to_string(), state: initial };
        self.lower(
            m,
            span,
            K::NewSubscription { product: product.to_string(), customer: Box::new(customer), fields },
            ty,
        )
    }

    /// A value for a product field; a record literal for a block is checked field by field in
    /// the state, so a missing or unknown field is named.
    fn check_field_value(&mut self, m: ModId, e: &ast::Expr, v: &ir::Expr, want: &Type, state: Option<&str>) {
        if let (Type::Block(b), Type::Record(given), ast::ExprKind::Record(lits)) =
            (want.unwrap_optional(), &v.ty, &e.kind)
        {
            let Type::Record(view) = self.block_view(b, state) else { return };
            let mut ok = true;
            for lf in lits {
                match view.get(&lf.name.name) {
                    None => {
                        ok = false;
                        self.err(
                            CheckError::new(
                                Code::TypeUnknownField,
                                Self::at(m, lf.name.span),
                                format!("block `{b}` has no field `{}`", lf.name.name),
                                "unknown field",
                            )
                            .help(format!("its fields are: {}", view.keys().cloned().collect::<Vec<_>>().join(", "))),
                        );
                    }
                    Some(ft) => {
                        let gt = &given[&lf.name.name];
                        if !self.fits(gt, ft) {
                            ok = false;
                            let at = lf.value.as_ref().map_or(lf.name.span, |x| x.span);
                            self.err(CheckError::new(
                                Code::TypeMismatch,
                                Self::at(m, at),
                                format!("field `{}` of `{b}` is `{ft}`, not `{gt}`", lf.name.name),
                                format!("this is `{gt}`"),
                            ));
                        }
                    }
                }
            }
            let missing: Vec<String> = view
                .iter()
                .filter(|(k, t)| !t.is_optional() && !given.contains_key(*k))
                .map(|(k, _)| format!("`{k}`"))
                .collect();
            if !missing.is_empty() {
                self.err(CheckError::new(
                    Code::TypeMissingField,
                    Self::at(m, e.span),
                    format!(
                        "block `{b}` lacks {}{}",
                        missing.join(", "),
                        state.map(|s| format!(", required in state `{s}`")).unwrap_or_default()
                    ),
                    "missing fields",
                ));
            }
            let _ = ok;
            return;
        }
        self.expect(m, v, e.span, want, None);
    }

    /// `transition(sub, state)`, checked against the lifecycle's edges.
    fn transition(&mut self, m: ModId, scope: &mut Scope, span: Span, args: &[ast::Arg]) -> ir::Expr {
        if args.len() != 2 || args.iter().any(|a| a.name.is_some()) {
            self.err(
                CheckError::new(
                    Code::TypeArity,
                    Self::at(m, span),
                    "`transition` takes a subscription and a state",
                    "expected `transition(sub, state)`",
                )
                .help("for example `transition(subscription, active)`"),
            );
            return self.poison(m, span);
        }
        let sub = self.expr(m, scope, &args[0].value, None);
        let (product, from) = match &sub.ty {
            Type::Product { name, state } => (name.clone(), state.clone()),
            Type::Never => return self.poison(m, span),
            other => {
                self.err(CheckError::new(
                    Code::TypeMismatch,
                    Self::at(m, args[0].value.span),
                    format!("`transition` moves a subscription; this is `{other}`"),
                    format!("this is `{other}`"),
                ));
                return self.poison(m, span);
            }
        };
        let target = &args[1].value;
        let ast::ExprKind::Name(state) = &target.kind else {
            self.err(CheckError::new(
                Code::TypeMismatch,
                Self::at(m, target.span),
                "the target of `transition` is a state name such as `active`",
                "expected a state name",
            ));
            return self.poison(m, span);
        };
        let Some(lc) = self.products.get(&product).and_then(|p| self.lifecycles.get(&p.lifecycle)).cloned() else {
            return self.poison(m, span);
        };
        if !lc.states.contains(&state.name) {
            self.err(
                CheckError::new(
                    Code::LifecycleUnknownState,
                    Self::at(m, state.span),
                    format!("`{}` is not a state of lifecycle `{}`", state.name, lc.name),
                    "unknown state",
                )
                .help(format!("the states of `{}` are: {}", lc.name, lc.states.join(", "))),
            );
            return self.poison(m, span);
        }
        if let Some(from) = &from {
            if !lc.allows(from, &state.name) {
                let next: Vec<String> =
                    lc.edges.iter().filter(|(a, _)| a == from).map(|(_, b)| format!("`{b}`")).collect();
                let help = if next.is_empty() {
                    format!("`{from}` is a final state of `{}`", lc.name)
                } else {
                    format!("from `{from}`, `{}` allows: {}", lc.name, next.join(", "))
                };
                self.err(
                    CheckError::new(
                        Code::LifecycleBadTransition,
                        Self::at(m, span),
                        format!("lifecycle `{}` has no transition from `{from}` to `{}`", lc.name, state.name),
                        format!("`{product}@{from}` cannot become `{product}@{}`", state.name),
                    )
                    .help(help),
                );
                return self.poison(m, span);
            }
        }
        let ty = Type::Product { name: product, state: Some(state.name.clone()) };
        self.lower(m, span, K::Transition { sub: Box::new(sub), state: state.name.clone() }, ty)
    }
}

/// `a`, `a.b`, `a.b.c` as names, when an expression is only names and dots.
fn item_path(e: &ast::Expr) -> Option<Vec<&str>> {
    match &e.kind {
        ExprKind::Name(id) => Some(vec![id.name.as_str()]),
        ExprKind::Field(base, f) => {
            let mut p = item_path(base)?;
            p.push(f.name.as_str());
            Some(p)
        }
        _ => None,
    }
}

impl Checker {
    /// A record literal where a record type or block is expected: required fields it lacks are
    /// `type::missing_field` (one error naming them all), fields the type has not are
    /// `type::unknown_field`. Returns whether anything was reported.
    fn record_literal_fields(
        &mut self,
        m: ModId,
        span: Span,
        given: &[ast::RecordField],
        types: &IndexMap<String, Type>,
        want: &IndexMap<String, Type>,
        expected: Option<&Type>,
    ) -> bool {
        let shape = match expected.map(Type::unwrap_optional) {
            Some(Type::Block(b)) => format!("block `{b}`"),
            Some(t) => format!("`{t}`"),
            None => return false,
        };
        let mut reported = false;
        for f in given {
            if !want.contains_key(&f.name.name) {
                let known: Vec<&str> = want.keys().map(String::as_str).collect();
                self.err(
                    CheckError::new(
                        Code::TypeUnknownField,
                        Self::at(m, f.name.span),
                        format!("`{}` is not a field of {shape}", f.name.name),
                        "unknown field",
                    )
                    .help(format!("its fields are: {}", known.join(", "))),
                );
                reported = true;
            }
        }
        let missing: Vec<String> = want
            .iter()
            .filter(|(name, ty)| !ty.is_optional() && !types.contains_key(*name))
            .map(|(name, _)| format!("`{name}`"))
            .collect();
        if !missing.is_empty() {
            self.err(CheckError::new(
                Code::TypeMissingField,
                Self::at(m, span),
                format!("this record lacks {}, required by {shape}", missing.join(", ")),
                "missing fields",
            ));
            reported = true;
        }
        reported
    }
}
