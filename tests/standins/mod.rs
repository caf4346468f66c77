//! Stand-in servers for the examples' end-to-end tests, and the helpers that run `orchc`.
//!
//! Each stand-in is a real HTTP server bound to 127.0.0.1 on a free port, running in a thread.
//! It records every request (method, path, headers, JSON body) and answers from a small model
//! of the system it stands in for, whose state the test can read and whose failures the test
//! can switch on.

#![allow(dead_code)]

pub mod cloud;
pub mod inventory;
pub mod landing;
pub mod platform;
pub mod promotion;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::{json, Value};

/// One request the stand-in saw.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub query: String,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON (`null` when empty or not JSON).
    pub body: Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// The path split on `/`, without empty parts.
    pub fn segments(&self) -> Vec<&str> {
        self.path.split('/').filter(|s| !s.is_empty()).collect()
    }
}

/// What a stand-in answers.
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply { status, body }
    }
    pub fn ok(body: Value) -> Reply {
        Reply { status: 200, body }
    }
    pub fn no_content() -> Reply {
        Reply { status: 204, body: Value::Null }
    }
    pub fn not_found(what: &str) -> Reply {
        Reply { status: 404, body: json!({ "error": format!("{what} not found") }) }
    }
    pub fn error(status: u16, message: &str) -> Reply {
        Reply { status, body: json!({ "error": message }) }
    }
}

pub struct StandIn {
    pub url: String,
    log: Arc<Mutex<Vec<Recorded>>>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl StandIn {
    /// Starts a server on a free port of 127.0.0.1 that answers with `handler`.
    pub fn start(mut handler: impl FnMut(&Recorded) -> Reply + Send + 'static) -> StandIn {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1:0"));
        let port = server.server_addr().to_ip().expect("an IP listener").port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (srv, lg) = (server.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            for mut request in srv.incoming_requests() {
                let mut text = String::new();
                let _ = request.as_reader().read_to_string(&mut text);
                let url = request.url().to_string();
                let (path, query) = match url.split_once('?') {
                    Some((p, q)) => (p.to_string(), q.to_string()),
                    None => (url.clone(), String::new()),
                };
                let recorded = Recorded {
                    method: request.method().as_str().to_uppercase(),
                    path,
                    query,
                    headers: request
                        .headers()
                        .iter()
                        .map(|h| (h.field.as_str().as_str().to_ascii_lowercase(), h.value.as_str().to_string()))
                        .collect(),
                    body: serde_json::from_str(&text).unwrap_or(Value::Null),
                };
                lg.lock().unwrap().push(recorded.clone());
                let reply = handler(&recorded);
                let body = if reply.body.is_null() { String::new() } else { reply.body.to_string() };
                let response = tiny_http::Response::from_string(body).with_status_code(reply.status).with_header(
                    tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]).unwrap(),
                );
                let _ = request.respond(response);
            }
        });
        StandIn { url: format!("http://127.0.0.1:{port}"), log, server, thread: Some(thread) }
    }

    /// Every request seen so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    /// The requests with this method whose path starts with `prefix`.
    pub fn matching(&self, method: &str, prefix: &str) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.method == method && r.path.starts_with(prefix)).collect()
    }

    pub fn count(&self, method: &str, prefix: &str) -> usize {
        self.matching(method, prefix).len()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// -------------------------------------------------------------------------------------------
// Running orchc

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding `ansible-playbook`: on the PATH, or the test venv that
/// `scripts/install-test-deps` creates.
pub fn ansible_bin_dir() -> Option<PathBuf> {
    let venv = repo().join("target/test-venv/bin");
    if venv.join("ansible-playbook").exists() {
        return Some(venv);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).find(|p| p.join("ansible-playbook").exists()))
}

/// The outcome of one `orchc` command.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// The last line of stdout, parsed as JSON (`run`/`resume`/`retry --json`).
    pub fn last_json(&self) -> Value {
        let line = self.stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_else(|| {
            panic!("orchc printed nothing; stderr:\n{}", self.stderr);
        });
        serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "the last line of stdout is not JSON ({e}): {line}\nstdout:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The whole stdout parsed as JSON (`show --json`, `subscription --json`).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }
}

/// A scratch directory with a store, in which `orchc` runs with the fake `terraform` and
/// `helm` first on its PATH.
pub struct Orch {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Orch {
    pub fn new() -> Orch {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("helm")).unwrap();
        let mut paths = vec![repo().join("tests/fixtures/bin")];
        if let Some(a) = ansible_bin_dir() {
            paths.push(a);
        }
        paths.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
        let path = std::env::join_paths(paths).unwrap().to_string_lossy().to_string();
        let env = vec![
            ("PATH".to_string(), path),
            ("FAKE_HELM_STATE".to_string(), dir.path().join("helm").to_string_lossy().to_string()),
            ("FAKE_TERRAFORM_LOG".to_string(), dir.path().join("terraform.jsonl").to_string_lossy().to_string()),
        ];
        Orch { dir, env }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn db(&self) -> String {
        self.path("state.db").to_string_lossy().to_string()
    }

    /// `orchc ARGS --db DB`, from the repository's root (the examples' default paths are
    /// relative to it).
    pub fn orchc(&self, args: &[&str]) -> Outcome {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orchc"));
        cmd.args(args).arg("--db").arg(self.db()).current_dir(repo());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.env_remove("ORCH_DB");
        let out = cmd.output().expect("run orchc");
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    }

    /// Starts `orchc ARGS --db DB` without waiting for it (to kill it mid-run).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orchc"));
        cmd.args(args).arg("--db").arg(self.db()).current_dir(repo());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.env_remove("ORCH_DB").stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        cmd.spawn().expect("start orchc")
    }

    /// The id of the only run in the store, from `orchc runs`.
    pub fn only_run(&self) -> String {
        let out = self.orchc(&["runs"]);
        let ids: Vec<String> =
            out.stdout.lines().skip(1).filter_map(|l| l.split_whitespace().next().map(str::to_string)).collect();
        assert_eq!(ids.len(), 1, "{out:?}");
        ids[0].clone()
    }

    /// `orchc show RUN --json`.
    pub fn show(&self, run_id: &str) -> Value {
        let out = self.orchc(&["show", run_id, "--json"]);
        assert_eq!(out.code, 0, "orchc show failed: {out:?}");
        out.json()
    }

    /// `orchc subscription ID --json`.
    pub fn subscription(&self, id: &str) -> Value {
        let out = self.orchc(&["subscription", id, "--json"]);
        assert_eq!(out.code, 0, "orchc subscription failed: {out:?}");
        out.json()
    }

    /// The fake terraform's invocations: (argv, cwd).
    pub fn terraform_calls(&self) -> Vec<(Vec<String>, String)> {
        read_jsonl(&self.path("terraform.jsonl"))
            .into_iter()
            .map(|v| {
                let argv = v["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
                (argv, v["cwd"].as_str().unwrap().to_string())
            })
            .collect()
    }

    /// The fake helm's invocations.
    pub fn helm_calls(&self) -> Vec<Vec<String>> {
        read_jsonl(&self.path("helm/calls.jsonl"))
            .into_iter()
            .map(|v| v["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect())
            .collect()
    }

    /// The fake helm's releases ("NAMESPACE/NAME" -> history).
    pub fn helm_releases(&self) -> Value {
        helm_releases(&self.path("helm"))
    }

    /// Copies a directory of the repository (a Terraform module) into the scratch directory,
    /// so the fake terraform's state stays out of the repository.
    pub fn copy_dir(&self, rel: &str) -> String {
        let to = self.path(rel);
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(repo().join(rel)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
        to.to_string_lossy().to_string()
    }
}

pub fn read_jsonl(path: &Path) -> Vec<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect(),
        Err(_) => Vec::new(),
    }
}

pub fn helm_releases(state_dir: &Path) -> Value {
    match std::fs::read_to_string(state_dir.join("releases.json")) {
        Ok(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
        Err(_) => json!({}),
    }
}

/// The steps of a `show --json` document, whatever the nesting: every object that has a
/// `name` (or `step`) and a `status`, flattened in document order.
pub fn steps_of(show: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<Value>) {
        match v {
            Value::Object(map) => {
                if let Some(steps) = map.get("steps").and_then(Value::as_array) {
                    for s in steps {
                        out.push(s.clone());
                    }
                }
                for (k, child) in map {
                    if k != "steps" {
                        walk(child, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    walk(show, &mut out);
    out
}

// -------------------------------------------------------------------------------------------
// Injected failures

/// Failures to answer before the model handles a request: for a method and a path prefix, a
/// queue of statuses (each answered once, in order), or one status for ever.
#[derive(Default)]
pub struct Faults {
    queued: Vec<(String, String, std::collections::VecDeque<u16>)>,
    always: Vec<(String, String, u16, String)>,
}

impl Faults {
    /// Answer the next `times` matching requests with `status`.
    pub fn fail_times(&mut self, method: &str, prefix: &str, status: u16, times: usize) {
        self.queued.push((method.to_string(), prefix.to_string(), std::iter::repeat_n(status, times).collect()));
    }

    /// Answer every matching request with `status` and `message`.
    pub fn fail_always(&mut self, method: &str, prefix: &str, status: u16, message: &str) {
        self.always.push((method.to_string(), prefix.to_string(), status, message.to_string()));
    }

    pub fn clear(&mut self) {
        self.queued.clear();
        self.always.clear();
    }

    /// The injected answer for this request, if any.
    pub fn check(&mut self, r: &Recorded) -> Option<Reply> {
        for (m, p, q) in &mut self.queued {
            if *m == r.method && r.path.starts_with(p.as_str()) {
                if let Some(status) = q.pop_front() {
                    return Some(Reply::error(status, "injected failure"));
                }
            }
        }
        for (m, p, status, message) in &self.always {
            if *m == r.method && r.path.starts_with(p.as_str()) {
                return Some(Reply::error(*status, message));
            }
        }
        None
    }
}

/// `Authorization: Bearer TOKEN` or a 401.
pub fn check_bearer(r: &Recorded, token: &str) -> Option<Reply> {
    if r.header("authorization") == Some(&format!("Bearer {token}")) {
        None
    } else {
        Some(Reply::error(401, "missing or wrong bearer token"))
    }
}
