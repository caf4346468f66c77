//! The inventory/IPAM service of examples/network: nodes, ports and links, loopback addresses
//! and point-to-point prefixes, with the refusals a real inventory makes (a node with ports
//! cannot be deleted, a port in a link cannot be deleted, a retried create with the same
//! `client_token` is not applied twice).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::{check_bearer, Faults, Recorded, Reply, StandIn};

pub const TOKEN: &str = "inventory-secret-token";

#[derive(Default)]
pub struct Inventory {
    pub nodes: BTreeMap<i64, Value>,
    pub ports: BTreeMap<i64, Value>,
    pub links: BTreeMap<i64, Value>,
    /// Loopback address -> inventory node id.
    pub loopbacks: BTreeMap<String, i64>,
    pub prefixes: BTreeMap<i64, Value>,
    pub faults: Faults,
    next_id: i64,
    next_loopback: u32,
    next_prefix: u32,
    /// client_token -> the answer given the first time.
    tokens: BTreeMap<String, Value>,
}

impl Inventory {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn handle(&mut self, r: &Recorded) -> Reply {
        if let Some(reply) = check_bearer(r, TOKEN).or_else(|| self.faults.check(r)) {
            return reply;
        }
        if r.method == "POST" {
            if let Some(token) = r.body.get("client_token").and_then(Value::as_str) {
                if let Some(first) = self.tokens.get(token) {
                    return Reply::json(201, first.clone());
                }
            }
        }
        let reply = self.route(r);
        if r.method == "POST" && reply.status == 201 {
            if let Some(token) = r.body.get("client_token").and_then(Value::as_str) {
                self.tokens.insert(token.to_string(), reply.body.clone());
            }
        }
        reply
    }

    fn route(&mut self, r: &Recorded) -> Reply {
        let seg = r.segments();
        let id = |i: usize| seg.get(i).and_then(|s| s.parse::<i64>().ok()).unwrap_or(-1);
        match (r.method.as_str(), seg.as_slice()) {
            ("POST", ["api", "nodes"]) => {
                let name = r.body["name"].as_str().unwrap_or("");
                if name.is_empty() || r.body["role"].as_str().is_none() {
                    return Reply::error(422, "name and role are required");
                }
                if self.nodes.values().any(|n| n["name"] == name) {
                    return Reply::error(409, "a node with this name exists");
                }
                let id = self.id();
                let mut node = r.body.clone();
                node["id"] = json!(id);
                node["status"] = json!("planned");
                node.as_object_mut().unwrap().remove("client_token");
                self.nodes.insert(id, node.clone());
                Reply::json(201, node)
            }
            ("GET", ["api", "nodes", _]) => match self.nodes.get(&id(2)) {
                Some(n) => Reply::ok(n.clone()),
                None => Reply::not_found("node"),
            },
            ("PATCH", ["api", "nodes", _]) => match self.nodes.get_mut(&id(2)) {
                Some(n) => {
                    merge(n, &r.body);
                    Reply::ok(n.clone())
                }
                None => Reply::not_found("node"),
            },
            ("DELETE", ["api", "nodes", _]) => {
                let nid = id(2);
                if !self.nodes.contains_key(&nid) {
                    return Reply::not_found("node");
                }
                if self.ports.values().any(|p| p["node"] == nid) {
                    return Reply::error(409, "the node still has ports");
                }
                self.nodes.remove(&nid);
                Reply::no_content()
            }
            ("POST", ["api", "ipam", "loopbacks"]) => {
                let node = r.body["node"].as_i64().unwrap_or(-1);
                if !self.nodes.contains_key(&node) {
                    return Reply::error(422, "unknown node");
                }
                self.next_loopback += 1;
                let address = format!("10.255.0.{}", self.next_loopback);
                self.loopbacks.insert(address.clone(), node);
                Reply::json(201, json!({ "address": address, "node": node }))
            }
            ("DELETE", ["api", "ipam", "loopbacks", addr]) => match self.loopbacks.remove(*addr) {
                Some(_) => Reply::no_content(),
                None => Reply::not_found("loopback"),
            },
            ("POST", ["api", "ports"]) => {
                let node = r.body["node"].as_i64().unwrap_or(-1);
                if !self.nodes.contains_key(&node) {
                    return Reply::error(422, "unknown node");
                }
                let id = self.id();
                let mut port = r.body.clone();
                port["id"] = json!(id);
                port["status"] = json!("planned");
                port.as_object_mut().unwrap().remove("client_token");
                self.ports.insert(id, port.clone());
                Reply::json(201, port)
            }
            ("PATCH", ["api", "ports", _]) => match self.ports.get_mut(&id(2)) {
                Some(p) => {
                    merge(p, &r.body);
                    Reply::ok(p.clone())
                }
                None => Reply::not_found("port"),
            },
            ("DELETE", ["api", "ports", _]) => {
                let pid = id(2);
                if !self.ports.contains_key(&pid) {
                    return Reply::not_found("port");
                }
                if self.links.values().any(|l| l["a_port"] == pid || l["b_port"] == pid) {
                    return Reply::error(409, "the port is part of a link");
                }
                self.ports.remove(&pid);
                Reply::no_content()
            }
            ("POST", ["api", "ipam", "prefixes"]) => {
                if r.body["length"] != 31 {
                    return Reply::error(422, "only /31 point-to-point prefixes");
                }
                let id = self.id();
                let base = self.next_prefix * 2;
                self.next_prefix += 1;
                let prefix = json!({
                    "id": id,
                    "prefix": format!("10.0.0.{base}/31"),
                    "addresses": [format!("10.0.0.{base}"), format!("10.0.0.{}", base + 1)],
                    "subscription": r.body["subscription"],
                });
                self.prefixes.insert(id, prefix.clone());
                Reply::json(201, prefix)
            }
            ("DELETE", ["api", "ipam", "prefixes", _]) => match self.prefixes.remove(&id(3)) {
                Some(_) => Reply::no_content(),
                None => Reply::not_found("prefix"),
            },
            ("POST", ["api", "links"]) => {
                let (a, b) = (r.body["a_port"].as_i64().unwrap_or(-1), r.body["b_port"].as_i64().unwrap_or(-1));
                if !self.ports.contains_key(&a) || !self.ports.contains_key(&b) {
                    return Reply::error(422, "unknown port");
                }
                if !self.prefixes.values().any(|p| p["prefix"] == r.body["prefix"]) {
                    return Reply::error(422, "the prefix is not allocated");
                }
                let id = self.id();
                let mut link = r.body.clone();
                link["id"] = json!(id);
                link.as_object_mut().unwrap().remove("client_token");
                self.links.insert(id, link.clone());
                Reply::json(201, link)
            }
            ("PATCH", ["api", "links", _]) => match self.links.get_mut(&id(2)) {
                Some(l) => {
                    merge(l, &r.body);
                    Reply::ok(l.clone())
                }
                None => Reply::not_found("link"),
            },
            ("DELETE", ["api", "links", _]) => match self.links.remove(&id(2)) {
                Some(_) => Reply::no_content(),
                None => Reply::not_found("link"),
            },
            _ => Reply::not_found("route"),
        }
    }
}

fn merge(target: &mut Value, patch: &Value) {
    if let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            t.insert(k.clone(), v.clone());
        }
    }
}

pub fn start() -> (StandIn, Arc<Mutex<Inventory>>) {
    let state = Arc::new(Mutex::new(Inventory::default()));
    let s = state.clone();
    let server = StandIn::start(move |r| s.lock().unwrap().handle(r));
    (server, state)
}
