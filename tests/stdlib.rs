//! The standard library: every embedded module parses, checks clean and documents every step
//! and workflow; every `stdlib/*.orch` file is embedded; programs that use the modules check
//! (or fail to check) as their header comment says.

use std::path::{Path, PathBuf};

use orch::diagnostics::Severity;
use orch::syntax::ast::ItemKind;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_stdlib_file_is_embedded_and_matches_its_file() {
    let mut on_disk: Vec<String> = std::fs::read_dir(root().join("stdlib"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "orch"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = orch::stdlib::MODULES.iter().map(|(n, _)| n.to_string()).collect();
    embedded.sort();
    assert_eq!(embedded, on_disk, "stdlib/*.orch and orch::stdlib::MODULES differ");
    for (name, src) in orch::stdlib::MODULES {
        let file = std::fs::read_to_string(root().join(format!("stdlib/{name}.orch"))).unwrap();
        assert_eq!(*src, file, "std.{name} is not the text of stdlib/{name}.orch");
        assert_eq!(orch::stdlib::module(name), Some(*src));
    }
    assert_eq!(orch::stdlib::module("nope"), None);
}

#[test]
fn every_step_workflow_and_lifecycle_has_a_doc_comment() {
    for (name, src) in orch::stdlib::MODULES {
        let module = orch::syntax::parse(src).unwrap_or_else(|e| panic!("std.{name}: {e:?}"));
        let mut documented = 0;
        for item in &module.items {
            let what = match &item.kind {
                ItemKind::Step(s) => format!("step {}", s.name.name),
                ItemKind::Workflow(w) => format!("workflow {}", w.name.name),
                ItemKind::Lifecycle(l) => format!("lifecycle {}", l.name.name),
                _ => continue,
            };
            let doc = item.doc.as_deref().unwrap_or("").trim();
            assert!(doc.len() >= 20, "std.{name}: {what} has no (or a too short) `///` doc comment: {doc:?}");
            documented += 1;
        }
        assert!(documented > 0, "std.{name} declares nothing");
    }
}

#[test]
fn every_module_checks_without_errors() {
    for (name, src) in orch::stdlib::MODULES {
        let result = orch::check::check_source(&format!("std/{name}.orch"), src, &root().join("stdlib"));
        let errors: Vec<_> = result
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| format!("{}: {}", d.code.as_str(), d.message))
            .collect();
        assert!(errors.is_empty(), "std.{name} has errors: {errors:#?}");
        assert!(result.program.is_some());
        // A library declares steps nobody in it calls; no other warning is acceptable.
        for d in &result.diagnostics {
            assert!(
                d.code.as_str().starts_with("orch::lint::unused"),
                "std.{name}: unexpected warning {}: {}",
                d.code.as_str(),
                d.message
            );
        }
    }
}

#[test]
fn lifecycles_module_keeps_standard_and_adds_deployment() {
    let src = orch::stdlib::module("lifecycles").unwrap();
    let module = orch::syntax::parse(src).unwrap();
    let names: Vec<String> = module
        .items
        .iter()
        .filter_map(|i| match &i.kind {
            ItemKind::Lifecycle(l) => Some(l.name.name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["Standard", "Deployment"]);
    // The edges the brief and the issue name, checked through the checker: a program that
    // walks each of them checks clean.
    let program = r#"
use std.lifecycles
product S lifecycle lifecycles.Standard { name: Str }
product D lifecycle lifecycles.Deployment { name: Str }
/// Walks every Standard edge.
step standard(c: Str) -> (s: S@terminated) {
  let a = S.new(customer: c, name: "x")
  let b = transition(a, provisioning)
  let d = transition(transition(b, active), provisioning)
  let e = transition(transition(d, active), terminated)
  let f = transition(S.new(customer: c, name: "y"), terminated)
  let g = transition(transition(S.new(customer: c, name: "z"), provisioning), terminated)
  { s: e }
}
/// Walks every Deployment edge the issue names.
step deployment(c: Str) -> (d: D@deleted, f: D@failed) {
  let p = D.new(customer: c, name: "x")
  let i = transition(p, in_progress)
  let done = transition(i, completed)
  let again = transition(transition(done, in_progress), completed)
  let gone = transition(transition(again, deleting), deleted)
  let failed = transition(transition(D.new(customer: c, name: "y"), in_progress), failed)
  { d: gone, f: failed }
}
workflow w(c: Str) -> (s: S@terminated, d: D@deleted, f: D@failed) { standard & deployment }
"#;
    let result = orch::check::check_source("lifecycles_walk.orch", program, &root());
    let errors: Vec<_> = result
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| format!("{}: {}", d.code.as_str(), d.message))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

/// `.orch` inputs under tests/fixtures/stdlib, each with `// expect: clean` or
/// `// expect: CODE` as its first line.
#[test]
fn stdlib_fixtures_check_as_their_header_says() {
    let dir = root().join("tests/fixtures/stdlib");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "orch"))
        .collect();
    files.sort();
    assert!(files.len() >= 5);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("// expect: "))
            .unwrap_or_else(|| panic!("{} has no `// expect:` header", file.display()))
            .trim()
            .to_string();
        let result = orch::check::check_path(&file);
        let codes: Vec<&str> = result.diagnostics.iter().map(|d| d.code.as_str()).collect();
        if expect == "clean" {
            assert!(codes.is_empty(), "{}: expected no diagnostics, got {codes:?}", file.display());
            assert!(result.program.is_some());
        } else {
            assert!(codes.contains(&expect.as_str()), "{}: expected {expect}, got {codes:?}", file.display());
            assert!(result.program.is_none());
            // The error points into the user's file, not into the stdlib.
            let d = result.diagnostics.iter().find(|d| d.code.as_str() == expect).unwrap();
            let source = d.source.as_ref().expect("the diagnostic has a source");
            assert!(
                Path::new(&source.name).file_name() == file.file_name(),
                "{}: {expect} points at {}",
                file.display(),
                source.name
            );
        }
    }
}

/// The checked IR of a program that uses the modules has the commands the issue asks for:
/// terraform with `-input=false -no-color`, helm `upgrade --install --wait`, ansible's
/// inventory from a host list. Read from the embedded source, so a careless edit is caught.
#[test]
fn modules_drive_the_tools_the_careful_way() {
    let tf = orch::stdlib::module("terraform").unwrap();
    for cmd in ["\"init\"", "\"plan\"", "\"apply\"", "\"destroy\"", "\"output\"", "\"show\""] {
        assert!(tf.contains(cmd), "std.terraform does not run terraform {cmd}");
    }
    assert_eq!(tf.matches("\"-input=false\"").count(), 4, "init, plan, apply and destroy take -input=false");
    assert_eq!(tf.matches("\"-no-color\"").count(), 7, "every terraform command takes -no-color");
    assert!(tf.contains("\"-json\""));
    let helm = orch::stdlib::module("helm").unwrap();
    for arg in ["\"upgrade\", \"--install\"", "\"--wait\"", "\"uninstall\"", "\"--output\", \"json\""] {
        assert!(helm.contains(arg), "std.helm lacks {arg}");
    }
    let ansible = orch::stdlib::module("ansible").unwrap();
    assert!(ansible.contains("join(hosts, \",\") + \",\""));
    assert!(ansible.contains("\"--extra-vars\", to_json(extra_vars)"));
}
