//! The services of examples/platform on one server: the Kubernetes API (the LoadBalancer
//! service of each Helm release the fake `helm` installed, which gets its hostname after a few
//! polls), the PowerDNS HTTP API (zones with rrsets, PATCH with REPLACE/DELETE), a backup
//! service and a monitoring service.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::{check_bearer, helm_releases, Faults, Recorded, Reply, StandIn};

pub const TOKEN: &str = "platform-secret-token";

pub struct Platform {
    /// The fake helm's state directory: a service exists when its release is deployed.
    pub helm_state: PathBuf,
    /// GETs of a service before its load balancer has a hostname.
    pub lb_polls: usize,
    pub service_polls: BTreeMap<String, usize>,
    /// Zone name (with the final dot) -> rrsets.
    pub zones: BTreeMap<String, Vec<Value>>,
    pub backup_policies: BTreeMap<String, Value>,
    pub checks: Vec<Value>,
    pub faults: Faults,
}

impl Platform {
    fn handle(&mut self, r: &Recorded) -> Reply {
        if let Some(reply) = check_bearer(r, TOKEN).or_else(|| self.faults.check(r)) {
            return reply;
        }
        let seg = r.segments();
        match (r.method.as_str(), seg.as_slice()) {
            ("GET", ["api", "v1", "namespaces", ns, "services", name]) => {
                let releases = helm_releases(&self.helm_state);
                let deployed = releases[format!("{ns}/{name}")]
                    .as_array()
                    .is_some_and(|h| h.iter().any(|r| r["status"] == "deployed"));
                if !deployed {
                    return Reply::json(
                        404,
                        json!({ "kind": "Status", "status": "Failure", "reason": "NotFound",
                        "message": format!("services \"{name}\" not found"), "code": 404 }),
                    );
                }
                let polls = self.service_polls.entry(format!("{ns}/{name}")).or_insert(0);
                *polls += 1;
                let lb = if *polls > self.lb_polls {
                    json!({ "ingress": [{ "hostname": format!("{name}-{ns}.lb.example.net") }] })
                } else {
                    json!({})
                };
                Reply::ok(json!({ "kind": "Service", "apiVersion": "v1",
                    "metadata": { "name": name, "namespace": ns },
                    "spec": { "type": "LoadBalancer", "ports": [{ "port": 80, "targetPort": 8080 }] },
                    "status": { "loadBalancer": lb } }))
            }
            ("PATCH", ["api", "v1", "servers", "localhost", "zones", zone]) => {
                let Some(rrsets) = self.zones.get_mut(*zone) else {
                    return Reply::error(404, "Could not find domain");
                };
                for change in r.body["rrsets"].as_array().cloned().unwrap_or_default() {
                    let name = change["name"].as_str().unwrap_or("");
                    if !name.ends_with(zone) {
                        return Reply::error(422, &format!("RRset {name} is out of zone {zone}"));
                    }
                    rrsets.retain(|r| !(r["name"] == change["name"] && r["type"] == change["type"]));
                    match change["changetype"].as_str() {
                        Some("REPLACE") => {
                            let mut rrset = change.clone();
                            rrset.as_object_mut().unwrap().remove("changetype");
                            rrsets.push(rrset);
                        }
                        Some("DELETE") => {}
                        _ => return Reply::error(422, "changetype must be REPLACE or DELETE"),
                    }
                }
                Reply::no_content()
            }
            ("GET", ["api", "v1", "servers", "localhost", "zones", zone]) => match self.zones.get(*zone) {
                Some(rrsets) => Reply::ok(json!({ "name": zone, "kind": "Native", "rrsets": rrsets })),
                None => Reply::error(404, "Could not find domain"),
            },
            ("PUT", ["v1", "policies", name]) => {
                let mut policy = r.body.clone();
                policy["id"] = json!(format!("bkp-{name}"));
                self.backup_policies.insert(name.to_string(), policy.clone());
                Reply::ok(policy)
            }
            ("POST", ["v1", "checks"]) => {
                let id = format!("chk-{}", self.checks.len() + 1);
                let mut check = r.body.clone();
                check["id"] = json!(id);
                self.checks.push(check);
                Reply::json(201, json!({ "id": id }))
            }
            _ => Reply::not_found("route"),
        }
    }
}

/// Serves the zone `apps.example.com.` (empty) and reads releases from `helm_state`.
pub fn start(helm_state: PathBuf, lb_polls: usize) -> (StandIn, Arc<Mutex<Platform>>) {
    let state = Arc::new(Mutex::new(Platform {
        helm_state,
        lb_polls,
        service_polls: BTreeMap::new(),
        zones: [("apps.example.com.".to_string(), Vec::new())].into_iter().collect(),
        backup_policies: BTreeMap::new(),
        checks: Vec::new(),
        faults: Faults::default(),
    }));
    let s = state.clone();
    let server = StandIn::start(move |r| s.lock().unwrap().handle(r));
    (server, state)
}
