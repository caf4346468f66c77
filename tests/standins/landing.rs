//! The cloud API of examples/landing_zone: an account registry with the networks of each
//! account, a policy engine, account tags, a CMDB and notifications.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::{check_bearer, Faults, Recorded, Reply, StandIn};

pub const TOKEN: &str = "cloud-secret-token";

pub struct Landing {
    /// Account id -> (name, stage).
    pub accounts: BTreeMap<String, (String, String)>,
    /// Account id -> CIDR blocks in use.
    pub networks: BTreeMap<String, Vec<String>>,
    pub allowed_regions: Vec<String>,
    /// Stage -> the most a landing zone may cost per month.
    pub budget_limits: BTreeMap<String, i64>,
    pub tags: BTreeMap<String, Value>,
    pub cmdb: Vec<Value>,
    pub notifications: Vec<Value>,
    pub faults: Faults,
}

impl Landing {
    fn handle(&mut self, r: &Recorded) -> Reply {
        if let Some(reply) = check_bearer(r, TOKEN).or_else(|| self.faults.check(r)) {
            return reply;
        }
        let seg = r.segments();
        match (r.method.as_str(), seg.as_slice()) {
            ("GET", ["v1", "accounts"]) => {
                let name = r.query.strip_prefix("name=").unwrap_or("");
                let found: Vec<Value> = self
                    .accounts
                    .iter()
                    .filter(|(_, (n, _))| n == name)
                    .map(|(id, (n, s))| json!({ "id": id, "name": n, "stage": s }))
                    .collect();
                Reply::ok(json!({ "accounts": found }))
            }
            ("GET", ["v1", "accounts", id, "networks"]) => match self.networks.get(*id) {
                Some(cidrs) => Reply::ok(json!({ "networks": cidrs.iter().enumerate()
                    .map(|(i, c)| json!({ "id": format!("net-{i}"), "cidr": c })).collect::<Vec<_>>() })),
                None => Reply::not_found("account"),
            },
            ("POST", ["v1", "policies", "evaluate"]) => {
                let b = &r.body;
                let mut violations = Vec::new();
                let mut warnings = Vec::new();
                let region = b["region"].as_str().unwrap_or("");
                if !self.allowed_regions.iter().any(|a| a == region) {
                    violations.push(
                        json!({ "rule": "allowed-regions", "message": format!("{region} is not an allowed region") }),
                    );
                }
                let stage = b["stage"].as_str().unwrap_or("");
                let limit = self.budget_limits.get(stage).copied().unwrap_or(0);
                let budget = b["budget_eur"].as_i64().unwrap_or(i64::MAX);
                if budget > limit {
                    violations.push(json!({ "rule": "budget", "message": format!("{budget} EUR is over the {stage} limit of {limit} EUR") }));
                } else if budget * 10 > limit * 8 {
                    warnings.push(json!(format!("budget {budget} EUR is over 80% of the {stage} limit")));
                }
                if b["tags"]["owner"].as_str().unwrap_or("").is_empty() {
                    violations.push(json!({ "rule": "owner-tag", "message": "every landing zone needs an owner tag" }));
                }
                if b["blueprint"] != "baseline" {
                    violations.push(json!({ "rule": "approved-blueprints", "message": format!("blueprint {} is not approved", b["blueprint"]) }));
                }
                Reply::ok(json!({ "violations": violations, "warnings": warnings }))
            }
            ("PUT", ["v1", "accounts", id, "tags"]) => {
                if !self.accounts.contains_key(*id) {
                    return Reply::not_found("account");
                }
                self.tags.insert(id.to_string(), r.body.clone());
                Reply::ok(r.body.clone())
            }
            ("POST", ["v1", "cmdb", "records"]) => {
                let id = format!("CMDB-{:04}", self.cmdb.len() + 1);
                let mut record = r.body.clone();
                record["id"] = json!(id);
                self.cmdb.push(record);
                Reply::json(201, json!({ "id": id }))
            }
            ("POST", ["v1", "notifications"]) => {
                self.notifications.push(r.body.clone());
                Reply::json(202, json!({ "queued": true }))
            }
            _ => Reply::not_found("route"),
        }
    }
}

/// The registry holds `payments-dev`, `payments-test` and `payments-prod`, each with one
/// network already (10.99.0.0/16).
pub fn start() -> (StandIn, Arc<Mutex<Landing>>) {
    let mut accounts = BTreeMap::new();
    let mut networks = BTreeMap::new();
    for (i, stage) in ["dev", "test", "prod"].iter().enumerate() {
        let id = format!("{n}0000000{n}", n = i + 1);
        accounts.insert(id.clone(), (format!("payments-{stage}"), stage.to_string()));
        networks.insert(id, vec!["10.99.0.0/16".to_string()]);
    }
    let state = Arc::new(Mutex::new(Landing {
        accounts,
        networks,
        allowed_regions: vec!["eu-west-1".into(), "eu-central-1".into()],
        budget_limits: [("dev", 1000), ("test", 2000), ("prod", 10000)]
            .iter()
            .map(|(s, l)| (s.to_string(), *l))
            .collect(),
        tags: BTreeMap::new(),
        cmdb: Vec::new(),
        notifications: Vec::new(),
        faults: Faults::default(),
    }));
    let s = state.clone();
    let server = StandIn::start(move |r| s.lock().unwrap().handle(r));
    (server, state)
}
