//! The reference examples, each run end to end through the real `orchc` binary (`--db` in a
//! temporary directory, `--config URL=...` pointing at a stand-in server on 127.0.0.1, `--json`)
//! against the stand-ins of `tests/standins`, the fake `terraform` and `helm` of
//! `tests/fixtures/bin`, and a real `ansible-playbook` running on localhost with the local
//! connection. Each test asserts the run's outputs, what the stand-ins saw, and, for failures,
//! that the compensations ran (`orchc show RUN --json`) and left nothing behind.

mod standins;

use std::path::PathBuf;

use serde_json::Value;
use standins::{repo, steps_of, Orch};

// -------------------------------------------------------------------------------------------
// Helpers

/// A subscription's id from a workflow output (an id string, or an object with `id`).
fn sub_id(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => m.get("id").and_then(Value::as_str).unwrap_or_else(|| panic!("no id in {v}")).to_string(),
        _ => panic!("not a subscription: {v}"),
    }
}

/// The lifecycle state of a subscription as `orchc subscription ID --json` reports it.
fn sub_state(o: &Orch, id: &str) -> String {
    let s = o.subscription(id);
    s.get("state")
        .or_else(|| s.get("subscription").and_then(|x| x.get("state")))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no state in {s}"))
        .to_string()
}

/// The names of the steps of a run that completed, in the order `show --json` lists them.
fn step_names(show: &Value, status: &str) -> Vec<String> {
    steps_of(show)
        .iter()
        .filter(|s| s.get("status").and_then(Value::as_str) == Some(status))
        .filter_map(|s| s.get("name").or_else(|| s.get("step")).and_then(Value::as_str).map(str::to_string))
        .collect()
}

fn assert_completed(out: &standins::Outcome) -> Value {
    let last = out.last_json();
    assert_eq!(last["status"], "completed", "run did not complete: {last}\nstderr:\n{}", out.stderr);
    assert_eq!(out.code, 0, "{out:?}");
    last
}

fn assert_failed(out: &standins::Outcome) -> Value {
    let last = out.last_json();
    assert_eq!(last["status"], "failed", "run did not fail: {last}\nstderr:\n{}", out.stderr);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(last["outputs"].is_null());
    last
}

fn run_id(last: &Value) -> String {
    last["run_id"].as_str().expect("run_id").to_string()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array().unwrap_or_else(|| panic!("not a list: {v}")).iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

// -------------------------------------------------------------------------------------------
// Every example checks clean

#[test]
fn every_example_checks_clean_with_no_warnings() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orchc"))
        .args(["check", "--format", "json", "--deny-warnings", "examples"])
        .current_dir(repo())
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["errors"], 0, "{report:#}");
    assert_eq!(report["warnings"], 0, "{report:#}");
    assert_eq!(report["files"], 6, "hello, network, openstack, landing_zone, platform, promotion");
    assert!(out.status.success());
}

#[test]
fn every_step_and_workflow_of_the_examples_is_documented() {
    for dir in ["hello", "network", "openstack", "landing_zone", "platform", "promotion"] {
        let text = std::fs::read_to_string(repo().join(format!("examples/{dir}/{dir}.orch"))).unwrap();
        let module = orch::syntax::parse(&text).unwrap();
        for item in &module.items {
            let name = match &item.kind {
                orch::syntax::ast::ItemKind::Step(s) => &s.name.name,
                orch::syntax::ast::ItemKind::Workflow(w) => &w.name.name,
                _ => continue,
            };
            assert!(
                item.doc.as_deref().is_some_and(|d| d.trim().len() >= 10),
                "examples/{dir}: {name} has no doc comment"
            );
        }
    }
}

#[test]
fn every_example_says_what_it_shows_and_how_to_run_it() {
    for dir in ["hello", "network", "openstack", "landing_zone", "platform", "promotion"] {
        let path: PathBuf = repo().join("examples").join(dir);
        let main = std::fs::read_to_string(path.join(format!("{dir}.orch"))).unwrap();
        let readme = std::fs::read_to_string(path.join("README.md")).unwrap_or_default();
        let header: String = main.lines().take_while(|l| l.starts_with("//")).collect::<Vec<_>>().join("\n");
        let text = format!("{header}\n{readme}");
        assert!(header.lines().count() >= 5, "examples/{dir}: no header comment");
        assert!(
            text.contains("orchc run examples/") || text.contains("cargo run --release -- run examples/"),
            "examples/{dir}: no run command"
        );
    }
}

// -------------------------------------------------------------------------------------------
// hello: no server, no inputs

#[test]
fn hello_runs_with_no_server_and_no_inputs() {
    let o = Orch::new();
    let out = o.orchc(&["run", "examples/hello/hello.orch", "--json"]);
    let last = assert_completed(&out);
    let outputs = &last["outputs"];
    assert_eq!(strs(&outputs["hosts"]), ["web-1.local-1", "web-2.local-1", "web-3.local-1"]);
    let kernel = String::from_utf8(std::process::Command::new("uname").arg("-s").output().unwrap().stdout).unwrap();
    assert_eq!(outputs["kernel"], kernel.trim());
    let summary = outputs["summary"].as_str().unwrap();
    assert!(summary.starts_with("Hello, world: orch on "), "{summary}");
    assert!(
        summary.contains("built 3 hosts: web-1.local-1 (large), web-2.local-1 (small), web-3.local-1 (small)"),
        "{summary}"
    );
    // What it logged is visible: the echo of each build, from the real `echo`.
    for line in ["building web-1.local-1 as large", "building web-3.local-1 as small", "plan: 3 hosts"] {
        assert!(out.stderr.contains(line) || out.stdout.contains(line), "{line} not logged:\n{}", out.stderr);
    }

    // Inputs and configs change what it does.
    let out = o.orchc(&[
        "run",
        "examples/hello/hello.orch",
        "-i",
        "name=ops",
        "-i",
        "replicas=2",
        "--config",
        "region=eu-north",
        "--json",
    ]);
    let last = assert_completed(&out);
    assert_eq!(strs(&last["outputs"]["hosts"]), ["web-1.eu-north", "web-2.eu-north"]);
    assert!(last["outputs"]["summary"].as_str().unwrap().starts_with("Hello, ops: "));
}

// -------------------------------------------------------------------------------------------
// network: Node, Port and CoreLink against the inventory/IPAM stand-in

struct Net {
    o: Orch,
    inv: standins::StandIn,
    state: std::sync::Arc<std::sync::Mutex<standins::inventory::Inventory>>,
}

impl Net {
    fn new() -> Net {
        let (inv, state) = standins::inventory::start();
        let mut o = Orch::new();
        o.env.push(("ORCH_SECRET_INVENTORY_TOKEN".into(), standins::inventory::TOKEN.into()));
        Net { o, inv, state }
    }

    fn run(&self, workflow: &str, inputs: &[&str]) -> standins::Outcome {
        let cfg = format!("inventory_url={}", self.inv.url);
        let mut args = vec!["run", "examples/network/network.orch", workflow, "--config", &cfg, "--json"];
        for i in inputs {
            args.push("-i");
            args.push(i);
        }
        self.o.orchc(&args)
    }

    fn node(&self, name: &str, site: &str) -> String {
        let last = assert_completed(
            &self.run("create_node", &["customer=acme", &format!("node_name={name}"), &format!("site={site}")]),
        );
        sub_id(&last["outputs"]["node"])
    }

    fn port(&self, node: &str, name: &str) -> String {
        let last = assert_completed(&self.run(
            "create_port",
            &["customer=acme", &format!("node={node}"), &format!("port_name={name}"), "speed_gbps=100"],
        ));
        sub_id(&last["outputs"]["port"])
    }
}

#[test]
fn network_create_modify_terminate_with_subscriptions_passed_between_workflows() {
    let n = Net::new();
    // A retried create is applied once: the two 503s are retried, and the three attempts
    // carry the same client token.
    n.state.lock().unwrap().faults.fail_times("POST", "/api/nodes", 503, 2);
    let a = n.node("ams-pe1", "AMS");
    let posts = n.inv.matching("POST", "/api/nodes");
    assert_eq!(posts.len(), 3);
    assert_eq!(posts[0].body["client_token"], posts[2].body["client_token"]);
    assert!(posts.iter().all(|p| p.header("authorization") == Some("Bearer inventory-secret-token")));
    assert_eq!(posts[2].body["role"], "core");
    assert_eq!(posts[2].body["vendor"], "Nokia");
    assert_eq!(posts[2].body["subscription"], a.as_str());
    let b = n.node("fra-pe1", "FRA");
    assert_eq!(sub_state(&n.o, &a), "active");
    {
        let inv = n.state.lock().unwrap();
        assert_eq!(inv.nodes.len(), 2);
        assert!(inv.nodes.values().all(|n| n["status"] == "in_service"));
        assert_eq!(inv.loopbacks.keys().collect::<Vec<_>>(), ["10.255.0.1", "10.255.0.2"]);
    }

    let pa = n.port(&a, "1/1/1");
    let pb = n.port(&b, "2/1/1");
    let last = assert_completed(
        &n.run("create_core_link", &["customer=acme", &format!("a_port={pa}"), &format!("b_port={pb}")]),
    );
    let link = sub_id(&last["outputs"]["link"]);
    {
        let inv = n.state.lock().unwrap();
        assert_eq!(inv.links.len(), 1);
        let l = inv.links.values().next().unwrap();
        assert_eq!(l["prefix"], "10.0.0.0/31");
        assert_eq!(l["a_address"], "10.0.0.0");
        assert_eq!(l["b_address"], "10.0.0.1");
        assert_eq!(l["isis_metric"], 10);
    }
    assert_eq!(sub_state(&n.o, &link), "active");

    // Modify: drain the link, change a node's role, a port's description.
    assert_completed(&n.run("modify_core_link", &[&format!("link={link}"), "isis_metric=65000"]));
    assert_eq!(n.state.lock().unwrap().links.values().next().unwrap()["isis_metric"], 65000);
    assert_completed(&n.run("modify_node", &[&format!("node={a}"), "role=edge"]));
    assert!(n.state.lock().unwrap().nodes.values().any(|n| n["name"] == "ams-pe1" && n["role"] == "edge"));
    // The subscription holds the change too, with its loopback kept through the modification.
    let sub = n.o.subscription(&a).to_string();
    assert!(sub.contains("\"edge\"") && sub.contains("10.255.0.1") && sub.contains("Nokia"), "{sub}");
    assert_completed(&n.run("modify_port", &[&format!("port={pa}"), "speed_gbps=100", "description=to FRA"]));
    assert!(n.state.lock().unwrap().ports.values().any(|p| p["description"] == "to FRA"));

    // The inventory refuses to delete a node that has ports: a permanent failure.
    let last = assert_failed(&n.run("terminate_node", &[&format!("node={a}")]));
    assert!(last["error"]["message"].as_str().unwrap().contains("409"), "{last}");
    assert_eq!(sub_state(&n.o, &a), "active");
    // The failed run keeps the node locked until it is retried or aborted.
    let failed_run = run_id(&last);
    let out = n.run("modify_node", &[&format!("node={a}"), "role=core"]);
    assert_eq!(out.last_json()["error"]["code"], "orch::run::subscription_locked", "{out:?}");
    assert!(out.last_json()["error"]["message"].as_str().unwrap().contains(&failed_run));
    let out = n.o.orchc(&["abort", &failed_run, "--json"]);
    assert_eq!(out.last_json()["status"], "aborted", "{out:?}");

    // Terminate everything, in order.
    assert_completed(&n.run("terminate_core_link", &[&format!("link={link}")]));
    assert_completed(&n.run("terminate_port", &[&format!("port={pa}")]));
    assert_completed(&n.run("terminate_port", &[&format!("port={pb}")]));
    assert_completed(&n.run("terminate_node", &[&format!("node={a}")]));
    assert_completed(&n.run("terminate_node", &[&format!("node={b}")]));
    for id in [&a, &b, &pa, &pb, &link] {
        assert_eq!(sub_state(&n.o, id), "terminated");
    }
    let inv = n.state.lock().unwrap();
    assert!(inv.nodes.is_empty() && inv.ports.is_empty() && inv.links.is_empty());
    assert!(inv.loopbacks.is_empty() && inv.prefixes.is_empty());
}

#[test]
fn network_needs_its_secret_before_the_first_request() {
    let mut n = Net::new();
    n.o.env.retain(|(k, _)| k != "ORCH_SECRET_INVENTORY_TOKEN");
    let out = n.run("create_node", &["customer=acme", "node_name=ams-pe1", "site=AMS"]);
    assert_ne!(out.code, 0);
    let last = out.last_json();
    assert_ne!(last["status"], "completed");
    assert!(last["error"]["message"].as_str().unwrap().contains("inventory_token"), "{last}");
    assert!(n.inv.requests().is_empty(), "no request before the secret is there");
    // Given with --secret, it is sent as the bearer token and stored nowhere.
    let secret = format!("inventory_token={}", standins::inventory::TOKEN);
    let cfg = format!("inventory_url={}", n.inv.url);
    let out = n.o.orchc(&[
        "run",
        "examples/network/network.orch",
        "create_node",
        "--config",
        &cfg,
        "--secret",
        &secret,
        "-i",
        "customer=acme",
        "-i",
        "node_name=ams-pe1",
        "-i",
        "site=AMS",
        "--json",
    ]);
    let last = assert_completed(&out);
    assert!(n.inv.requests().iter().all(|r| r.header("authorization") == Some("Bearer inventory-secret-token")));
    for suffix in ["", "-wal", "-journal"] {
        let db = std::fs::read(format!("{}{suffix}", n.o.db())).unwrap_or_default();
        assert!(!db.windows(standins::inventory::TOKEN.len()).any(|w| w == standins::inventory::TOKEN.as_bytes()));
    }
    assert!(!n.o.show(&run_id(&last)).to_string().contains(standins::inventory::TOKEN));
}

#[test]
fn network_failed_link_create_releases_its_prefix() {
    let n = Net::new();
    let a = n.node("ams-pe1", "AMS");
    let b = n.node("fra-pe1", "FRA");
    let pa = n.port(&a, "1/1/1");
    let pb = n.port(&b, "1/1/1");
    n.state.lock().unwrap().faults.fail_always("POST", "/api/links", 422, "port 1/1/1 has a cross-connect");
    let last =
        assert_failed(&n.run("create_core_link", &["customer=acme", &format!("a_port={pa}"), &format!("b_port={pb}")]));
    assert!(last["error"]["message"].as_str().unwrap().contains("422"), "{last}");
    // The prefix was allocated, then released by the compensation.
    assert_eq!(n.inv.count("POST", "/api/ipam/prefixes"), 1);
    assert_eq!(n.inv.count("DELETE", "/api/ipam/prefixes/"), 1);
    assert!(n.state.lock().unwrap().prefixes.is_empty());
    let show = n.o.show(&run_id(&last));
    assert_eq!(show["status"], "failed");
    assert!(step_names(&show, "completed").iter().any(|s| s == "release_prefix"), "{show:#}");
    // The secret never reaches the store or the output.
    assert!(!show.to_string().contains(standins::inventory::TOKEN));
    // The ports are untouched and can be linked once the inventory accepts it and the failed
    // run, which holds their locks, is aborted.
    n.state.lock().unwrap().faults.clear();
    let out = n.o.orchc(&["abort", &run_id(&last), "--json"]);
    assert_eq!(out.last_json()["status"], "aborted", "{out:?}");
    assert_completed(&n.run("create_core_link", &["customer=acme", &format!("a_port={pa}"), &format!("b_port={pb}")]));
}

#[test]
fn network_create_node_is_undone_when_the_loopback_cannot_be_reserved() {
    let n = Net::new();
    n.state.lock().unwrap().faults.fail_always(
        "POST",
        "/api/ipam/loopbacks",
        409,
        "the AMS loopback pool is exhausted",
    );
    let last = assert_failed(&n.run("create_node", &["customer=acme", "node_name=ams-pe9", "site=AMS"]));
    assert_eq!(n.inv.count("POST", "/api/nodes"), 1);
    assert_eq!(n.inv.count("DELETE", "/api/nodes/"), 1, "delete_node_from_inventory compensated the create");
    assert!(n.state.lock().unwrap().nodes.is_empty());
    let show = n.o.show(&run_id(&last));
    assert!(step_names(&show, "completed").iter().any(|s| s == "delete_node_from_inventory"), "{show:#}");
}

// -------------------------------------------------------------------------------------------
// openstack: the deployment flows against the Neutron/Nova stand-in, configured with Ansible

struct Os {
    o: Orch,
    cloud: standins::StandIn,
    state: std::sync::Arc<std::sync::Mutex<standins::cloud::Cloud>>,
    conf_dir: PathBuf,
}

impl Os {
    fn new(quota: usize) -> Os {
        assert!(
            standins::ansible_bin_dir().is_some(),
            "ansible-playbook is not installed (on the PATH or in target/test-venv): run scripts/install-test-deps"
        );
        let (cloud, state) = standins::cloud::start(quota, 2);
        let mut o = Orch::new();
        o.env.push(("ORCH_SECRET_OS_TOKEN".into(), standins::cloud::TOKEN.into()));
        let conf_dir = o.path("app-config");
        Os { o, cloud, state, conf_dir }
    }

    fn run(&self, workflow: &str, inputs: &[&str]) -> standins::Outcome {
        let net = format!("network_url={}", self.cloud.url);
        let compute = format!("compute_url={}/v2.1", self.cloud.url);
        let conf = format!("app_config_dir={}", self.conf_dir.display());
        let mut args = vec![
            "run",
            "examples/openstack/openstack.orch",
            workflow,
            "--config",
            &net,
            "--config",
            &compute,
            "--config",
            "ansible_connection=local",
            "--config",
            &conf,
            "--json",
        ];
        for i in inputs {
            args.push("-i");
            args.push(i);
        }
        self.o.orchc(&args)
    }

    /// The address the cloud gave the server named `name`.
    fn ip_of(&self, name: &str) -> String {
        let cloud = self.state.lock().unwrap();
        cloud.servers.values().find(|s| s.name == name).unwrap_or_else(|| panic!("no server {name}")).ip.clone()
    }

    fn configured(&self) -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(&self.conf_dir)
            .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect())
            .unwrap_or_default();
        files.sort();
        files
    }
}

#[test]
fn openstack_create_scale_and_delete_a_deployment() {
    let c = Os::new(10);
    // Neutron answers 503 twice: the network create is retried.
    c.state.lock().unwrap().faults.fail_times("POST", "/v2.0/networks", 503, 2);
    let last = assert_completed(&c.run("create_deployment", &["customer=acme", "name=web", "vm_count=3"]));
    let deployment = sub_id(&last["outputs"]["deployment"]);
    assert_eq!(c.cloud.count("POST", "/v2.0/networks"), 3);
    // The servers are created 4 at a time, so which one gets which address varies; the
    // outputs are in element order: the i-th address is web-vm-(i+1)'s.
    let ips = strs(&last["outputs"]["server_ip"]);
    assert_eq!(ips, [c.ip_of("web-vm-1"), c.ip_of("web-vm-2"), c.ip_of("web-vm-3")]);
    let mut sorted = ips.clone();
    sorted.sort();
    assert_eq!(sorted, ["10.20.0.11", "10.20.0.12", "10.20.0.13"]);
    {
        let cloud = c.state.lock().unwrap();
        assert_eq!(cloud.networks.len(), 1);
        assert_eq!(cloud.subnets.values().next().unwrap()["cidr"], "10.20.0.0/24");
        assert_eq!(cloud.routers.values().next().unwrap()["interfaces"].as_array().unwrap().len(), 1);
        assert_eq!(cloud.servers.len(), 3);
        assert!(cloud.servers.values().all(|s| s.status == "ACTIVE" && s.flavor == "m1.small"));
        // Every server was polled until ACTIVE (BUILD twice first).
        assert!(cloud.servers.values().all(|s| s.polls >= 3));
    }
    // Ansible ran the playbook on each server (locally) and changed each.
    assert_eq!(c.configured(), ["10.20.0.11.conf", "10.20.0.12.conf", "10.20.0.13.conf"]);
    let conf = std::fs::read_to_string(c.conf_dir.join(format!("{}.conf", ips[1]))).unwrap();
    assert!(conf.contains("deployment=web") && conf.contains(&format!("peers={}", ips.join(","))), "{conf}");
    let mut changed = strs(&last["outputs"]["changed_hosts"]);
    changed.sort();
    assert_eq!(changed, sorted);
    assert_eq!(sub_state(&c.o, &deployment), "completed");

    // Scale out to 5: two new servers, created, polled, configured.
    let last = assert_completed(&c.run("scale_deployment", &[&format!("deployment={deployment}"), "vm_count=5"]));
    let all = strs(&last["outputs"]["server_ips"]);
    assert_eq!(&all[..3], &ips[..]);
    assert_eq!(all[3..], [c.ip_of("web-vm-4"), c.ip_of("web-vm-5")]);
    assert_eq!(c.state.lock().unwrap().servers.len(), 5);
    assert_eq!(c.cloud.count("POST", "/v2.1/servers"), 5);
    assert_eq!(c.configured().len(), 5);
    assert!(c.configured().contains(&format!("{}.conf", c.ip_of("web-vm-5"))));
    // Scale in to 2: the three newest are deleted.
    let last = assert_completed(&c.run("scale_deployment", &[&format!("deployment={deployment}"), "vm_count=2"]));
    assert_eq!(strs(&last["outputs"]["server_ips"]), &ips[..2]);
    assert_eq!(c.cloud.count("DELETE", "/v2.1/servers/"), 3);
    assert_eq!(c.state.lock().unwrap().servers.len(), 2);

    // Delete: servers, router interface, router, subnet, network.
    assert_completed(&c.run("delete_deployment", &[&format!("deployment={deployment}")]));
    let cloud = c.state.lock().unwrap();
    assert!(
        cloud.servers.is_empty() && cloud.routers.is_empty() && cloud.subnets.is_empty() && cloud.networks.is_empty()
    );
    drop(cloud);
    assert_eq!(sub_state(&c.o, &deployment), "deleted");
}

#[test]
fn openstack_run_killed_while_polling_resumes_without_creating_servers_again() {
    let c = Os::new(10);
    // The servers stay in BUILD until the test lets them go ACTIVE.
    c.state.lock().unwrap().build_polls = 1_000_000;
    let net = format!("network_url={}", c.cloud.url);
    let compute = format!("compute_url={}/v2.1", c.cloud.url);
    let conf = format!("app_config_dir={}", c.conf_dir.display());
    let mut child = c.o.spawn(&[
        "run",
        "examples/openstack/openstack.orch",
        "create_deployment",
        "-i",
        "customer=acme",
        "-i",
        "name=kd",
        "-i",
        "vm_count=2",
        "--config",
        &net,
        "--config",
        &compute,
        "--config",
        "ansible_connection=local",
        "--config",
        &conf,
    ]);
    // Wait until both servers were created and are being polled, then kill -9.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let polled = c.state.lock().unwrap().servers.values().filter(|s| s.polls >= 2).count();
        if polled == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the servers were never polled");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(c.cloud.count("POST", "/v2.1/servers"), 2);
    let run = c.o.only_run();

    // The cloud finishes building; `orchc resume` continues where the run stopped.
    c.state.lock().unwrap().build_polls = 0;
    let last = assert_completed(&c.o.orchc(&["resume", &run, "--json"]));
    assert_eq!(strs(&last["outputs"]["server_ip"]).len(), 2);
    // Completed steps were not run again: one network, two servers in all.
    assert_eq!(c.cloud.count("POST", "/v2.0/networks"), 1);
    assert_eq!(c.cloud.count("POST", "/v2.0/subnets"), 1);
    assert_eq!(c.cloud.count("POST", "/v2.1/servers"), 2);
    assert_eq!(c.state.lock().unwrap().servers.len(), 2);
    assert_eq!(c.configured().len(), 2);
}

#[test]
fn openstack_quota_exceeded_rolls_the_deployment_back() {
    let c = Os::new(2);
    let last = assert_failed(&c.run("create_deployment", &["customer=acme", "name=big", "vm_count=3"]));
    let message = last["error"]["message"].as_str().unwrap();
    assert!(message.contains("403") || message.contains("Quota exceeded"), "{message}");
    // Everything created was deleted by the compensations, in reverse order.
    let cloud = c.state.lock().unwrap();
    assert!(cloud.servers.is_empty(), "servers left: {:?}", cloud.servers.keys().collect::<Vec<_>>());
    assert!(cloud.routers.is_empty() && cloud.subnets.is_empty() && cloud.networks.is_empty());
    drop(cloud);
    assert_eq!(c.cloud.count("DELETE", "/v2.1/servers/"), 2);
    assert_eq!(c.cloud.count("DELETE", "/v2.0/routers/"), 1);
    assert_eq!(c.cloud.count("DELETE", "/v2.0/networks/"), 1);
    let show = c.o.show(&run_id(&last));
    assert_eq!(show["status"], "failed");
    let done = step_names(&show, "completed");
    for comp in [
        "delete_server",
        "detach_router_interface",
        "delete_router",
        "delete_subnet",
        "delete_network",
        "mark_deployment_failed",
    ] {
        assert!(done.iter().any(|s| s == comp), "{comp} did not run: {done:?}");
    }
    let pos = |name: &str| done.iter().rposition(|s| s == name).unwrap();
    assert!(pos("detach_router_interface") < pos("delete_router"));
    assert!(pos("delete_router") < pos("delete_subnet") && pos("delete_subnet") < pos("delete_network"));
    assert!(c.configured().is_empty(), "nothing was configured");
    // The deployment's subscription ended `failed`.
    let subs = c.o.orchc(&["subscriptions", "--json"]);
    assert!(subs.stdout.contains("failed"), "{}", subs.stdout);
}

#[test]
fn openstack_failed_scale_out_puts_the_deployment_back_as_it_was() {
    let c = Os::new(3);
    let last = assert_completed(&c.run("create_deployment", &["customer=acme", "name=app", "vm_count=2"]));
    let deployment = sub_id(&last["outputs"]["deployment"]);
    let ips = strs(&last["outputs"]["server_ip"]);
    // Room for one more server, not two.
    let last = assert_failed(&c.run("scale_deployment", &[&format!("deployment={deployment}"), "vm_count=4"]));
    assert!(last["error"]["message"].as_str().unwrap().contains("Quota exceeded"), "{last}");
    let cloud = c.state.lock().unwrap();
    assert_eq!(cloud.servers.len(), 2, "the new server was deleted by its compensation");
    assert!(cloud.servers.values().all(|s| s.name == "app-vm-1" || s.name == "app-vm-2"));
    assert_eq!(cloud.networks.len(), 1, "the deployment's network is untouched");
    drop(cloud);
    let show = c.o.show(&run_id(&last));
    assert!(step_names(&show, "completed").iter().any(|s| s == "abort_scaling"), "{show:#}");
    // The deployment is `completed` again with its two servers, and can be scaled once the
    // failed run is aborted.
    assert_eq!(sub_state(&c.o, &deployment), "completed");
    let out = c.o.orchc(&["abort", &run_id(&last), "--json"]);
    assert_eq!(out.last_json()["status"], "aborted", "{out:?}");
    let last = assert_completed(&c.run("scale_deployment", &[&format!("deployment={deployment}"), "vm_count=3"]));
    assert_eq!(strs(&last["outputs"]["server_ips"])[..2], ips[..]);
}

#[test]
fn openstack_server_in_error_fails_its_poll_and_rolls_back() {
    let c = Os::new(10);
    c.state.lock().unwrap().error_servers.push("db-vm-2".into());
    let last = assert_failed(&c.run("create_deployment", &["customer=acme", "name=db", "vm_count=2"]));
    assert!(last["error"]["message"].as_str().unwrap().contains("ERROR"), "{last}");
    let cloud = c.state.lock().unwrap();
    assert!(cloud.servers.is_empty() && cloud.networks.is_empty());
}

// -------------------------------------------------------------------------------------------
// landing_zone: dev, test and prod with environment blocks and an approval before prod

struct Lz {
    o: Orch,
    api: standins::StandIn,
    state: std::sync::Arc<std::sync::Mutex<standins::landing::Landing>>,
    blueprint: String,
}

impl Lz {
    fn new() -> Lz {
        let (api, state) = standins::landing::start();
        let mut o = Orch::new();
        o.env.push(("ORCH_SECRET_CLOUD_TOKEN".into(), standins::landing::TOKEN.into()));
        let blueprint = o.copy_dir("examples/landing_zone/blueprint");
        Lz { o, api, state, blueprint }
    }

    fn run(&self, env: &str, extra: &[&str]) -> standins::Outcome {
        let api = format!("cloud_api={}", self.api.url);
        let bp = format!("blueprint_dir={}", self.blueprint);
        let mut args = vec![
            "run",
            "examples/landing_zone/landing_zone.orch",
            "--env",
            env,
            "--config",
            &api,
            "--config",
            &bp,
            "-i",
            "account_name=payments",
            "-i",
            "owner=team-payments",
            "--json",
        ];
        args.extend_from_slice(extra);
        self.o.orchc(&args)
    }
}

#[test]
fn landing_zone_goes_through_dev_and_test_then_waits_for_approval_before_prod() {
    let lz = Lz::new();
    let dev = assert_completed(&lz.run("dev", &[]));
    assert!(dev["outputs"]["vpc_id"].as_str().unwrap().starts_with("vpc-"));
    assert_eq!(dev["outputs"]["subnet_ids"].as_array().unwrap().len(), 3);
    assert_eq!(dev["outputs"]["plan_summary"], "6 to add, 0 to change, 0 to destroy");
    assert_eq!(dev["outputs"]["account_id"], "100000001");
    // Terraform was driven the careful way, with the dev environment's values.
    let calls = lz.o.terraform_calls();
    let cmds: Vec<&str> = calls.iter().map(|(a, _)| a[0].as_str()).collect();
    assert_eq!(cmds, ["init", "plan", "show", "apply", "output"]);
    assert!(calls.iter().all(|(_, cwd)| *cwd == lz.blueprint));
    let plan = &calls[1].0;
    for arg in [
        "-input=false",
        "-no-color",
        "-var=stage=dev",
        "-var=vpc_cidr=10.10.0.0/16",
        "-var=account_id=100000001",
        "-out=orch.tfplan",
    ] {
        assert!(plan.contains(&arg.to_string()), "plan lacks {arg}: {plan:?}");
    }
    assert!(calls[0].0.contains(&"-backend-config=key=landing-zones/payments/dev.tfstate".to_string()));
    assert_eq!(calls[3].0.last().unwrap(), "orch.tfplan", "apply applies the reviewed plan");
    {
        let api = lz.state.lock().unwrap();
        assert_eq!(api.tags["100000001"]["stage"], "dev");
        assert_eq!(api.cmdb[0]["vpc"], dev["outputs"]["vpc_id"]);
        assert_eq!(api.notifications[0]["approved_by"], "no approval required");
    }

    let test = assert_completed(&lz.run("test", &[]));
    assert_eq!(test["outputs"]["account_id"], "200000002");
    let calls = lz.o.terraform_calls();
    assert!(calls[6].0.contains(&"-var=vpc_cidr=10.20.0.0/16".to_string()), "{:?}", calls[6]);
    // test is 1000 EUR of a 2000 EUR limit: no warning; dev's 500 of 1000 neither.
    assert_eq!(test["outputs"]["policy_warnings"], serde_json::json!([]));

    // prod suspends for the approval, with nothing applied.
    let out = lz.run("prod", &[]);
    let last = out.last_json();
    assert_eq!(last["status"], "suspended", "{last}\n{}", out.stderr);
    assert_eq!(out.code, 3);
    let run = run_id(&last);
    let applies = |lz: &Lz| lz.o.terraform_calls().iter().filter(|(a, _)| a[0] == "apply").count();
    assert_eq!(applies(&lz), 2);
    let out = lz.o.orchc(&["resume", &run, "-i", "approved=true", "-i", "approver=alice", "--json"]);
    let prod = assert_completed(&out);
    assert_eq!(prod["outputs"]["account_id"], "300000003");
    assert_eq!(applies(&lz), 3);
    assert_eq!(lz.state.lock().unwrap().notifications[2]["approved_by"], "alice");
    // prod's 5000 EUR is over 80% of... no: 5000 of 10000 is not; no warning either.
    // The audit trail: the run shows the environment, the approval and every step.
    let show = lz.o.show(&run);
    assert_eq!(show["status"], "completed");
    assert_eq!(show["env"], "prod");
    assert_eq!(show["configs"]["require_approval"], true);
    let approval = steps_of(&show).into_iter().find(|s| s["step"] == "approve_deployment").unwrap();
    assert_eq!(approval["outputs"], serde_json::json!({ "approved": true, "approver": "alice" }));
    let text = show.to_string();
    assert!(text.contains("prod") && text.contains("alice"), "{show:#}");
    let done = step_names(&show, "completed");
    for s in ["discover", "validate", "review_plan", "approve_deployment", "check_approval", "notify_owner"] {
        assert!(done.iter().any(|d| d == s), "{s} is not in the audit trail: {done:?}");
    }
    assert!(!text.contains(standins::landing::TOKEN));
}

#[test]
fn landing_zone_failed_post_op_is_retried_without_applying_again() {
    let lz = Lz::new();
    // The CMDB is down for longer than register_in_cmdb's 3 attempts.
    lz.state.lock().unwrap().faults.fail_times("POST", "/v1/cmdb/records", 500, 3);
    let last = assert_failed(&lz.run("dev", &[]));
    assert!(last["error"]["message"].as_str().unwrap().contains("500"), "{last}");
    assert_eq!(lz.api.count("POST", "/v1/cmdb/records"), 3);
    let applies = |lz: &Lz| lz.o.terraform_calls().iter().filter(|(a, _)| a[0] == "apply").count();
    assert_eq!(applies(&lz), 1);
    // The CMDB is back: `orchc retry` continues from the failed step; Terraform is not run again.
    let last = assert_completed(&lz.o.orchc(&["retry", &run_id(&last), "--json"]));
    assert_eq!(last["outputs"]["cmdb_id"], "CMDB-0001");
    assert_eq!(applies(&lz), 1);
    assert_eq!(lz.o.terraform_calls().len(), 5);
    assert_eq!(lz.api.count("PUT", "/v1/accounts/100000001/tags"), 1);
    assert_eq!(lz.state.lock().unwrap().notifications.len(), 1);
}

#[test]
fn landing_zone_rejected_approval_applies_nothing() {
    let lz = Lz::new();
    let out = lz.run("prod", &[]);
    assert_eq!(out.code, 3, "{out:?}");
    let run = run_id(&out.last_json());
    let out = lz.o.orchc(&["resume", &run, "-i", "approved=false", "-i", "approver=bob", "--json"]);
    let last = assert_failed(&out);
    assert!(last["error"]["message"].as_str().unwrap().contains("rejected by bob"), "{last}");
    assert!(lz.o.terraform_calls().iter().all(|(a, _)| a[0] != "apply"));
    assert!(lz.state.lock().unwrap().cmdb.is_empty());
}

#[test]
fn landing_zone_policy_violation_stops_before_terraform() {
    let lz = Lz::new();
    // The test environment's limit is 2000 EUR.
    let last = assert_failed(&lz.run("test", &["--config", "budget_eur=5000"]));
    let message = last["error"]["message"].as_str().unwrap();
    assert!(message.contains("budget: 5000 EUR is over the test limit of 2000 EUR"), "{message}");
    assert!(lz.o.terraform_calls().is_empty());
    // A CIDR already used in the account is refused by the step itself.
    lz.state.lock().unwrap().networks.get_mut("100000001").unwrap().push("10.10.0.0/16".into());
    let last = assert_failed(&lz.run("dev", &[]));
    assert!(last["error"]["message"].as_str().unwrap().contains("10.10.0.0/16 is already used"), "{last}");
    assert_eq!(lz.api.count("POST", "/v1/policies/evaluate"), 1);
}

// -------------------------------------------------------------------------------------------
// platform: Terraform, Helm and DNS as one graph ordered by their outputs

fn platform_args(srv: &standins::StandIn, db_dir: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "examples/platform/platform.orch",
        "deploy_platform",
        "-i",
        "customer=acme",
        "-i",
        "app_name=shop",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for c in ["kube_api", "dns_api", "backup_api", "monitoring_api"] {
        args.push("--config".into());
        args.push(format!("{c}={}", srv.url));
    }
    args.push("--config".into());
    args.push(format!("db_module_dir={db_dir}"));
    args
}

/// `orchc subscriptions --json`: product -> states, in creation order.
fn subscription_states(o: &Orch) -> Vec<(String, String)> {
    let out = o.orchc(&["subscriptions", "--json"]);
    let list: Value = out.json();
    let items = list.as_array().or_else(|| list["subscriptions"].as_array()).unwrap_or_else(|| panic!("{list}"));
    items
        .iter()
        .map(|s| (s["product"].as_str().unwrap().to_string(), s["state"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn platform_failed_release_leaves_per_resource_status_and_retries() {
    let mut o = Orch::new();
    o.env.push(("ORCH_SECRET_PLATFORM_TOKEN".into(), standins::platform::TOKEN.into()));
    let (srv, state) = standins::platform::start(o.path("helm"), 0);
    let db_dir = o.copy_dir("examples/platform/database");
    let args = platform_args(&srv, &db_dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The release's pods never become ready: helm --atomic gives up.
    o.env.push(("FAKE_HELM_FAIL_RELEASES".into(), "shop".into()));
    let last = assert_failed(&o.orchc(&args));
    assert!(last["error"]["message"].as_str().unwrap().contains("rolled back due to atomic"), "{last}");
    // Per resource: the database is up, the app is stuck in progress, DNS was never touched.
    let states = subscription_states(&o);
    assert_eq!(
        states,
        [("Database".to_string(), "completed".to_string()), ("App".to_string(), "in_progress".to_string())],
        "{states:?}"
    );
    assert!(state.lock().unwrap().zones["apps.example.com."].is_empty());
    assert_eq!(srv.count("PATCH", "/api/v1/servers/"), 0);
    let show = o.show(&run_id(&last));
    assert!(step_names(&show, "completed").iter().any(|s| s == "terraform.apply"), "{show:#}");

    // The cluster is fixed: `orchc retry` goes on from the release, without Terraform again.
    o.env.pop();
    let applies = o.terraform_calls().iter().filter(|(a, _)| a[0] == "apply").count();
    let last = assert_completed(&o.orchc(&["retry", &run_id(&last), "--json"]));
    assert_eq!(o.terraform_calls().iter().filter(|(a, _)| a[0] == "apply").count(), applies);
    assert_eq!(last["outputs"]["url"], "https://shop.apps.example.com");
    let states = subscription_states(&o);
    assert!(states.iter().filter(|(p, _)| p == "App").all(|(_, s)| s == "completed"), "{states:?}");
    assert_eq!(states.iter().filter(|(_, s)| s == "completed").count(), 3, "{states:?}");
}

#[test]
fn platform_graph_orders_engines_by_the_data_they_pass() {
    let mut o = Orch::new();
    o.env.push(("ORCH_SECRET_PLATFORM_TOKEN".into(), standins::platform::TOKEN.into()));
    let (srv, state) = standins::platform::start(o.path("helm"), 2);
    let db_dir = o.copy_dir("examples/platform/database");
    let args = platform_args(&srv, &db_dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let last = assert_completed(&o.orchc(&args));
    let outputs = &last["outputs"];
    assert_eq!(outputs["url"], "https://shop.apps.example.com");

    // The database's address, computed by terraform apply, reached helm's values.
    let tf_out: Value = {
        let out = std::process::Command::new(repo().join("tests/fixtures/bin/terraform"))
            .args(["output", "-json", "address"])
            .current_dir(&db_dir)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let db_host = tf_out.as_str().unwrap();
    assert!(db_host.ends_with(".internal.example.com"));
    let helm = o.helm_calls();
    let upgrade = helm.iter().find(|a| a[0] == "upgrade").expect("helm upgrade ran");
    let sets = &upgrade[upgrade.iter().position(|a| a == "--set-string").unwrap() + 1];
    assert!(sets.contains(&format!("db_host={db_host}")) && sets.contains("db_port=5432"), "{sets}");
    for flag in ["--install", "--wait", "--atomic", "--namespace"] {
        assert!(upgrade.contains(&flag.to_string()), "helm upgrade lacks {flag}: {upgrade:?}");
    }
    // The DNS record points at the load balancer the Kubernetes API gave the release.
    let platform = state.lock().unwrap();
    let rrsets = &platform.zones["apps.example.com."];
    assert_eq!(rrsets.len(), 1);
    assert_eq!(rrsets[0]["name"], "shop.apps.example.com.");
    assert_eq!(rrsets[0]["records"][0]["content"], "shop-apps.lb.example.net.");
    assert!(platform.service_polls["apps/shop"] >= 3, "the load balancer was polled until it had a hostname");
    assert_eq!(platform.backup_policies["shop-db"]["host"], db_host);
    assert_eq!(platform.checks[0]["url"], "https://shop.apps.example.com/healthz");
    drop(platform);
    // Requests in data order: service polls, then DNS, then monitoring.
    let reqs = srv.requests();
    let first = |m: &str, p: &str| reqs.iter().position(|r| r.method == m && r.path.starts_with(p)).unwrap();
    assert!(first("GET", "/api/v1/namespaces/") < first("PATCH", "/api/v1/servers/"));
    assert!(first("PATCH", "/api/v1/servers/") < first("POST", "/v1/checks"));

    // Per-resource status: each resource is a completed subscription, and the run says so.
    let resources = strs(&outputs["resources"]);
    assert_eq!(resources.len(), 5);
    assert!(resources[0].starts_with("database shop-db (terraform): completed"), "{resources:?}");
    assert!(resources[1].starts_with("app shop (helm): completed, revision 1"), "{resources:?}");
    assert!(resources[2].contains("(powerdns): completed -> shop-apps.lb.example.net"), "{resources:?}");
    for key in ["database", "app", "dns_record"] {
        assert_eq!(sub_state(&o, &sub_id(&outputs[key])), "completed");
    }
}

// -------------------------------------------------------------------------------------------
// promotion: dev, staging, prod with gates, approval and automated rollback

struct Promo {
    o: Orch,
    app: standins::StandIn,
    state: std::sync::Arc<std::sync::Mutex<standins::promotion::App>>,
}

impl Promo {
    fn new() -> Promo {
        let o = Orch::new();
        let (app, state) = standins::promotion::start(o.path("helm"), "shop");
        Promo { o, app, state }
    }

    fn promote(&self, version: &str) -> standins::Outcome {
        let urls: Vec<String> =
            ["dev", "staging", "prod"].iter().map(|s| format!("{s}_url={}/{s}", self.app.url)).collect();
        let v = format!("version={version}");
        let mut args = vec!["run", "examples/promotion/promotion.orch", "-i", &v, "--json"];
        for u in &urls {
            args.push("--config");
            args.push(u);
        }
        self.o.orchc(&args)
    }

    fn approve(&self, run: &str) -> standins::Outcome {
        self.o.orchc(&["resume", run, "-i", "approved=true", "-i", "approver=carol", "--json"])
    }

    fn running(&self, stage: &str) -> Option<String> {
        self.state.lock().unwrap().running(stage)
    }
}

#[test]
fn promotion_goes_dev_staging_then_prod_after_approval() {
    let p = Promo::new();
    let out = p.promote("1.1.0");
    let last = out.last_json();
    assert_eq!(last["status"], "suspended", "{last}\n{}", out.stderr);
    assert_eq!(out.code, 3);
    assert_eq!(p.running("dev").as_deref(), Some("1.1.0"));
    assert_eq!(p.running("staging").as_deref(), Some("1.1.0"));
    assert_eq!(p.running("prod"), None, "nothing reaches prod before the approval");
    let last = assert_completed(&p.approve(&run_id(&last)));
    assert_eq!(last["outputs"]["prod_version"], "1.1.0");
    assert_eq!(last["outputs"]["prod_revision"], 1);
    assert_eq!(last["outputs"]["approved_by"], "carol");
    assert_eq!(p.running("prod").as_deref(), Some("1.1.0"));
    // Gates ran against each stage.
    for stage in ["dev", "staging", "prod"] {
        assert!(p.app.count("GET", &format!("/{stage}/version")) >= 1);
    }
    assert_eq!(p.app.count("GET", "/staging/metrics/summary"), 1);
}

#[test]
fn promotion_rolls_prod_back_when_the_health_check_fails() {
    let p = Promo::new();
    let last = p.promote("1.1.0").last_json();
    assert_completed(&p.approve(&run_id(&last)));
    // 1.2.0 crashes in prod only.
    p.state.lock().unwrap().broken.insert("1.2.0".into(), vec!["prod".into()]);
    let out = p.promote("1.2.0");
    assert_eq!(out.code, 3, "{out:?}");
    let run = run_id(&out.last_json());
    let last = assert_failed(&p.approve(&run));
    assert!(last["error"]["message"].as_str().unwrap().contains("503"), "{last}");
    // prod runs 1.1.0 again, through a helm rollback to revision 1; dev and staging keep 1.2.0.
    assert_eq!(p.running("prod").as_deref(), Some("1.1.0"));
    assert_eq!(p.running("staging").as_deref(), Some("1.2.0"));
    let rollbacks: Vec<Vec<String>> = p.o.helm_calls().into_iter().filter(|a| a[0] == "rollback").collect();
    assert_eq!(rollbacks.len(), 1);
    assert_eq!(&rollbacks[0][..3], ["rollback", "shop", "1"]);
    assert!(rollbacks[0].contains(&"shop-prod".to_string()));
    let show = p.o.show(&run);
    assert_eq!(show["status"], "failed");
    assert!(step_names(&show, "completed").iter().any(|s| s == "rollback_prod"), "{show:#}");
}

#[test]
fn promotion_of_a_first_release_that_fails_in_prod_uninstalls_it() {
    let p = Promo::new();
    p.state.lock().unwrap().broken.insert("1.0.0".into(), vec!["prod".into()]);
    let out = p.promote("1.0.0");
    assert_eq!(out.code, 3, "{out:?}");
    assert_failed(&p.approve(&run_id(&out.last_json())));
    assert_eq!(p.running("prod"), None, "nothing to roll back to: the release is uninstalled");
    let calls = p.o.helm_calls();
    let uninstall = calls.iter().find(|a| a[0] == "uninstall").expect("helm uninstall ran");
    assert!(uninstall.contains(&"shop-prod".to_string()) && uninstall.contains(&"--wait".to_string()));
    assert!(calls.iter().all(|a| a[0] != "rollback"));
    assert_eq!(p.running("staging").as_deref(), Some("1.0.0"));
}

#[test]
fn promotion_stops_at_the_error_budget_gate() {
    let p = Promo::new();
    p.state.lock().unwrap().error_rates.insert("staging".into(), 0.05);
    let last = assert_failed(&p.promote("1.3.0"));
    assert!(last["error"]["message"].as_str().unwrap().contains("error rate 0.05 is over the budget 0.01"), "{last}");
    assert_eq!(p.running("prod"), None);
    assert!(p.o.helm_calls().iter().all(|a| !a.contains(&"shop-prod".to_string())));
}
