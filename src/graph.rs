//! `orchc graph`: a workflow's flow as a picture, in Mermaid or Graphviz dot.
//!
//! Built from the checked IR (`ir::WorkflowDef::flow`):
//! - every call is a node (with a second line for explicit bindings and renamed outputs,
//!   `(p: EXPR) as (k: out)`): a step as a box, an input step as a parallelogram, a workflow call as a
//!   subroutine (a double-bordered box);
//! - `a >> b` is an edge from each end of `a` to each start of `b`;
//! - `a & b` forks from a `fork` node and joins at a `join` node;
//! - `graph { }` items are nodes with the checker's dependency edges, each labelled with the state
//!   keys that make it (the writer's outputs the reader takes as parameters); an edge made only by
//!   `after` is unlabelled, and an edge from a reader to a later writer of a key it reads is
//!   labelled `reads K first`;
//! - `if` is a diamond with the condition as written, edges `then` and `else`;
//! - `for x in EXPR` is a cluster (dot) or subgraph (Mermaid) labelled `for x in EXPR`;
//! - a step with `compensate S` has a dashed edge to a dashed node `S` (the compensation runs
//!   back from there if the run fails later);
//! - the flow runs from a `start` node to an `end` node.

use crate::ir::{self, ArgSource, CallTarget, Flow, Loc, Program, StepKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Step,
    Input,
    Workflow,
    Compensation,
    Decision,
    Fork,
    Terminal,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub id: String,
    pub label: String,
    /// A second line: a call's explicit bindings and renamed outputs, `(p: EXPR) as (k: out)`.
    pub detail: Option<String>,
    pub shape: Shape,
    /// Index into `Drawing::clusters` of the innermost `for` around the node.
    pub cluster: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub label: Option<String>,
    pub dashed: bool,
}

#[derive(Clone, Debug)]
pub struct Cluster {
    pub id: String,
    pub label: String,
    pub parent: Option<usize>,
}

/// The picture, independent of the output format.
#[derive(Clone, Debug, Default)]
pub struct Drawing {
    pub title: String,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub clusters: Vec<Cluster>,
}

/// Where a fragment of the flow starts and ends; an end may carry the label of the edge that
/// leaves it (the `else` of an `if` without one).
struct Fragment {
    entries: Vec<String>,
    exits: Vec<(String, Option<String>)>,
}

struct Builder<'p> {
    program: &'p Program,
    drawing: Drawing,
    cluster: Option<usize>,
}

/// Draws `workflow` of `program`; `None` if there is no such workflow.
pub fn draw(program: &Program, workflow: &str) -> Option<Drawing> {
    let wf = program.workflows.get(workflow)?;
    let mut b =
        Builder { program, drawing: Drawing { title: workflow.to_string(), ..Default::default() }, cluster: None };
    b.node("begin".into(), "start".into(), Shape::Terminal);
    let frag = b.flow(&wf.flow);
    b.node("finish".into(), "end".into(), Shape::Terminal);
    b.connect(&[("begin".to_string(), None)], &frag.entries);
    b.connect(&frag.exits, &["finish".to_string()]);
    Some(b.drawing)
}

impl Builder<'_> {
    fn node(&mut self, id: String, label: String, shape: Shape) -> String {
        self.drawing.nodes.push(Node { id: id.clone(), label, detail: None, shape, cluster: self.cluster });
        id
    }

    fn fresh(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.drawing.nodes.len() + 1)
    }

    fn edge(&mut self, from: &str, to: &str, label: Option<String>, dashed: bool) {
        self.drawing.edges.push(Edge { from: from.to_string(), to: to.to_string(), label, dashed });
    }

    fn connect(&mut self, exits: &[(String, Option<String>)], entries: &[String]) {
        for (from, label) in exits {
            for to in entries {
                self.edge(from, to, label.clone(), false);
            }
        }
    }

    fn source_of(&self, loc: Loc) -> String {
        let text = self
            .program
            .files
            .get(loc.file as usize)
            .and_then(|f| f.text.get(loc.start as usize..loc.end as usize))
            .unwrap_or("…");
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    fn call(&mut self, c: &ir::Call) -> String {
        let name = c.target.name().to_string();
        let shape = match &c.target {
            CallTarget::Workflow(_) => Shape::Workflow,
            CallTarget::Step(s) => match self.program.steps.get(s).map(|d| &d.kind) {
                Some(StepKind::Input { .. }) => Shape::Input,
                _ => Shape::Step,
            },
        };
        let id = self.fresh("n");
        self.node(id.clone(), name, shape);
        let bound: Vec<String> = c
            .args
            .iter()
            .filter_map(|(p, src)| match src {
                ArgSource::Expr(e) => Some(format!("{p}: {}", self.source_of(e.loc))),
                _ => None,
            })
            .collect();
        let renamed: Vec<String> =
            c.writes.iter().filter(|(k, out)| k != out).map(|(k, out)| format!("{k}: {out}")).collect();
        let mut detail = String::new();
        if !bound.is_empty() {
            detail.push_str(&format!("({})", bound.join(", ")));
        }
        if !renamed.is_empty() {
            detail.push_str(&format!("{}as ({})", if detail.is_empty() { "" } else { " " }, renamed.join(", ")));
        }
        if !detail.is_empty() {
            self.drawing.nodes.last_mut().expect("just added").detail = Some(detail);
        }
        if let CallTarget::Step(s) = &c.target {
            if let Some(comp) = self.program.steps.get(s).and_then(|d| d.compensate.clone()) {
                let cid = self.fresh("c");
                self.node(cid.clone(), comp, Shape::Compensation);
                self.edge(&id, &cid, Some("compensate".into()), true);
            }
        }
        id
    }

    fn flow(&mut self, flow: &Flow) -> Fragment {
        match flow {
            Flow::Call(c) => {
                let id = self.call(c);
                Fragment { entries: vec![id.clone()], exits: vec![(id, None)] }
            }
            Flow::Seq { items, .. } => {
                let mut out: Option<Fragment> = None;
                for item in items {
                    let f = self.flow(item);
                    out = Some(match out {
                        None => f,
                        Some(prev) => {
                            self.connect(&prev.exits, &f.entries);
                            Fragment { entries: prev.entries, exits: f.exits }
                        }
                    });
                }
                out.unwrap_or_else(|| {
                    // An empty flow: a pass-through point keeps start and end connected.
                    let id = self.fresh("e");
                    self.node(id.clone(), "(nothing)".into(), Shape::Fork);
                    Fragment { entries: vec![id.clone()], exits: vec![(id, None)] }
                })
            }
            Flow::Par { branches, .. } => {
                let fork = self.fresh("fork");
                self.node(fork.clone(), "fork".into(), Shape::Fork);
                let mut exits = Vec::new();
                for br in branches {
                    let f = self.flow(br);
                    self.connect(&[(fork.clone(), None)], &f.entries);
                    exits.extend(f.exits);
                }
                let join = self.fresh("join");
                self.node(join.clone(), "join".into(), Shape::Fork);
                self.connect(&exits, std::slice::from_ref(&join));
                Fragment { entries: vec![fork], exits: vec![(join, None)] }
            }
            Flow::Graph { nodes, edges, .. } => {
                let ids: Vec<String> = nodes.iter().map(|c| self.call(c)).collect();
                for &(a, b) in edges {
                    let label = graph_edge_label(&nodes[a], &nodes[b]);
                    self.edge(&ids[a], &ids[b], label, false);
                }
                let entries = (0..nodes.len()).filter(|i| !edges.iter().any(|e| e.1 == *i)).map(|i| ids[i].clone());
                let exits =
                    (0..nodes.len()).filter(|i| !edges.iter().any(|e| e.0 == *i)).map(|i| (ids[i].clone(), None));
                Fragment { entries: entries.collect(), exits: exits.collect() }
            }
            Flow::If { cond, then, otherwise, .. } => {
                let id = self.fresh("if");
                let label = format!("if {}", self.source_of(cond.loc));
                self.node(id.clone(), label, Shape::Decision);
                let t = self.flow(then);
                for e in &t.entries {
                    self.edge(&id, e, Some("then".into()), false);
                }
                let mut exits = t.exits;
                match otherwise {
                    Some(o) => {
                        let f = self.flow(o);
                        for e in &f.entries {
                            self.edge(&id, e, Some("else".into()), false);
                        }
                        exits.extend(f.exits);
                    }
                    None => exits.push((id.clone(), Some("else".into()))),
                }
                Fragment { entries: vec![id], exits }
            }
            Flow::For { var, iter, limit, body, .. } => {
                let index = self.drawing.clusters.len();
                let label = format!("for {var} in {} (at most {limit} at a time)", self.source_of(iter.loc));
                self.drawing.clusters.push(Cluster {
                    id: format!("cluster_for{}", index + 1),
                    label,
                    parent: self.cluster,
                });
                let outer = self.cluster.replace(index);
                let f = self.flow(body);
                self.cluster = outer;
                f
            }
        }
    }
}

/// The state keys that make the edge `writer → reader` in a `graph { }`.
fn graph_edge_label(a: &ir::Call, b: &ir::Call) -> Option<String> {
    let reads = |c: &ir::Call| -> Vec<String> {
        c.args
            .iter()
            .filter_map(|(_, src)| match src {
                ArgSource::Key(k) | ArgSource::KeyOrDefault(k) => Some(k.clone()),
                _ => None,
            })
            .collect()
    };
    let writes = |c: &ir::Call| -> Vec<String> { c.writes.iter().map(|(k, _)| k.clone()).collect() };
    let b_reads = reads(b);
    let keys: Vec<String> = writes(a).into_iter().filter(|k| b_reads.contains(k)).collect();
    if !keys.is_empty() {
        return Some(keys.join(", "));
    }
    let b_writes = writes(b);
    let first: Vec<String> = reads(a).into_iter().filter(|k| b_writes.contains(k)).collect();
    if !first.is_empty() {
        return Some(format!("reads {} first", first.join(", ")));
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Output formats

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz dot.
pub fn to_dot(d: &Drawing) -> String {
    let mut out = String::new();
    out.push_str(&format!("digraph \"{}\" {{\n", dot_escape(&d.title)));
    out.push_str("  rankdir=TB;\n  fontname=\"Helvetica\";\n  node [fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\"];\n");
    fn node_line(n: &Node) -> String {
        let attrs = match n.shape {
            Shape::Step => "shape=box, style=rounded".to_string(),
            Shape::Input => "shape=parallelogram".to_string(),
            Shape::Workflow => "shape=box, peripheries=2".to_string(),
            Shape::Compensation => "shape=box, style=dashed".to_string(),
            Shape::Decision => "shape=diamond".to_string(),
            Shape::Fork => "shape=circle, width=0.3, fontsize=9".to_string(),
            Shape::Terminal => "shape=oval, style=filled, fillcolor=lightgrey".to_string(),
        };
        let label = match &n.detail {
            Some(d) => format!("{}\\n{}", dot_escape(&n.label), dot_escape(d)),
            None => dot_escape(&n.label),
        };
        format!("\"{}\" [label=\"{label}\", {attrs}];", n.id)
    }
    fn cluster(d: &Drawing, index: Option<usize>, depth: usize, out: &mut String) {
        let pad = "  ".repeat(depth);
        for n in d.nodes.iter().filter(|n| n.cluster == index) {
            out.push_str(&format!("{pad}{}\n", node_line(n)));
        }
        for (i, c) in d.clusters.iter().enumerate().filter(|(_, c)| c.parent == index) {
            out.push_str(&format!("{pad}subgraph \"{}\" {{\n", c.id));
            out.push_str(&format!("{pad}  label=\"{}\";\n{pad}  style=rounded;\n", dot_escape(&c.label)));
            cluster(d, Some(i), depth + 1, out);
            out.push_str(&format!("{pad}}}\n"));
        }
    }
    cluster(d, None, 1, &mut out);
    for e in &d.edges {
        let mut attrs = Vec::new();
        if let Some(l) = &e.label {
            attrs.push(format!("label=\"{}\"", dot_escape(l)));
        }
        if e.dashed {
            attrs.push("style=dashed".to_string());
            attrs.push("constraint=false".to_string());
        }
        let attrs = if attrs.is_empty() { String::new() } else { format!(" [{}]", attrs.join(", ")) };
        out.push_str(&format!("  \"{}\" -> \"{}\"{attrs};\n", e.from, e.to));
    }
    out.push_str("}\n");
    out
}

/// Mermaid labels may hold HTML: quotes and angle brackets become entity codes.
fn mermaid_escape(s: &str) -> String {
    s.replace('"', "#quot;").replace('<', "#lt;").replace('>', "#gt;")
}

/// A Mermaid flowchart.
pub fn to_mermaid(d: &Drawing) -> String {
    let mut out = String::from("flowchart TD\n");
    fn node_line(n: &Node) -> String {
        let l = match &n.detail {
            Some(d) => format!("{}<br/>{}", mermaid_escape(&n.label), mermaid_escape(d)),
            None => mermaid_escape(&n.label),
        };
        match n.shape {
            Shape::Step | Shape::Compensation => format!("{}[\"{l}\"]", n.id),
            Shape::Input => format!("{}[/\"{l}\"/]", n.id),
            Shape::Workflow => format!("{}[[\"{l}\"]]", n.id),
            Shape::Decision => format!("{}{{\"{l}\"}}", n.id),
            Shape::Fork => format!("{}((\"{l}\"))", n.id),
            Shape::Terminal => format!("{}([\"{l}\"])", n.id),
        }
    }
    fn cluster(d: &Drawing, index: Option<usize>, depth: usize, out: &mut String) {
        let pad = "    ".repeat(depth);
        for n in d.nodes.iter().filter(|n| n.cluster == index) {
            out.push_str(&format!("{pad}{}\n", node_line(n)));
        }
        for (i, c) in d.clusters.iter().enumerate().filter(|(_, c)| c.parent == index) {
            out.push_str(&format!("{pad}subgraph {} [\"{}\"]\n", c.id, mermaid_escape(&c.label)));
            cluster(d, Some(i), depth + 1, out);
            out.push_str(&format!("{pad}end\n"));
        }
    }
    cluster(d, None, 1, &mut out);
    for e in &d.edges {
        let arrow = if e.dashed { "-.->" } else { "-->" };
        match &e.label {
            Some(l) => out.push_str(&format!("    {} {arrow}|\"{}\"| {}\n", e.from, mermaid_escape(l), e.to)),
            None => out.push_str(&format!("    {} {arrow} {}\n", e.from, e.to)),
        }
    }
    let dashed: Vec<String> = d.nodes.iter().filter(|n| n.shape == Shape::Compensation).map(|n| n.id.clone()).collect();
    if !dashed.is_empty() {
        out.push_str("    classDef compensation stroke-dasharray: 5 5\n");
        out.push_str(&format!("    class {} compensation\n", dashed.join(",")));
    }
    out
}
