//! A small Neutron/Nova-like cloud for examples/openstack: networks, subnets, routers with
//! interfaces, and servers that go BUILD -> ACTIVE (or ERROR) as they are polled. It refuses
//! what OpenStack refuses: 403 "Quota exceeded for instances" past the instance quota, 409 when
//! deleting a network with subnets, a subnet with a router interface, or a router with
//! interfaces. Failures (503s) can be injected per path.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::{check_bearer, Faults, Recorded, Reply, StandIn};

pub const TOKEN: &str = "os-secret-token";

pub struct Server {
    pub id: String,
    pub name: String,
    pub network_id: String,
    pub flavor: String,
    pub image: String,
    pub ip: String,
    pub status: String,
    pub polls: usize,
}

pub struct Cloud {
    pub networks: BTreeMap<String, Value>,
    pub subnets: BTreeMap<String, Value>,
    pub routers: BTreeMap<String, Value>,
    pub servers: BTreeMap<String, Server>,
    /// Most servers that may exist at once.
    pub instance_quota: usize,
    /// GETs of a new server that answer BUILD before it is ACTIVE.
    pub build_polls: usize,
    /// Names of servers that go to ERROR instead of ACTIVE.
    pub error_servers: Vec<String>,
    pub faults: Faults,
    next: u32,
    next_ip: u32,
}

impl Cloud {
    fn id(&mut self, kind: &str) -> String {
        self.next += 1;
        format!("{kind}-{:04}", self.next)
    }

    fn handle(&mut self, r: &Recorded) -> Reply {
        if let Some(reply) = check_bearer(r, TOKEN).or_else(|| self.faults.check(r)) {
            return reply;
        }
        let seg = r.segments();
        match (r.method.as_str(), seg.as_slice()) {
            ("POST", ["v2.0", "networks"]) => {
                let id = self.id("net");
                let mut net = r.body["network"].clone();
                if net["name"].as_str().is_none() {
                    return Reply::error(400, "network.name is required");
                }
                net["id"] = json!(id);
                net["status"] = json!("ACTIVE");
                net["subnets"] = json!([]);
                self.networks.insert(id, net.clone());
                Reply::json(201, json!({ "network": net }))
            }
            ("DELETE", ["v2.0", "networks", id]) => {
                let Some(net) = self.networks.get(*id) else { return Reply::not_found("network") };
                if !net["subnets"].as_array().unwrap().is_empty() || self.servers.values().any(|s| s.network_id == *id)
                {
                    return Reply::error(409, "NetworkInUse: there are one or more ports still in use on the network");
                }
                self.networks.remove(*id);
                Reply::no_content()
            }
            ("POST", ["v2.0", "subnets"]) => {
                let sub = r.body["subnet"].clone();
                let net_id = sub["network_id"].as_str().unwrap_or("").to_string();
                if !self.networks.contains_key(&net_id) {
                    return Reply::not_found("network");
                }
                if sub["cidr"].as_str().is_none() || sub["ip_version"] != 4 {
                    return Reply::error(400, "cidr and ip_version 4 are required");
                }
                let id = self.id("subnet");
                let mut sub = sub;
                sub["id"] = json!(id);
                self.networks.get_mut(&net_id).unwrap()["subnets"].as_array_mut().unwrap().push(json!(id));
                self.subnets.insert(id, sub.clone());
                Reply::json(201, json!({ "subnet": sub }))
            }
            ("DELETE", ["v2.0", "subnets", id]) => {
                if !self.subnets.contains_key(*id) {
                    return Reply::not_found("subnet");
                }
                if self.routers.values().any(|r| r["interfaces"].as_array().unwrap().contains(&json!(id))) {
                    return Reply::error(409, "SubnetInUse: a router interface is on the subnet");
                }
                let sub = self.subnets.remove(*id).unwrap();
                if let Some(net) = self.networks.get_mut(sub["network_id"].as_str().unwrap()) {
                    net["subnets"].as_array_mut().unwrap().retain(|s| s != id);
                }
                Reply::no_content()
            }
            ("POST", ["v2.0", "routers"]) => {
                let id = self.id("router");
                let mut router = r.body["router"].clone();
                router["id"] = json!(id);
                router["status"] = json!("ACTIVE");
                router["interfaces"] = json!([]);
                self.routers.insert(id, router.clone());
                Reply::json(201, json!({ "router": router }))
            }
            ("PUT", ["v2.0", "routers", id, action]) => {
                let subnet = r.body["subnet_id"].as_str().unwrap_or("").to_string();
                if !self.subnets.contains_key(&subnet) {
                    return Reply::not_found("subnet");
                }
                let Some(router) = self.routers.get_mut(*id) else { return Reply::not_found("router") };
                let interfaces = router["interfaces"].as_array_mut().unwrap();
                match *action {
                    "add_router_interface" => {
                        if !interfaces.contains(&json!(subnet)) {
                            interfaces.push(json!(subnet));
                        }
                    }
                    "remove_router_interface" => {
                        if !interfaces.contains(&json!(subnet)) {
                            return Reply::not_found("router interface");
                        }
                        interfaces.retain(|s| *s != json!(subnet));
                    }
                    _ => return Reply::not_found("route"),
                }
                Reply::ok(json!({ "id": id, "subnet_id": subnet }))
            }
            ("DELETE", ["v2.0", "routers", id]) => {
                let Some(router) = self.routers.get(*id) else { return Reply::not_found("router") };
                if !router["interfaces"].as_array().unwrap().is_empty() {
                    return Reply::error(409, "RouterInUse: the router still has ports");
                }
                self.routers.remove(*id);
                Reply::no_content()
            }
            ("POST", ["v2.1", "servers"]) => {
                let s = &r.body["server"];
                let (Some(name), Some(flavor), Some(image)) =
                    (s["name"].as_str(), s["flavorRef"].as_str(), s["imageRef"].as_str())
                else {
                    return Reply::error(400, "name, flavorRef and imageRef are required");
                };
                let net = s["networks"][0]["uuid"].as_str().unwrap_or("").to_string();
                if !self.networks.contains_key(&net) {
                    return Reply::error(400, "Network could not be found");
                }
                if self.servers.len() >= self.instance_quota {
                    return Reply::json(
                        403,
                        json!({ "forbidden": { "code": 403, "message": format!(
                            "Quota exceeded for instances: Requested 1, but already used {} of {} instances",
                            self.servers.len(), self.instance_quota) } }),
                    );
                }
                let id = self.id("server");
                self.next_ip += 1;
                let subnet_cidr = self
                    .subnets
                    .values()
                    .find(|sub| sub["network_id"] == json!(net))
                    .and_then(|sub| sub["cidr"].as_str())
                    .unwrap_or("10.0.0.0/24")
                    .to_string();
                let base = subnet_cidr.rsplit_once('.').map(|(b, _)| b.to_string()).unwrap_or_default();
                let server = Server {
                    id: id.clone(),
                    name: name.to_string(),
                    network_id: net,
                    flavor: flavor.to_string(),
                    image: image.to_string(),
                    ip: format!("{base}.{}", 10 + self.next_ip),
                    status: "BUILD".to_string(),
                    polls: 0,
                };
                self.servers.insert(id.clone(), server);
                Reply::json(202, json!({ "server": { "id": id, "links": [] } }))
            }
            ("GET", ["v2.1", "servers", id]) => {
                let (build_polls, errors) = (self.build_polls, self.error_servers.clone());
                let Some(s) = self.servers.get_mut(*id) else { return Reply::not_found("server") };
                s.polls += 1;
                if s.status == "BUILD" && s.polls > build_polls {
                    s.status = if errors.contains(&s.name) { "ERROR".into() } else { "ACTIVE".into() };
                }
                let net_name = self.networks.get(&s.network_id).map(|n| n["name"].as_str().unwrap().to_string());
                let addresses = match (&net_name, s.status.as_str()) {
                    (Some(n), "ACTIVE") => json!({ n.clone(): [{ "addr": s.ip, "version": 4 }] }),
                    _ => json!({}),
                };
                let mut body = json!({ "id": s.id, "name": s.name, "status": s.status,
                                       "flavor": { "id": s.flavor }, "image": { "id": s.image },
                                       "addresses": addresses });
                if s.status == "ERROR" {
                    body["fault"] = json!({ "code": 500, "message": "No valid host was found." });
                }
                Reply::ok(json!({ "server": body }))
            }
            ("DELETE", ["v2.1", "servers", id]) => match self.servers.remove(*id) {
                Some(_) => Reply::no_content(),
                None => Reply::not_found("server"),
            },
            _ => Reply::not_found("route"),
        }
    }
}

pub fn start(instance_quota: usize, build_polls: usize) -> (StandIn, Arc<Mutex<Cloud>>) {
    let state = Arc::new(Mutex::new(Cloud {
        networks: BTreeMap::new(),
        subnets: BTreeMap::new(),
        routers: BTreeMap::new(),
        servers: BTreeMap::new(),
        instance_quota,
        build_polls,
        error_servers: Vec::new(),
        faults: Faults::default(),
        next: 0,
        next_ip: 0,
    }));
    let s = state.clone();
    let server = StandIn::start(move |r| s.lock().unwrap().handle(r));
    (server, state)
}
