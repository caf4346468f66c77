//! `orchc fmt`: one canonical layout for every construct.
//!
//! The formatter prints the AST back (`syntax::parse` → [`format_module`]), so what it writes
//! parses to the same tree. Layout: two-space indentation; declarations with bodies (`block`,
//! `product`, `lifecycle`, `environment`, steps, workflows, `graph`, flow `if`/`for`) always on
//! several lines; step clauses each on their own indented line; records, lists, argument and
//! parameter lists on one line when they fit in [`WIDTH`] columns, else one element per line with
//! a trailing comma; `>>` chains on one line when they fit, else one part per line with a leading
//! `>>`. Blank lines between items and statements are kept, at most one. Literals (numbers,
//! durations, strings) are printed as written.
//!
//! Comments: every `//` and `///` comment is kept. A comment on its own line goes before the
//! element (declaration, statement, field, argument, flow part) that follows it; a comment after
//! an element on the same line stays at the end of that line. A comment somewhere the layout has
//! no line for (inside an operator chain, say) moves to the next such place, never away.

mod doc;

use crate::syntax::ast::*;
use doc::{concat, group, nest, text, Doc};

/// The line width the formatter aims for.
pub const WIDTH: usize = 100;

/// Formats source text; `Err` when it does not parse.
pub fn format_source(src: &str) -> Result<String, crate::syntax::ParseError> {
    format_source_width(src, WIDTH)
}

/// Formats source text for another line width (the canonical layout is at [`WIDTH`]).
pub fn format_source_width(src: &str, width: usize) -> Result<String, crate::syntax::ParseError> {
    let module = crate::syntax::parse(src)?;
    Ok(format_module_width(src, &module, width))
}

/// Formats a parsed module; `src` is the text it was parsed from (for comments and literals).
pub fn format_module(src: &str, module: &Module) -> String {
    format_module_width(src, module, WIDTH)
}

fn format_module_width(src: &str, module: &Module, width: usize) -> String {
    let mut f = Fmt { src, comments: &module.comments, next: 0 };
    let spans: Vec<Span> = module.items.iter().map(|i| i.span).collect();
    let body = f.vertical(&spans, src.len(), |f, i| f.item(&module.items[i]), |_| "");
    let out = doc::render(&body, width);
    let out = out.trim_start_matches('\n');
    if out.is_empty() {
        String::new()
    } else {
        format!("{out}\n")
    }
}

struct Fmt<'s> {
    src: &'s str,
    comments: &'s [Comment],
    /// The first comment not yet printed.
    next: usize,
}

fn comment_text(c: &Comment) -> String {
    format!("{}{}", if c.doc { "///" } else { "//" }, c.text)
}

fn hard() -> Doc {
    Doc::HardLine
}

impl<'s> Fmt<'s> {
    fn slice(&self, span: Span) -> &'s str {
        &self.src[span.start..span.end]
    }

    /// Takes the comments that start before `pos`.
    fn take_before(&mut self, pos: usize) -> Vec<&'s Comment> {
        let mut out = Vec::new();
        while self.next < self.comments.len() && self.comments[self.next].span.start < pos {
            out.push(&self.comments[self.next]);
            self.next += 1;
        }
        out
    }

    /// Skips the comments inside a span printed verbatim (they are in the printed text).
    fn skip_inside(&mut self, span: Span) {
        while self.next < self.comments.len()
            && self.comments[self.next].span.start >= span.start
            && self.comments[self.next].span.start < span.end
        {
            self.next += 1;
        }
    }

    /// Takes the comment that follows `end` on the same line, with only separators between.
    fn take_trailing(&mut self, end: usize) -> Option<&'s Comment> {
        let c = self.comments.get(self.next)?;
        if c.span.start < end {
            return None;
        }
        let between = &self.src[end..c.span.start];
        if between.chars().all(|ch| ch == ' ' || ch == '\t' || ch == ',' || ch == ';') {
            self.next += 1;
            Some(c)
        } else {
            None
        }
    }

    /// Whether the source between two offsets holds an empty line.
    fn blank_between(&self, a: usize, b: usize) -> bool {
        if a >= b {
            return false;
        }
        let lines: Vec<&str> = self.src[a..b].split('\n').collect();
        lines.len() > 2 && lines[1..lines.len() - 1].iter().any(|l| l.trim().is_empty())
    }

    /// Elements one per line, with the comments before and after them and at most one blank
    /// line where the source had one. `end` is where the enclosing construct closes. `sep(i)` is
    /// written after element `i` (before its trailing comment).
    fn vertical(
        &mut self,
        spans: &[Span],
        end: usize,
        mut print: impl FnMut(&mut Self, usize) -> Doc,
        sep: impl Fn(usize) -> &'static str,
    ) -> Doc {
        let mut parts = Vec::new();
        let mut last_end: Option<usize> = None;
        let line_break = |parts: &mut Vec<Doc>, last_end: &mut Option<usize>, start: usize, f: &Self| {
            if let Some(prev) = *last_end {
                parts.push(if f.blank_between(prev, start) { Doc::BlankLine } else { hard() });
            }
        };
        for (i, span) in spans.iter().enumerate() {
            for c in self.take_before(span.start) {
                line_break(&mut parts, &mut last_end, c.span.start, self);
                parts.push(text(comment_text(c)));
                last_end = Some(c.span.end);
            }
            line_break(&mut parts, &mut last_end, span.start, self);
            parts.push(print(self, i));
            parts.push(text(sep(i)));
            last_end = Some(span.end);
            if let Some(c) = self.take_trailing(span.end) {
                parts.push(text(format!(" {}", comment_text(c))));
                last_end = Some(c.span.end);
            }
        }
        for c in self.take_before(end) {
            line_break(&mut parts, &mut last_end, c.span.start, self);
            parts.push(text(comment_text(c)));
            last_end = Some(c.span.end);
        }
        concat(parts)
    }

    /// `open` elements `close`: on one line when it fits (with spaces inside when `spaced`),
    /// else one element per line with a trailing comma.
    fn inline(
        &mut self,
        open: &str,
        close: &str,
        spaced: bool,
        spans: &[Span],
        end: usize,
        mut print: impl FnMut(&mut Self, usize) -> Doc,
    ) -> Doc {
        let inner_break = || if spaced { Doc::Line } else { Doc::SoftLine };
        let mut items = Vec::new();
        let mut force = false;
        for (i, span) in spans.iter().enumerate() {
            let mut item = Vec::new();
            if i > 0 {
                item.push(Doc::Line);
            }
            for c in self.take_before(span.start) {
                item.push(text(comment_text(c)));
                item.push(hard());
            }
            item.push(print(self, i));
            item.push(if i + 1 < spans.len() { text(",") } else { Doc::IfBroken(",") });
            if let Some(c) = self.take_trailing(span.end) {
                item.push(text(format!(" {}", comment_text(c))));
                item.push(Doc::BreakParent);
                force = true;
            }
            items.push(concat(item));
        }
        let rest = self.take_before(end);
        if spans.is_empty() && rest.is_empty() {
            return text(format!("{open}{close}"));
        }
        for (i, c) in rest.into_iter().enumerate() {
            if i > 0 || !spans.is_empty() {
                items.push(hard());
            }
            items.push(text(comment_text(c)));
            force = true;
        }
        if force {
            items.push(Doc::BreakParent);
        }
        group(concat(vec![text(open), nest(concat(vec![inner_break(), concat(items)])), inner_break(), text(close)]))
    }

    /// `{` lines `}`, always broken.
    fn braced(&mut self, head: Doc, body: Doc) -> Doc {
        concat(vec![head, text("{"), nest(concat(vec![hard(), body])), hard(), text("}")])
    }

    fn braced_vertical(
        &mut self,
        head: Doc,
        spans: &[Span],
        end: usize,
        print: impl FnMut(&mut Self, usize) -> Doc,
    ) -> Doc {
        let body = self.vertical(spans, end, print, |_| "");
        if spans.is_empty() && matches!(&body, Doc::Concat(p) if p.is_empty()) {
            return concat(vec![head, text("{}")]);
        }
        self.braced(head, body)
    }

    // -------------------------------------------------------------------------------------
    // Declarations

    fn item(&mut self, item: &Item) -> Doc {
        let end = item.span.end;
        match &item.kind {
            ItemKind::Use(u) => match &u.target {
                UseTarget::Std { name } => text(format!("use std.{}", name.name)),
                UseTarget::File { path_span, alias, .. } => {
                    text(format!("use {} as {}", self.slice(*path_span), alias.name))
                }
            },
            ItemKind::Config(c) => concat(vec![
                text(format!("config {}: ", c.name.name)),
                self.ty(&c.ty),
                text(" = "),
                self.expr(&c.value),
            ]),
            ItemKind::Secret(s) => text(format!("secret {}", s.name.name)),
            ItemKind::Type(t) => concat(vec![text(format!("type {} = ", t.name.name)), self.ty(&t.ty)]),
            ItemKind::Enum(e) => {
                let spans: Vec<Span> = e.variants.iter().map(|v| v.span).collect();
                let list = self.inline("{", "}", true, &spans, end, |_, i| text(&e.variants[i].name));
                concat(vec![text(format!("enum {} ", e.name.name)), list])
            }
            ItemKind::Lifecycle(l) => {
                let spans: Vec<Span> = l
                    .chains
                    .iter()
                    .map(|c| c.first().map_or(Span::default(), |a| a.span.to(c.last().expect("non-empty").span)))
                    .collect();
                self.braced_vertical(text(format!("lifecycle {} ", l.name.name)), &spans, end, |_, i| {
                    text(l.chains[i].iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(" -> "))
                })
            }
            ItemKind::Block(b) => {
                let spans: Vec<Span> = b.fields.iter().map(|f| f.span).collect();
                self.braced_vertical(text(format!("block {} ", b.name.name)), &spans, end, |f, i| {
                    f.field_decl(&b.fields[i])
                })
            }
            ItemKind::Product(p) => {
                let spans: Vec<Span> = p
                    .members
                    .iter()
                    .map(|m| match m {
                        ProductMember::Fixed { span, .. } => *span,
                        ProductMember::Field(fd) => fd.span,
                    })
                    .collect();
                let head = text(format!("product {} lifecycle {} ", p.name.name, p.lifecycle.dotted()));
                self.braced_vertical(head, &spans, end, |f, i| match &p.members[i] {
                    ProductMember::Fixed { name, ty, value, .. } => {
                        concat(vec![text(format!("fixed {}: ", name.name)), f.ty(ty), text(" = "), f.expr(value)])
                    }
                    ProductMember::Field(fd) => f.field_decl(fd),
                })
            }
            ItemKind::Environment(e) => {
                let spans: Vec<Span> = e.overrides.iter().map(|(n, v)| n.span.to(v.span)).collect();
                self.braced_vertical(text(format!("environment {} ", e.name.name)), &spans, end, |f, i| {
                    let (name, value) = &e.overrides[i];
                    concat(vec![text(format!("{} = ", name.name)), f.expr(value)])
                })
            }
            ItemKind::Step(s) => self.step(s, end),
            ItemKind::Workflow(w) => {
                let head = self.header("workflow", &w.name, &w.params, &w.outputs, w.outputs_span);
                if matches!(&w.body.kind, FlowKind::Seq(parts) if parts.is_empty()) {
                    let body = self.vertical(&[], end, |_, _| text(""), |_| "");
                    if matches!(&body, Doc::Concat(p) if p.is_empty()) {
                        return concat(vec![head, text(" {}")]);
                    }
                    return self.braced(concat(vec![head, text(" ")]), body);
                }
                let body = self.vertical(&[w.body.span], end, |f, _| f.flow(&w.body), |_| "");
                self.braced(concat(vec![head, text(" ")]), body)
            }
        }
    }

    fn field_decl(&mut self, f: &FieldDecl) -> Doc {
        let mut parts = vec![text(format!("{}: ", f.name.name)), self.ty(&f.ty)];
        if !f.when.is_empty() {
            let states: Vec<&str> = f.when.iter().map(|s| s.name.as_str()).collect();
            parts.push(text(format!(" when {}", states.join(" | "))));
        }
        concat(parts)
    }

    /// `KEYWORD NAME(params) -> (outputs)`
    fn header(&mut self, keyword: &str, name: &Ident, params: &[Param], outputs: &[Output], outputs_span: Span) -> Doc {
        let spans: Vec<Span> = params.iter().map(|p| p.span).collect();
        let params_doc = self.inline("(", ")", false, &spans, outputs_span.start, |f, i| {
            let p = &params[i];
            let mut parts = vec![text(format!("{}: ", p.name.name)), f.ty(&p.ty)];
            if let Some(d) = &p.default {
                parts.push(text(" = "));
                parts.push(f.expr(d));
            }
            concat(parts)
        });
        let spans: Vec<Span> = outputs.iter().map(|o| o.span).collect();
        let outputs_doc = self.inline("(", ")", false, &spans, outputs_span.end, |f, i| {
            concat(vec![text(format!("{}: ", outputs[i].name.name)), f.ty(&outputs[i].ty)])
        });
        concat(vec![text(format!("{keyword} {}", name.name)), params_doc, text(" -> "), outputs_doc])
    }

    fn step(&mut self, s: &StepDecl, end: usize) -> Doc {
        let keyword = if s.input { "input step" } else { "step" };
        let mut out = vec![self.header(keyword, &s.name, &s.params, &s.outputs, s.outputs_span)];
        // (span, which clause), printed lazily so that comments are taken in order.
        let mut clauses: Vec<(Span, u8)> = Vec::new();
        if let Some(r) = &s.retry {
            clauses.push((r.span, 0));
        }
        if let Some(t) = &s.timeout {
            clauses.push((t.span, 1));
        }
        if let Some(p) = &s.poll {
            clauses.push((p.span, 2));
        }
        if let Some(c) = &s.compensate {
            clauses.push((c.span, 3));
        }
        if let Some(prompt) = &s.prompt {
            clauses.push((prompt.span, 4));
        }
        let print_clause = |f: &mut Self, which: u8| -> Doc {
            match which {
                0 => {
                    let r = s.retry.as_ref().expect("retry");
                    let mut c = format!("retry {}", f.slice(r.attempts.span));
                    if let Some((lo, hi)) = &r.backoff {
                        c.push_str(&format!(" backoff {}..{}", f.slice(lo.span), f.slice(hi.span)));
                    }
                    if let Some(fa) = &r.factor {
                        c.push_str(&format!(" factor {}", f.slice(fa.span)));
                    }
                    text(c)
                }
                1 => text(format!("timeout {}", f.slice(s.timeout.as_ref().expect("timeout").value.span))),
                2 => {
                    let p = s.poll.as_ref().expect("poll");
                    let mut parts =
                        vec![text(format!("poll every {} until ", f.slice(p.every.span))), f.expr(&p.until)];
                    if let Some(w) = &p.within {
                        parts.push(text(format!(" within {}", f.slice(w.span))));
                    }
                    concat(parts)
                }
                3 => text(format!("compensate {}", s.compensate.as_ref().expect("compensate").value.dotted())),
                _ => f.expr(s.prompt.as_ref().expect("prompt")),
            }
        };
        let has_clauses = !clauses.is_empty();
        if has_clauses {
            let spans: Vec<Span> = clauses.iter().map(|c| c.0).collect();
            let body_start = s.body.as_ref().map_or(end, |b| b.span.start);
            let lines = self.vertical(&spans, body_start, |f, i| print_clause(f, clauses[i].1), |_| "");
            out.push(nest(concat(vec![hard(), lines])));
        }
        if let Some(body) = &s.body {
            if has_clauses {
                out.push(hard());
            } else {
                out.push(text(" "));
            }
            out.push(self.block(body, true));
        }
        concat(out)
    }

    // -------------------------------------------------------------------------------------
    // Types

    fn ty(&mut self, t: &TypeExpr) -> Doc {
        match &t.kind {
            TypeKind::Named { path, state } => match state {
                Some(s) => text(format!("{}@{}", path.dotted(), s.name)),
                None => text(path.dotted()),
            },
            TypeKind::List(inner) => concat(vec![text("["), self.ty(inner), text("]")]),
            TypeKind::Map(k, v) => concat(vec![text("["), self.ty(k), text(": "), self.ty(v), text("]")]),
            TypeKind::Record(fields) => {
                let spans: Vec<Span> = fields.iter().map(|f| f.name.span.to(f.ty.span)).collect();
                self.inline("{", "}", true, &spans, t.span.end, |f, i| {
                    concat(vec![text(format!("{}: ", fields[i].name.name)), f.ty(&fields[i].ty)])
                })
            }
            // `T??` would read as the `??` operator: nested optionals keep a space.
            TypeKind::Optional(inner) => {
                let mark = if matches!(inner.kind, TypeKind::Optional(_)) { " ?" } else { "?" };
                concat(vec![self.ty(inner), text(mark)])
            }
        }
    }

    // -------------------------------------------------------------------------------------
    // Flows

    fn flow(&mut self, flow: &Flow) -> Doc {
        match &flow.kind {
            FlowKind::Call(c) => self.flow_call(c),
            FlowKind::Seq(parts) | FlowKind::Par(parts) => {
                let op = if matches!(flow.kind, FlowKind::Seq(_)) { ">> " } else { "& " };
                let mut docs = Vec::new();
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        docs.push(Doc::Line);
                        for c in self.take_before(p.span.start) {
                            docs.push(text(comment_text(c)));
                            docs.push(hard());
                        }
                        docs.push(text(op));
                    }
                    docs.push(self.flow(p));
                    if let Some(c) = self.take_trailing(p.span.end) {
                        docs.push(text(format!(" {}", comment_text(c))));
                        docs.push(Doc::BreakParent);
                    }
                }
                group(concat(docs))
            }
            FlowKind::Group(inner) => {
                let d = self.flow(inner);
                let rest = self.take_before(flow.span.end);
                let mut tail = Vec::new();
                for c in rest {
                    tail.push(hard());
                    tail.push(text(comment_text(c)));
                }
                if !tail.is_empty() {
                    tail.push(Doc::BreakParent);
                }
                group(concat(vec![
                    text("("),
                    nest(concat(vec![Doc::SoftLine, d, concat(tail)])),
                    Doc::SoftLine,
                    text(")"),
                ]))
            }
            FlowKind::Graph(items) => {
                let spans: Vec<Span> = items.iter().map(|i| i.span).collect();
                self.braced_vertical(text("graph "), &spans, flow.span.end, |f, i| {
                    let item = &items[i];
                    let mut parts = vec![f.flow_call(&item.call)];
                    match item.after.as_slice() {
                        [] => {}
                        [one] => parts.push(text(format!(" after {}", one.name))),
                        many => {
                            let names: Vec<&str> = many.iter().map(|a| a.name.as_str()).collect();
                            parts.push(text(format!(" after ({})", names.join(", "))));
                        }
                    }
                    concat(parts)
                })
            }
            FlowKind::If { cond, then, otherwise } => self.flow_if(cond, then, otherwise.as_deref(), flow.span.end),
            FlowKind::For { var, iter, limit, body } => {
                let mut head = vec![text(format!("for {} in ", var.name)), self.expr(iter)];
                if let Some(l) = limit {
                    head.push(text(format!(" limit {}", self.slice(l.span))));
                }
                head.push(text(" "));
                let inner = self.vertical(&[body.span], flow.span.end, |f, _| f.flow(body), |_| "");
                self.braced(concat(head), inner)
            }
        }
    }

    fn flow_if(&mut self, cond: &Expr, then: &Flow, otherwise: Option<&Flow>, end: usize) -> Doc {
        let head = concat(vec![text("if "), self.expr(cond), text(" ")]);
        let then_end = otherwise.map_or(end, |o| o.span.start);
        // Comments after the `then` flow but before `else` stay inside the `then` braces.
        let then_close = match otherwise {
            Some(_) => self.src[then.span.end..then_end].find('}').map_or(then_end, |i| then.span.end + i),
            None => end,
        };
        let inner = self.vertical(&[then.span], then_close, |f, _| f.flow(then), |_| "");
        let mut out = vec![self.braced(head, inner)];
        if let Some(o) = otherwise {
            out.push(text(" else "));
            match &o.kind {
                FlowKind::If { cond, then, otherwise } => out.push(self.flow_if(cond, then, otherwise.as_deref(), end)),
                _ => {
                    let inner = self.vertical(&[o.span], end, |f, _| f.flow(o), |_| "");
                    out.push(self.braced(text(""), inner));
                }
            }
        }
        concat(out)
    }

    fn flow_call(&mut self, c: &FlowCall) -> Doc {
        let mut parts = vec![text(c.target.dotted())];
        if !c.args.is_empty() {
            let spans: Vec<Span> = c.args.iter().map(|(n, v)| n.span.to(v.span)).collect();
            let end = c.renames.first().map_or(c.span.end, |r| r.0.span.start);
            parts.push(self.inline("(", ")", false, &spans, end, |f, i| {
                concat(vec![text(format!("{}: ", c.args[i].0.name)), f.expr(&c.args[i].1)])
            }));
        }
        if !c.renames.is_empty() {
            let spans: Vec<Span> = c.renames.iter().map(|(k, o)| k.span.to(o.span)).collect();
            parts.push(text(" as "));
            parts.push(self.inline("(", ")", false, &spans, c.span.end, |_, i| {
                text(format!("{}: {}", c.renames[i].0.name, c.renames[i].1.name))
            }));
        }
        concat(parts)
    }

    // -------------------------------------------------------------------------------------
    // Blocks and expressions

    /// A step body or an `if`/`for` branch. `always_break`: never on one line.
    fn block(&mut self, b: &Block, always_break: bool) -> Doc {
        match self.block_raw(b, always_break) {
            d @ Doc::Concat(_) if !always_break => group(d),
            d => d,
        }
    }

    /// A block whose line breaks belong to the enclosing group (so that `if c { a } else { b }`
    /// breaks its branches before its condition).
    fn block_raw(&mut self, b: &Block, always_break: bool) -> Doc {
        let has_comments = self.comments.get(self.next).is_some_and(|c| c.span.start < b.span.end);
        if b.stmts.is_empty() && !has_comments {
            match &b.result {
                None => return text("{}"),
                Some(r) if !always_break => {
                    let e = self.expr(r);
                    return concat(vec![text("{"), nest(concat(vec![Doc::Line, e])), Doc::Line, text("}")]);
                }
                _ => {}
            }
        }
        let mut spans: Vec<Span> = b
            .stmts
            .iter()
            .map(|s| match s {
                Stmt::Let { span, .. } => *span,
                Stmt::Expr(e) => e.span,
            })
            .collect();
        if let Some(r) = &b.result {
            spans.push(r.span);
        }
        // A statement starting with `-` after another would join it as a subtraction.
        let starts_minus: Vec<bool> = (0..spans.len())
            .map(|i| match b.stmts.get(i) {
                Some(Stmt::Expr(e)) => starts_with_minus(e),
                Some(Stmt::Let { .. }) => false,
                None => b.result.as_deref().is_some_and(starts_with_minus),
            })
            .collect();
        let n = spans.len();
        let body = self.vertical(
            &spans,
            b.span.end,
            |f, i| match b.stmts.get(i) {
                Some(Stmt::Let { name, ty, value, .. }) => {
                    let mut parts = vec![text(format!("let {}", name.name))];
                    if let Some(t) = ty {
                        parts.push(text(": "));
                        parts.push(f.ty(t));
                    }
                    parts.push(text(" = "));
                    parts.push(f.expr(value));
                    concat(parts)
                }
                Some(Stmt::Expr(e)) => f.expr(e),
                None => f.expr(b.result.as_deref().expect("the final expression")),
            },
            |i| if i + 1 < n && starts_minus[i + 1] { ";" } else { "" },
        );
        if n == 0 && matches!(&body, Doc::Concat(p) if p.is_empty()) {
            return text("{}");
        }
        self.braced(text(""), body)
    }

    fn expr(&mut self, e: &Expr) -> Doc {
        match &e.kind {
            ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Duration(_) | ExprKind::Str(_) => {
                self.skip_inside(e.span);
                text(self.slice(e.span))
            }
            ExprKind::Bool(b) => text(if *b { "true" } else { "false" }),
            ExprKind::None => text("none"),
            ExprKind::Name(n) => text(&n.name),
            ExprKind::Record(fields) => {
                let spans: Vec<Span> =
                    fields.iter().map(|f| f.value.as_ref().map_or(f.name.span, |v| f.name.span.to(v.span))).collect();
                self.inline("{", "}", true, &spans, e.span.end, |f, i| match &fields[i].value {
                    Some(v) => concat(vec![text(format!("{}: ", fields[i].name.name)), f.expr(v)]),
                    None => text(&fields[i].name.name),
                })
            }
            ExprKind::List(items) => {
                let spans: Vec<Span> = items.iter().map(|i| i.span).collect();
                self.inline("[", "]", false, &spans, e.span.end, |f, i| f.expr(&items[i]))
            }
            ExprKind::Field(base, name) => concat(vec![self.expr(base), text(format!(".{}", name.name))]),
            ExprKind::Index(base, index) => concat(vec![self.expr(base), text("["), self.expr(index), text("]")]),
            ExprKind::Call { callee, args } => {
                let callee = self.expr(callee);
                let spans: Vec<Span> =
                    args.iter().map(|a| a.name.as_ref().map_or(a.value.span, |n| n.span.to(a.value.span))).collect();
                let list = self.inline("(", ")", false, &spans, e.span.end, |f, i| match &args[i].name {
                    Some(n) => concat(vec![text(format!("{}: ", n.name)), f.expr(&args[i].value)]),
                    None => f.expr(&args[i].value),
                });
                concat(vec![callee, list])
            }
            ExprKind::Unary(op, operand) => {
                let prefix = match op {
                    UnaryOp::Not => "not ",
                    UnaryOp::Neg => "-",
                };
                concat(vec![text(prefix), self.expr(operand)])
            }
            ExprKind::Binary(op, _, _) => {
                // A chain of one precedence (`a + b - c`) breaks after its operators, indented.
                let mut operands = Vec::new();
                let mut cur = e;
                while let ExprKind::Binary(o, l, r) = &cur.kind {
                    if o.precedence() != op.precedence() {
                        break;
                    }
                    operands.push((*o, &**r));
                    cur = l;
                }
                let first = self.expr(cur);
                let mut rest = Vec::new();
                for (o, r) in operands.into_iter().rev() {
                    rest.push(text(format!(" {}", o.symbol())));
                    rest.push(Doc::Line);
                    rest.push(self.expr(r));
                }
                group(concat(vec![first, nest(concat(rest))]))
            }
            ExprKind::If { cond, then, otherwise } => {
                let mut parts = Vec::new();
                self.if_chain(cond, then, otherwise.as_ref(), &mut parts);
                group(concat(parts))
            }
            ExprKind::For { var, iter, filter, body } => {
                let mut parts = vec![text(format!("for {} in ", var.name)), self.expr(iter)];
                if let Some(fl) = filter {
                    parts.push(text(" if "));
                    parts.push(self.expr(fl));
                }
                parts.push(text(" "));
                parts.push(self.block_raw(body, false));
                group(concat(parts))
            }
            ExprKind::With { base, updates } => {
                let base = self.expr(base);
                let spans: Vec<Span> =
                    updates.iter().map(|(path, v)| path.first().map_or(v.span, |p| p.span.to(v.span))).collect();
                let list = self.inline("{", "}", true, &spans, e.span.end, |f, i| {
                    let (path, v) = &updates[i];
                    let names: Vec<&str> = path.iter().map(|p| p.name.as_str()).collect();
                    concat(vec![text(format!("{}: ", names.join("."))), f.expr(v)])
                });
                concat(vec![base, text(" with "), list])
            }
            ExprKind::As(inner, ty) => concat(vec![self.expr(inner), text(" as "), self.ty(ty)]),
            ExprKind::Paren(inner) => concat(vec![text("("), self.expr(inner), text(")")]),
        }
    }
}

impl Fmt<'_> {
    /// `if c { a } else if d { b } else { c }` as one group.
    fn if_chain(&mut self, cond: &Expr, then: &Block, otherwise: Option<&Else>, parts: &mut Vec<Doc>) {
        parts.push(text("if "));
        parts.push(self.expr(cond));
        parts.push(text(" "));
        parts.push(self.block_raw(then, false));
        match otherwise {
            None => {}
            Some(Else::Block(b)) => {
                parts.push(text(" else "));
                parts.push(self.block_raw(b, false));
            }
            Some(Else::If(i)) => {
                parts.push(text(" else "));
                match &i.kind {
                    ExprKind::If { cond, then, otherwise } => self.if_chain(cond, then, otherwise.as_ref(), parts),
                    _ => parts.push(self.expr(i)),
                }
            }
        }
    }
}

/// Whether the expression's text starts with `-`.
fn starts_with_minus(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Unary(UnaryOp::Neg, _) => true,
        ExprKind::Binary(_, l, _) => starts_with_minus(l),
        ExprKind::Field(b, _) | ExprKind::Index(b, _) | ExprKind::As(b, _) => starts_with_minus(b),
        ExprKind::Call { callee, .. } => starts_with_minus(callee),
        ExprKind::With { base, .. } => starts_with_minus(base),
        _ => false,
    }
}
