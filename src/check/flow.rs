//! Data flow through a workflow (brief §7): which state keys exist with which types at each call,
//! and the lowering of flows to `ir::Flow` with stable ids.

use super::error::{At, CheckError, ModId};
use super::expr::Scope;
use super::load::ItemTag;
use super::{Checker, Sig};
use crate::diagnostics::Code;
use crate::ir::{self, Type};
use crate::syntax::ast::{self, FlowKind, Span};
use indexmap::IndexMap;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{HashMap, HashSet};

/// A state key: its type and who wrote it last.
#[derive(Clone, Debug)]
struct Key {
    ty: Type,
    writer: Span,
    /// "step `create_in_ims`" or "workflow parameter `customer`".
    writer_desc: String,
}

type State = IndexMap<String, Key>;

/// A parameter no earlier item provides; inside `&` it may turn out to be a sibling's output.
struct Missing {
    key: String,
    ty: Type,
    call: Span,
    step: String,
    /// The `compensate` clause and the compensating step, when the need is a compensation's.
    compensation: Option<(At, String)>,
}

struct Written {
    key: String,
    span: Span,
    desc: String,
}

struct FlowCx {
    m: ModId,
    counter: usize,
    reads: Vec<(String, Span)>,
    writes: Vec<Written>,
    sinks: Vec<Vec<Missing>>,
    /// Every call in the workflow in source order: (span, keys it writes, name).
    all_calls: Vec<(Span, Vec<String>, String)>,
    /// (step, output, key) of every call, for the unused-output lint.
    call_outputs: Vec<(String, String, String)>,
    /// A call did not resolve (already reported): it might have written any key, so missing keys
    /// and outputs are not reported on top of it.
    unresolved: bool,
}

impl FlowCx {
    fn id(&mut self, kind: &str) -> String {
        self.counter += 1;
        format!("{kind}{}", self.counter)
    }
}

const FLOW_PLACE: &str = "a workflow's flow";

impl Checker {
    pub(super) fn workflow_flow(&mut self, m: ModId, w: &ast::WorkflowDecl, sig: &Sig) -> Option<ir::Flow> {
        let mut state = State::default();
        for p in &w.params {
            if let Some(sp) = sig.params.iter().find(|s| s.name == p.name.name) {
                state.insert(
                    sp.name.clone(),
                    Key { ty: sp.ty.clone(), writer: p.span, writer_desc: format!("workflow parameter `{}`", sp.name) },
                );
            }
        }
        let mut cx = FlowCx {
            m,
            counter: 0,
            reads: vec![],
            writes: vec![],
            sinks: vec![],
            all_calls: vec![],
            call_outputs: vec![],
            unresolved: false,
        };
        self.collect_calls(m, &w.body, &mut cx.all_calls);
        cx.unresolved = self.any_unresolved(m, &w.body);
        let (flow, end) = self.flow(&mut cx, &w.body, state);
        let mut ok = !cx.unresolved;
        for (name, (ty, span)) in &sig.outputs {
            match end.get(name) {
                None if cx.unresolved => {}
                None => {
                    ok = false;
                    let mut e = CheckError::new(
                        Code::FlowMissingOutput,
                        Self::at(m, *span),
                        format!("workflow `{}` promises `{name}`, but its flow never writes `{name}`", w.name.name),
                        "never written",
                    );
                    let writers: Vec<&str> = cx.all_calls.iter().map(|(_, _, n)| n.as_str()).collect();
                    if !writers.is_empty() {
                        e = e.help(format!("the flow's steps write: {}", self.written_keys(&cx).join(", ")));
                    }
                    self.err(e);
                }
                Some(k) if !self.fits(&k.ty, ty) => {
                    ok = false;
                    self.err(
                        CheckError::new(
                            Code::FlowMissingOutput,
                            Self::at(m, *span),
                            format!(
                                "workflow `{}` promises `{name}: {ty}`, but at the end `{name}` is `{}`",
                                w.name.name, k.ty
                            ),
                            format!("`{ty}` promised"),
                        )
                        .label(Self::at(m, k.writer), format!("{} writes it as `{}`", k.writer_desc, k.ty)),
                    );
                }
                Some(_) => {}
            }
        }
        // For the lint: a write is used when anything in this workflow reads its key or the
        // workflow returns it.
        let read: HashSet<&str> =
            cx.reads.iter().map(|(k, _)| k.as_str()).chain(sig.outputs.keys().map(String::as_str)).collect();
        for (step, out, key) in &cx.call_outputs {
            if read.contains(key.as_str()) {
                self.used_outputs.insert((step.clone(), out.clone()));
            }
        }
        if ok {
            flow
        } else {
            None
        }
    }

    fn written_keys(&self, cx: &FlowCx) -> Vec<String> {
        let mut keys: Vec<String> = vec![];
        for (_, ks, _) in &cx.all_calls {
            for k in ks {
                if !keys.contains(k) {
                    keys.push(format!("`{k}`"));
                }
            }
        }
        keys.dedup();
        keys
    }

    /// Every call of a flow in source order, with the keys it writes, for "written later" help.
    fn collect_calls(&self, m: ModId, f: &ast::Flow, out: &mut Vec<(Span, Vec<String>, String)>) {
        match &f.kind {
            FlowKind::Call(c) => out.push((c.span, self.call_writes(m, c), c.target.dotted())),
            FlowKind::Seq(xs) | FlowKind::Par(xs) => xs.iter().for_each(|x| self.collect_calls(m, x, out)),
            FlowKind::Graph(items) => {
                for it in items {
                    out.push((it.call.span, self.call_writes(m, &it.call), it.call.target.dotted()))
                }
            }
            FlowKind::If { then, otherwise, .. } => {
                self.collect_calls(m, then, out);
                if let Some(o) = otherwise {
                    self.collect_calls(m, o, out);
                }
            }
            FlowKind::For { body, .. } => self.collect_calls(m, body, out),
            FlowKind::Group(x) => self.collect_calls(m, x, out),
        }
    }

    fn any_unresolved(&self, m: ModId, f: &ast::Flow) -> bool {
        let call = |c: &ast::FlowCall| self.call_sig(m, c).is_none();
        match &f.kind {
            FlowKind::Call(c) => call(c),
            FlowKind::Seq(xs) | FlowKind::Par(xs) => xs.iter().any(|x| self.any_unresolved(m, x)),
            FlowKind::Graph(items) => items.iter().any(|it| call(&it.call)),
            FlowKind::If { then, otherwise, .. } => {
                self.any_unresolved(m, then) || otherwise.as_ref().is_some_and(|o| self.any_unresolved(m, o))
            }
            FlowKind::For { body, .. } => self.any_unresolved(m, body),
            FlowKind::Group(x) => self.any_unresolved(m, x),
        }
    }

    fn call_sig(&self, m: ModId, c: &ast::FlowCall) -> Option<Sig> {
        let segs: Vec<&str> = c.target.segments.iter().map(|s| s.name.as_str()).collect();
        let found = self.lookup(m, &segs)?;
        self.sigs.get(&found.qname).cloned()
    }

    /// The state keys a call writes (its outputs, renamed by `as`).
    fn call_writes(&self, m: ModId, c: &ast::FlowCall) -> Vec<String> {
        let Some(sig) = self.call_sig(m, c) else { return vec![] };
        sig.outputs
            .keys()
            .map(|o| c.renames.iter().find(|(_, out)| &out.name == o).map_or(o.clone(), |(k, _)| k.name.clone()))
            .collect()
    }

    fn flow_scope(state: &State) -> Scope {
        let mut scope = Scope::new(false, FLOW_PLACE);
        scope.push_all(state.iter().map(|(k, v)| (k.clone(), v.ty.clone())).collect());
        scope
    }

    fn flow(&mut self, cx: &mut FlowCx, f: &ast::Flow, mut state: State) -> (Option<ir::Flow>, State) {
        let m = cx.m;
        match &f.kind {
            FlowKind::Group(inner) => self.flow(cx, inner, state),
            FlowKind::Call(c) => {
                let call = self.flow_call(cx, c, &mut state);
                (call.map(ir::Flow::Call), state)
            }
            FlowKind::Seq(items) => {
                let id = cx.id("seq");
                let mut out = vec![];
                let mut ok = true;
                for it in items {
                    let (x, s) = self.flow(cx, it, state);
                    state = s;
                    match x {
                        Some(x) => out.push(x),
                        None => ok = false,
                    }
                }
                (ok.then_some(ir::Flow::Seq { id, items: out }), state)
            }
            FlowKind::Par(branches) => self.par(cx, branches, state),
            FlowKind::Graph(items) => self.graph(cx, f.span, items, state),
            FlowKind::If { cond, then, otherwise } => {
                let id = cx.id("if");
                let mut scope = Self::flow_scope(&state);
                let c = self.expr(m, &mut scope, cond, Some(&Type::Bool));
                self.expect(m, &c, cond.span, &Type::Bool, None);
                cx.reads.extend(scope.reads);
                let (t, ts) = self.flow(cx, then, state.clone());
                let (o, os) = match otherwise {
                    Some(o) => {
                        let (x, s) = self.flow(cx, o, state.clone());
                        (Some(x), s)
                    }
                    None => (None, state.clone()),
                };
                let merged = self.merge_branches(m, &state, ts, os);
                let ir = match (t, o) {
                    (Some(t), None) => Some(ir::Flow::If { id, cond: c, then: Box::new(t), otherwise: None }),
                    (Some(t), Some(Some(o))) => {
                        Some(ir::Flow::If { id, cond: c, then: Box::new(t), otherwise: Some(Box::new(o)) })
                    }
                    _ => None,
                };
                (ir, merged)
            }
            FlowKind::For { var, iter, limit, body } => {
                let id = cx.id("for");
                let mut scope = Self::flow_scope(&state);
                let it = self.expr(m, &mut scope, iter, None);
                cx.reads.extend(scope.reads);
                let elem = match &it.ty {
                    Type::List(t) => (**t).clone(),
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
                let limit = match limit {
                    Some(l) => self.count_literal(m, l, "a `for` limit").unwrap_or(16),
                    None => 16,
                };
                let before = state.clone();
                let mut inner = state.clone();
                inner.insert(
                    var.name.clone(),
                    Key { ty: elem, writer: var.span, writer_desc: format!("the loop variable `{}`", var.name) },
                );
                let w0 = cx.writes.len();
                let (b, after) = self.flow(cx, body, inner);
                let mut reported = HashSet::new();
                for w in &cx.writes[w0..] {
                    if let Some(old) = before.get(&w.key) {
                        if w.key != var.name && reported.insert(w.key.clone()) {
                            self.err(
                                CheckError::new(
                                    Code::FlowConflictingWrites,
                                    Self::at(m, w.span),
                                    format!("{} writes `{}` in every iteration of the `for`, but `{}` exists before the loop", w.desc, w.key, w.key),
                                    "written in the loop",
                                )
                                .label(Self::at(m, old.writer), format!("`{}` is first written by {}", w.key, old.writer_desc))
                                .help("a loop's outputs become lists; write them under a new key with `as (new_key: output)`"),
                            );
                        }
                    }
                }
                let mut collects = vec![];
                for (k, v) in after {
                    if k == var.name || before.contains_key(&k) {
                        continue;
                    }
                    collects.push(k.clone());
                    state.insert(
                        k,
                        Key {
                            ty: Type::List(Box::new(v.ty)),
                            writer: v.writer,
                            writer_desc: format!("the `for` loop ({})", v.writer_desc),
                        },
                    );
                }
                let ir = b.map(|b| ir::Flow::For {
                    id,
                    var: var.name.clone(),
                    iter: it,
                    limit,
                    body: Box::new(b),
                    collects,
                });
                (ir, state)
            }
        }
    }

    /// Keys after an `if`: a key new in only one branch is optional afterwards.
    fn merge_branches(&mut self, m: ModId, before: &State, a: State, b: State) -> State {
        let mut out = before.clone();
        let keys: Vec<String> = a.keys().chain(b.keys()).cloned().collect();
        for k in keys {
            if out.contains_key(&k) && before.get(&k).map(|x| x.writer) != a.get(&k).map(|x| x.writer)
                || out.contains_key(&k) && before.get(&k).map(|x| x.writer) != b.get(&k).map(|x| x.writer)
                || !out.contains_key(&k)
            {
                let merged = match (a.get(&k), b.get(&k)) {
                    (Some(x), Some(y)) if x.writer == y.writer => x.clone(),
                    (Some(x), Some(y)) => match self.join(&x.ty, &y.ty) {
                        Some(ty) => Key { ty, ..x.clone() },
                        None => {
                            self.err(
                                CheckError::new(
                                    Code::FlowKeyType,
                                    Self::at(m, y.writer),
                                    format!(
                                        "the branches of `if` write `{k}` with different types: `{}` and `{}`",
                                        x.ty, y.ty
                                    ),
                                    format!("{} writes `{}`", y.writer_desc, y.ty),
                                )
                                .label(Self::at(m, x.writer), format!("{} writes `{}`", x.writer_desc, x.ty)),
                            );
                            x.clone()
                        }
                    },
                    (Some(x), None) | (None, Some(x)) => Key { ty: x.ty.clone().optional(), ..x.clone() },
                    (None, None) => continue,
                };
                out.insert(k, merged);
            }
        }
        out
    }

    fn par(&mut self, cx: &mut FlowCx, branches: &[ast::Flow], state: State) -> (Option<ir::Flow>, State) {
        let m = cx.m;
        let id = cx.id("par");
        cx.sinks.push(vec![]);
        let mut irs = vec![];
        let mut ok = true;
        let mut infos = vec![];
        let mut states = vec![];
        for b in branches {
            let (r0, w0, s0) = (cx.reads.len(), cx.writes.len(), cx.sinks.last().map_or(0, Vec::len));
            let (x, st) = self.flow(cx, b, state.clone());
            infos.push((r0..cx.reads.len(), w0..cx.writes.len(), s0..cx.sinks.last().map_or(0, Vec::len)));
            states.push(st);
            match x {
                Some(x) => irs.push(x),
                None => ok = false,
            }
        }
        let missing = cx.sinks.pop().unwrap_or_default();
        // Each key's writers: the branches that write it, in order, with their first write. An
        // index, so that many branches cost no more than their writes and reads.
        let mut writers: HashMap<&str, Vec<(usize, Span, &str)>> = HashMap::new();
        for (i, info) in infos.iter().enumerate() {
            for w in &cx.writes[info.1.clone()] {
                let list = writers.entry(w.key.as_str()).or_default();
                if list.last().is_none_or(|(b, _, _)| *b != i) {
                    list.push((i, w.span, w.desc.as_str()));
                }
            }
        }
        let sibling_writer = |key: &str, i: usize| {
            writers.get(key).and_then(|list| list.iter().find(|(j, _, _)| *j != i)).map(|&(_, span, desc)| (span, desc))
        };
        // Two branches writing one key: each write of a branch against every earlier branch that
        // writes the key, in the order of the branches.
        let mut conflicts: Vec<((usize, usize, usize), CheckError)> = vec![];
        for (j, info) in infos.iter().enumerate() {
            for (n, w) in cx.writes[info.1.clone()].iter().enumerate() {
                let k = &w.key;
                for &(i, first, fdesc) in writers.get(k.as_str()).into_iter().flatten().take_while(|(i, _, _)| *i < j) {
                    let e = CheckError::new(
                        Code::FlowConflictingWrites,
                        Self::at(m, w.span),
                        format!("parallel branches both write `{k}`"),
                        format!("{} writes `{k}`", w.desc),
                    )
                    .label(Self::at(m, first), format!("{fdesc} writes `{k}` in another branch"))
                    .help("rename one output with `as (other_key: output)`, or run the two in sequence with `>>`");
                    conflicts.push(((i, j, n), e));
                }
            }
        }
        conflicts.sort_by_key(|(at, _)| *at);
        let mut errs: Vec<CheckError> = conflicts.into_iter().map(|(_, e)| e).collect();
        // A branch reading what a sibling writes.
        for (i, info) in infos.iter().enumerate() {
            for (k, span) in &cx.reads[info.0.clone()] {
                if let Some((wspan, wdesc)) = sibling_writer(k, i) {
                    errs.push(parallel_dependency(m, k, *span, wspan, wdesc));
                }
            }
        }
        let mut unwritten = vec![];
        for (idx, miss) in missing.into_iter().enumerate() {
            // The branch whose sinks hold `idx` (the ranges are in order).
            let i = infos.partition_point(|inf| inf.2.end <= idx).min(infos.len().saturating_sub(1));
            match sibling_writer(&miss.key, i) {
                Some((wspan, wdesc)) => errs.push(parallel_dependency(m, &miss.key, miss.call, wspan, wdesc)),
                None => unwritten.push(miss),
            }
        }
        drop(writers);
        for miss in unwritten {
            self.missing(cx, miss);
        }
        self.errors.extend(errs);
        let mut merged = state.clone();
        for st in states {
            for (k, v) in st {
                if state.get(&k).map(|x| x.writer) != Some(v.writer) {
                    merged.insert(k, v);
                }
            }
        }
        (ok.then_some(ir::Flow::Par { id, branches: irs }), merged)
    }

    fn graph(
        &mut self,
        cx: &mut FlowCx,
        span: Span,
        items: &[ast::GraphItem],
        mut state: State,
    ) -> (Option<ir::Flow>, State) {
        let m = cx.m;
        let id = cx.id("graph");
        let sigs: Vec<Option<Sig>> = items.iter().map(|it| self.call_sig(m, &it.call)).collect();
        let mut graph: DiGraph<usize, ()> = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..items.len()).map(|i| graph.add_node(i)).collect();
        let mut writer_of: HashMap<String, usize> = HashMap::new();
        for (i, it) in items.iter().enumerate() {
            for k in self.call_writes(m, &it.call) {
                if let Some(&first) = writer_of.get(&k) {
                    self.err(
                        CheckError::new(
                            Code::FlowConflictingWrites,
                            Self::at(m, it.call.span),
                            format!("two items of the graph write `{k}`"),
                            format!("`{}` writes `{k}`", it.call.target.dotted()),
                        )
                        .label(
                            Self::at(m, items[first].call.span),
                            format!("`{}` writes `{k}` too", items[first].call.target.dotted()),
                        ),
                    );
                } else {
                    writer_of.insert(k, i);
                }
            }
        }
        let mut edges: Vec<(usize, usize)> = vec![];
        for (i, it) in items.iter().enumerate() {
            let mut needs: Vec<String> = vec![];
            if let Some(sig) = &sigs[i] {
                for p in &sig.params {
                    if !it.call.args.iter().any(|(a, _)| a.name == p.name) {
                        needs.push(p.name.clone());
                    }
                }
            }
            for (_, e) in &it.call.args {
                ast_names(e, &mut needs);
            }
            let after: Vec<usize> = it
                .after
                .iter()
                .filter_map(|a| {
                    items.iter().position(|x| x.call.target.last().name == a.name || x.call.target.dotted() == a.name)
                })
                .collect();
            for k in needs {
                if let Some(&w) = writer_of.get(&k) {
                    // A key that exists before the graph and that another item overwrites is read
                    // before it is overwritten, unless `after` says otherwise.
                    let edge = if state.contains_key(&k) && !after.contains(&w) { (i, w) } else { (w, i) };
                    if w != i && !edges.contains(&edge) {
                        edges.push(edge);
                    }
                }
            }
            for a in &it.after {
                match items.iter().position(|x| x.call.target.last().name == a.name || x.call.target.dotted() == a.name)
                {
                    Some(w) if w != i => {
                        if !edges.contains(&(w, i)) {
                            edges.push((w, i));
                        }
                    }
                    Some(_) => self.err(CheckError::new(
                        Code::FlowCycle,
                        Self::at(m, a.span),
                        format!("`{}` cannot run after itself", a.name),
                        "after itself",
                    )),
                    None => self.err(
                        CheckError::new(
                            Code::NameUnknown,
                            Self::at(m, a.span),
                            format!("`after {}` names no item of this graph", a.name),
                            "not in this graph",
                        )
                        .help(format!(
                            "the graph's items are: {}",
                            items
                                .iter()
                                .map(|x| format!("`{}`", x.call.target.last().name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    ),
                }
            }
        }
        for &(a, b) in &edges {
            graph.add_edge(nodes[a], nodes[b], ());
        }
        let mut cyclic = false;
        for scc in petgraph::algo::tarjan_scc(&graph) {
            if scc.len() < 2 {
                continue;
            }
            cyclic = true;
            let mut members: Vec<usize> = scc.iter().map(|n| graph[*n]).collect();
            members.sort_unstable();
            // Walk the cycle from the first item in source order for the message.
            let mut order = vec![members[0]];
            let mut cur = members[0];
            while order.len() < members.len() {
                let next =
                    edges.iter().find(|(a, b)| *a == cur && members.contains(b) && !order.contains(b)).map(|(_, b)| *b);
                match next {
                    Some(n) => {
                        order.push(n);
                        cur = n;
                    }
                    None => break,
                }
            }
            for x in &members {
                if !order.contains(x) {
                    order.push(*x);
                }
            }
            let names: Vec<String> = order.iter().map(|&i| format!("`{}`", items[i].call.target.dotted())).collect();
            let mut e = CheckError::new(
                Code::FlowCycle,
                Self::at(m, items[members[0]].call.span),
                format!("the graph has a cycle: {} -> {}", names.join(" -> "), names[0]),
                "starts the cycle",
            );
            for &i in &members[1..] {
                e = e.label(Self::at(m, items[i].call.span), "on the cycle");
            }
            self.err(e.help(
                "each item waits for the outputs (or `after`) of the one before it; break one of these dependencies",
            ));
        }
        if cyclic {
            for it in items {
                if let Some(sig) = self.call_sig(m, &it.call) {
                    for (k, (ty, _)) in &sig.outputs {
                        state.insert(
                            k.clone(),
                            Key {
                                ty: ty.clone(),
                                writer: it.call.span,
                                writer_desc: format!("`{}`", it.call.target.dotted()),
                            },
                        );
                    }
                }
            }
            return (None, state);
        }
        let order = match petgraph::algo::toposort(&graph, None) {
            Ok(o) => o,
            Err(_) => return (None, state),
        };
        let mut calls: Vec<Option<ir::Call>> = vec![None; items.len()];
        for n in order {
            let i = graph[n];
            calls[i] = self.flow_call(cx, &items[i].call, &mut state);
        }
        let _ = span;
        if calls.iter().all(Option::is_some) {
            let nodes = calls.into_iter().map(|c| c.expect("checked")).collect();
            (Some(ir::Flow::Graph { id, nodes, edges }), state)
        } else {
            (None, state)
        }
    }

    fn flow_call(&mut self, cx: &mut FlowCx, c: &ast::FlowCall, state: &mut State) -> Option<ir::Call> {
        let m = cx.m;
        let found = self.lookup_or_report(m, &c.target, "step or workflow")?;
        if !matches!(found.tag, ItemTag::Step | ItemTag::Workflow) {
            self.err(CheckError::new(
                Code::TypeMismatch,
                Self::at(m, c.target.span),
                format!("`{}` is {}; a flow calls steps and workflows", c.target.dotted(), found.tag.describe()),
                "not a step or workflow",
            ));
            return None;
        }
        let sig = self.sigs.get(&found.qname)?.clone();
        self.called.insert(sig.qname.clone());
        let name = c.target.dotted();
        let desc = format!("`{name}`");
        let mut explicit: HashMap<String, ir::Expr> = HashMap::new();
        for (p, e) in &c.args {
            let Some(param) = sig.params.iter().find(|x| x.name == p.name) else {
                self.err(
                    CheckError::new(
                        Code::NameUnknown,
                        Self::at(m, p.span),
                        format!("`{name}` has no parameter `{}`", p.name),
                        "unknown parameter",
                    )
                    .help(format!(
                        "its parameters are: {}",
                        sig.params.iter().map(|x| format!("`{}`", x.name)).collect::<Vec<_>>().join(", ")
                    )),
                );
                continue;
            };
            let mut scope = Self::flow_scope(state);
            let v = self.expr(m, &mut scope, e, Some(&param.ty));
            self.expect(m, &v, e.span, &param.ty, None);
            cx.reads.extend(scope.reads.into_iter().map(|(k, _)| (k, c.span)));
            explicit.insert(param.name.clone(), v);
        }
        let mut args = vec![];
        for p in &sig.params {
            if let Some(v) = explicit.remove(&p.name) {
                args.push((p.name.clone(), ir::ArgSource::Expr(Box::new(v))));
                continue;
            }
            match state.get(&p.name).cloned() {
                Some(key) => {
                    cx.reads.push((p.name.clone(), c.span));
                    if let Some(src) = self.key_for_param(m, c.span, &name, &p.name, &p.ty, p.has_default, &key) {
                        args.push((p.name.clone(), src));
                    }
                }
                None if p.has_default => args.push((p.name.clone(), ir::ArgSource::Default)),
                None => {
                    self.missing(
                        cx,
                        Missing {
                            key: p.name.clone(),
                            ty: p.ty.clone(),
                            call: c.span,
                            step: name.clone(),
                            compensation: None,
                        },
                    );
                }
            }
        }
        let mut renamed: HashMap<String, String> = HashMap::new();
        for (k, out) in &c.renames {
            if !sig.outputs.contains_key(&out.name) {
                self.err(
                    CheckError::new(
                        Code::NameUnknown,
                        Self::at(m, out.span),
                        format!("`{name}` has no output `{}`", out.name),
                        "unknown output",
                    )
                    .help(format!(
                        "its outputs are: {}",
                        sig.outputs.keys().map(|x| format!("`{x}`")).collect::<Vec<_>>().join(", ")
                    )),
                );
                continue;
            }
            renamed.insert(out.name.clone(), k.name.clone());
        }
        let mut writes = vec![];
        for (out, (ty, _)) in &sig.outputs {
            let key = renamed.get(out).cloned().unwrap_or_else(|| out.clone());
            self.write(cx, state, &key, ty, c.span, &desc);
            cx.call_outputs.push((sig.qname.clone(), out.clone(), key.clone()));
            writes.push((key, out.clone()));
        }
        // The compensating step runs with the state as it is right after this step.
        if let Some((comp, clause)) = &sig.compensate {
            if let Some(csig) = self.sigs.get(comp).cloned() {
                for p in &csig.params {
                    match state.get(&p.name).cloned() {
                        Some(key) => {
                            cx.reads.push((p.name.clone(), c.span));
                            self.key_for_param(m, c.span, comp, &p.name, &p.ty, p.has_default, &key);
                        }
                        None if p.has_default => {}
                        None => self.missing(
                            cx,
                            Missing {
                                key: p.name.clone(),
                                ty: p.ty.clone(),
                                call: c.span,
                                step: name.clone(),
                                compensation: Some((clause.clone(), comp.clone())),
                            },
                        ),
                    }
                }
            }
        }
        let target = if sig.is_workflow {
            ir::CallTarget::Workflow(sig.qname.clone())
        } else {
            ir::CallTarget::Step(sig.qname.clone())
        };
        let id = cx.id(&format!("{}@", c.target.last().name));
        Some(ir::Call { id, target, args, writes, loc: self.loc(m, c.span) })
    }

    /// A parameter read from an existing key: its type must fit.
    #[allow(clippy::too_many_arguments)]
    fn key_for_param(
        &mut self,
        m: ModId,
        call: Span,
        step: &str,
        param: &str,
        want: &Type,
        has_default: bool,
        key: &Key,
    ) -> Option<ir::ArgSource> {
        if self.fits(&key.ty, want) {
            return Some(ir::ArgSource::Key(param.to_string()));
        }
        if let Type::Optional(inner) = &key.ty {
            if has_default && self.fits(inner, want) {
                return Some(ir::ArgSource::KeyOrDefault(param.to_string()));
            }
        }
        if let (Type::Product { name: a, state: Some(sa) }, Type::Product { name: b, state: Some(sb) }) =
            (key.ty.unwrap_optional(), want)
        {
            if a == b && sa != sb {
                self.err(
                    CheckError::new(
                        Code::LifecycleStateMismatch,
                        Self::at(m, call),
                        format!("`{step}` needs `{param}: {want}`, but here `{param}` is `{}`", key.ty),
                        format!("`{param}` is `{a}@{sa}` here"),
                    )
                    .label(Self::at(m, key.writer), format!("{} leaves it in state `{sa}`", key.writer_desc))
                    .help(format!(
                        "move the subscription to `{sb}` first, with a step that calls `transition(..., {sb})`"
                    )),
                );
                return None;
            }
        }
        let mut e = CheckError::new(
            Code::FlowKeyType,
            Self::at(m, call),
            format!("`{step}` reads `{param}` as `{want}`, but here `{param}` is `{}`", key.ty),
            format!("`{step}` expects `{want}`"),
        )
        .label(Self::at(m, key.writer), format!("{} writes `{param}: {}`", key.writer_desc, key.ty));
        if let Type::List(inner) = &key.ty {
            if self.fits(inner, want) {
                e = e.help(format!(
                    "`{param}` is a list because it was written inside a `for`; pass one element, or loop over it"
                ));
            }
        } else if key.ty.is_optional() {
            e = e.help(format!("`{param}` may be absent here (written in one branch of an `if`); give `{param}` a default or write it in both branches"));
        }
        self.err(e);
        None
    }

    fn write(&mut self, cx: &mut FlowCx, state: &mut State, key: &str, ty: &Type, span: Span, desc: &str) {
        let m = cx.m;
        if let Some(old) = state.get(key) {
            let same_product = matches!((old.ty.unwrap_optional(), ty), (Type::Product { name: a, .. }, Type::Product { name: b, .. }) if a == b);
            if !(same_product || self.fits(ty, &old.ty) || self.fits(&old.ty, ty)) {
                self.err(
                    CheckError::new(
                        Code::FlowKeyType,
                        Self::at(m, span),
                        format!("{desc} writes `{key}` as `{ty}`, but `{key}` is already `{}`", old.ty),
                        format!("writes `{key}: {ty}`"),
                    )
                    .label(Self::at(m, old.writer), format!("{} writes `{key}: {}`", old.writer_desc, old.ty))
                    .help(format!("write it under another key with `as (new_key: {key})`")),
                );
            }
        }
        state.insert(key.to_string(), Key { ty: ty.clone(), writer: span, writer_desc: desc.to_string() });
        cx.writes.push(Written { key: key.to_string(), span, desc: desc.to_string() });
    }

    fn missing(&mut self, cx: &mut FlowCx, miss: Missing) {
        if cx.unresolved {
            return;
        }
        if let Some(sink) = cx.sinks.last_mut() {
            sink.push(miss);
            return;
        }
        let m = cx.m;
        let later = cx
            .all_calls
            .iter()
            .find(|(span, keys, _)| span.start > miss.call.start && keys.contains(&miss.key))
            .map(|(span, _, name)| (*span, name.clone()));
        let mut e = match &miss.compensation {
            None => CheckError::new(
                Code::FlowMissingKey,
                Self::at(m, miss.call),
                format!(
                    "`{}` needs `{}: {}`, but nothing before it writes `{}`",
                    miss.step, miss.key, miss.ty, miss.key
                ),
                format!("`{}` is missing here", miss.key),
            ),
            Some((clause, comp)) => CheckError::new(
                Code::FlowMissingKey,
                Self::at(m, miss.call),
                format!(
                    "`{comp}`, which compensates `{}`, needs `{}: {}`, but the state after `{}` has no `{}`",
                    miss.step, miss.key, miss.ty, miss.step, miss.key
                ),
                format!("`{}` is missing after this step", miss.key),
            )
            .label(clause.clone(), format!("`{comp}` compensates this step")),
        };
        match later {
            Some((span, name)) => {
                let (line, _) = self.modules[m].source.line_col(span.start);
                e = e.label(Self::at(m, span), format!("`{}` is written here, later", miss.key)).help(format!(
                    "`{}` is written by `{name}` on line {line}, which runs after `{}`; move it earlier",
                    miss.key, miss.step
                ));
            }
            None => {
                if miss.compensation.is_none() {
                    e = e.help(format!(
                        "add `{}` as a workflow parameter, or bind it explicitly: `{}({}: ...)`",
                        miss.key, miss.step, miss.key
                    ));
                }
            }
        }
        self.err(e);
    }
}

fn parallel_dependency(m: ModId, key: &str, read: Span, write: Span, wdesc: &str) -> CheckError {
    CheckError::new(
        Code::FlowParallelDependency,
        Checker::at(m, read),
        format!("this branch reads `{key}`, which a parallel branch writes"),
        format!("reads `{key}`"),
    )
    .label(Checker::at(m, write), format!("{wdesc} writes `{key}` in a sibling branch"))
    .help("parallel branches start from the same state and cannot see each other's outputs; use `>>` to order them")
}

/// Names an expression reads (for graph dependencies of explicit arguments).
fn ast_names(e: &ast::Expr, out: &mut Vec<String>) {
    use ast::ExprKind as E;
    match &e.kind {
        E::Name(id) => out.push(id.name.clone()),
        E::Str(parts) => parts.iter().for_each(|p| {
            if let ast::StrPart::Interp(x) = p {
                ast_names(x, out)
            }
        }),
        E::Record(fs) => fs.iter().for_each(|f| match &f.value {
            Some(v) => ast_names(v, out),
            None => out.push(f.name.name.clone()),
        }),
        E::List(xs) => xs.iter().for_each(|x| ast_names(x, out)),
        E::Field(x, _) | E::Unary(_, x) | E::As(x, _) | E::Paren(x) => ast_names(x, out),
        E::Index(a, b) | E::Binary(_, a, b) => {
            ast_names(a, out);
            ast_names(b, out)
        }
        E::Call { args, .. } => args.iter().for_each(|a| ast_names(&a.value, out)),
        E::If { cond, .. } => ast_names(cond, out),
        E::For { iter, .. } => ast_names(iter, out),
        E::With { base, updates } => {
            ast_names(base, out);
            updates.iter().for_each(|(_, v)| ast_names(v, out))
        }
        _ => {}
    }
}
