//! Workflows calling workflows: no recursion (nothing could end it), and a bounded nesting depth
//! (the interpreter runs a called workflow's flow inside its caller's).

use super::error::{At, CheckError, ModId};
use super::load::ItemTag;
use super::Checker;
use crate::diagnostics::Code;
use crate::syntax::ast::{self, FlowKind, ItemKind};
use indexmap::IndexMap;

/// How deep flows may nest counting through called workflows: each flow construct and each call
/// is a level, and a called workflow's flow nests inside the call.
pub const MAX_CALL_DEPTH: usize = 256;

/// A call of a workflow from a workflow's flow.
struct Call {
    callee: String,
    at: At,
    /// How many flow levels enclose the call, the call included.
    depth: usize,
}

impl Checker {
    pub(super) fn check_workflow_calls(&mut self) {
        // Every workflow, in load and source order, with the workflows its flow calls.
        let mut graph: IndexMap<String, Vec<Call>> = IndexMap::new();
        for m in self.parsed() {
            for (i, item) in self.modules[m].ast().items.iter().enumerate() {
                let ItemKind::Workflow(w) = &item.kind else { continue };
                if self.is_duplicate(m, i) {
                    continue;
                }
                let mut calls = vec![];
                self.workflow_calls(m, &w.body, 1, &mut calls);
                graph.insert(format!("{}{}", self.modules[m].prefix, w.name.name), calls);
            }
        }
        let errors = cycles_and_depth(&graph);
        self.errors.extend(errors);
    }

    fn workflow_calls(&self, m: ModId, f: &ast::Flow, depth: usize, out: &mut Vec<Call>) {
        let mut call = |c: &ast::FlowCall| {
            let segs: Vec<&str> = c.target.segments.iter().map(|s| s.name.as_str()).collect();
            if let Some(found) = self.lookup(m, &segs).filter(|f| f.tag == ItemTag::Workflow) {
                out.push(Call { callee: found.qname, at: Self::at(m, c.span), depth });
            }
        };
        match &f.kind {
            FlowKind::Call(c) => call(c),
            FlowKind::Graph(items) => items.iter().for_each(|it| call(&it.call)),
            FlowKind::Seq(xs) | FlowKind::Par(xs) => xs.iter().for_each(|x| self.workflow_calls(m, x, depth + 1, out)),
            FlowKind::If { then, otherwise, .. } => {
                self.workflow_calls(m, then, depth + 1, out);
                if let Some(o) = otherwise {
                    self.workflow_calls(m, o, depth + 1, out);
                }
            }
            FlowKind::For { body, .. } => self.workflow_calls(m, body, depth + 1, out),
            FlowKind::Group(x) => self.workflow_calls(m, x, depth + 1, out),
        }
    }
}

/// Depth first over the call graph, without recursion (a chain of calls may be long): a call of a
/// workflow still being visited closes a cycle, reported once at that call; a finished workflow's
/// depth is known, and a call that takes its caller past [`MAX_CALL_DEPTH`] from within it is
/// reported.
fn cycles_and_depth(graph: &IndexMap<String, Vec<Call>>) -> Vec<CheckError> {
    const NEW: u8 = 0;
    const OPEN: u8 = 1;
    const DONE: u8 = 2;
    let mut mark = vec![NEW; graph.len()];
    let mut depth = vec![0usize; graph.len()];
    let mut errors = vec![];
    for root in 0..graph.len() {
        if mark[root] != NEW {
            continue;
        }
        // (workflow, index of the next call to follow)
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        mark[root] = OPEN;
        while let Some(&mut (w, ref mut next)) = stack.last_mut() {
            let calls = &graph[w];
            let Some(call) = calls.get(*next) else {
                // Every callee is done (or on a cycle, already reported): the depth is known.
                let mut deepest = 1;
                for c in calls {
                    let Some(callee) = graph.get_index_of(&c.callee) else { continue };
                    let total = c.depth + if mark[callee] == DONE { depth[callee] } else { 0 };
                    if total > MAX_CALL_DEPTH && depth[callee] <= MAX_CALL_DEPTH && deepest <= MAX_CALL_DEPTH {
                        errors.push(too_deep(graph, w, c));
                    }
                    deepest = deepest.max(total);
                }
                depth[w] = deepest;
                mark[w] = DONE;
                stack.pop();
                continue;
            };
            *next += 1;
            let Some(callee) = graph.get_index_of(&call.callee) else { continue };
            match mark[callee] {
                NEW => {
                    mark[callee] = OPEN;
                    stack.push((callee, 0));
                }
                OPEN => {
                    let start = stack.iter().position(|&(s, _)| s == callee).unwrap_or(0);
                    errors.push(cycle(graph, &stack[start..], call));
                }
                _ => {}
            }
        }
    }
    errors
}

/// `path` holds the workflows of the cycle, each with its next call (one past the call it made).
fn cycle(graph: &IndexMap<String, Vec<Call>>, path: &[(usize, usize)], closing: &Call) -> CheckError {
    let names: Vec<&str> = path
        .iter()
        .map(|&(w, _)| graph.get_index(w).map_or("", |(n, _)| n.as_str()))
        .chain(std::iter::once(closing.callee.as_str()))
        .collect();
    let mut e = CheckError::new(
        Code::FlowCycle,
        closing.at.clone(),
        format!("workflow `{}` calls itself: {}", closing.callee, names.join(" -> ")),
        format!("calls `{}` again, closing the cycle", closing.callee),
    )
    .help("a workflow may not call itself, directly or through others: nothing would end the recursion");
    for &(w, next) in &path[..path.len() - 1] {
        let call = &graph[w][next - 1];
        e = e.label(call.at.clone(), format!("calls `{}`", call.callee));
    }
    e
}

fn too_deep(graph: &IndexMap<String, Vec<Call>>, caller: usize, call: &Call) -> CheckError {
    let name = graph.get_index(caller).map_or("", |(n, _)| n.as_str());
    CheckError::new(
        Code::ParseSyntax,
        call.at.clone(),
        format!(
            "workflow `{name}` nests more than {MAX_CALL_DEPTH} levels deep through its call of `{}` \
             (each flow construct and each call is a level, and a called workflow's flow nests inside the call)",
            call.callee
        ),
        "too deep from here",
    )
    .help("split the chain of calls up, or call the workflows one after another instead of one inside another")
}
