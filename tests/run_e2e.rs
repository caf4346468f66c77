//! End to end: the real `orchc` binary runs the workflows in `tests/run/` against stand-in HTTP
//! servers on 127.0.0.1, with a real SQLite store in a temporary directory.

mod support;

use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{text, Gate, Orchc, Reply, Server};

fn cfg(server: &Server) -> String {
    format!("api={}", server.url)
}

/// Creates a `Node` subscription for customer `acme` with `tests/run/subscriptions.orch`; gives
/// the run's id and the subscription's.
fn create_node(o: &Orchc, server: &Server, name: &str) -> (String, String) {
    let name = format!("name={name}");
    let args = ["run", "tests/run/subscriptions.orch", "create", "-i", "customer=acme", "-i", &name];
    let (code, v, out) = o.json(&[&args[..], &["--config", &cfg(server)]].concat());
    assert_eq!(code, 0, "{}", text(&out));
    (v["run_id"].as_str().unwrap().to_string(), v["outputs"]["node"]["id"].as_str().unwrap().to_string())
}

/// The stand-in for `tests/run/crash.orch`: `/allocate` gives `vm`; `/configure/<vm>` waits until
/// the returned flag is set, then answers `configured`; anything else answers `ok`.
fn vm_server(vm: &'static str) -> (Server, Gate) {
    let release = Gate::default();
    let gate = release.clone();
    let configure = format!("/configure/{vm}");
    let server = Server::start(move |hit, _| {
        if hit.path == "/allocate" {
            Reply::json(json!({ "id": vm }))
        } else if hit.path == configure {
            gate.wait();
            Reply::ok("configured")
        } else {
            Reply::ok("ok")
        }
    });
    (server, release)
}

/// `orchc run tests/run/crash.orch` in the background, its output kept for the test.
fn start_crash_run(o: &Orchc, server: &Server) -> std::process::Child {
    o.command(&["run", "tests/run/crash.orch", "--config", &cfg(server)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn retries_wait_by_the_backoff_formula_and_then_succeed() {
    let server =
        Server::start(|_, n| if n < 2 { Reply::status(503, "busy") } else { Reply::json(json!({"count": 42})) });
    let o = Orchc::new();
    let (code, v, out) = o.json(&["run", "tests/run/retry.orch", "--config", &cfg(&server)]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["status"], "completed");
    assert_eq!(v["outputs"]["devices"], 42);
    let hits = server.hits();
    assert_eq!(hits.len(), 3);
    // min(MAX, MIN * F^(k-1)): 200ms after the first attempt, 400ms after the second.
    let gap1 = hits[1].at - hits[0].at;
    let gap2 = hits[2].at - hits[1].at;
    assert!(gap1 >= Duration::from_millis(200), "first wait {gap1:?}");
    assert!(gap2 >= Duration::from_millis(400), "second wait {gap2:?}");
    assert!(gap2 > gap1, "the backoff grows: {gap1:?} then {gap2:?}");
    let show = o.show(v["run_id"].as_str().unwrap());
    let attempts = show["steps"][0]["attempts"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts[0]["status"], "failed");
    assert!(attempts[0]["error"].as_str().unwrap().contains("503"));
    assert_eq!(attempts[2]["status"], "completed");
    assert!(attempts.iter().all(|a| a["started"].is_string()), "each attempt keeps its start: {attempts:?}");
    // The audit log says what happened: two failed attempts, then the completion.
    let kinds: Vec<&str> = show["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["run_started", "attempt_failed", "attempt_failed", "step_completed", "run_completed"],
        "{:#}",
        show["events"]
    );
}

/// The factor and the cap are applied, and the waits are not longer than the formula says: with
/// `backoff 100ms..1s factor 8` the waits are 100ms, 800ms and 1s (the third uncapped: 6.4s); one
/// exponent too far, they would be 800ms, 1s and 1s, which the first wait shows.
#[test]
fn retry_waits_grow_by_the_factor_up_to_the_cap() {
    let server =
        Server::start(|_, n| if n < 3 { Reply::status(503, "busy") } else { Reply::json(json!({"count": 7})) });
    let o = Orchc::new();
    let (code, v, out) = o.json(&["run", "tests/run/retry_cap.orch", "--config", &cfg(&server)]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["outputs"]["devices"], 7);
    let hits = server.hits();
    assert_eq!(hits.len(), 4);
    // Upper bounds leave 350 ms for a slow machine; the mistakes they catch are 700 ms off or more.
    let gaps = hits.windows(2).map(|w| w[1].at - w[0].at);
    for (gap, wait) in gaps.zip([100, 800, 1_000]) {
        let wait = Duration::from_millis(wait);
        assert!(gap >= wait && gap < wait + Duration::from_millis(350), "waited {gap:?}, the formula says {wait:?}");
    }
}

/// A step whose retries run out fails with the last attempt's number and the line of the failing
/// call, in `--json` and in the report a person reads.
#[test]
fn a_failure_after_the_last_retry_names_its_attempt_and_line() {
    let server = Server::start(|_, _| Reply::status(503, "still busy"));
    let o = Orchc::new();
    let (code, v, _) = o.json(&["run", "tests/run/retry_cap.orch", "--config", &cfg(&server)]);
    assert_eq!(code, 1);
    assert_eq!(server.hits().len(), 4, "four attempts in all");
    assert_eq!(v["error"]["step"], "fetch_inventory");
    assert_eq!(v["error"]["attempt"], 4);
    assert_eq!(v["error"]["file"], "tests/run/retry_cap.orch");
    assert_eq!(v["error"]["line"], 7);
    let out = o.run(&["run", "tests/run/retry_cap.orch", "--config", &cfg(&server)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("(step `fetch_inventory`, attempt 4, tests/run/retry_cap.orch:7)"), "{}", text(&out));
}

/// Entering a state whose required fields are not all set fails the step with
/// `orch::run::lifecycle_fields`, naming them; the subscription keeps its state.
#[test]
fn a_transition_without_the_fields_its_state_requires_fails() {
    let o = Orchc::new();
    let (code, v, out) = o.json(&["run", "tests/run/lifecycle_fields.orch"]);
    assert_eq!(code, 1, "{}", text(&out));
    assert_eq!(v["status"], "failed");
    assert_eq!(v["error"]["code"], "orch::run::lifecycle_fields");
    assert!(v["error"]["message"].as_str().unwrap().contains("`node.ims_id` must be set"), "{v}");
    assert_eq!(v["error"]["step"], "register");
    assert_eq!(v["error"]["line"], 20);
    let show = o.show(v["run_id"].as_str().unwrap());
    // `register` may try three times: the failure is permanent.
    assert_eq!(show["steps"][1]["attempts"].as_array().unwrap().len(), 1, "{show:#}");
    let subs: Value = serde_json::from_slice(&o.run(&["subscriptions", "--json"]).stdout).unwrap();
    assert_eq!(subs.as_array().unwrap().len(), 1);
    assert_eq!(subs[0]["state"], "initial");
    assert_eq!(subs[0]["version"], 1);
}

/// `http.*`: a 429 fails the attempt as retryable, as a 5xx does; the `timeout:` argument cuts a
/// request off, also a retryable failure.
#[test]
fn http_retries_a_429_and_a_request_past_its_timeout() {
    let server = Server::start(|hit, n| match (hit.path.as_str(), n) {
        ("/throttled", 0) => Reply::status(429, "slow down"),
        ("/slow", 0) => Reply::ok("late").after(Duration::from_secs(3)),
        ("/slow", _) => Reply::ok("in time"),
        _ => Reply::ok("fine"),
    });
    let o = Orchc::new();
    let (code, v, out) = o.json(&["run", "tests/run/http_limits.orch", "--config", &cfg(&server)]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["outputs"], json!({"status": 200, "body": "in time"}));
    assert_eq!(server.count("GET", "/throttled"), 2);
    assert_eq!(server.count("GET", "/slow"), 2);
    let show = o.show(v["run_id"].as_str().unwrap());
    let attempts = |i: usize| show["steps"][i]["attempts"].as_array().unwrap().clone();
    let throttled = attempts(0);
    assert_eq!(throttled[0]["status"], "failed");
    assert!(throttled[0]["error"].as_str().unwrap().contains("HTTP 429"), "{throttled:?}");
    let slow = attempts(1);
    assert_eq!(slow[0]["status"], "failed");
    let took = slow[0]["duration_ms"].as_i64().unwrap();
    assert!((300..2_000).contains(&took), "the first request was cut off after {took} ms, not at its 300ms timeout");
    assert_eq!(slow[1]["status"], "completed");
}

/// `show RUN` without `--json`: the run, then each step with its attempts, their times and
/// errors, and its outputs; times, ids and the server's address are normalised for the snapshot.
#[test]
fn show_prints_a_timeline_of_steps_and_attempts() {
    let server =
        Server::start(|_, n| if n < 2 { Reply::status(503, "busy") } else { Reply::json(json!({"count": 42})) });
    let o = Orchc::new();
    let (code, v, out) = o.json(&["run", "tests/run/retry.orch", "--config", &cfg(&server)]);
    assert_eq!(code, 0, "{}", text(&out));
    let run = v["run_id"].as_str().unwrap();
    let hash = o.show(run)["program_hash"].as_str().unwrap()[..12].to_string();
    let out = o.run(&["show", run]);
    assert!(out.status.success(), "{}", text(&out));
    let shown =
        String::from_utf8(out.stdout).unwrap().replace(run, "RUN").replace(&hash, "HASH").replace(&server.url, "API");
    // Token by token, so that the columns' spacing stays as printed.
    let is_time = |t: &str| t.len() >= 20 && t.starts_with("20") && t.ends_with('Z') && t.as_bytes()[10] == b'T';
    let is_took = |t: &str| {
        let number = t.trim_end_matches("ms").trim_end_matches('s');
        number != t && !number.is_empty() && number.chars().all(|c| c.is_ascii_digit() || c == '.')
    };
    let normalised: Vec<String> = shown
        .lines()
        .map(|line| {
            let tokens: Vec<&str> = line
                .split(' ')
                .map(|t| {
                    if is_time(t) {
                        "TIME"
                    } else if is_took(t) {
                        "TOOK"
                    } else {
                        t
                    }
                })
                .collect();
            tokens.join(" ")
        })
        .collect();
    insta::assert_snapshot!(normalised.join("\n"));
}

/// `idempotency_key()` is the same for every attempt of one step in one run, and differs from one
/// step to another and from one run to the next.
#[test]
fn idempotency_keys_hold_across_attempts_and_differ_between_steps_and_runs() {
    let server = Server::start(|_, n| if n < 2 { Reply::status(503, "busy") } else { Reply::ok("{}") });
    let o = Orchc::new();
    let keys = |path: &str, hits: &[support::Hit]| -> Vec<String> {
        hits.iter()
            .filter(|h| h.path == path)
            .map(|h| h.headers.iter().find(|(k, _)| k == "idempotency-key").expect("the header").1.clone())
            .collect()
    };
    let (code, v, out) = o.json(&["run", "tests/run/idempotency.orch", "--config", &cfg(&server)]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["outputs"], json!({"created": true, "attached": true}));
    let first = server.hits();
    let (vlan, port) = (keys("/vlans", &first), keys("/ports", &first));
    // Each step's first two attempts get a 503.
    for step in [&vlan, &port] {
        assert_eq!(step.len(), 3, "three attempts: {step:?}");
        assert!(step.iter().all(|k| k == &step[0]) && !step[0].is_empty(), "{step:?}");
    }
    assert_ne!(vlan[0], port[0], "two steps share a key");
    let (code, _, out) = o.json(&["run", "tests/run/idempotency.orch", "--config", &cfg(&server)]);
    assert_eq!(code, 0, "{}", text(&out));
    let again = server.hits()[first.len()..].to_vec();
    let next = keys("/vlans", &again);
    assert_eq!(next.len(), 1, "the server now answers at once");
    assert_ne!(next[0], vlan[0], "two runs share a key");
}

#[test]
fn a_permanent_error_is_not_retried() {
    let server = Server::start(|_, _| Reply::status(404, "no such site"));
    let o = Orchc::new();
    let (code, v, _) = o.json(&["run", "tests/run/retry.orch", "--config", &cfg(&server)]);
    assert_eq!(code, 1);
    assert_eq!(v["status"], "failed");
    assert_eq!(server.hits().len(), 1, "a 404 fails the attempt permanently");
    assert_eq!(v["error"]["step"], "fetch_inventory");
    assert_eq!(v["error"]["line"], 7, "the error points at the http call");
    assert!(v["error"]["message"].as_str().unwrap().contains("404"));
}

#[test]
fn each_attempt_is_limited_by_the_timeout() {
    let server = Server::start(|_, _| Reply::json(json!({"id": "snap-1"})).after(Duration::from_secs(3)));
    let o = Orchc::new();
    let started = std::time::Instant::now();
    let (code, v, _) = o.json(&["run", "tests/run/timeout.orch", "--config", &cfg(&server)]);
    assert_eq!(code, 1);
    assert!(started.elapsed() < Duration::from_secs(3), "the attempts were cut off at 300ms");
    assert_eq!(server.hits().len(), 2, "a timeout is retryable: two attempts");
    assert!(v["error"]["message"].as_str().unwrap().contains("timed out after 300ms"));
    let show = o.show(v["run_id"].as_str().unwrap());
    for a in show["steps"][0]["attempts"].as_array().unwrap() {
        let ms = a["duration_ms"].as_i64().unwrap();
        assert!((290..2000).contains(&ms), "an attempt took {ms}ms");
    }
}

#[test]
fn polling_repeats_the_body_until_the_condition_holds() {
    let server = Server::start(|hit, n| {
        if hit.path.ends_with("/vm-never") {
            return Reply::json(json!({"status": "BUILD", "polls": n}));
        }
        let status = if n < 3 { "BUILD" } else { "ACTIVE" };
        Reply::json(json!({"status": status, "polls": n + 1}))
    });
    let o = Orchc::new();
    let (code, v, out) =
        o.json(&["run", "tests/run/poll.orch", "start_server", "-i", "server=vm-1", "--config", &cfg(&server)]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["outputs"], json!({"status": "ACTIVE", "polls": 4}));
    assert_eq!(server.count("GET", "/servers/vm-1"), 4);

    let (code, v, _) = o.json(&[
        "run",
        "tests/run/poll.orch",
        "start_server_strict",
        "-i",
        "server=vm-never",
        "--config",
        &cfg(&server),
    ]);
    assert_eq!(code, 1);
    assert_eq!(v["error"]["code"], "orch::run::poll_timeout");
    let polls = server.count("GET", "/servers/vm-never");
    assert!((2..=5).contains(&polls), "polled {polls} times within 350ms");
}

#[test]
fn a_poll_body_is_cut_off_when_within_runs_out() {
    let server = Server::start(|_, _| Reply::json(json!({"status": "BUILD"})).after(Duration::from_secs(5)));
    let o = Orchc::new();
    let started = std::time::Instant::now();
    let (code, v, out) = o.json(&[
        "run",
        "tests/run/poll.orch",
        "start_server_strict",
        "-i",
        "server=vm-slow",
        "--config",
        &cfg(&server),
    ]);
    assert_eq!(code, 1, "{}", text(&out));
    assert_eq!(v["error"]["code"], "orch::run::poll_timeout", "{v}");
    assert!(started.elapsed() < Duration::from_secs(3), "the slow call was waited for: {:?}", started.elapsed());
    assert_eq!(server.count("GET", "/servers/vm-slow"), 1);
}

#[test]
fn compensations_run_in_reverse_order_of_completion() {
    let server = Server::start(|hit, _| match (hit.method.as_str(), hit.path.as_str()) {
        ("POST", "/networks") => Reply::json(json!({"id": "net-7"})),
        ("POST", "/networks/net-7/ips") => Reply::json(json!({"ip": "10.0.0.5"})),
        ("POST", "/ports") => Reply::status(409, "port conflict"),
        _ => Reply::ok("{}"),
    });
    let o = Orchc::new();
    let (code, v, out) = o.json(&["run", "tests/run/compensate.orch", "--config", &cfg(&server)]);
    assert_eq!(code, 1, "{}", text(&out));
    assert_eq!(v["error"]["step"], "attach_port");
    let order: Vec<String> = server.hits().iter().map(|h| format!("{} {}", h.method, h.path)).collect();
    assert_eq!(
        order,
        [
            "POST /networks",
            "POST /networks/net-7/ips",
            "POST /ports",
            "DELETE /networks/net-7/ips/10.0.0.5",
            "DELETE /networks/net-7",
        ]
    );
    let show = o.show(v["run_id"].as_str().unwrap());
    let steps: Vec<(String, String)> = show["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap().to_string(), s["status"].as_str().unwrap().to_string()))
        .collect();
    assert!(steps.contains(&("release_ip".into(), "completed".into())), "{steps:?}");
    assert!(steps.contains(&("delete_network".into(), "completed".into())), "{steps:?}");
    assert!(steps.contains(&("create_network".into(), "compensated".into())), "{steps:?}");
    assert_eq!(show["status"], "failed");
}

#[test]
fn for_results_keep_element_order_and_parallel_branches_merge() {
    let server = Server::start(|hit, _| {
        if let Some(size) = hit.path.strip_prefix("/resize/") {
            let n: u64 = size.parse().unwrap();
            return Reply::ok(format!("size-{n}")).after(Duration::from_millis(n * 150));
        }
        Reply::ok(hit.path.trim_start_matches('/').replace('/', ":"))
    });
    let o = Orchc::new();
    let (code, v, out) =
        o.json(&["run", "tests/run/parallel.orch", "-i", "sizes=[3, 1, 2]", "--config", &cfg(&server)]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["outputs"]["resized"], json!(["size-3", "size-1", "size-2"]));
    assert_eq!(v["outputs"]["record"], "dns:example.net");
    assert_eq!(v["outputs"]["certificate"], "cert:example.net");
    // The three iterations ran at once: the slowest (450ms) dominates, not the sum (900ms).
    let hits = server.hits();
    let resizes: Vec<_> = hits.iter().filter(|h| h.path.starts_with("/resize/")).collect();
    assert_eq!(resizes.len(), 3);
    let spread = resizes.iter().map(|h| h.at).max().unwrap() - resizes.iter().map(|h| h.at).min().unwrap();
    assert!(spread < Duration::from_millis(140), "iterations started {spread:?} apart");
}

/// The branches of `&`, and the items of a graph that do not depend on each other, run at once:
/// each is held 300 ms by the server, and they start together rather than one after the other.
#[test]
fn parallel_branches_and_independent_graph_items_run_at_once() {
    let server = Server::start(|hit, _| {
        let name = hit.path.trim_start_matches('/').split('/').next().unwrap_or_default().to_string();
        let reply = Reply::ok(format!("{name}-ok"));
        if name == "site" {
            reply
        } else {
            reply.after(Duration::from_millis(300))
        }
    });
    let o = Orchc::new();
    let started = |paths: [&str; 2]| {
        let hits = server.hits();
        let at: Vec<_> = paths.iter().map(|p| hits.iter().find(|h| h.path.starts_with(p)).expect(p).at).collect();
        if at[0] > at[1] {
            at[0] - at[1]
        } else {
            at[1] - at[0]
        }
    };
    let (code, v, out) = o.json(&["run", "tests/run/branches.orch", "publish", "--config", &cfg(&server)]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["outputs"], json!({"record": "dns-ok", "certificate": "cert-ok"}));
    let spread = started(["/dns/", "/cert/"]);
    // One after the other, they would start 300ms apart.
    assert!(spread < Duration::from_millis(250), "the branches started {spread:?} apart");

    let (code, v, out) = o.json(&["run", "tests/run/branches.orch", "fabric", "--config", &cfg(&server)]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["outputs"], json!({"vlan": "vlan-ok", "port": "port-ok"}));
    let spread = started(["/vlan/", "/port/"]);
    assert!(spread < Duration::from_millis(250), "the graph's items started {spread:?} apart");
    // Both read what `site` wrote (its reply is in their paths), so they ran after it.
    let hits = server.hits();
    for item in ["/vlan/site-ok", "/port/site-ok"] {
        assert!(hits.iter().any(|h| h.path == item), "no {item}: {hits:?}");
    }
}

/// A run killed while one branch of `&` is in flight and the other has completed resumes with the
/// completed branch's outputs: it is not run again, the one in flight is.
#[test]
fn a_branch_killed_in_flight_runs_again_and_the_finished_one_does_not() {
    let release = Gate::default();
    let gate = release.clone();
    let server = Server::start(move |hit, _| {
        if hit.path.starts_with("/cert/") {
            gate.wait();
            return Reply::ok("cert-ok");
        }
        Reply::ok("dns-ok")
    });
    let o = Orchc::new();
    let mut child = o.spawn_quiet(&["run", "tests/run/branches.orch", "publish", "--config", &cfg(&server)]);
    server.wait_for("/cert/example.net");
    // Killed only once `dns` is on disk, as `show` reads it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let runs: Value = serde_json::from_slice(&o.run(&["runs", "--json"]).stdout).unwrap_or(Value::Null);
        if let Some(run) = runs[0]["run_id"].as_str() {
            let show = o.show(run);
            let steps = show["steps"].as_array().unwrap();
            if steps.iter().any(|s| s["step"] == "dns" && s["status"] == "completed") {
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "dns was never completed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    release.open();
    let runs: Value = serde_json::from_slice(&o.run(&["runs", "--json"]).stdout).unwrap();
    assert_eq!(runs[0]["status"], "running");
    let (code, v, out) = o.json(&["resume", runs[0]["run_id"].as_str().unwrap()]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["outputs"], json!({"record": "dns-ok", "certificate": "cert-ok"}));
    assert_eq!(server.count("GET", "/dns/example.net"), 1, "the completed branch did not run again");
    assert_eq!(server.count("GET", "/cert/example.net"), 2, "the branch in flight ran again");
}

#[test]
fn for_iterations_read_the_state_they_need() {
    let o = Orchc::new();
    let run = |extra: &[&str]| {
        let args = [&["run", "tests/run/for_state.orch", "batch", "-i", "items=[1, 2, 3]"][..], extra].concat();
        let state =
            ["-i", "prefix=p", "-i", "region=eu", "-i", r#"tags=["a", "b"]"#, "-i", "threshold=2", "-i", "zone=z9"];
        o.json(&[&args[..], &state[..]].concat())
    };
    let (code, v, out) = run(&[]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(
        v["outputs"],
        json!({
            "label": ["p-1", "p-2", "p-3"],
            "mark": [["a1", "b1"], ["a2", "b2"], ["a3", "b3"]],
            "full": ["eu/1", "eu/2", "eu/3"],
            "note": [null, null, "noted 3"],
            "checked": [1, 2, 3],
        })
    );

    let (code, v, out) = run(&["-i", "fail_at=3"]);
    assert_eq!(code, 1, "{}", text(&out));
    let steps = o.show(v["run_id"].as_str().unwrap())["steps"].clone();
    let mut released: Vec<Value> = steps
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"] == "release")
        .map(|s| {
            assert_eq!(s["status"], "completed", "{s}");
            s["inputs"].clone()
        })
        .collect();
    released.sort_by_key(|r| r["slot"].as_str().unwrap().to_string());
    assert_eq!(
        released,
        [1, 2, 3].map(|i| json!({"slot": format!("slot-{i}"), "zone": "z9"})),
        "every reservation is released in the zone of the state"
    );
}

/// The stand-in for `tests/run/fan_out.orch`: `/item/<i>` answers `got-<i>` after `delay`, and
/// counts the requests in flight at once (the most of them in `most`). `/item/<gated>` waits
/// until the gate is opened.
fn fan_out_server(delay: Duration, gated: Option<u32>) -> (Server, Arc<AtomicUsize>, Gate) {
    let (in_flight, most, release) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Gate::default());
    let (most_seen, gate) = (most.clone(), release.clone());
    let server = Server::start(move |hit, _| {
        let i: u32 = hit.path.trim_start_matches("/item/").parse().unwrap();
        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        most_seen.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(delay);
        if gated == Some(i) {
            gate.wait();
        }
        // Counted out before the reply goes: the client cannot start another request on this
        // slot before it has the reply, so `most` never overstates what the client did.
        in_flight.fetch_sub(1, Ordering::SeqCst);
        Reply::ok(format!("got-{i}"))
    });
    (server, most, release)
}

fn items(n: u32) -> Value {
    json!((0..n).map(|i| format!("got-{i}")).collect::<Vec<_>>())
}

#[test]
fn a_for_runs_at_most_limit_iterations_at_once() {
    let (server, most, _) = fan_out_server(Duration::from_millis(20), None);
    let o = Orchc::new();
    let (code, v, out) = o.json(&["run", "tests/run/fan_out.orch", "--config", &cfg(&server)]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["outputs"]["got"], items(40));
    let most = most.load(Ordering::SeqCst);
    assert!(most <= 4, "{most} requests were in flight at once, over the limit of 4");
    assert!(most >= 2, "the iterations never overlapped");
    assert_eq!(server.hits().len(), 40);
}

#[test]
fn a_for_killed_mid_way_repeats_no_stored_iteration() {
    let (server, _, release) = fan_out_server(Duration::from_millis(5), Some(20));
    let o = Orchc::new();
    let mut child = o.spawn_quiet(&["run", "tests/run/fan_out.orch", "--config", &cfg(&server)]);
    server.wait_for("/item/20");
    // Let the other slots move on while item 20 is held, then kill -9.
    std::thread::sleep(Duration::from_millis(100));
    child.kill().unwrap();
    child.wait().unwrap();

    let runs: Value = serde_json::from_slice(&o.run(&["runs", "--json"]).stdout).unwrap();
    let run = runs[0]["run_id"].as_str().unwrap().to_string();
    let stored: Vec<String> = o.show(&run)["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "completed")
        .map(|s| s["inputs"]["i"].to_string())
        .collect();
    // Items 0 to 16 ended before item 20 was asked for; most of the others during the 100 ms.
    assert!(stored.len() >= 10, "only {} iterations were stored before the kill", stored.len());
    let before: Vec<String> = server.hits().iter().map(|h| h.path.clone()).collect();

    release.open();
    let (code, v, out) = o.json(&["resume", &run]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["outputs"]["got"], items(40));
    let mut repeated = vec![];
    for i in 0..40 {
        let path = format!("/item/{i}");
        let n = server.count("GET", &path);
        if stored.contains(&i.to_string()) {
            assert_eq!(n, 1, "item {i} was stored before the kill and ran again");
        } else if before.contains(&path) {
            repeated.push(i);
        }
    }
    // In flight or done but not yet on disk: at most three times the limit (docs/running.md).
    assert!(repeated.contains(&20), "the iteration in flight ran again");
    assert!(repeated.len() <= 12, "{} iterations ran again: {repeated:?}", repeated.len());
}

#[test]
fn an_input_step_suspends_and_resume_checks_the_values() {
    let o = Orchc::new();
    let (code, v, out) = o.json(&["run", "tests/run/approval.orch", "-i", "version=2.4.1"]);
    assert_eq!(code, 3, "{}", text(&out));
    assert_eq!(v["status"], "suspended");
    let run = v["run_id"].as_str().unwrap().to_string();
    assert!(text(&out).contains("Approve: deploy 2.4.1 to prod?"));

    let (code, v, out) = o.json(&["resume", &run, "-i", "approved=maybe", "-i", "approver=alice"]);
    assert_eq!(code, 2, "{}", text(&out));
    assert!(v["error"]["message"].as_str().unwrap().contains("approved"));
    assert_eq!(o.show(&run)["status"], "suspended", "a bad value leaves the run suspended");

    let (code, v, out) = o.json(&["resume", &run, "-i", "approved=true", "-i", "approver=alice"]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["outputs"]["result"], "deployed 2.4.1 (approved by alice)");
    let show = o.show(&run);
    assert!(show["events"].as_array().unwrap().iter().any(|e| e["kind"] == "input_given"));
}

#[test]
fn bad_inputs_are_refused_before_anything_is_stored() {
    let o = Orchc::new();
    let out = o.run(&["run", "tests/run/parallel.orch", "-i", "sizes=three"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("sizes"), "{}", text(&out));
    let out = o.run(&["run", "tests/run/approval.orch"]);
    assert_eq!(out.status.code(), Some(2), "a missing input: {}", text(&out));
    let out = o.run(&["runs", "--json"]);
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), json!([]));
}

/// `--inputs FILE.json` gives the workflow's parameters, checked by their types as `-i` values are
/// (an `-i` wins over the file); a file that is not a JSON object of the workflow's parameters,
/// with values of their types, is refused before anything is stored.
#[test]
fn inputs_from_a_json_file_are_checked_by_type() {
    let server = Server::start(|hit, _| Reply::ok(hit.path.trim_start_matches('/').replace('/', ":")));
    let o = Orchc::new();
    let file = |name: &str| format!("tests/run/inputs/{name}.json");
    let (code, v, out) =
        o.json(&["run", "tests/run/parallel.orch", "--inputs", &file("scale"), "--config", &cfg(&server)]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["outputs"]["resized"], json!(["resize:2", "resize:1"]));
    assert_eq!(v["outputs"]["record"], "dns:from-file.net");
    let (code, v, out) = o.json(&[
        "run",
        "tests/run/parallel.orch",
        "--inputs",
        &file("scale"),
        "-i",
        "zone=from-flag.net",
        "--config",
        &cfg(&server),
    ]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["outputs"]["record"], "dns:from-flag.net");

    let fresh = Orchc::new();
    for (name, says) in [
        ("wrong_type", "input `sizes` ([Int])"),
        ("unknown_key", "has no parameter `size`"),
        ("not_an_object", "must hold a JSON object"),
        ("broken", "--inputs tests/run/inputs/broken.json"),
        ("missing", "--inputs tests/run/inputs/missing.json"),
    ] {
        let out = fresh.run(&["run", "tests/run/parallel.orch", "--inputs", &file(name)]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        assert!(text(&out).contains(says), "{name}: {}", text(&out));
    }
    let out = fresh.run(&["runs", "--json"]);
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), json!([]), "nothing was stored");
}

/// A step's completion, its outputs and the subscription it returns are committed before the next
/// step starts: the server, asked by the second step, finds them in the store (read by a
/// connection of its own, as another process would).
#[test]
fn a_step_is_committed_before_the_next_one_starts() {
    let o = Orchc::new();
    let db = o.db();
    // What the store held: `allocate`'s status and outputs, and the Node's customer and state.
    type Seen = rusqlite::Result<(String, String, String)>;
    let seen: Arc<std::sync::Mutex<Option<Seen>>> = Arc::default();
    let record = seen.clone();
    let server = Server::start(move |hit, _| {
        if hit.path == "/allocate" {
            return Reply::json(json!({"vm": "vm-17"}));
        }
        let read = || -> Seen {
            let conn = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            conn.busy_timeout(Duration::from_secs(10))?;
            let (status, outputs) =
                conn.query_row("SELECT status, coalesce(outputs, '') FROM steps WHERE step = 'allocate'", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            let node =
                conn.query_row("SELECT customer || ' ' || state FROM subscriptions WHERE product = 'Node'", [], |r| {
                    r.get(0)
                })?;
            Ok((status, outputs, node))
        };
        *record.lock().unwrap() = Some(read());
        Reply::json(json!({"ok": true}))
    });
    let (code, v, out) = o.json(&["run", "tests/run/durable_order.orch", "--config", &cfg(&server)]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["outputs"]["configured"], true);
    let read = seen.lock().unwrap().take().expect("configure reached the server");
    // No row is an error too (`QueryReturnedNoRows`): allocate or its subscription was not there.
    let (status, outputs, node) = read.expect("the store, read when configure asked");
    assert_eq!(status, "completed", "allocate was not committed when configure started");
    let outputs: Value = serde_json::from_str(&outputs).unwrap();
    assert_eq!(outputs["vm"], "vm-17");
    assert_eq!(outputs["node"]["id"], v["outputs"]["node"]["id"]);
    assert_eq!(node, "acme initial", "the subscription allocate made was not saved with its completion");
}

#[test]
fn subscriptions_are_saved_locked_and_checked_against_their_state() {
    let release = Gate::default();
    let gate = release.clone();
    let server = Server::start(move |hit, _| {
        if hit.path.starts_with("/audit/") {
            gate.wait();
            return Reply::ok("clean");
        }
        Reply::json(json!({"id": 8120}))
    });
    let o = Orchc::new();
    let (code, v, out) = o.json(&[
        "run",
        "tests/run/subscriptions.orch",
        "create",
        "-i",
        "customer=acme",
        "-i",
        "name=pe1.ams",
        "--config",
        &cfg(&server),
    ]);
    assert_eq!(code, 0, "{}", text(&out));
    let node = v["outputs"]["node"].clone();
    let id = node["id"].as_str().unwrap().to_string();
    assert_eq!(node["state"], "active");
    let subs: Value = serde_json::from_slice(&o.run(&["subscriptions", "--json"]).stdout).unwrap();
    assert_eq!(subs[0]["id"], id.as_str());
    assert_eq!(subs[0]["state"], "active");
    assert_eq!(subs[0]["locked_by"], Value::Null, "released when the run completed");
    let one: Value = serde_json::from_slice(&o.run(&["subscription", &id, "--json"]).stdout).unwrap();
    assert_eq!(one["fields"]["node"]["ims_id"], 8120);
    assert_eq!(one["fixed"]["vendor"], "Nokia");

    // A run that holds it; a second run that needs it is refused, naming the holder.
    let mut holder = o
        .command(&[
            "run",
            "tests/run/subscriptions.orch",
            "audit",
            "-i",
            &format!("node={id}"),
            "--config",
            &cfg(&server),
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    server.wait_for("/audit/8120");
    let (code, v, _) = o.json(&[
        "run",
        "tests/run/subscriptions.orch",
        "audit",
        "-i",
        &format!("node={id}"),
        "--config",
        &cfg(&server),
    ]);
    assert_eq!(code, 2);
    assert_eq!(v["error"]["code"], "orch::run::subscription_locked");
    let runs: Value = serde_json::from_slice(&o.run(&["runs", "--json"]).stdout).unwrap();
    let holder_id = runs.as_array().unwrap().iter().find(|r| r["status"] == "running").unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(v["error"]["message"].as_str().unwrap().contains(&holder_id), "names the holder: {v}");
    assert!(!v["error"]["message"].as_str().unwrap().contains("orch::"), "the code is not repeated: {v}");
    release.open();
    assert!(holder.wait().unwrap().success());

    // Wrong lifecycle state: `reprovision` wants Node@initial.
    let (code, v, _) = o.json(&["run", "tests/run/subscriptions.orch", "reprovision", "-i", &format!("node={id}")]);
    assert_eq!(code, 2);
    assert!(v["error"]["message"].as_str().unwrap().contains("state `active`"), "{v}");
}

#[test]
fn a_transition_without_an_edge_fails_when_the_state_is_known_only_at_run_time() {
    let server = Server::start(|_, _| Reply::json(json!({"id": 8121})));
    let o = Orchc::new();
    let (_, id) = create_node(&o, &server, "pe2.ams");
    let version = || -> i64 {
        let one: Value = serde_json::from_slice(&o.run(&["subscription", &id, "--json"]).stdout).unwrap();
        one["version"].as_i64().unwrap()
    };
    // Saved by each of `create`'s three steps.
    assert_eq!(version(), 3);
    let node = format!("node={id}");
    let (code, v, out) = o.json(&["run", "tests/run/subscriptions.orch", "terminate", "-i", &node]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["outputs"]["node"]["state"], "terminated");
    assert_eq!(version(), 4, "a step that returns the subscription saves a new version");
    let (code, v, out) = o.json(&["run", "tests/run/subscriptions.orch", "revive", "-i", &node]);
    assert_eq!(code, 1, "{}", text(&out));
    assert_eq!(v["error"]["code"], "orch::lifecycle::bad_transition", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("from `terminated` to `active`"), "{message}");
    let one: Value = serde_json::from_slice(&o.run(&["subscription", &id, "--json"]).stdout).unwrap();
    assert_eq!(one["state"], "terminated", "the subscription is unchanged");
    assert_eq!(version(), 4);
}

#[test]
fn secret_values_reach_the_server_but_never_the_store_or_the_output() {
    secret_stays_hidden("s3cr3t-Value-8c1f", &[]);
}

#[test]
fn a_secret_is_hidden_also_as_it_is_written_inside_json() {
    let secret = r#"pass\word"99"#;
    // Inside JSON text, and inside JSON text stored as a JSON string.
    secret_stays_hidden(secret, &[r#"pass\\word\"99"#, r#"pass\\\\word\\\"99"#]);
}

/// Runs `tests/run/secrets.orch` with `secret` and checks that neither it nor any of `forms` is
/// printed or stored.
fn secret_stays_hidden(secret: &str, forms: &[&str]) {
    let server = Server::start(|hit, _| Reply::ok(format!("echo: {}", hit.body)));
    let mut o = Orchc::new();
    o.env.push(("ORCH_SECRET_API_TOKEN".into(), secret.into()));
    let (code, v, out) = o.json(&["run", "tests/run/secrets.orch", "--config", &cfg(&server)]);
    assert_eq!(code, 0, "{}", text(&out));
    let hit = &server.hits()[0];
    assert!(
        hit.headers.contains(&("authorization".into(), format!("Bearer {secret}"))),
        "the header carries the token"
    );
    assert!(hit.body.contains(&json!(secret).to_string()), "the json carries the token");
    assert!(v["outputs"]["answer"].as_str().unwrap().contains("***"), "{v}");
    assert_eq!(v["outputs"]["tool_output"], "tool saw ***\n");
    let run = v["run_id"].as_str().unwrap();
    let show = o.run(&["show", run]);
    let show_json = o.run(&["show", run, "--json"]);
    let bytes = o.store_bytes();
    assert!(!bytes.is_empty());
    for form in [secret].iter().chain(forms) {
        for output in [&out, &show, &show_json] {
            assert!(!text(output).contains(form), "printed {form}: {}", text(output));
        }
        assert!(!bytes.windows(form.len()).any(|w| w == form.as_bytes()), "the store holds {form}");
    }
}

#[test]
fn a_missing_secret_fails_the_run_before_its_first_step() {
    let server = Server::start(|_, _| Reply::ok("{}"));
    let o = Orchc::new();
    let (code, v, _) = o.json(&["run", "tests/run/secrets.orch", "--config", &cfg(&server)]);
    assert_eq!(code, 1);
    assert!(v["error"]["message"].as_str().unwrap().contains("ORCH_SECRET_API_TOKEN"));
    assert!(server.hits().is_empty());
    let (code, v, _) =
        o.json(&["run", "tests/run/secrets.orch", "--config", &cfg(&server), "--secret", "api_token=abcdef"]);
    assert_eq!(code, 0, "{v}");
}

#[test]
fn abort_asks_only_for_the_secrets_of_the_compensations_still_due() {
    let server = Server::start(|_, _| Reply::json(json!({"id": "slot-7"})));
    let o = Orchc::new();
    let config = cfg(&server);
    let run_args = ["run", "tests/run/abort_secrets.orch", "--config", &config];
    let both = [&run_args[..], &["--secret", "cleanup_token=c-tok-1", "--secret", "deploy_token=d-tok-2"]].concat();
    let (code, v, out) = o.json(&both);
    assert_eq!(code, 3, "{}", text(&out));
    let run = v["run_id"].as_str().unwrap().to_string();

    // Without the compensation's secret, nothing is undone and the run stays as it was.
    let (code, v, out) = o.json(&["abort", &run]);
    assert_eq!(code, 2, "{}", text(&out));
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("ORCH_SECRET_CLEANUP_TOKEN"), "{v}");
    assert_eq!(o.show(&run)["status"], "suspended");
    assert_eq!(server.count("DELETE", "/slots/slot-7"), 0);

    // With it alone, the abort runs the compensation, which sends it.
    let (code, v, out) = o.json(&["abort", &run, "--secret", "cleanup_token=c-tok-1"]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["status"], "aborted");
    let hits = server.hits();
    let delete = hits.iter().find(|h| h.method == "DELETE").expect("the compensation ran");
    assert_eq!(delete.path, "/slots/slot-7");
    assert!(delete.headers.contains(&("authorization".into(), "Bearer c-tok-1".into())), "{:?}", delete.headers);
    assert!(!text(&out).contains("c-tok-1") && !o.store_bytes().windows(7).any(|w| w == b"c-tok-1"));
}

#[test]
fn a_killed_run_resumes_without_repeating_completed_steps() {
    let (server, release) = vm_server("vm-42");
    let o = Orchc::new();
    let mut child = start_crash_run(&o, &server);
    server.wait_for("/configure/vm-42");
    // kill -9 while `configure` is in flight.
    child.kill().unwrap();
    child.wait().unwrap();
    release.open();

    let runs: Value = serde_json::from_slice(&o.run(&["runs", "--json"]).stdout).unwrap();
    assert_eq!(runs[0]["status"], "running");
    let run = runs[0]["run_id"].as_str().unwrap().to_string();
    let (code, v, out) = o.json(&["resume", &run]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["outputs"], json!({"vm_id": "vm-42", "verified": "configured+ok"}));
    assert_eq!(server.count("POST", "/allocate"), 1, "the completed step did not run again");
    assert_eq!(server.count("POST", "/configure/vm-42"), 2, "the step in flight ran again");
    assert_eq!(server.count("GET", "/verify/vm-42"), 1);
}

/// On a terminal (a pseudo-terminal from util-linux `script`), `run` draws a live line for the
/// running step, redrawn in place with its elapsed time and its attempt, and prints the retries
/// above it, without the timestamps of plain lines.
#[test]
fn on_a_terminal_run_shows_live_progress() {
    let server = Server::start(|_, n| {
        if n < 2 {
            Reply::status(503, "busy")
        } else {
            Reply::json(json!({"count": 42})).after(Duration::from_millis(1_600))
        }
    });
    let o = Orchc::new();
    let command = format!(
        "{} run tests/run/retry.orch --config api={} --db {}",
        env!("CARGO_BIN_EXE_orchc"),
        server.url,
        o.db().display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(support::repo())
        .env("COLUMNS", "120")
        .output()
        .expect("util-linux `script` gives orchc a terminal (scripts/install-test-deps installs it)");
    assert!(out.status.success(), "{}", text(&out));
    let tty = String::from_utf8_lossy(&out.stdout);
    // The live line, cleared and drawn again (`\r`, erase line) while the step runs.
    assert!(tty.contains("fetch_inventory 0s"), "{tty:?}");
    assert!(tty.contains("fetch_inventory (attempt 3) 1s"), "the elapsed time goes on: {tty:?}");
    assert!(tty.matches("\r\x1b[2K").count() >= 5, "the line is redrawn in place: {tty:?}");
    assert!(tty.contains("retry fetch_inventory: attempt 1 failed (GET"), "{tty:?}");
    assert!(tty.contains("HTTP 503: busy); next in 200ms"), "{tty:?}");
    assert!(tty.contains("done  fetch_inventory in "), "the step's time when done: {tty:?}");
    assert!(tty.contains("run ") && tty.contains(" completed"), "{tty:?}");
    assert!(!tty.contains("start fetch_inventory"), "plain lines are for pipes: {tty:?}");
}

/// Ctrl-C (SIGINT) or SIGTERM during a step stops the command cleanly: exit 130 or 143, a message
/// naming the run and how to continue it (with `--json`, as the last line), the store closed (no
/// `-wal` file left) and the run left `running`; resumed, it does not repeat what completed.
#[test]
fn an_interrupted_run_says_how_to_continue_and_resumes() {
    for (signal, exit, json) in [(libc::SIGINT, 130, false), (libc::SIGTERM, 143, true)] {
        let (server, release) = vm_server("vm-5");
        let o = Orchc::new();
        let mut args = vec!["run", "tests/run/crash.orch", "--config"];
        let api = cfg(&server);
        args.push(&api);
        if json {
            args.push("--json");
        }
        let child = o.command(&args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn();
        let child = child.unwrap();
        server.wait_for("/configure/vm-5");
        // SAFETY: kill(2) of the child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let out = child.wait_with_output().unwrap();
        release.open();
        assert_eq!(out.status.code(), Some(exit), "{}", text(&out));
        let runs: Value = serde_json::from_slice(&o.run(&["runs", "--json"]).stdout).unwrap();
        let run = runs[0]["run_id"].as_str().unwrap().to_string();
        assert_eq!(runs[0]["status"], "running");
        let said = format!("error[orch::run::interrupted]: stopped by SIG{}: run {run} is left as it was; continue it with `orchc resume {run}`", if json { "TERM" } else { "INT" });
        assert!(text(&out).contains(&said), "{}", text(&out));
        if json {
            let last: Value =
                serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
            assert_eq!(last["run_id"], run.as_str());
            assert_eq!(last["status"], "running");
            assert_eq!(last["error"]["code"], "orch::run::interrupted");
        }
        assert!(!std::path::Path::new(&format!("{}-wal", o.db().display())).exists(), "the store was not closed");
        let (code, v, out) = o.json(&["resume", &run]);
        assert_eq!(code, 0, "{}", text(&out));
        assert_eq!(v["outputs"], json!({"vm_id": "vm-5", "verified": "configured+ok"}));
        assert_eq!(server.count("POST", "/allocate"), 1, "the completed step did not run again");
        assert_eq!(server.count("POST", "/configure/vm-5"), 2, "the step in flight ran again");
    }
}

#[test]
fn in_a_pipe_progress_lines_arrive_while_the_step_runs() {
    use std::io::BufRead;
    let (server, release) = vm_server("vm-7");
    let o = Orchc::new();
    let mut child = start_crash_run(&o, &server);
    let stderr = child.stderr.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    // `configure` is held by the server: its start line must come out before it ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut got = vec![];
    while !got.iter().any(|l: &String| l.ends_with("start configure")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match seen.recv_timeout(left) {
            Ok(line) => got.push(line),
            Err(_) => panic!("no `start configure` line while the step ran; got {got:?}"),
        }
    }
    assert!(got.iter().any(|l| l.contains("done  allocate in")), "{got:?}");
    release.open();
    let status = child.wait().unwrap();
    assert!(status.success());
    // Nothing is lost at the end: the last lines come out when the run ends.
    let rest: Vec<String> = seen.iter().collect();
    assert!(rest.iter().any(|l| l.contains("done  verify in")), "{rest:?}");
}

#[test]
fn two_processes_never_drive_one_run() {
    let (server, release) = vm_server("vm-9");
    let o = Orchc::new();
    let mut child = start_crash_run(&o, &server);
    server.wait_for("/configure/vm-9");
    let runs: Value = serde_json::from_slice(&o.run(&["runs", "--json"]).stdout).unwrap();
    let run = runs[0]["run_id"].as_str().unwrap().to_string();
    let out = o.run(&["resume", &run]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("being driven by another orchc process"), "{}", text(&out));
    release.open();
    assert!(child.wait().unwrap().success());
    assert_eq!(server.count("POST", "/configure/vm-9"), 1);
}

#[test]
fn a_store_from_a_newer_orchc_is_refused_and_left_untouched() {
    let o = Orchc::new();
    {
        let conn = rusqlite::Connection::open(o.db()).unwrap();
        conn.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 99;").unwrap();
    }
    let before = std::fs::read(o.db()).unwrap();
    let out = o.run(&["runs"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out).contains("newer orchc"), "{}", text(&out));
    assert_eq!(std::fs::read(o.db()).unwrap(), before);
}

/// `tests/run/stores/v1-hello.db` was written by the orchc of schema version 1 after one run of
/// `examples/hello`. This orchc migrates it in place and keeps what it holds.
#[test]
fn a_store_from_an_older_orchc_is_migrated_and_keeps_its_runs() {
    let o = Orchc::new();
    std::fs::copy(support::repo().join("tests/run/stores/v1-hello.db"), o.db()).unwrap();
    let version = |db: &std::path::Path| -> i64 {
        rusqlite::Connection::open(db).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap()
    };
    assert_eq!(version(&o.db()), 1);
    let show = o.show("d2f2fa62b623");
    assert_eq!(show["status"], "completed", "{show:#}");
    assert!(version(&o.db()) > 1);
    let hello = support::repo().join("examples/hello/hello.orch");
    let (code, out, _) = o.json(&["run", hello.to_str().unwrap()]);
    assert_eq!(code, 0, "{out:#}");
    let runs: Value = serde_json::from_slice(&o.run(&["runs", "--json"]).stdout).unwrap();
    assert_eq!(runs.as_array().map(Vec::len), Some(2), "{runs:#}");
    // Each run's audit log is numbered within the run: the old one keeps its 14 events.
    let seqs = |run: &str| -> Vec<i64> {
        o.show(run)["events"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect()
    };
    let (old, new) = (seqs("d2f2fa62b623"), seqs(out["run_id"].as_str().unwrap()));
    assert_eq!(old, (1..=14).collect::<Vec<_>>());
    assert_eq!(new, (1..=new.len() as i64).collect::<Vec<_>>());
    // Its steps keep their attempts (a table of their own before version 5).
    let old = o.show("d2f2fa62b623");
    let steps = old["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 6, "{old:#}");
    for step in steps {
        let attempts = step["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{step:#}");
        assert_eq!((&attempts[0]["attempt"], &attempts[0]["status"]), (&json!(1), &json!("completed")), "{step:#}");
        assert_eq!(attempts[0]["started"], step["started"], "{step:#}");
    }
}

/// `tests/run/stores/v4-retries.db` (its program and how it was made: `v4-retries.orch`) holds a
/// failed run whose steps were retried, written when attempts had a table of their own. Migrated,
/// every attempt keeps its number, status, error and times, and `retry` numbers its attempts
/// after them.
#[test]
fn a_version_4_store_keeps_every_attempt_and_retry_numbers_after_them() {
    let o = Orchc::new();
    std::fs::copy(support::repo().join("tests/run/stores/v4-retries.db"), o.db()).unwrap();
    let attempts = |run: &Value, step: usize| -> Vec<(i64, String, bool)> {
        run["steps"][step]["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let error = a["error"].as_str().unwrap_or_default();
                assert!(a["started"].is_string() && a["finished_ms"].is_i64(), "{a:#}");
                (a["attempt"].as_i64().unwrap(), a["status"].as_str().unwrap().to_string(), error.contains("timed out"))
            })
            .collect()
    };
    let failed = |n| (n, "failed".to_string(), true);
    let run = o.show("65bf271905e7");
    assert_eq!(run["status"], "failed", "{run:#}");
    assert_eq!(attempts(&run, 0), vec![failed(1), (2, "completed".to_string(), false)], "{run:#}");
    assert_eq!(attempts(&run, 1), vec![failed(1), failed(2)], "{run:#}");
    let seqs: Vec<i64> = run["events"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>());

    let (code, v, out) = o.json(&["retry", "65bf271905e7"]);
    assert_eq!(code, 1, "{}", text(&out));
    assert_eq!(v["status"], "failed", "{v:#}");
    let run = o.show("65bf271905e7");
    assert_eq!(attempts(&run, 0), vec![failed(1), (2, "completed".to_string(), false)], "{run:#}");
    assert_eq!(attempts(&run, 1), (1..=4).map(failed).collect::<Vec<_>>(), "{run:#}");
    let seqs: Vec<i64> = run["events"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    assert!(seqs.len() > 6, "{seqs:?}");
}

#[test]
fn numbers_at_their_limits_fail_the_step_not_the_process() {
    let o = Orchc::new();
    let file = "tests/run/numbers.orch";
    let fails = |args: &[&str], message: &str| {
        let mut all = vec!["run", file];
        all.extend_from_slice(args);
        let (code, v, out) = o.json(&all);
        assert_eq!(code, 1, "{args:?}: {}", text(&out));
        assert_eq!(v["status"], "failed", "{args:?}");
        let got = v["error"]["message"].as_str().unwrap_or_default();
        assert!(got.contains(message), "{args:?}: {got}");
    };
    fails(&["spans", "-i", "a=-9223372036854775808", "-i", "b=9223372036854775807"], "is too long");
    fails(&["spans", "-i", "a=-1", "-i", "b=9223372036854775807"], "is too long");
    fails(&["scaled", "-i", "f=1e308"], "arithmetic overflow in `1e+308 * 10.0`");
    fails(&["whole", "-i", "f=1e300"], "out of the range of `Int`");
    fails(&["parsed", "-i", "s=nan"], "not a finite number");
    fails(&["parsed", "-i", "s=1e309"], "not a finite number");

    // Bounds in the wrong order give an empty range; a float's whole part is kept.
    let (code, v, _) = o.json(&["run", file, "spans", "-i", "a=5", "-i", "b=-9223372036854775808"]);
    assert_eq!((code, &v["outputs"]["n"]), (0, &json!(0)));
    let (code, v, _) = o.json(&["run", file, "whole", "-i", "f=-2.7"]);
    assert_eq!((code, &v["outputs"]["i"]), (0, &json!(-2)));

    // A non-finite Float input is refused before anything is stored.
    let before = o.run(&["runs", "--json"]).stdout;
    for bad in ["f=inf", "f=nan", "f=1e309"] {
        let out = o.run(&["run", file, "scaled", "-i", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out));
        assert!(text(&out).contains("not a finite `Float`"), "{bad}: {}", text(&out));
    }
    assert_eq!(o.run(&["runs", "--json"]).stdout, before);
}

#[test]
fn a_bad_config_is_refused_with_its_code() {
    let o = Orchc::new();
    let file = "tests/run/configs.orch";
    let (code, v, out) = o.json(&["run", file, "--config", "replicas=3"]);
    assert_eq!((code, &v["outputs"]["total"]), (0, &json!(6)), "{}", text(&out));
    let before = o.run(&["runs", "--json"]).stdout;
    for (given, wanted) in [("replicas=three", "orch::config::type"), ("replica=3", "orch::config::unknown")] {
        let (code, v, out) = o.json(&["run", file, "--config", given]);
        assert_eq!(code, 2, "{given}: {}", text(&out));
        assert_eq!(v["error"]["code"], wanted, "{given}");
        assert!(!v["error"]["message"].as_str().unwrap().contains("orch::"), "the code is not repeated: {v}");
        assert!(text(&out).contains(&format!("error[{wanted}]")), "{}", text(&out));
    }
    assert_eq!(o.run(&["runs", "--json"]).stdout, before, "nothing stored");
}

#[test]
fn an_unknown_run_or_subscription_is_not_found_with_a_code() {
    let o = Orchc::new();
    // A store with one run, so that only the id is unknown.
    let (code, _, out) = o.json(&["run", "tests/run/configs.orch"]);
    assert_eq!(code, 0, "{}", text(&out));
    for args in
        [&["show", "nope"][..], &["resume", "nope"], &["retry", "nope"], &["abort", "nope"], &["subscription", "nope"]]
    {
        let mut all = args.to_vec();
        all.push("--json");
        let out = o.run(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("error[orch::run::not_found]"), "{args:?}: {}", text(&out));
        let last = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string();
        let v: Value = serde_json::from_str(&last).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {last}"));
        assert_eq!(v["error"]["code"], "orch::run::not_found", "{args:?}");
    }
}

/// The stored program of `tests/run/deep_program.orch` nests deeper than serde_json's default
/// recursion limit (128); `retry` and `abort` must still read it back.
#[test]
fn a_program_nested_deeper_than_128_levels_as_json_is_read_back() {
    let o = Orchc::new();
    let flag = o.dir.path().join("flag");
    let flag_input = format!("flag={}", flag.display());
    let start = || {
        let (code, v, out) = o.json(&["run", "tests/run/deep_program.orch", "-i", &flag_input]);
        assert_eq!(code, 1, "{}", text(&out));
        v["run_id"].as_str().unwrap().to_string()
    };
    let (retried, aborted) = (start(), start());
    let (code, v, out) = o.json(&["abort", &aborted]);
    assert_eq!((code, v["status"].as_str()), (0, Some("aborted")), "{}", text(&out));
    std::fs::write(&flag, "").unwrap();
    let (code, v, out) = o.json(&["retry", &retried]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["outputs"], json!({"zone": "zone-29", "x": 40}));
}

/// A step's outputs nested deeper than 128 levels are read back as stored, never as null; a column
/// that cannot be parsed is an error naming the run and the step.
#[test]
fn deep_step_outputs_are_read_back_and_unreadable_ones_are_an_error() {
    let o = Orchc::new();
    let flag = o.dir.path().join("flag");
    let deep = format!("{}1{}", "[".repeat(127), "]".repeat(127));
    let args = ["run", "tests/run/deep_output.orch", "-i", &format!("s={deep}"), "-i"];
    let flag_input = format!("flag={}", flag.display());
    let start = || {
        let mut all = args.to_vec();
        all.push(&flag_input);
        let (code, v, out) = o.json(&all);
        assert_eq!(code, 1, "{}", text(&out));
        v["run_id"].as_str().unwrap().to_string()
    };
    let (run, broken) = (start(), start());
    let show = o.run(&["show", &run]);
    assert!(text(&show).contains(&format!("outputs {{\"x\":[[[[{deep}]]]]}}")), "{}", text(&show));

    std::fs::write(&flag, "").unwrap();
    let (code, v, out) = o.json(&["retry", &run]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["outputs"], json!({"y": 127 * 2 + 1 + 8}));

    // Outputs that do not parse stop the retry with an error; `b` is never fed null.
    rusqlite::Connection::open(o.db())
        .unwrap()
        .execute("UPDATE steps SET outputs = '{\"x\": [' WHERE run_id = ?1 AND status = 'completed'", [&broken])
        .unwrap();
    let (code, v, out) = o.json(&["retry", &broken]);
    assert_eq!(code, 1, "{}", text(&out));
    assert_eq!(v["error"]["code"], "orch::run::store", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains(&broken) && message.contains("outputs of step"), "{message}");
    let out = o.run(&["show", &broken]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("error[orch::run::store]"), "{}", text(&out));
    // `show --json` writes steps as it reads them: the error is the last line, after what was written.
    let (code, v, out) = o.json(&["show", &broken]);
    assert_eq!(code, 1, "{}", text(&out));
    assert_eq!(v["error"]["code"], "orch::run::store", "{v}");
}

/// Processes sharing one store wait for each other's writes (the busy timeout) instead of failing
/// with `database is locked`: rounds of twelve runs at once on one store, then on a fresh store
/// (which they all create and migrate at once).
#[test]
fn concurrent_runs_on_one_store_all_complete() {
    let hello = support::repo().join("examples/hello/hello.orch");
    let hello = hello.to_str().unwrap();
    let together = |o: &Orchc, round: usize| {
        let children: Vec<_> = (0..12)
            .map(|_| {
                o.command(&["run", hello])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(0), "round {round}: {}", text(&out));
        }
    };
    let o = Orchc::new();
    assert!(o.run(&["run", hello]).status.success());
    for round in 0..5 {
        together(&o, round);
    }
    let runs: Value = serde_json::from_slice(&o.run(&["runs", "--json"]).stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 61);
    assert!(runs.iter().all(|r| r["status"] == "completed"), "{runs:#?}");
    // Twelve processes creating one new store at once: those that lose the race to set it up wait
    // for it rather than fail (it failed about one round in three on tmpfs before they did).
    for round in 5..15 {
        together(&Orchc::new(), round);
    }
}

/// A run or subscription id prefix matches ids that start with exactly those characters: `%` and
/// `_` are not wildcards and case counts.
#[test]
fn id_prefixes_match_exactly() {
    let server = Server::start(|_, _| Reply::json(json!({"id": 8120})));
    let o = Orchc::new();
    let (run, sub) = create_node(&o, &server, "pe1.ams");
    let wild = |id: &str| {
        let patterns = ["%".to_string(), "_".repeat(id.len()), format!("{}%", &id[..2]), id.to_uppercase()];
        patterns.into_iter().filter(|p| p != id).collect::<Vec<_>>()
    };
    for pattern in wild(&run) {
        let out = o.run(&["show", &pattern]);
        assert_eq!(out.status.code(), Some(2), "show {pattern}: {}", text(&out));
        assert!(text(&out).contains("there is no run"), "{}", text(&out));
        let out = o.run(&["abort", &pattern]);
        assert_ne!(out.status.code(), Some(0), "abort {pattern}: {}", text(&out));
    }
    assert_eq!(o.show(&run[..4])["status"], "completed", "a real prefix still matches; nothing was aborted");
    for pattern in wild(&sub) {
        let out = o.run(&["subscription", &pattern]);
        assert_eq!(out.status.code(), Some(2), "subscription {pattern}: {}", text(&out));
        let audit = ["run", "tests/run/subscriptions.orch", "audit", "-i", &format!("node={pattern}")];
        let out = o.run(&[&audit[..], &["--config", &cfg(&server)]].concat());
        assert_eq!(out.status.code(), Some(2), "-i node={pattern}: {}", text(&out));
    }
    assert!(o.run(&["subscription", &sub[..6]]).status.success());
}

/// A SQLite file that only looks like an orch store (an orch `user_version`, a table called
/// `steps`) is refused before anything changes: no WAL, no migration, not one byte.
#[test]
fn a_sqlite_file_that_is_not_an_orch_store_is_refused_and_left_untouched() {
    for setup in [
        "CREATE TABLE steps (run_id, seq, payload); PRAGMA user_version = 1;",
        "CREATE TABLE notes (body); PRAGMA user_version = 0;",
        // Claims the latest version, which is checked against the list of its tables.
        "CREATE TABLE runs (id, status); CREATE TABLE steps (run_id, path); PRAGMA user_version = 4;",
    ] {
        let o = Orchc::new();
        rusqlite::Connection::open(o.db()).unwrap().execute_batch(setup).unwrap();
        let before = o.store_bytes();
        let hello = support::repo().join("examples/hello/hello.orch");
        for args in
            [&["runs"][..], &["show", "abc"], &["subscriptions"], &["resume", "abc"], &["run", hello.to_str().unwrap()]]
        {
            let out = o.run(args);
            assert_ne!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
            assert!(text(&out).contains("error[orch::run::store]"), "{args:?}: {}", text(&out));
            assert!(text(&out).contains("is not an orch store"), "{args:?}: {}", text(&out));
            assert_eq!(o.store_bytes(), before, "{args:?} changed the file ({setup})");
        }
        let files = std::fs::read_dir(o.dir.path()).unwrap().count();
        assert_eq!(files, 1, "no -wal or -shm file was left beside it");
    }
}

/// A new store is built beside its path and linked into place whole (two fsyncs rather than the
/// eight of setting it up in place): after a run in a new folder there is the store and nothing
/// else, in WAL mode at the latest schema version, holding the run. An empty file at the path,
/// which a link never replaces, is set up in place.
#[test]
fn a_new_store_is_linked_into_place_whole() {
    let hello = support::repo().join("examples/hello/hello.orch");
    let o = Orchc::new();
    let check = |db: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_orchc"))
            .args(["run", hello.to_str().unwrap(), "--db"])
            .arg(db)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let conn = rusqlite::Connection::open(db).unwrap();
        let get = |sql: &str| -> String {
            conn.query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0)).map(|v| format!("{v:?}")).unwrap()
        };
        assert_eq!(get("PRAGMA journal_mode"), "Text(\"wal\")");
        assert_eq!(get("PRAGMA user_version"), "Integer(5)");
        assert_eq!(get("SELECT count(*) FROM runs WHERE status = 'completed'"), "Integer(1)");
    };
    let folder = o.dir.path().join("new/folder");
    check(&folder.join("state.db"));
    let files: Vec<_> = std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files, vec![std::ffi::OsString::from("state.db")]);

    let empty = o.dir.path().join("empty.db");
    std::fs::File::create(&empty).unwrap();
    check(&empty);
}

/// The store is `.orch/state.db` under the working directory unless `ORCH_DB` or `--db` says
/// otherwise, and `--db` wins over `ORCH_DB`.
#[test]
fn the_store_is_found_by_db_then_orch_db_then_the_default_path() {
    let hello = support::repo().join("examples/hello/hello.orch");
    let dir = tempfile::tempdir().unwrap();
    let orchc = |args: &[&str], orch_db: Option<&std::path::Path>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_orchc"));
        cmd.args(args).current_dir(dir.path()).env_remove("ORCH_DB");
        if let Some(db) = orch_db {
            cmd.env("ORCH_DB", db);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        serde_json::from_slice::<Value>(out.stdout.split(|b| *b == b'\n').rfind(|l| !l.is_empty()).unwrap()).unwrap()
    };
    let default = orchc(&["run", hello.to_str().unwrap(), "--json"], None);
    assert!(dir.path().join(".orch/state.db").is_file(), "the default store was not created");
    let from_env = dir.path().join("elsewhere/env.db");
    let by_env = orchc(&["run", hello.to_str().unwrap(), "--json"], Some(&from_env));
    assert!(from_env.is_file(), "ORCH_DB was not used");
    let flag = dir.path().join("flag.db");
    let by_flag = orchc(&["run", hello.to_str().unwrap(), "--json", "--db", flag.to_str().unwrap()], Some(&from_env));
    // Each store holds its own run only.
    let ids = |runs: Value| runs.as_array().unwrap().iter().map(|r| r["run_id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(orchc(&["runs", "--json"], None)), [default["run_id"].clone()]);
    assert_eq!(ids(orchc(&["runs", "--json"], Some(&from_env))), [by_env["run_id"].clone()]);
    assert_eq!(
        ids(orchc(&["runs", "--json", "--db", flag.to_str().unwrap()], Some(&from_env))),
        [by_flag["run_id"].clone()]
    );
}

/// Commands that read or continue runs create nothing: no folders, no store.
#[test]
fn commands_that_read_a_store_never_create_one() {
    let o = Orchc::new();
    let db = o.dir.path().join("no/such/folder/state.db");
    let orchc = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_orchc")).args(args).arg("--db").arg(&db).output().unwrap()
    };
    let out = orchc(&["runs"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("there is no store at"), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&orchc(&["runs", "--json"]).stdout).trim(), "[]");
    assert_eq!(String::from_utf8_lossy(&orchc(&["subscriptions", "--json"]).stdout).trim(), "[]");
    for args in
        [&["show", "abc"][..], &["subscription", "abc"], &["resume", "abc"], &["retry", "abc"], &["abort", "abc"]]
    {
        let out = orchc(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("error[orch::run::store]: there is no store at"), "{args:?}: {}", text(&out));
    }
    assert!(!o.dir.path().join("no").exists(), "a folder was created");
}

/// A store in a read-only folder (a read-only file) can still be listed and shown: the database
/// file alone, or with the `-wal` and `-shm` files of a process that has it open; a command that
/// must write to it says that it cannot be written. A `-wal` file without its `-shm` cannot be
/// read there, and says why. As root, whom permissions do not stop, orchc is run as `nobody`
/// (with `setpriv`); without `setpriv` the test can prove nothing and says so.
#[test]
fn a_read_only_store_can_be_read_and_says_it_cannot_be_written() {
    use std::os::unix::fs::PermissionsExt;
    let as_nobody = unsafe { libc::geteuid() } == 0;
    if as_nobody && std::process::Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: running as root without setpriv, permissions cannot be tested");
        return;
    }
    let o = Orchc::new();
    let hello = support::repo().join("examples/hello/hello.orch");
    let (code, v, out) = o.json(&["run", hello.to_str().unwrap()]);
    assert_eq!(code, 0, "{}", text(&out));
    let run = v["run_id"].as_str().unwrap().to_string();
    // Open, so that the store has its `-wal` and `-shm` files to copy.
    let open = rusqlite::Connection::open(o.db()).unwrap();
    open.query_row("SELECT count(*) FROM runs", [], |r| r.get::<_, i64>(0)).unwrap();
    let mode = |p: &std::path::Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    mode(o.dir.path(), 0o755);
    for (folder, suffixes) in [("ro", &[""][..]), ("ro-all", &["", "-wal", "-shm"]), ("ro-wal", &["", "-wal"])] {
        let dir = o.dir.path().join(folder);
        std::fs::create_dir(&dir).unwrap();
        let db = dir.join("state.db");
        for suffix in suffixes {
            let file = dir.join(format!("state.db{suffix}"));
            std::fs::copy(format!("{}{suffix}", o.db().display()), &file).unwrap();
            mode(&file, 0o444);
        }
        mode(&dir, 0o555);
        let before = std::fs::read(&db).unwrap();
        let orchc = |args: &[&str]| {
            let mut cmd = if as_nobody {
                let mut c = std::process::Command::new("setpriv");
                c.args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_orchc")]);
                c
            } else {
                std::process::Command::new(env!("CARGO_BIN_EXE_orchc"))
            };
            cmd.args(args).arg("--db").arg(&db).current_dir(support::repo()).output().unwrap()
        };
        if folder == "ro-wal" {
            for args in [&["runs", "--json"][..], &["show", &run]] {
                let out = orchc(args);
                assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
                assert!(text(&out).contains("cannot be read here"), "{args:?}: {}", text(&out));
                assert!(text(&out).contains("copy the `-shm` file too"), "{args:?}: {}", text(&out));
            }
        } else {
            let out = orchc(&["runs", "--json"]);
            assert_eq!(out.status.code(), Some(0), "{folder}: {}", text(&out));
            assert!(text(&out).contains(&run), "{folder}: {}", text(&out));
            let out = orchc(&["show", &run]);
            assert_eq!(out.status.code(), Some(0), "{folder}: {}", text(&out));
            assert!(orchc(&["subscriptions"]).status.success(), "{folder}");
        }
        for args in [&["run", hello.to_str().unwrap()][..], &["abort", &run]] {
            let out = orchc(args);
            assert_eq!(out.status.code(), Some(1), "{folder} {args:?}: {}", text(&out));
            assert!(
                text(&out).contains("cannot be written (check the permissions"),
                "{folder} {args:?}: {}",
                text(&out)
            );
        }
        assert_eq!(std::fs::read(&db).unwrap(), before, "{folder}");
        mode(&dir, 0o755);
    }
    drop(open);
}

/// A process presumed dead (its run taken over, here by rewriting the owner as `orchc resume`
/// does after a stale heartbeat) records nothing more: its step's completion is refused.
#[test]
fn a_process_whose_run_was_taken_over_records_nothing_more() {
    let (server, release) = vm_server("vm-9");
    let o = Orchc::new();
    let child = start_crash_run(&o, &server);
    server.wait_for("/configure/vm-9");
    {
        let conn = rusqlite::Connection::open(o.db()).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn.execute("UPDATE runs SET owner = '1:newowner', heartbeat_ms = 0", []).unwrap();
    }
    release.open();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("driven by another process now"), "{}", text(&out));
    let runs: Value = serde_json::from_slice(&o.run(&["runs", "--json"]).stdout).unwrap();
    let show = o.show(runs[0]["run_id"].as_str().unwrap());
    let steps = show["steps"].as_array().unwrap();
    assert!(steps.iter().any(|s| s["step"] == "allocate" && s["status"] == "completed"), "{show}");
    assert!(
        !steps.iter().any(|s| s["step"] == "configure" && s["status"] == "completed"),
        "the old owner's completion is not recorded: {show}"
    );
    assert_eq!(show["status"], "running", "nor its end: {show}");
}

/// Runs `orchc` with `--json`, failing the test (and killing it) when it takes longer than `limit`.
fn json_within(o: &Orchc, args: &[&str], limit: Duration) -> (i32, Value, std::process::Output) {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--json");
    let mut child = o
        .command(&all)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("orchc starts");
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("orchc {args:?} still ran after {limit:?}: {}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)));
    (out.status.code().unwrap_or(-1), v, out)
}

#[test]
fn exec_stdin_is_written_while_the_output_is_read() {
    let o = Orchc::new();
    // About 330 KB: far more than a pipe holds, in both directions.
    let (code, v, out) =
        json_within(&o, &["run", "tests/run/exec.orch", "big_stdin", "-i", "n=10000"], Duration::from_secs(20));
    assert_eq!(code, 0, "{}", text(&out));
    let expected: usize = (0..10000).map(|i| format!("line number {i} of the input").len()).sum::<usize>() + 9999;
    assert_eq!(v["outputs"]["l"], expected);
    // A child that stops reading early ends the writing, not orchc.
    let (code, v, out) =
        json_within(&o, &["run", "tests/run/exec.orch", "early_exit", "-i", "n=10000"], Duration::from_secs(20));
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["outputs"]["out"], "line ");
}

/// Whether a process exists and is not a zombie.
fn alive(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or_default().trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

#[test]
fn an_exec_timeout_kills_the_child_with_its_children() {
    let o = Orchc::new();
    let dir = o.dir.path().to_str().unwrap().to_string();
    let (code, v, out) = json_within(
        &o,
        &["run", "tests/run/exec.orch", "grandchild", "-i", &format!("dir={dir}")],
        Duration::from_secs(10),
    );
    assert_eq!(code, 1, "{}", text(&out));
    assert!(v["error"]["message"].as_str().unwrap().contains("timed out after 500ms"), "{v}");
    let pids = std::fs::read_to_string(o.dir.path().join("pids")).unwrap();
    assert_eq!(pids.lines().count(), 4, "two attempts, each a child and a grandchild: {pids}");
    // The grandchildren would write `alive` 2s after they started.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(!o.dir.path().join("alive").exists(), "a grandchild outlived its step");
    for pid in pids.lines() {
        assert!(!alive(pid), "process {pid} is still running");
    }
}

/// The processes whose parent is `parent` and whose command line holds `needle`.
fn children_with(parent: u32, needle: &str) -> Vec<u32> {
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat.rsplit(')').next().unwrap_or_default().split_whitespace().nth(1).unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == parent.to_string() && String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn a_run_goes_on_when_an_exec_watchdog_is_killed() {
    let o = Orchc::new();
    let run = o
        .command(&["run", "tests/run/exec.orch", "pause", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let watchdog = loop {
        if let Some(pid) = children_with(run.id(), "__watch-group").first() {
            break *pid;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no watchdog was started");
        std::thread::sleep(Duration::from_millis(10));
    };
    // SAFETY: a plain kill(2) of the watchdog the test found.
    unsafe {
        libc::kill(watchdog as i32, libc::SIGKILL);
    }
    // Releasing a watchdog that is gone must not end orchc (with SIGPIPE, say).
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value = serde_json::from_slice(out.stdout.split(|b| *b == b'\n').rfind(|l| !l.is_empty()).unwrap()).unwrap();
    assert_eq!(v["outputs"]["o"], "done");
}

#[test]
fn what_a_finished_exec_child_left_running_is_left_alone() {
    let o = Orchc::new();
    let (code, v, out) = json_within(&o, &["run", "tests/run/exec.orch", "background"], Duration::from_secs(10));
    assert_eq!(code, 0, "{}", text(&out));
    let pid = v["outputs"]["pid"].as_str().unwrap().to_string();
    // The watchdog of that exec has ended by now and did not kill the group.
    std::thread::sleep(Duration::from_millis(500));
    assert!(alive(&pid), "the background process {pid} was killed");
    // SAFETY: a plain kill(2) of the process the test started.
    unsafe {
        libc::kill(pid.parse().unwrap(), libc::SIGKILL);
    }
}

#[test]
fn an_exec_child_dies_with_orchc_and_so_do_its_children() {
    let o = Orchc::new();
    let dir = o.dir.path().to_str().unwrap().to_string();
    let mut run = o.command(&["run", "tests/run/exec.orch", "long", "-i", &format!("dir={dir}")]).spawn().unwrap();
    let pid_file = o.dir.path().join("pid");
    let started = std::time::Instant::now();
    let pid = loop {
        match std::fs::read_to_string(&pid_file) {
            Ok(p) if p.ends_with('\n') => break p,
            _ => {}
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the child never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Written before `pid`.
    let grandchild = std::fs::read_to_string(o.dir.path().join("grandchild")).unwrap();
    assert!(alive(&pid) && alive(&grandchild));
    run.kill().unwrap();
    run.wait().unwrap();
    let killed = std::time::Instant::now();
    for pid in [pid, grandchild] {
        while alive(&pid) {
            assert!(killed.elapsed() < Duration::from_secs(5), "process {pid} outlived orchc");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn failures_say_what_is_wrong() {
    let o = Orchc::new();
    let file = "tests/run/messages.orch";
    let attempts = |v: &Value| o.show(v["run_id"].as_str().unwrap())["steps"][0]["attempts"].as_array().unwrap().len();
    let message = |v: &Value| v["error"]["message"].as_str().unwrap_or_default().to_string();

    let (code, v, out) = o.json(&["run", file, "fetch", "-i", "url=not a url"]);
    assert_eq!(code, 1, "{}", text(&out));
    assert!(message(&v).contains("invalid URL"), "{v}");
    assert_eq!(attempts(&v), 1, "an invalid URL is not retried");

    let server = Server::start(|_, _| Reply::ok("{}"));
    let url = format!("url={}/x", server.url);
    let (code, v, out) = o.json(&["run", file, "fetch", "-i", &url, "-i", "h=a\nb"]);
    assert_eq!(code, 1, "{}", text(&out));
    assert!(message(&v).contains("header `x-probe` is not valid"), "{v}");
    assert_eq!(attempts(&v), 1, "a bad header value is not retried");
    assert!(server.hits().is_empty());
    // A body past the limit is refused, not read whole into memory, and not retried.
    let big = Server::start(|_, _| Reply::ok("x".repeat((64 << 20) + 1)));
    let (code, v, out) = o.json(&["run", file, "fetch", "-i", &format!("url={}/big", big.url)]);
    assert_eq!(code, 1, "{}", text(&out));
    assert!(message(&v).contains("larger than 64 MiB"), "{v}");
    assert_eq!(attempts(&v), 1, "a body too large is not retried");
    // A header key's underscores are sent as hyphens.
    let (code, _, out) = o.json(&["run", file, "fetch", "-i", &url, "-i", "h=yes"]);
    assert_eq!(code, 0, "{}", text(&out));
    let sent = server.hits()[0].headers.clone();
    assert!(sent.iter().any(|(k, v)| k.eq_ignore_ascii_case("x-probe") && v == "yes"), "{sent:?}");

    let (code, v, out) = o.json(&["run", file, "fetch", "-i", "url=http://127.0.0.1:1/x"]);
    assert_eq!(code, 1, "{}", text(&out));
    assert!(message(&v).to_lowercase().contains("connection refused"), "the cause: {v}");
    assert_eq!(attempts(&v), 2, "a refused connection is retried");

    let missing = o.dir.path().join("no-such-dir");
    let (code, v, out) = o.json(&["run", file, "cwd", "-i", &format!("dir={}", missing.display())]);
    assert_eq!(code, 1, "{}", text(&out));
    assert!(message(&v).contains("working directory") && message(&v).contains("does not exist"), "{v}");

    let (code, v, out) = o.json(&["run", file, "signal"]);
    assert_eq!(code, 1, "{}", text(&out));
    assert!(message(&v).contains("killed by signal 9"), "{v}");
    let (code, v, out) = o.json(&["run", file, "signal_code"]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["outputs"]["code"], -1);
}

#[test]
fn every_completion_of_a_step_is_compensated_after_retries_and_abort() {
    let server = Server::start(|hit, n| match (hit.method.as_str(), hit.path.as_str()) {
        ("POST", "/a") => Reply::json(json!({"id": format!("a-{n}")})),
        ("POST", "/c") => Reply::status(404, "no such thing"),
        // The undo of the second completion fails once; `abort` runs it again.
        ("POST", "/ua/a-1") if n == 0 => Reply::status(400, "not yet"),
        _ => Reply::ok("{}"),
    });
    let o = Orchc::new();
    let (code, v, out) = o.json(&["run", "tests/run/compensate_retry.orch", "--config", &cfg(&server)]);
    assert_eq!(code, 1, "{}", text(&out));
    let run = v["run_id"].as_str().unwrap().to_string();
    assert_eq!(server.count("POST", "/ua/a-0"), 1, "the first completion is undone");

    let (code, _, out) = o.json(&["retry", &run]);
    assert_eq!(code, 1, "{}", text(&out));
    assert_eq!(server.count("POST", "/a"), 2, "the compensated step ran again");
    assert_eq!(server.count("POST", "/ua/a-1"), 1, "the second completion has its own compensation");

    let (code, v, out) = o.json(&["abort", &run]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["status"], "aborted");
    assert_eq!(server.count("POST", "/ua/a-1"), 2, "abort runs the compensation that failed");
    assert_eq!(server.count("POST", "/ua/a-0"), 1, "each completion is undone once");
    assert_eq!(server.count("POST", "/a"), 2);
    let show = o.show(&run);
    let undos = show["steps"].as_array().unwrap().iter().filter(|s| s["step"] == "undo_a").count();
    assert_eq!(undos, 2, "each compensation is recorded: {show}");
    let a = show["steps"].as_array().unwrap().iter().find(|s| s["step"] == "a").unwrap().clone();
    let ns: Vec<i64> = a["attempts"].as_array().unwrap().iter().map(|t| t["attempt"].as_i64().unwrap()).collect();
    assert_eq!(ns, [1, 2], "the retry's attempt is the step's second: {a}");
}

#[test]
fn attempts_are_numbered_on_across_a_crash_and_the_resume_is_logged() {
    let (server, release) = vm_server("vm-42");
    let o = Orchc::new();
    let mut child = start_crash_run(&o, &server);
    server.wait_for("/configure/vm-42");
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    release.open();
    let runs: Value = serde_json::from_slice(&o.run(&["runs", "--json"]).stdout).unwrap();
    let run = runs[0]["run_id"].as_str().unwrap().to_string();
    let (code, _, out) = o.json(&["resume", &run]);
    assert_eq!(code, 0, "{}", text(&out));
    let show = o.show(&run);
    let step = show["steps"].as_array().unwrap().iter().find(|s| s["step"] == "configure").unwrap().clone();
    let attempts: Vec<(i64, String)> = step["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["attempt"].as_i64().unwrap(), t["status"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(attempts, [(1, "running".to_string()), (2, "completed".to_string())], "{step}");
    let kinds: Vec<&str> = show["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"run_resumed"), "{kinds:?}");
}

/// Starts `commands` while the test holds the store's write lock, so that each has read the run
/// (and passed its checks) before any can take it; then lets them all go at once.
fn race(o: &Orchc, commands: &[Vec<String>]) -> Vec<std::process::Output> {
    let conn = rusqlite::Connection::open(o.db()).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let children: Vec<_> = commands
        .iter()
        .map(|args| {
            let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
            args.push("--json");
            o.command(&args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    conn.execute_batch("COMMIT").unwrap();
    children.into_iter().map(|c| c.wait_with_output().unwrap()).collect()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn racing_commands_on_one_run_let_exactly_one_take_it() {
    let server = Server::start(|hit, n| match (hit.method.as_str(), hit.path.as_str()) {
        ("POST", "/a") => Reply::json(json!({"id": format!("a-{n}")})),
        ("POST", "/c") => Reply::status(404, "no such thing"),
        _ => Reply::ok("{}"),
    });
    for _ in 0..3 {
        // Two `resume -i` with different values on a suspended run.
        let o = Orchc::new();
        let (code, v, _) = o.json(&["run", "tests/run/approval.orch", "-i", "version=1"]);
        assert_eq!(code, 3);
        let run = v["run_id"].as_str().unwrap().to_string();
        let outs = race(
            &o,
            &[
                strings(&["resume", &run, "-i", "approved=true", "-i", "approver=alice"]),
                strings(&["resume", &run, "-i", "approved=false", "-i", "approver=bob"]),
            ],
        );
        let codes: Vec<i32> = outs.iter().map(|o| o.status.code().unwrap_or(-1)).collect();
        assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "one resume wins: {codes:?}");
        assert_eq!(codes.iter().filter(|c| **c == 2).count(), 1, "the other is refused: {codes:?}");
        let show = o.show(&run);
        let kinds: Vec<&str> = show["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds.iter().filter(|k| **k == "input_given").count(), 1, "{kinds:?}");
        assert_eq!(kinds.last(), Some(&"run_completed"), "{kinds:?}");

        // `retry` and `abort` of a failed run.
        let (code, v, _) = o.json(&["run", "tests/run/compensate_retry.orch", "--config", &cfg(&server)]);
        assert_eq!(code, 1);
        let run = v["run_id"].as_str().unwrap().to_string();
        let outs = race(&o, &[strings(&["retry", &run]), strings(&["abort", &run])]);
        let codes: Vec<i32> = outs.iter().map(|o| o.status.code().unwrap_or(-1)).collect();
        let refused = codes.iter().filter(|c| **c == 2).count();
        assert_eq!(refused, 1, "one of them is refused: {codes:?} {}", outs.iter().map(text).collect::<String>());
        let show = o.show(&run);
        let kinds: Vec<&str> = show["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        let ends = kinds.iter().filter(|k| **k == "run_aborted").count();
        let retried = kinds.iter().filter(|k| **k == "run_running").count();
        assert_eq!(ends + retried, 1, "exactly one of them changed the run: {kinds:?}");
    }
}

#[test]
fn a_run_refused_for_a_locked_subscription_cannot_be_retried_past_the_lock() {
    let release = Gate::default();
    let gate = release.clone();
    // The holder's audit waits for the gate; any other answers at once.
    let server = Server::start(move |hit, n| {
        if hit.path.starts_with("/audit/") && n == 0 {
            gate.wait();
            return Reply::ok("clean");
        }
        Reply::json(json!({"id": 8120}))
    });
    let o = Orchc::new();
    let (_, id) = create_node(&o, &server, "pe1");

    // Two runs started at the same moment on one subscription: both pass the check at the start.
    let audit = strings(&[
        "run",
        "tests/run/subscriptions.orch",
        "audit",
        "-i",
        &format!("node={id}"),
        "--config",
        &cfg(&server),
    ]);
    let conn = rusqlite::Connection::open(o.db()).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let spawn = || {
        let mut a: Vec<&str> = audit.iter().map(String::as_str).collect();
        a.push("--json");
        o.command(&a).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
    };
    let (first, second) = (spawn(), spawn());
    std::thread::sleep(Duration::from_millis(700));
    conn.execute_batch("COMMIT").unwrap();
    server.wait_for("/audit/8120");
    std::thread::sleep(Duration::from_millis(300));
    let runs: Value = serde_json::from_slice(&o.run(&["runs", "--json"]).stdout).unwrap();
    let find = |status: &str| {
        runs.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == status && r["workflow"] == "audit")
            .map(|r| r["run_id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let (holder, refused) = (find("running"), find("failed"));
    assert_eq!(holder.len(), 1, "{runs}");
    let (holder, refused) = (holder[0].clone(), refused.into_iter().next());

    // The refused run (if it was stored) cannot run past the lock: retry is refused, naming the holder.
    if let Some(refused) = &refused {
        let owner: Option<String> =
            conn.query_row("SELECT owner FROM runs WHERE id = ?1", [refused], |r| r.get(0)).unwrap();
        assert_eq!(owner, None, "the refused process let go of its run");
        let (code, v, out) = o.json(&["retry", refused]);
        assert_eq!(code, 2, "{}", text(&out));
        assert_eq!(v["error"]["code"], "orch::run::subscription_locked", "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(&holder), "names the holder: {v}");
        assert_eq!(o.show(refused)["status"], "failed", "the refused retry changes nothing");
        assert_eq!(server.count("GET", "/audit/8120"), 1, "only the holder ran");
    }
    release.open();
    let outs = [first.wait_with_output().unwrap(), second.wait_with_output().unwrap()];
    let mut codes: Vec<i32> = outs.iter().map(|o| o.status.code().unwrap_or(-1)).collect();
    codes.sort();
    assert_eq!(codes, [0, 2], "{}", outs.iter().map(text).collect::<String>());
    let subs: Value = serde_json::from_slice(&o.run(&["subscriptions", "--json"]).stdout).unwrap();
    assert_eq!(subs[0]["locked_by"], Value::Null, "released when the holder completed");

    // Once the holder is done, the refused run can be retried: it takes the lock, then releases it.
    if let Some(refused) = &refused {
        let (code, v, out) = o.json(&["retry", refused]);
        assert_eq!(code, 0, "{}", text(&out));
        assert_eq!(v["status"], "completed");
        let subs: Value = serde_json::from_slice(&o.run(&["subscriptions", "--json"]).stdout).unwrap();
        assert_eq!(subs[0]["locked_by"], Value::Null);
    }
}

/// The stand-in for `tests/run/compensate.orch`, whose `attach_port` fails (409): its `n`th undo of
/// `reserve_ip` waits at `gates[n]`; later ones answer at once.
fn compensate_server(gates: Vec<Gate>) -> Server {
    Server::start(move |hit, n| match (hit.method.as_str(), hit.path.as_str()) {
        ("POST", "/networks") => Reply::json(json!({"id": "net-7"})),
        ("POST", "/networks/net-7/ips") => Reply::json(json!({"ip": "10.0.0.5"})),
        ("POST", "/ports") => Reply::status(409, "port conflict"),
        ("DELETE", "/networks/net-7/ips/10.0.0.5") => {
            if let Some(gate) = gates.get(n) {
                gate.wait();
            }
            Reply::ok("{}")
        }
        _ => Reply::ok("{}"),
    })
}

/// Runs `compensate.orch` and kills `orchc` (SIGKILL) while its undo of `reserve_ip` waits at
/// `gate`, then opens it; gives the run's id.
fn crash_while_undoing(o: &Orchc, server: &Server, gate: &Gate) -> String {
    let mut child = o.spawn_quiet(&["run", "tests/run/compensate.orch", "--config", &cfg(server)]);
    server.wait_for("/networks/net-7/ips/10.0.0.5");
    child.kill().unwrap();
    child.wait().unwrap();
    gate.open();
    let runs: Value = serde_json::from_slice(&o.run(&["runs", "--json"]).stdout).unwrap();
    runs[0]["run_id"].as_str().unwrap().to_string()
}

/// `orchc` killed while a compensation is in flight: the step being undone shows `compensating`
/// (not `completed`, whose outputs a `retry` would reuse), and `abort` undoes it again.
#[test]
fn a_compensation_interrupted_by_a_crash_is_run_again_by_abort() {
    let release = Gate::default();
    let server = compensate_server(vec![release.clone()]);
    let o = Orchc::new();
    let run = crash_while_undoing(&o, &server, &release);
    let status_of = |show: &Value, step: &str| {
        show["steps"].as_array().unwrap().iter().find(|s| s["step"] == step).map(|s| s["status"].clone())
    };
    let show = o.show(&run);
    assert_eq!(status_of(&show, "reserve_ip"), Some(json!("compensating")), "{show}");
    assert_eq!(status_of(&show, "create_network"), Some(json!("completed")), "{show}");

    let (code, v, out) = o.json(&["abort", &run]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["status"], "aborted", "{v}");
    assert_eq!(server.count("DELETE", "/networks/net-7/ips/10.0.0.5"), 2, "the interrupted undo runs again");
    assert_eq!(server.count("DELETE", "/networks/net-7"), 1);
    let show = o.show(&run);
    assert_eq!(status_of(&show, "reserve_ip"), Some(json!("compensated")), "{show}");
    assert_eq!(status_of(&show, "create_network"), Some(json!("compensated")), "{show}");
}

/// An `abort` stopped by Ctrl-C while a compensation is in flight says to run `abort` again, which
/// finishes the undo; the run keeps its status until then.
#[test]
fn an_interrupted_abort_says_to_abort_again() {
    let (crashed, interrupted) = (Gate::default(), Gate::default());
    // The run's own undo, then the first abort's, wait; the second abort's goes through.
    let server = compensate_server(vec![crashed.clone(), interrupted.clone()]);
    let o = Orchc::new();
    let run = crash_while_undoing(&o, &server, &crashed);
    let status = o.show(&run)["status"].clone();

    let mut abort = o.command(&["abort", &run, "--json"]);
    let abort = abort.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    while server.count("DELETE", "/networks/net-7/ips/10.0.0.5") < 2 {
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) of the child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(abort.id() as i32, libc::SIGINT) }, 0);
    let out = abort.wait_with_output().unwrap();
    interrupted.open();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    assert!(text(&out).contains(&format!("continue it with `orchc abort {run}`")), "{}", text(&out));
    let last: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], status, "the run keeps the status it had: {last}");

    let (code, v, out) = o.json(&["abort", &run]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["status"], "aborted", "{v}");
    assert_eq!(server.count("DELETE", "/networks/net-7/ips/10.0.0.5"), 3, "each interrupted undo runs again");
    assert_eq!(server.count("DELETE", "/networks/net-7"), 1);
}

/// An `abort` whose compensation fails keeps the run's own error and adds the failures to it.
#[test]
fn an_abort_whose_compensation_fails_keeps_the_runs_error() {
    let server = Server::start(|hit, _| match (hit.method.as_str(), hit.path.as_str()) {
        ("POST", "/networks") => Reply::json(json!({"id": "net-7"})),
        ("POST", "/networks/net-7/ips") => Reply::json(json!({"ip": "10.0.0.5"})),
        ("POST", "/ports") => Reply::status(409, "port conflict"),
        ("DELETE", "/networks/net-7/ips/10.0.0.5") => Reply::status(404, "no such ip"),
        _ => Reply::ok("{}"),
    });
    let o = Orchc::new();
    let (code, v, _) = o.json(&["run", "tests/run/compensate.orch", "--config", &cfg(&server)]);
    assert_eq!((code, &v["error"]["step"]), (1, &json!("attach_port")), "{v}");
    let (code, v, out) = o.json(&["abort", v["run_id"].as_str().unwrap()]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(v["status"], "aborted");
    assert_eq!(v["error"]["step"], "attach_port", "the run's own error stays: {v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("409"), "{v}");
    assert_eq!(v["error"]["compensation_failures"][0]["step"], "release_ip", "{v}");
    assert_eq!(server.count("DELETE", "/networks/net-7/ips/10.0.0.5"), 2, "abort tried the undo again");
}
