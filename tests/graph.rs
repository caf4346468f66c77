//! `orchc graph`: the dot output rendered by Graphviz, the Mermaid output parsed back, and the
//! command's errors. Input: `tests/graph/deploy.orch` (every kind of flow; checks clean).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn deploy_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/graph/deploy.orch")
}

fn orchc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_orchc")).args(args).output().expect("orchc runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

const STEPS: &[&str] = &[
    "fetch_inventory",
    "fetch_config",
    "render",
    "audit",
    "reserve",
    "release",
    "approve",
    "deploy_host",
    "notify",
    "announce",
];

#[test]
fn dot_output_renders_with_graphviz_and_shows_every_step() {
    let file = deploy_file();
    let (code, dot_text, stderr) = orchc(&["graph", file.to_str().unwrap(), "deploy", "--format", "dot"]);
    assert_eq!(code, 0, "{stderr}");
    let mut child = match Command::new("dot").arg("-Tsvg").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => panic!("Graphviz `dot` is needed (scripts/install-test-deps installs it): {e}"),
    };
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(dot_text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "dot -Tsvg failed on:\n{dot_text}\n{}", String::from_utf8_lossy(&out.stderr));
    let svg = String::from_utf8_lossy(&out.stdout);
    assert!(svg.contains("<svg"), "not an SVG: {svg}");
    for step in STEPS {
        assert!(svg.contains(&format!(">{step}</text>")), "the SVG does not show `{step}`");
    }
    for text in ["if approved", "for host in hosts", ">hosts</text>", ">settings</text>", ">compensate</text>"] {
        assert!(svg.contains(text), "the SVG does not show {text:?}");
    }
    // Shapes and styles in the dot text itself.
    assert!(dot_text.contains("[label=\"approve\", shape=parallelogram]"), "{dot_text}");
    assert!(
        dot_text.contains("[label=\"announce\\nas (announced: notified)\", shape=box, peripheries=2]"),
        "{dot_text}"
    );
    assert!(dot_text.contains("shape=diamond"), "{dot_text}");
    assert!(dot_text.contains("subgraph \"cluster_for1\""), "{dot_text}");
    assert!(dot_text.contains("[label=\"compensate\", style=dashed"), "{dot_text}");
}

/// A parsed Mermaid flowchart: node id → (label, shape opener), edges as
/// (from label, to label, edge label, dashed), subgraph label → node labels inside.
struct Mermaid {
    nodes: BTreeMap<String, (String, String)>,
    edges: BTreeSet<(String, String, Option<String>, bool)>,
    subgraphs: BTreeMap<String, Vec<String>>,
}

fn parse_mermaid(text: &str) -> Mermaid {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("flowchart TD"), "a flowchart header");
    let mut nodes = BTreeMap::new();
    let mut raw_edges = Vec::new();
    let mut subgraphs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Vec<String> = Vec::new();
    for line in lines {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("subgraph ") {
            let label = rest.split_once(" [\"").map(|(_, l)| l.trim_end_matches("\"]").to_string()).expect("a label");
            subgraphs.entry(label.clone()).or_default();
            current.push(label);
        } else if line == "end" {
            current.pop().expect("an open subgraph");
        } else if line.starts_with("classDef ") || line.starts_with("class ") {
        } else if line.contains("-->") || line.contains("-.->") {
            let dashed = line.contains("-.->");
            let (from, rest) = line.split_once(' ').expect("an edge");
            let rest = rest.trim_start_matches("-.->").trim_start_matches("-->");
            let (label, to) = match rest.strip_prefix("|\"") {
                Some(r) => {
                    let (l, to) = r.split_once("\"| ").expect("a closed label");
                    (Some(l.to_string()), to.trim())
                }
                None => (None, rest.trim()),
            };
            assert!(to.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "a node id: {to:?} in {line:?}");
            raw_edges.push((from.to_string(), to.to_string(), label, dashed));
        } else {
            let id_end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).expect("a node line");
            let (id, shape) = line.split_at(id_end);
            let open = &shape[..shape.find('"').expect("a quoted label")];
            let full = shape[open.len() + 1..].split('"').next().unwrap();
            // The call's bindings and renames are a second line.
            let label = full.split("<br/>").next().unwrap().to_string();
            assert!(!["end", "graph", "subgraph"].contains(&id), "a Mermaid keyword as a node id: {id}");
            nodes.insert(id.to_string(), (label.clone(), open.to_string()));
            if let Some(sg) = current.last() {
                subgraphs.get_mut(sg).unwrap().push(label);
            }
        }
    }
    assert!(current.is_empty(), "every subgraph is closed");
    let label = |id: &str| nodes.get(id).unwrap_or_else(|| panic!("edge to undeclared node {id}")).0.clone();
    let edges = raw_edges.into_iter().map(|(f, t, l, d)| (label(&f), label(&t), l, d)).collect();
    Mermaid { nodes, edges, subgraphs }
}

fn has_edge(m: &Mermaid, from: &str, to: &str, label: Option<&str>, dashed: bool) -> bool {
    m.edges.contains(&(from.to_string(), to.to_string(), label.map(str::to_string), dashed))
}

#[test]
fn mermaid_output_has_the_flow_structure() {
    let file = deploy_file();
    let (code, text, stderr) = orchc(&["graph", file.to_str().unwrap(), "deploy", "--format", "mermaid"]);
    assert_eq!(code, 0, "{stderr}");
    let m = parse_mermaid(&text);
    let labels: BTreeSet<&str> = m.nodes.values().map(|(l, _)| l.as_str()).collect();
    for step in STEPS {
        assert!(labels.contains(step), "no node for {step}:\n{text}");
    }
    let e = |from, to, label, dashed| {
        assert!(has_edge(&m, from, to, label, dashed), "no edge {from} -> {to} {label:?}:\n{text}")
    };
    // graph { }: edges labelled with the key that makes them; `after` alone is unlabelled.
    e("fetch_inventory", "render", Some("hosts"), false);
    e("fetch_config", "render", Some("settings"), false);
    e("fetch_config", "audit", None, false);
    // The graph's ends flow into the sequence.
    e("start", "fetch_inventory", None, false);
    e("render", "reserve", None, false);
    e("audit", "reserve", None, false);
    e("reserve", "approve", None, false);
    // Compensation as a dashed edge.
    e("reserve", "release", Some("compensate"), true);
    // if with its condition, and the else branch forking and joining.
    e("approve", "if approved", None, false);
    e("if approved", "deploy_host", Some("then"), false);
    e("if approved", "fork", Some("else"), false);
    e("fork", "notify", None, false);
    e("fork", "announce", None, false);
    e("notify", "join", None, false);
    e("announce", "join", None, false);
    e("join", "end", None, false);
    e("deploy_host", "end", None, false);
    // Shapes: input step, workflow call, decision.
    let shape = |label: &str| m.nodes.values().find(|(l, _)| l == label).unwrap().1.clone();
    assert_eq!(shape("approve"), "[/");
    assert_eq!(shape("announce"), "[[");
    assert_eq!(shape("if approved"), "{");
    assert_eq!(shape("reserve"), "[");
    assert!(text.contains("[[\"announce<br/>as (announced: notified)\"]]"), "{text}");
    assert!(text.contains("[\"notify<br/>(site: #quot;ops#quot;)\"]"), "{text}");
    // The for loop is a subgraph holding its body.
    assert_eq!(m.subgraphs.get("for host in hosts (at most 4 at a time)"), Some(&vec!["deploy_host".to_string()]));
}

#[test]
fn a_graph_edge_from_a_reader_to_a_later_writer_says_so() {
    let file = deploy_file();
    let (code, text, stderr) = orchc(&["graph", file.to_str().unwrap(), "refresh"]);
    assert_eq!(code, 0, "{stderr}");
    let m = parse_mermaid(&text);
    assert!(has_edge(&m, "keep", "rename_site", Some("reads site first"), false), "{text}");
    assert!(has_edge(&m, "stamp", "rename_site", Some("stamped"), false), "{text}");
    assert!(has_edge(&m, "start", "keep", None, false) && has_edge(&m, "start", "stamp", None, false), "{text}");
}

#[test]
fn unknown_workflows_and_files_with_errors_are_refused() {
    let file = deploy_file();
    let (code, stdout, stderr) = orchc(&["graph", file.to_str().unwrap(), "nope"]);
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    assert!(stderr.contains("there is no workflow `nope`"), "{stderr}");
    assert!(stderr.contains("its workflows: announce, deploy, refresh"), "{stderr}");
    assert!(stderr.contains("orch::name::unknown"), "the error has its code: {stderr}");
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.orch");
    std::fs::write(&bad, "workflow w() -> (x: Int) {\n  missing_step\n}\n").unwrap();
    let (code, stdout, stderr) = orchc(&["graph", bad.to_str().unwrap(), "w"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout, "");
    assert!(stderr.contains("orch::name::unknown"), "{stderr}");
    let (code, _, stderr) = orchc(&["graph", tmp.path().join("none.orch").to_str().unwrap(), "w"]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn the_drawings_of_the_deploy_workflow() {
    let file = deploy_file();
    let (code, mermaid, stderr) = orchc(&["graph", file.to_str().unwrap(), "deploy", "--format", "mermaid"]);
    assert_eq!(code, 0, "{stderr}");
    insta::assert_snapshot!("deploy_mermaid", mermaid);
    let (code, dot, stderr) = orchc(&["graph", file.to_str().unwrap(), "deploy", "--format", "dot"]);
    assert_eq!(code, 0, "{stderr}");
    insta::assert_snapshot!("deploy_dot", dot);
}

#[test]
fn conditions_with_quotes_and_newlines_are_escaped_in_both_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("q.orch");
    std::fs::write(
        &file,
        "step a(stage: Str) -> (done: Bool) {\n  { done: true }\n}\n\nworkflow w(stage: Str) -> () {\n  if stage == \"prod\\\\x\" and\n     stage != \"a|b\" {\n    a\n  }\n}\n",
    )
    .unwrap();
    let (code, mermaid, stderr) = orchc(&["graph", file.to_str().unwrap(), "w"]);
    assert_eq!(code, 0, "{stderr}");
    let m = parse_mermaid(&mermaid);
    let cond = "if stage == #quot;prod\\\\x#quot; and stage != #quot;a|b#quot;";
    assert!(has_edge(&m, cond, "a", Some("then"), false), "{mermaid}");
    assert!(has_edge(&m, cond, "end", Some("else"), false), "{mermaid}");
    let (code, dot_text, _) = orchc(&["graph", file.to_str().unwrap(), "w", "--format", "dot"]);
    assert_eq!(code, 0);
    let mut child = Command::new("dot").arg("-Tsvg").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("dot");
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(dot_text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let svg = String::from_utf8_lossy(&out.stdout);
    assert!(svg.contains("if stage == &quot;prod\\\\x&quot; and stage != &quot;a|b&quot;"), "{svg}");
}
