//! Declarations: enums, lifecycles, blocks, products, configs, secrets and the signatures of steps
//! and workflows first (so every body can refer to every declaration, in any order), then the
//! bodies: config values, environments, step bodies and workflow flows.

use super::error::{CheckError, ModId};
use super::expr::Scope;
use super::load::ItemTag;
use super::{Checker, ConfigSig, Sig, SigParam};
use crate::diagnostics::Code;
use crate::ir::{self, Type};
use crate::syntax::ast::{self, ItemKind, ProductMember};
use indexmap::IndexMap;
use std::collections::HashSet;

impl Checker {
    pub(super) fn declare_all(&mut self) {
        let mods = self.parsed();
        // Enums and lifecycles need nothing else.
        for &m in &mods {
            for i in 0..self.modules[m].ast().items.len() {
                if self.is_duplicate(m, i) {
                    continue;
                }
                let prefix = self.modules[m].prefix.clone();
                match &self.modules[m].ast().items[i].kind {
                    ItemKind::Enum(e) => {
                        let mut variants: Vec<String> = vec![];
                        let mut seen: HashSet<&str> = HashSet::new();
                        let mut errs = vec![];
                        for v in &e.variants {
                            if !seen.insert(&v.name) {
                                errs.push(CheckError::new(
                                    Code::NameDuplicate,
                                    Self::at(m, v.span),
                                    format!("`{}` is listed twice in enum `{}`", v.name, e.name.name),
                                    "listed again here",
                                ));
                            } else {
                                variants.push(v.name.clone());
                            }
                        }
                        let name = format!("{prefix}{}", e.name.name);
                        self.enums.insert(name.clone(), ir::EnumDef { name, variants });
                        self.errors.extend(errs);
                    }
                    ItemKind::Lifecycle(l) => {
                        let mut states: Vec<String> = vec![];
                        let mut edges: Vec<(String, String)> = vec![];
                        let (mut seen_states, mut seen_edges) = (HashSet::new(), HashSet::new());
                        for chain in &l.chains {
                            for s in chain {
                                if seen_states.insert(s.name.as_str()) {
                                    states.push(s.name.clone());
                                }
                            }
                            for pair in chain.windows(2) {
                                if seen_edges.insert((pair[0].name.as_str(), pair[1].name.as_str())) {
                                    edges.push((pair[0].name.clone(), pair[1].name.clone()));
                                }
                            }
                        }
                        let name = format!("{prefix}{}", l.name.name);
                        self.lifecycles.insert(name.clone(), ir::LifecycleDef { name, states, edges });
                    }
                    _ => {}
                }
            }
        }
        // Products' lifecycles, so that `P@state` types can be checked while resolving fields.
        for &m in &mods {
            for i in 0..self.modules[m].ast().items.len() {
                if self.is_duplicate(m, i) {
                    continue;
                }
                let ItemKind::Product(p) = &self.modules[m].ast().items[i].kind else { continue };
                let (pname, lpath) = (p.name.name.clone(), p.lifecycle.clone());
                let qname = format!("{}{}", self.modules[m].prefix, pname);
                let lifecycle = match self.lookup_or_report(m, &lpath, "lifecycle") {
                    Some(f) if f.tag == ItemTag::Lifecycle => f.qname,
                    Some(f) => {
                        self.err(CheckError::new(
                            Code::TypeMismatch,
                            Self::at(m, lpath.span),
                            format!("`{}` is {}, not a lifecycle", lpath.dotted(), f.tag.describe()),
                            "expected a lifecycle",
                        ));
                        String::new()
                    }
                    None => String::new(),
                };
                self.products.insert(
                    qname.clone(),
                    ir::ProductDef { name: qname, lifecycle, fixed: IndexMap::new(), fields: IndexMap::new() },
                );
            }
        }
        // Blocks, product fields, configs, secrets, signatures.
        for &m in &mods {
            for i in 0..self.modules[m].ast().items.len() {
                if self.is_duplicate(m, i) {
                    continue;
                }
                // Steps and workflows are borrowed out of the tree rather than cloned: their bodies
                // are most of a large program. Nothing reads them by index while they are out.
                let is_routine =
                    matches!(self.modules[m].ast().items[i].kind, ItemKind::Step(_) | ItemKind::Workflow(_));
                let taken = is_routine.then(|| self.take_item(m, i));
                let cloned = (!is_routine).then(|| self.modules[m].ast().items[i].kind.clone());
                let item: &ItemKind = match (&taken, &cloned) {
                    (Some(t), _) => &t.kind,
                    (_, Some(c)) => c,
                    _ => unreachable!("taken or cloned"),
                };
                let prefix = self.modules[m].prefix.clone();
                match item {
                    ItemKind::Block(b) => {
                        let fields = self.field_decls(m, &b.fields);
                        let name = format!("{prefix}{}", b.name.name);
                        self.blocks.insert(name.clone(), ir::BlockDef { name, fields });
                    }
                    ItemKind::Product(p) => {
                        let qname = format!("{prefix}{}", p.name.name);
                        let mut fields = IndexMap::new();
                        let mut fixed = IndexMap::new();
                        let mut seen = std::collections::HashSet::new();
                        for member in &p.members {
                            let (fname, fspan) = match member {
                                ProductMember::Fixed { name, .. } => (&name.name, name.span),
                                ProductMember::Field(f) => (&f.name.name, f.name.span),
                            };
                            if !seen.insert(fname.clone()) || ["id", "customer", "state"].contains(&fname.as_str()) {
                                self.err(CheckError::new(
                                    Code::NameDuplicate,
                                    Self::at(m, fspan),
                                    format!("product `{}` already has a field `{fname}`", p.name.name),
                                    "defined again here",
                                ).help("every subscription has `id`, `customer` and `state`; field names are unique per product"));
                                continue;
                            }
                            match member {
                                ProductMember::Fixed { name, ty, value, .. } => {
                                    let t = self.resolve_type(m, ty);
                                    let v = self.const_expr(m, value, &t, ty.span);
                                    fixed.insert(name.name.clone(), (t, v));
                                }
                                ProductMember::Field(f) => {
                                    let t = self.resolve_type(m, &f.ty);
                                    let when = f.when.iter().map(|w| w.name.clone()).collect();
                                    fields.insert(f.name.name.clone(), ir::FieldDef { ty: t, when });
                                }
                            }
                        }
                        if let Some(def) = self.products.get_mut(&qname) {
                            def.fields = fields;
                            def.fixed = fixed;
                        }
                    }
                    ItemKind::Config(c) => {
                        let ty = self.resolve_type(m, &c.ty);
                        self.configs
                            .insert(format!("{prefix}{}", c.name.name), ConfigSig { ty, at: Self::at(m, c.name.span) });
                    }
                    ItemKind::Secret(s) => {
                        self.secrets.insert(format!("{prefix}{}", s.name.name), Self::at(m, s.name.span));
                    }
                    ItemKind::Type(t) => {
                        let found = self.lookup(m, &[t.name.name.as_str()]);
                        if let Some(found) = found {
                            // Resolves and caches the alias, reporting its errors once.
                            let _ = self.resolve_type(
                                m,
                                &ast::TypeExpr {
                                    kind: ast::TypeKind::Named {
                                        path: ast::Path { segments: vec![t.name.clone()], span: t.name.span },
                                        state: None,
                                    },
                                    span: t.name.span,
                                },
                            );
                            let _ = found;
                        }
                    }
                    ItemKind::Step(s) => {
                        let sig = self.step_sig(m, s);
                        self.sigs.insert(sig.qname.clone(), sig);
                    }
                    ItemKind::Workflow(w) => {
                        let params = self.params(m, &w.params);
                        let outputs = self.outputs(m, &w.outputs);
                        let qname = format!("{prefix}{}", w.name.name);
                        self.sigs.insert(
                            qname.clone(),
                            Sig { qname, module: m, params, outputs, compensate: None, is_workflow: true },
                        );
                    }
                    _ => {}
                }
                if let Some(t) = taken {
                    self.put_item(m, i, t);
                }
            }
        }
        self.check_when_states();
    }

    fn field_decls(&mut self, m: ModId, fields: &[ast::FieldDecl]) -> IndexMap<String, ir::FieldDef> {
        let mut out = IndexMap::new();
        for f in fields {
            let ty = self.resolve_type(m, &f.ty);
            if out.contains_key(&f.name.name) {
                self.err(CheckError::new(
                    Code::NameDuplicate,
                    Self::at(m, f.name.span),
                    format!("field `{}` is declared twice", f.name.name),
                    "declared again here",
                ));
                continue;
            }
            out.insert(f.name.name.clone(), ir::FieldDef { ty, when: f.when.iter().map(|w| w.name.clone()).collect() });
        }
        out
    }

    /// A `when` state must be a state of the lifecycle of every product that uses the block.
    fn check_when_states(&mut self) {
        let mut errs = vec![];
        for m in self.parsed() {
            for item in &self.modules[m].ast().items {
                let ItemKind::Product(p) = &item.kind else { continue };
                let qname = format!("{}{}", self.modules[m].prefix, p.name.name);
                let Some(def) = self.products.get(&qname) else { continue };
                let Some(lc) = self.lifecycles.get(&def.lifecycle) else { continue };
                for member in &p.members {
                    let ProductMember::Field(f) = member else { continue };
                    for w in &f.when {
                        if !lc.states.contains(&w.name) {
                            errs.push(
                                CheckError::new(
                                    Code::LifecycleUnknownState,
                                    Self::at(m, w.span),
                                    format!("`{}` is not a state of lifecycle `{}`", w.name, lc.name),
                                    "unknown state",
                                )
                                .help(format!(
                                    "the states of `{}` are: {}",
                                    lc.name,
                                    lc.states.join(", ")
                                )),
                            );
                        }
                    }
                    // Blocks used by this product: their `when` states must be states of this lifecycle.
                    let Some(fd) = def.fields.get(&f.name.name) else { continue };
                    let Type::Block(bname) = fd.ty.unwrap_optional() else { continue };
                    let Some(found) = self.block_decl(bname) else { continue };
                    let (bm, bdecl) = found;
                    for bf in &bdecl.fields {
                        for w in &bf.when {
                            if !lc.states.contains(&w.name) {
                                errs.push(
                                    CheckError::new(
                                        Code::LifecycleUnknownState,
                                        Self::at(bm, w.span),
                                        format!(
                                            "`{}` is not a state of lifecycle `{}`, which product `{}` uses with block `{}`",
                                            w.name, lc.name, p.name.name, bname
                                        ),
                                        "unknown state",
                                    )
                                    .label(Self::at(m, f.name.span), "the block is used here")
                                    .help(format!("the states of `{}` are: {}", lc.name, lc.states.join(", "))),
                                );
                            }
                        }
                    }
                }
            }
        }
        self.errors.extend(errs);
    }

    fn block_decl(&self, qname: &str) -> Option<(ModId, ast::BlockDecl)> {
        for m in self.parsed() {
            let prefix = &self.modules[m].prefix;
            let Some(local) = qname.strip_prefix(prefix.as_str()) else { continue };
            if let Some((ItemTag::Block, idx)) = self.modules[m].items.get(local) {
                if let ItemKind::Block(b) = &self.modules[m].ast().items[*idx].kind {
                    return Some((m, b.clone()));
                }
            }
        }
        None
    }

    fn params(&mut self, m: ModId, params: &[ast::Param]) -> Vec<SigParam> {
        let mut out: Vec<SigParam> = vec![];
        for p in params {
            let ty = self.resolve_type(m, &p.ty);
            if out.iter().any(|o| o.name == p.name.name) {
                self.err(CheckError::new(
                    Code::NameDuplicate,
                    Self::at(m, p.name.span),
                    format!("parameter `{}` is declared twice", p.name.name),
                    "declared again here",
                ));
                continue;
            }
            out.push(SigParam { name: p.name.name.clone(), ty, has_default: p.default.is_some() });
        }
        out
    }

    fn outputs(&mut self, m: ModId, outputs: &[ast::Output]) -> IndexMap<String, (Type, ast::Span)> {
        let mut out = IndexMap::new();
        for o in outputs {
            let ty = self.resolve_type(m, &o.ty);
            if ty.contains_secret() {
                self.err(
                    CheckError::new(
                        Code::SecretLeak,
                        Self::at(m, o.ty.span),
                        format!("output `{}` would hold a secret", o.name.name),
                        "outputs are persisted and printed",
                    )
                    .help("secrets may flow only into http headers and json, and exec env, args and stdin"),
                );
            }
            if out.insert(o.name.name.clone(), (ty, o.span)).is_some() {
                self.err(CheckError::new(
                    Code::NameDuplicate,
                    Self::at(m, o.name.span),
                    format!("output `{}` is declared twice", o.name.name),
                    "declared again here",
                ));
            }
        }
        out
    }

    fn step_sig(&mut self, m: ModId, s: &ast::StepDecl) -> Sig {
        let params = self.params(m, &s.params);
        let outputs = self.outputs(m, &s.outputs);
        let compensate = match &s.compensate {
            Some(c) => match self.lookup_or_report(m, &c.value, "step") {
                Some(f) if f.tag == ItemTag::Step => Some((f.qname, Self::at(m, c.span))),
                Some(f) => {
                    self.err(CheckError::new(
                        Code::TypeMismatch,
                        Self::at(m, c.value.span),
                        format!("`{}` is {}; only a step can compensate", c.value.dotted(), f.tag.describe()),
                        "expected a step",
                    ));
                    None
                }
                None => None,
            },
            None => None,
        };
        Sig {
            qname: format!("{}{}", self.modules[m].prefix, s.name.name),
            module: m,
            params,
            outputs,
            compensate,
            is_workflow: false,
        }
    }

    pub(super) fn check_bodies(&mut self) {
        for m in self.parsed() {
            for i in 0..self.modules[m].ast().items.len() {
                if self.is_duplicate(m, i) {
                    continue;
                }
                if !matches!(
                    self.modules[m].ast().items[i].kind,
                    ItemKind::Step(_) | ItemKind::Workflow(_) | ItemKind::Config(_) | ItemKind::Environment(_)
                ) {
                    continue;
                }
                let mut item = self.take_item(m, i);
                let prefix = self.modules[m].prefix.clone();
                match &item.kind {
                    ItemKind::Config(c) => {
                        let qname = format!("{prefix}{}", c.name.name);
                        let ty = self.configs.get(&qname).map(|c| c.ty.clone()).unwrap_or(Type::Never);
                        let default = self.const_expr(m, &c.value, &ty, c.ty.span);
                        self.config_defs.insert(qname.clone(), ir::ConfigDef { name: qname, ty, default });
                    }
                    ItemKind::Environment(env) => {
                        let mut overrides = IndexMap::new();
                        for (name, value) in &env.overrides {
                            let qname = format!("{prefix}{}", name.name);
                            let Some(sig) = self.configs.get(&qname).cloned() else {
                                let mut e = CheckError::new(
                                    Code::ConfigUnknown,
                                    Self::at(m, name.span),
                                    format!(
                                        "environment `{}` sets `{}`, which is not a config",
                                        env.name.name, name.name
                                    ),
                                    "no such config",
                                );
                                if let Some(s) = self.similar_config(&prefix, &name.name) {
                                    e = e.help(format!("did you mean `{s}`?"));
                                }
                                self.err(e);
                                continue;
                            };
                            if overrides.contains_key(&qname) {
                                self.err(CheckError::new(
                                    Code::NameDuplicate,
                                    Self::at(m, name.span),
                                    format!("`{}` is set twice in environment `{}`", name.name, env.name.name),
                                    "set again here",
                                ));
                                continue;
                            }
                            let mut scope = Scope::constant();
                            let v = self.expr(m, &mut scope, value, Some(&sig.ty));
                            if !self.fits(&v.ty, &sig.ty) {
                                self.err(
                                    CheckError::new(
                                        Code::ConfigType,
                                        Self::at(m, value.span),
                                        format!("config `{}` is `{}`, but this value is `{}`", name.name, sig.ty, v.ty),
                                        format!("expected `{}`", sig.ty),
                                    )
                                    .label(sig.at.clone(), "the config is declared here"),
                                );
                            }
                            overrides.insert(qname, v);
                        }
                        let qname = format!("{prefix}{}", env.name.name);
                        self.environments.insert(qname.clone(), ir::EnvironmentDef { name: qname, overrides });
                    }
                    ItemKind::Step(s) => {
                        if let Some(def) = self.check_step(m, s) {
                            self.steps.insert(def.name.clone(), def);
                        }
                    }
                    ItemKind::Workflow(w) => {
                        if let Some(def) = self.check_workflow(m, w) {
                            self.workflows.insert(def.name.clone(), def);
                        }
                    }
                    _ => {}
                }
                // A checked body is not needed again (its IR is built); dropping it now keeps
                // the peak memory of a large program down.
                if let ItemKind::Step(step) = &mut item.kind {
                    step.body = None;
                }
                self.put_item(m, i, item);
            }
        }
    }

    fn take_item(&mut self, m: ModId, i: usize) -> ast::Item {
        let items = &mut self.modules[m].ast.as_mut().expect("parsed").items;
        let span = items[i].span;
        let placeholder = ast::Item {
            doc: None,
            kind: ItemKind::Secret(ast::SecretDecl { name: ast::Ident { name: String::new(), span } }),
            span,
        };
        std::mem::replace(&mut items[i], placeholder)
    }

    fn put_item(&mut self, m: ModId, i: usize, item: ast::Item) {
        self.modules[m].ast.as_mut().expect("parsed").items[i] = item;
    }

    fn similar_config(&self, prefix: &str, name: &str) -> Option<String> {
        self.configs
            .keys()
            .filter_map(|k| k.strip_prefix(prefix))
            .filter(|k| !k.contains('.'))
            .find(|k| super::edit_distance(k, name) <= 2)
            .map(str::to_string)
    }

    /// A value with no state in scope and no effects: config defaults, fixed values, parameter
    /// defaults.
    pub(super) fn const_expr(&mut self, m: ModId, e: &ast::Expr, ty: &Type, decl: ast::Span) -> ir::Expr {
        let mut scope = Scope::constant();
        let v = self.expr(m, &mut scope, e, Some(ty));
        self.expect(m, &v, e.span, ty, Some(decl));
        v
    }

    fn literal_of(&mut self, m: ModId, e: &ast::Expr, what: &str) -> Option<ir::Literal> {
        let lit = match &e.kind {
            ast::ExprKind::Int(i) => Some(ir::Literal::Int(*i)),
            ast::ExprKind::Float(f) => Some(ir::Literal::Float(*f)),
            ast::ExprKind::Duration(d) => Some(ir::Literal::Duration(*d)),
            _ => None,
        };
        if lit.is_none() {
            self.err(CheckError::new(
                Code::TypeMismatch,
                Self::at(m, e.span),
                format!("{what} must be a literal"),
                "not a literal",
            ));
        }
        lit
    }

    pub(super) fn duration_literal(&mut self, m: ModId, e: &ast::Expr, what: &str) -> Option<u64> {
        match self.literal_of(m, e, what)? {
            ir::Literal::Duration(d) => Some(d),
            _ => {
                self.err(CheckError::new(
                    Code::TypeMismatch,
                    Self::at(m, e.span),
                    format!("{what} must be a duration such as `5s`"),
                    "expected `Duration`",
                ));
                None
            }
        }
    }

    pub(super) fn count_literal(&mut self, m: ModId, e: &ast::Expr, what: &str) -> Option<u32> {
        match self.literal_of(m, e, what)? {
            ir::Literal::Int(n) if n >= 1 && n <= u32::MAX as i64 => Some(n as u32),
            ir::Literal::Int(n) if n > u32::MAX as i64 => {
                self.err(CheckError::new(
                    Code::TypeMismatch,
                    Self::at(m, e.span),
                    format!("{what} is too large: the largest is {}", u32::MAX),
                    format!("at most {}", u32::MAX),
                ));
                None
            }
            _ => {
                self.err(CheckError::new(
                    Code::TypeMismatch,
                    Self::at(m, e.span),
                    format!("{what} must be a positive whole number"),
                    "expected a positive `Int`",
                ));
                None
            }
        }
    }

    fn check_step(&mut self, m: ModId, s: &ast::StepDecl) -> Option<ir::StepDef> {
        let qname = format!("{}{}", self.modules[m].prefix, s.name.name);
        let sig = self.sigs.get(&qname)?.clone();
        let mut params = vec![];
        for (p, sp) in s.params.iter().zip(&sig.params) {
            let default = p.default.as_ref().map(|d| Box::new(self.const_expr(m, d, &sp.ty, p.ty.span)));
            params.push(ir::Param { name: sp.name.clone(), ty: sp.ty.clone(), default });
        }
        let mut retry = ir::RetryPolicy::default();
        if let Some(r) = &s.retry {
            if let Some(n) = self.count_literal(m, &r.attempts, "the number of attempts") {
                retry.attempts = n;
            }
            if let Some((min, max)) = &r.backoff {
                let min = self.duration_literal(m, min, "the backoff minimum");
                let max = self.duration_literal(m, max, "the backoff maximum");
                if let (Some(a), Some(b)) = (min, max) {
                    retry.min_ms = a;
                    retry.max_ms = b;
                    if a > b {
                        self.err(CheckError::new(
                            Code::TypeMismatch,
                            Self::at(m, r.span),
                            "the backoff minimum is larger than its maximum",
                            "MIN..MAX with MIN <= MAX",
                        ));
                    }
                }
            }
            if let Some(f) = &r.factor {
                match self.literal_of(m, f, "the backoff factor") {
                    Some(ir::Literal::Float(x)) if x >= 1.0 => retry.factor = x,
                    Some(ir::Literal::Int(x)) if x >= 1 => retry.factor = x as f64,
                    Some(_) => self.err(CheckError::new(
                        Code::TypeMismatch,
                        Self::at(m, f.span),
                        "the backoff factor must be a number of at least 1",
                        "expected a `Float` >= 1",
                    )),
                    None => {}
                }
            }
        }
        let timeout_ms = s.timeout.as_ref().and_then(|t| self.duration_literal(m, &t.value, "a timeout"));
        let outputs: IndexMap<String, Type> = sig.outputs.iter().map(|(k, (t, _))| (k.clone(), t.clone())).collect();
        let param_scope: Vec<(String, Type)> = sig.params.iter().map(|p| (p.name.clone(), p.ty.clone())).collect();
        let poll = match &s.poll {
            Some(p) => {
                let every = self.duration_literal(m, &p.every, "the poll interval");
                let within = p.within.as_ref().and_then(|w| self.duration_literal(m, w, "the poll limit"));
                let mut scope = Scope::new(false, "a `poll ... until` condition");
                scope.push_all(param_scope.clone());
                scope.push_all(outputs.iter().map(|(k, t)| (k.clone(), t.clone())).collect());
                let until = self.expr(m, &mut scope, &p.until, Some(&Type::Bool));
                self.expect(m, &until, p.until.span, &Type::Bool, None);
                // An output the poll condition reads is used, even if no later step reads it.
                for (name, _) in &scope.reads {
                    if outputs.contains_key(name) {
                        self.used_outputs.insert((qname.clone(), name.clone()));
                    }
                }
                every.map(|every_ms| ir::PollPolicy { every_ms, until, within_ms: within })
            }
            None => None,
        };
        let kind = if s.input {
            let prompt = s.prompt.as_ref().map(|p| {
                let mut scope = Scope::new(false, "an input step's prompt");
                scope.push_all(param_scope.clone());
                let v = self.expr(m, &mut scope, p, Some(&Type::Str));
                self.expect(m, &v, p.span, &Type::Str, None);
                v
            });
            ir::StepKind::Input { prompt }
        } else {
            let body = s.body.as_ref()?;
            let mut scope = Scope::new(true, "");
            scope.push_all(param_scope);
            ir::StepKind::Body(self.step_body(m, &mut scope, body, &outputs, s.outputs_span))
        };
        Some(ir::StepDef {
            name: qname,
            params,
            outputs,
            kind,
            retry,
            timeout_ms,
            poll,
            compensate: sig.compensate.map(|c| c.0),
            loc: self.loc(m, s.name.span),
        })
    }

    /// A step body: its final expression must be a record of exactly the outputs.
    fn step_body(
        &mut self,
        m: ModId,
        scope: &mut Scope,
        body: &ast::Block,
        outputs: &IndexMap<String, Type>,
        outputs_span: ast::Span,
    ) -> ir::Block {
        let expected = Type::Record(outputs.clone());
        let (stmts, result_ast) = (self.block_stmts(m, scope, &body.stmts), body.result.as_deref());
        let result = match result_ast {
            None => {
                if !outputs.is_empty() {
                    self.err(
                        CheckError::new(
                            Code::StepOutputMismatch,
                            Self::at(m, body.span),
                            "the step body ends without a record of its outputs",
                            "this body gives no outputs",
                        )
                        .label(Self::at(m, outputs_span), "the outputs")
                        .help(format!(
                            "end the body with `{{ {} }}`",
                            outputs.keys().map(|k| format!("{k}: ...")).collect::<Vec<_>>().join(", ")
                        )),
                    );
                }
                ir::Expr { kind: ir::ExprKind::Record(vec![]), ty: Type::unit(), loc: self.loc(m, body.span) }
            }
            Some(r) => {
                self.literal_checked_by_caller = Some(r.span);
                let v = self.expr(m, scope, r, Some(&expected));
                self.literal_checked_by_caller = None;
                self.check_outputs(m, r, &v, outputs, outputs_span);
                v
            }
        };
        scope.pop_frame();
        ir::Block { stmts, result: Box::new(result) }
    }

    fn check_outputs(
        &mut self,
        m: ModId,
        r: &ast::Expr,
        v: &ir::Expr,
        outputs: &IndexMap<String, Type>,
        outputs_span: ast::Span,
    ) {
        if v.ty == Type::Never {
            return;
        }
        let out_label = Self::at(m, outputs_span);
        let Type::Record(fields) = &v.ty else {
            self.err(
                CheckError::new(
                    Code::StepOutputMismatch,
                    Self::at(m, r.span),
                    format!("the step body gives `{}`, not a record of its outputs", v.ty),
                    "expected a record of the outputs",
                )
                .label(out_label, "the outputs"),
            );
            return;
        };
        let missing: Vec<&String> = outputs.keys().filter(|k| !fields.contains_key(*k)).collect();
        let extra: Vec<&String> = fields.keys().filter(|k| !outputs.contains_key(*k)).collect();
        if !missing.is_empty() || !extra.is_empty() {
            let mut parts = vec![];
            if !missing.is_empty() {
                parts.push(format!("lacks {}", list(&missing)));
            }
            if !extra.is_empty() {
                parts.push(format!("has {} that the step does not declare", list(&extra)));
            }
            self.err(
                CheckError::new(
                    Code::StepOutputMismatch,
                    Self::at(m, r.span),
                    format!("the step's result {}", parts.join(" and ")),
                    "this result",
                )
                .label(out_label, "the declared outputs"),
            );
            return;
        }
        // Field by field, so the label is at the offending value when the result is a literal.
        let literal: Option<&Vec<ast::RecordField>> = match &r.kind {
            ast::ExprKind::Record(fs) => Some(fs),
            _ => None,
        };
        for (k, want) in outputs {
            let got = &fields[k];
            let span = literal
                .and_then(|fs| fs.iter().find(|f| &f.name.name == k))
                .map(|f| f.value.as_ref().map_or(f.name.span, |v| v.span))
                .unwrap_or(r.span);
            if got.contains_secret() && !want.contains_secret() {
                let e = self.leak_error(m, v, span, format!("output `{k}` would carry a secret"));
                self.err(e);
            } else if !self.fits(got, want) {
                self.err(
                    CheckError::new(
                        Code::StepOutputMismatch,
                        Self::at(m, span),
                        format!("output `{k}` is declared `{want}`, but the body gives `{got}`"),
                        format!("this is `{got}`"),
                    )
                    .label(out_label.clone(), "the declared outputs"),
                );
            }
        }
    }

    fn check_workflow(&mut self, m: ModId, w: &ast::WorkflowDecl) -> Option<ir::WorkflowDef> {
        let qname = format!("{}{}", self.modules[m].prefix, w.name.name);
        let sig = self.sigs.get(&qname)?.clone();
        let mut params = vec![];
        for (p, sp) in w.params.iter().zip(&sig.params) {
            let default = p.default.as_ref().map(|d| Box::new(self.const_expr(m, d, &sp.ty, p.ty.span)));
            params.push(ir::Param { name: sp.name.clone(), ty: sp.ty.clone(), default });
        }
        let flow = self.workflow_flow(m, w, &sig)?;
        Some(ir::WorkflowDef {
            name: qname,
            params,
            outputs: sig.outputs.iter().map(|(k, (t, _))| (k.clone(), t.clone())).collect(),
            flow,
            loc: self.loc(m, w.name.span),
        })
    }

    /// A secret-carrying value reaching a forbidden place.
    pub(super) fn leak_error(&self, m: ModId, v: &ir::Expr, span: ast::Span, message: String) -> CheckError {
        let mut e = CheckError::new(Code::SecretLeak, Self::at(m, span), message, "this value carries a secret")
            .help("secrets may flow only into http `headers` and `json`, and exec `env`, `args` and `stdin`");
        match secret_in(v) {
            Some(SecretOrigin::Secret(name)) => {
                if let Some(at) = self.secrets.get(&name) {
                    e = e.label(at.clone(), format!("secret `{name}` is declared here"));
                }
            }
            Some(SecretOrigin::Local(name)) => {
                e = e.help(format!(
                    "`{name}` holds a secret; secrets may flow only into http `headers` and `json`, and exec `env`, `args` and `stdin`"
                ));
            }
            None => {}
        }
        e
    }
}

fn list(names: &[&String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    let word = if names.len() == 1 { "output" } else { "outputs" };
    format!("{word} {}", quoted.join(", "))
}

/// Where the secret in a leaking value comes from.
pub(super) enum SecretOrigin {
    /// A `secret` declaration, read directly.
    Secret(String),
    /// A `let` binding (or parameter) whose value carries a secret.
    Local(String),
}

/// The first secret an expression reads, for the label at its declaration.
pub(super) fn secret_in(e: &ir::Expr) -> Option<SecretOrigin> {
    use ir::ExprKind as K;
    let mut found = None;
    fn walk(e: &ir::Expr, found: &mut Option<SecretOrigin>) {
        if found.is_some() {
            return;
        }
        match &e.kind {
            K::Secret(n) => *found = Some(SecretOrigin::Secret(n.clone())),
            K::Local(n) if e.ty.contains_secret() => *found = Some(SecretOrigin::Local(n.clone())),
            K::Interp(parts) => parts.iter().for_each(|p| {
                if let ir::InterpPart::Expr(x) = p {
                    walk(x, found)
                }
            }),
            K::Record(fs) => fs.iter().for_each(|(_, x)| walk(x, found)),
            K::List(xs) => xs.iter().for_each(|x| walk(x, found)),
            K::Field(x, _) | K::Unary(_, x) | K::As(x, _) => walk(x, found),
            K::Index(a, b) | K::Binary(_, a, b) => {
                walk(a, found);
                walk(b, found)
            }
            K::If { cond, then, otherwise } => {
                walk(cond, found);
                walk(&then.result, found);
                if let Some(o) = otherwise {
                    walk(&o.result, found)
                }
            }
            K::For { body, .. } => walk(&body.result, found),
            K::With { base, updates } => {
                walk(base, found);
                updates.iter().for_each(|(_, x)| walk(x, found))
            }
            K::Builtin { args, .. } => args.iter().flatten().for_each(|x| walk(x, found)),
            _ => {}
        }
    }
    walk(e, &mut found);
    found
}
