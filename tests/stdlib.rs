//! The standard library: every embedded module parses, checks clean and documents every step
//! and workflow; every `stdlib/*.orch` file is embedded; programs that use the modules check
//! (or fail to check) as their header comment says.

mod standins;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use orch::diagnostics::Severity;
use orch::syntax::ast::ItemKind;
use serde_json::{json, Value};
use standins::{Faults, Orch, Outcome, Reply, StandIn};

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
        let errors = errors(&result);
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
    let errors = errors(&result);
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
    assert!(tf.matches("\"-input=false\"").count() >= 4, "init, plan, apply and destroy take -input=false");
    assert_eq!(
        tf.matches("\"-no-color\"").count(),
        tf.matches("exec(\"terraform\"").count(),
        "every terraform command takes -no-color"
    );
    assert!(tf.contains("\"-json\""));
    let helm = orch::stdlib::module("helm").unwrap();
    for arg in ["\"upgrade\", \"--install\"", "\"--wait\"", "\"uninstall\"", "\"--output\", \"json\""] {
        assert!(helm.contains(arg), "std.helm lacks {arg}");
    }
    let ansible = orch::stdlib::module("ansible").unwrap();
    assert!(ansible.contains("join(hosts, \",\") + \",\""));
    assert!(ansible.contains("\"--extra-vars\", to_json(extra_vars)"));
}

// -------------------------------------------------------------------------------------------
// The modules run: each step through the real `orchc`, against stand-ins and fake tools.

fn run(o: &Orch, file: &str, workflow: &str, args: &[&str]) -> Outcome {
    let path = format!("tests/fixtures/runs/{file}");
    let mut all = vec!["run", path.as_str(), workflow, "--json"];
    all.extend_from_slice(args);
    o.orchc(&all)
}

fn completed(out: &Outcome) -> Value {
    let last = out.last_json();
    assert_eq!(last["status"], "completed", "{last}\nstderr:\n{}", out.stderr);
    last["outputs"].clone()
}

fn failed(out: &Outcome) -> String {
    let last = out.last_json();
    assert_eq!(last["status"], "failed", "{last}\nstderr:\n{}", out.stderr);
    assert_eq!(out.code, 1);
    last["error"]["message"].as_str().unwrap().to_string()
}

/// A service that starts after a few 503s, jobs whose `state` moves on at every GET, and an
/// item store.
struct Svc {
    faults: Faults,
    jobs: BTreeMap<String, usize>,
    items: Vec<Value>,
}

fn http_service() -> (StandIn, Arc<Mutex<Svc>>) {
    let state = Arc::new(Mutex::new(Svc { faults: Faults::default(), jobs: BTreeMap::new(), items: Vec::new() }));
    let s = state.clone();
    let server = StandIn::start(move |r| {
        let mut svc = s.lock().unwrap();
        if let Some(reply) = svc.faults.check(r) {
            return reply;
        }
        match (r.method.as_str(), r.segments().as_slice()) {
            ("GET", ["healthz"]) => Reply::ok(json!({ "status": "ok", "version": "2.4.1" })),
            ("GET", ["jobs", id]) => {
                let n = svc.jobs.entry(id.to_string()).or_insert(0);
                *n += 1;
                let states = if *id == "bad" { ["queued", "running", "failed"] } else { ["queued", "running", "done"] };
                Reply::ok(json!({ "id": id, "state": states[(*n - 1).min(2)] }))
            }
            ("POST", ["items"]) => {
                let mut item = r.body.clone();
                item["id"] = json!(svc.items.len() + 1);
                svc.items.push(item.clone());
                Reply::json(201, item)
            }
            ("GET", ["items", id]) => {
                match svc.items.iter().find(|i| i["id"].as_i64().map(|n| n.to_string()).as_deref() == Some(*id)) {
                    Some(i) => Reply::ok(i.clone()),
                    None => Reply::not_found("item"),
                }
            }
            _ => Reply::not_found("route"),
        }
    });
    (server, state)
}

#[test]
fn std_http_steps_wait_poll_expect_and_exchange_json() {
    let (srv, state) = http_service();
    let o = Orch::new();
    let base = format!("base={}", srv.url);
    let cfg = ["--config", base.as_str()];

    // wait_until_up retries through 503s and connection errors until a 2xx.
    state.lock().unwrap().faults.fail_times("GET", "/healthz", 503, 2);
    let out = completed(&run(&o, "http_steps.orch", "wait_up", &cfg));
    assert_eq!(out["http_status"], 200);
    assert_eq!(srv.count("GET", "/healthz"), 3);

    // poll_until_up takes the poll settings as parameters.
    state.lock().unwrap().faults.fail_times("GET", "/healthz", 503, 3);
    let out = completed(&run(
        &o,
        "http_steps.orch",
        "poll_up",
        &[cfg[0], cfg[1], "-i", "attempts=5", "-i", "interval_seconds=1"],
    ));
    assert_eq!(out["http_status"], 200);
    assert_eq!(srv.count("GET", "/healthz"), 3 + 4);
    state.lock().unwrap().faults.fail_times("GET", "/healthz", 503, 5);
    let msg = failed(&run(
        &o,
        "http_steps.orch",
        "poll_up",
        &[cfg[0], cfg[1], "-i", "attempts=3", "-i", "interval_seconds=1"],
    ));
    assert!(msg.contains("did not answer 2xx in 3 attempts 1s apart") && msg.contains("503"), "{msg}");
    assert_eq!(srv.count("GET", "/healthz"), 7 + 3);
    state.lock().unwrap().faults.clear();

    // wait_for_field polls until the field has the expected value...
    let out = completed(&run(&o, "http_steps.orch", "wait_field", &[cfg[0], cfg[1], "-i", "job=j1"]));
    assert_eq!(out["value"], "done");
    assert_eq!(out["body"]["id"], "j1");
    assert_eq!(srv.count("GET", "/jobs/j1"), 3);
    // ...and fails at once on a value of `fail_on`.
    let msg = failed(&run(&o, "http_steps.orch", "wait_field", &[cfg[0], cfg[1], "-i", "job=bad"]));
    assert!(msg.contains("state is failed, expected done"), "{msg}");
    assert_eq!(srv.count("GET", "/jobs/bad"), 3);

    // expect checks the status and the body.
    assert_eq!(
        completed(&run(&o, "http_steps.orch", "expect_body", &[cfg[0], cfg[1], "-i", "text=2.4.1"]))["http_status"],
        200
    );
    let msg = failed(&run(&o, "http_steps.orch", "expect_body", &[cfg[0], cfg[1], "-i", "text=3.0.0"]));
    assert!(msg.contains("without \"3.0.0\""), "{msg}");
    let msg = failed(&run(&o, "http_steps.orch", "expect_status", &[cfg[0], cfg[1], "-i", "code=204"]));
    assert!(msg.contains("answered 200, expected 204"), "{msg}");

    // post_json and get_json exchange JSON; a 404 is permanent, not retried.
    let out =
        completed(&run(&o, "http_steps.orch", "post", &[cfg[0], cfg[1], "-i", r#"body={"name":"a","tags":["x"]}"#]));
    assert_eq!(out["http_status"], 201);
    assert_eq!(out["response"], json!({ "name": "a", "tags": ["x"], "id": 1 }));
    assert_eq!(
        completed(&run(&o, "http_steps.orch", "get", &[cfg[0], cfg[1], "-i", "item=1"]))["response"]["name"],
        "a"
    );
    failed(&run(&o, "http_steps.orch", "get", &[cfg[0], cfg[1], "-i", "item=7"]));
    assert_eq!(srv.count("GET", "/items/7"), 1);
}

#[test]
fn std_terraform_deploys_replans_reads_and_destroys() {
    let o = Orch::new();
    let dir = o.copy_dir("examples/platform/database");
    let d = format!("dir={dir}");
    let out = completed(&run(&o, "terraform_steps.orch", "up", &["-i", &d, "-i", "name=orders-db"]));
    assert_eq!(out["changes"], true);
    assert_eq!(out["outputs"]["port"], 5432);
    let address = out["outputs"]["address"].as_str().unwrap().to_string();
    assert!(address.starts_with("dbinst-") && address.ends_with(".internal.example.com"), "{address}");
    let calls = o.terraform_calls();
    let cmds: Vec<&str> = calls.iter().map(|(a, _)| a[0].as_str()).collect();
    assert_eq!(cmds, ["init", "plan", "show", "apply", "output"]);
    assert!(calls.iter().all(|(_, cwd)| *cwd == dir));

    // Nothing changed: plan says so, and apply applies an empty plan.
    let out = completed(&run(&o, "terraform_steps.orch", "up", &["-i", &d, "-i", "name=orders-db"]));
    assert_eq!(out["changes"], false);
    // A changed variable is an update in place.
    let out =
        completed(&run(&o, "terraform_steps.orch", "replan", &["-i", &d, "-i", "name=orders-db", "-i", "size=50"]));
    assert_eq!(out["changes"], true);
    assert_eq!(out["creates"], json!([]));
    assert_eq!(out["updates"], json!(["aws_db_instance.main"]));
    assert_eq!(out["deletes"], json!([]));

    let out = completed(&run(&o, "terraform_steps.orch", "read", &["-i", &d, "-i", "output_name=address"]));
    assert_eq!(out["value"], address.as_str());
    // `port` is a number, not a string: a conversion error, permanent.
    let msg = failed(&run(&o, "terraform_steps.orch", "read", &["-i", &d, "-i", "output_name=port"]));
    assert!(!msg.is_empty());

    let out = completed(&run(&o, "terraform_steps.orch", "down", &["-i", &d, "-i", "name=orders-db"]));
    assert_eq!(out["destroyed"], true);
    let destroy = o.terraform_calls().into_iter().find(|(a, _)| a[0] == "destroy").unwrap().0;
    for arg in ["-input=false", "-no-color", "-auto-approve", "-var=name=orders-db"] {
        assert!(destroy.contains(&arg.to_string()), "{destroy:?}");
    }
    let msg = failed(&run(&o, "terraform_steps.orch", "read", &["-i", &d, "-i", "output_name=address"]));
    assert!(msg.contains("not found") || msg.contains("exit"), "{msg}");

    // Terraform's own refusal reaches the run's error.
    let msg = failed(&run(&o, "terraform_steps.orch", "missing_var", &["-i", &d]));
    assert!(msg.contains("No value for required variable"), "{msg}");
}

#[test]
fn std_helm_installs_upgrades_rolls_back_and_uninstalls() {
    let o = Orch::new();
    let out = completed(&run(&o, "helm_steps.orch", "install", &["-i", "release=web", "-i", "tag=1.0.0"]));
    assert_eq!(out, json!({ "revision": 1, "release_status": "deployed" }));
    let out = completed(&run(&o, "helm_steps.orch", "install", &["-i", "release=web", "-i", "tag=1.1.0"]));
    assert_eq!(out["revision"], 2);
    let upgrade = &o.helm_calls()[1];
    assert_eq!(&upgrade[..4], ["upgrade", "--install", "web", "examples/platform/chart"]);
    for flag in ["--wait", "--atomic", "--create-namespace"] {
        assert!(upgrade.contains(&flag.to_string()), "{upgrade:?}");
    }
    // The values reach helm as one --set-string, with the comma escaped.
    let releases = o.helm_releases();
    assert_eq!(releases["web/web"][1]["values"], json!({ "image_tag": "1.1.0", "note": "a,b" }));

    assert_eq!(completed(&run(&o, "helm_steps.orch", "status", &["-i", "release=web"]))["revision"], 2);
    assert_eq!(completed(&run(&o, "helm_steps.orch", "rollback", &["-i", "release=web"]))["rolled_back"], true);
    let status = completed(&run(&o, "helm_steps.orch", "status", &["-i", "release=web"]));
    assert_eq!(status["revision"], 3);
    assert_eq!(o.helm_releases()["web/web"][2]["values"]["image_tag"], "1.0.0");

    assert_eq!(completed(&run(&o, "helm_steps.orch", "uninstall", &["-i", "release=web"]))["uninstalled"], true);
    // Uninstalling again is not an error (usable as a compensation).
    assert_eq!(completed(&run(&o, "helm_steps.orch", "uninstall", &["-i", "release=web"]))["uninstalled"], false);
    let msg = failed(&run(&o, "helm_steps.orch", "status", &["-i", "release=web"]));
    assert!(msg.contains("not found") || msg.contains("exit"), "{msg}");

    // A release that never gets ready fails the step permanently, with helm's message.
    let mut o2 = Orch::new();
    o2.env.push(("FAKE_HELM_FAIL_RELEASES".into(), "api".into()));
    let msg = failed(&run(&o2, "helm_steps.orch", "install", &["-i", "release=api", "-i", "tag=1.0.0"]));
    assert!(!msg.is_empty());
}

#[test]
fn std_ansible_runs_a_real_playbook_on_localhost() {
    assert!(standins::ansible_bin_dir().is_some(), "ansible-playbook is not installed: run scripts/install-test-deps");
    let o = Orch::new();
    let out_dir = o.path("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let playbook = standins::repo().join("tests/fixtures/ansible/write_facts.yml");
    let pb = format!("playbook={}", playbook.display());
    let od = format!("out_dir={}", out_dir.display());
    let hosts = r#"hosts=["app-1","app-2"]"#;

    // check mode changes nothing.
    let out = completed(&run(
        &o,
        "ansible_steps.orch",
        "configure",
        &["-i", &pb, "-i", hosts, "-i", &od, "-i", "check_mode=true"],
    ));
    assert_eq!(out["ok_hosts"], json!(["app-1", "app-2"]));
    assert!(std::fs::read_dir(&out_dir).unwrap().next().is_none());

    let out = completed(&run(&o, "ansible_steps.orch", "configure", &["-i", &pb, "-i", hosts, "-i", &od]));
    assert_eq!(out["changed_hosts"], json!(["app-1", "app-2"]));
    assert_eq!(out["recap"].as_array().unwrap().len(), 2);
    let text = std::fs::read_to_string(out_dir.join("app-2.txt")).unwrap();
    assert_eq!(text, "hello from orch to app-2; ports 523\n");
    // Again: idempotent, nothing changed.
    let out = completed(&run(&o, "ansible_steps.orch", "configure", &["-i", &pb, "-i", hosts, "-i", &od]));
    assert_eq!(out["changed_hosts"], json!([]));

    // A host that fails fails the step permanently, naming it.
    let msg = failed(&run(
        &o,
        "ansible_steps.orch",
        "configure",
        &["-i", &pb, "-i", r#"hosts=["app-1","broken-host"]"#, "-i", &od],
    ));
    assert!(msg.contains("failed on broken-host"), "{msg}");
}

/// The fake tools have teeth: a module that forgot a careful flag would fail the tests above.
#[test]
fn fake_tools_refuse_careless_arguments() {
    let o = Orch::new();
    let dir = o.copy_dir("examples/platform/database");
    let tf = |args: &[&str]| {
        let out = std::process::Command::new(standins::repo().join("tests/fixtures/bin/terraform"))
            .args(args)
            .current_dir(&dir)
            .env("FAKE_TERRAFORM_LOG", o.path("tf.jsonl"))
            .output()
            .unwrap();
        (out.status.code().unwrap(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (code, err) = tf(&["init", "-no-color"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("-input=false expected"));
    assert_eq!(tf(&["init", "-input=false", "-no-color"]).0, 0);
    let (code, err) = tf(&["plan", "-input=false", "-no-color", "-detailed-exitcode", "-var=name=x", "-var=size_gb=1"]);
    assert_eq!(code, 64, "a plan that is not saved: {err}");
    let (code, err) = tf(&["apply", "-input=false", "-no-color", "-auto-approve"]);
    assert_eq!(code, 64, "apply without the reviewed plan: {err}");
    let (code, err) = tf(&["plan", "-input=false", "-no-color", "-detailed-exitcode", "-out=p", "-var=nme=x"]);
    assert_eq!(code, 1);
    assert!(err.contains("undeclared variable"), "{err}");

    let helm = |args: &[&str]| {
        let out = std::process::Command::new(standins::repo().join("tests/fixtures/bin/helm"))
            .args(args)
            .current_dir(standins::repo())
            .env("FAKE_HELM_STATE", o.path("helm"))
            .output()
            .unwrap();
        (out.status.code().unwrap(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let base = ["upgrade", "--install", "web", "examples/platform/chart", "--namespace", "web", "--timeout", "60s"];
    let (code, err) = helm(&[&base[..], &["--atomic", "--output", "json"]].concat());
    assert_eq!(code, 64, "no --wait: {err}");
    let (code, err) = helm(&[&base[..], &["--wait", "--atomic"]].concat());
    assert_eq!(code, 64, "no --output json: {err}");
    let (code, err) = helm(&[
        "upgrade",
        "--install",
        "web",
        "no/such/chart",
        "--namespace",
        "web",
        "--timeout",
        "60s",
        "--wait",
        "--atomic",
        "--output",
        "json",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
    assert_eq!(helm(&[&base[..], &["--wait", "--atomic", "--output", "json"]].concat()).0, 0);
    let (code, err) = helm(&["uninstall", "web", "--namespace", "web"]);
    assert_eq!(code, 64, "uninstall without --wait: {err}");
}

/// A check's errors, as `code: message` lines.
fn errors(result: &orch::check::CheckResult) -> Vec<String> {
    result
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| format!("{}: {}", d.code.as_str(), d.message))
        .collect()
}
