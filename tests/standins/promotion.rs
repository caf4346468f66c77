//! The application of examples/promotion, in three stages on one server: `/STAGE/healthz`,
//! `/STAGE/version` and `/STAGE/metrics/summary`. What a stage runs is what the fake `helm`
//! deployed in its namespace (`shop-STAGE`): the `image_tag` of the release's deployed
//! revision. A version listed in `broken` answers 503 on /healthz in the stages listed for it,
//! as a release that crashes on start.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::{helm_releases, Faults, Recorded, Reply, StandIn};

pub struct App {
    pub helm_state: PathBuf,
    pub release: String,
    /// Version -> stages in which it is unhealthy.
    pub broken: BTreeMap<String, Vec<String>>,
    /// Stage -> error rate reported by /metrics/summary.
    pub error_rates: BTreeMap<String, f64>,
    pub faults: Faults,
}

impl App {
    /// The version the stage runs, from the fake helm's releases.
    pub fn running(&self, stage: &str) -> Option<String> {
        let releases = helm_releases(&self.helm_state);
        let history = releases[format!("shop-{stage}/{}", self.release)].as_array()?.clone();
        history
            .iter()
            .rev()
            .find(|r| r["status"] == "deployed")
            .and_then(|r| r["values"]["image_tag"].as_str().map(str::to_string))
    }

    fn handle(&mut self, r: &Recorded) -> Reply {
        if let Some(reply) = self.faults.check(r) {
            return reply;
        }
        let seg = r.segments();
        let (Some(stage), rest) = (seg.first(), &seg[1.min(seg.len())..]) else {
            return Reply::not_found("route");
        };
        let Some(version) = self.running(stage) else {
            return Reply::error(503, "no release deployed: no healthy upstream");
        };
        let broken = self.broken.get(&version).is_some_and(|stages| stages.iter().any(|s| s == stage));
        match (r.method.as_str(), rest) {
            ("GET", ["healthz"]) if broken => Reply::json(503, json!({ "status": "failing", "version": version })),
            ("GET", ["healthz"]) => Reply::ok(json!({ "status": "ok" })),
            ("GET", ["version"]) => Reply::ok(json!({ "version": version })),
            ("GET", ["metrics", "summary"]) => {
                Reply::ok(json!({ "error_rate": self.error_rates.get(*stage).copied().unwrap_or(0.0), "window": "1h" }))
            }
            _ => Reply::not_found("route"),
        }
    }
}

pub fn start(helm_state: PathBuf, release: &str) -> (StandIn, Arc<Mutex<App>>) {
    let state = Arc::new(Mutex::new(App {
        helm_state,
        release: release.to_string(),
        broken: BTreeMap::new(),
        error_rates: BTreeMap::new(),
        faults: Faults::default(),
    }));
    let s = state.clone();
    let server = StandIn::start(move |r| s.lock().unwrap().handle(r));
    (server, state)
}
