//! What the end-to-end tests share: a stand-in HTTP server on 127.0.0.1 that records every request,
//! and the real `orchc` binary run in a temporary directory with its own store.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Hit {
    pub method: String,
    pub path: String,
    pub body: String,
    pub headers: Vec<(String, String)>,
    pub at: Instant,
}

pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn ok(body: impl Into<String>) -> Reply {
        Reply { status: 200, body: body.into(), delay: Duration::ZERO }
    }
    pub fn json(v: Value) -> Reply {
        Reply::ok(v.to_string())
    }
    pub fn status(status: u16, body: impl Into<String>) -> Reply {
        Reply { status, body: body.into(), delay: Duration::ZERO }
    }
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

pub struct Server {
    pub url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Server {
    /// Starts a server answering each request (in its own thread) with `handler(hit, n)`, where
    /// `n` counts the earlier requests with the same method and path.
    pub fn start(handler: impl Fn(&Hit, usize) -> Reply + Send + Sync + 'static) -> Server {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("a local port");
        let url = format!("http://{}", server.server_addr().to_ip().expect("an IP address"));
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let handler = Arc::new(handler);
        let log = hits.clone();
        std::thread::spawn(move || {
            for mut req in server.incoming_requests() {
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let hit = Hit {
                    method: req.method().to_string(),
                    path: req.url().to_string(),
                    body,
                    headers: req
                        .headers()
                        .iter()
                        .map(|h| (h.field.to_string().to_lowercase(), h.value.to_string()))
                        .collect(),
                    at: Instant::now(),
                };
                let n = {
                    let mut hits = log.lock().unwrap();
                    let n = hits.iter().filter(|h| h.method == hit.method && h.path == hit.path).count();
                    hits.push(hit.clone());
                    n
                };
                let handler = handler.clone();
                std::thread::spawn(move || {
                    let reply = handler(&hit, n);
                    std::thread::sleep(reply.delay);
                    let header = tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap();
                    let _ = req.respond(
                        tiny_http::Response::from_string(reply.body).with_status_code(reply.status).with_header(header),
                    );
                });
            }
        });
        Server { url, hits }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    pub fn count(&self, method: &str, path: &str) -> usize {
        self.hits().iter().filter(|h| h.method == method && h.path == path).count()
    }

    /// Waits until a request matching `path` arrives (or fails the test after 20 s).
    pub fn wait_for(&self, path: &str) {
        let start = Instant::now();
        while !self.hits().iter().any(|h| h.path == path) {
            assert!(start.elapsed() < Duration::from_secs(20), "no request to {path} arrived");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Where a stand-in's handler holds a request in flight (a step during which `orchc` is killed, or
/// a run that holds a lock) until the test opens it.
#[derive(Clone, Default)]
pub struct Gate(Arc<AtomicBool>);

impl Gate {
    pub fn wait(&self) {
        while !self.0.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn open(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary directory with its own store, in which `orchc` runs.
pub struct Orchc {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Orchc {
    pub fn new() -> Orchc {
        Orchc { dir: tempfile::tempdir().expect("a temporary directory"), env: vec![] }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orchc"));
        cmd.args(args).arg("--db").arg(self.db()).current_dir(repo()).env("NO_COLOR", "1");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts `orchc` in the background with its output discarded (a run to be killed).
    pub fn spawn_quiet(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("orchc starts")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("orchc runs")
    }

    /// Runs a command with `--json` and parses its last line.
    pub fn json(&self, args: &[&str]) -> (i32, Value, Output) {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--json");
        let out = self.run(&all);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let last = stdout.lines().last().unwrap_or_default();
        let v: Value = serde_json::from_str(last).unwrap_or_else(|e| {
            panic!("not JSON ({e}): {last}\nstdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
        });
        (out.status.code().unwrap_or(-1), v, out)
    }

    pub fn show(&self, run: &str) -> Value {
        let out = self.run(&["show", run, "--json"]);
        assert!(out.status.success(), "show failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("show --json is JSON")
    }

    /// Every byte of the store: the database and its WAL files.
    pub fn store_bytes(&self) -> Vec<u8> {
        let mut all = vec![];
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let p = Path::new(&format!("{}{suffix}", self.db().display())).to_path_buf();
            if let Ok(b) = std::fs::read(p) {
                all.extend(b);
            }
        }
        all
    }
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Every `.orch` file of the repository (outside `target/`, `node_modules/` and hidden
/// directories), sorted.
pub fn orch_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(repo())
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            e.depth() == 0 || !(name.starts_with('.') || name == "target" || name == "node_modules")
        })
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "orch"))
        .map(walkdir::DirEntry::into_path)
        .collect();
    files.sort();
    files
}

/// The ```orch examples of the design brief, when it is beside the repository (not in a bare
/// CI checkout).
pub fn brief_examples() -> Vec<String> {
    let Ok(brief) = std::fs::read_to_string(repo().join("../shared/design/LANGUAGE.md")) else { return vec![] };
    brief.split("```orch\n").skip(1).map(|b| b.split("```").next().unwrap_or("").to_string()).collect()
}
