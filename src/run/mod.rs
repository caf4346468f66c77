//! The durable interpreter: executes the checked IR step by step, persisting every result.
//!
//! `start`, `resume`, `retry` and `abort` are what the commands (and the REPL) call. A run always
//! continues with the program stored with it; configs and secret names are stored too, secret
//! values never (they are read again from `ORCH_SECRET_<NAME>` or `--secret`).

pub mod committer;
pub mod engine;
pub mod error;
pub mod eval;
pub mod progress;
pub mod store;
pub mod value;
pub mod watchdog;

use crate::diagnostics::Code;
use crate::ir::{Program, Type};
use committer::Committer;
use engine::{Engine, Halt, State};
use error::RunError;
use eval::{Ctx, Locals};
use progress::Progress;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use store::{NewRun, RunRecord, Store};
use value::{parse_cli_value, Redactor};

/// What `orchc run` asks for.
pub struct RunRequest {
    pub program: Program,
    pub workflow: String,
    /// `-i KEY=VALUE`, unparsed.
    pub inputs: Vec<(String, String)>,
    /// `--inputs FILE.json`.
    pub inputs_json: Option<Value>,
    pub env: Option<String>,
    pub configs: Vec<(String, String)>,
    pub secrets: Vec<(String, String)>,
}

/// How a run stands when a command returns.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    pub run_id: String,
    pub status: String,
    pub outputs: Option<Value>,
    pub error: Option<Value>,
    /// For a suspended run: the input step and its prompt.
    pub waiting: Option<(String, Option<String>)>,
}

impl RunOutcome {
    pub fn to_json(&self) -> Value {
        json!({ "run_id": self.run_id, "status": self.status, "outputs": self.outputs, "error": self.error })
    }
}

/// Splits `KEY=VALUE`.
pub fn split_assignment(s: &str) -> Result<(String, String), RunError> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(RunError::Usage(format!("`{s}` is not KEY=VALUE"))),
    }
}

fn owner_id() -> String {
    format!("{}:{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// Whether the process that owns a run (`PID:token`) still runs on this machine.
fn owner_alive(owner: &str) -> bool {
    let Some(pid) = owner.split(':').next().and_then(|p| p.parse::<u32>().ok()) else { return true };
    if pid == std::process::id() {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses; `Z` is a zombie: dead.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => !std::path::Path::new("/proc").exists(),
    }
}

/// A run's heartbeat is stale after this long; its owner is then presumed dead.
const STALE_MS: i64 = 10_000;

/// The environment variable a secret is read from: `ORCH_SECRET_<NAME>`.
pub fn secret_var(name: &str) -> String {
    format!("ORCH_SECRET_{}", name.replace('.', "_").to_uppercase())
}

/// The values of the secrets `names`, from `--secret` or the environment. A missing one is an error
/// when `required` says it is needed, and is left out otherwise.
fn secret_values(
    names: &[String],
    given: &[(String, String)],
    required: impl Fn(&str) -> bool,
) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for name in names {
        let v = given
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(secret_var(name)).ok());
        match v {
            Some(v) => {
                out.insert(name.clone(), v);
            }
            None if !required(name) => {}
            None => {
                return Err(format!("secret `{name}` is not set: set {} or pass --secret {name}=...", secret_var(name)))
            }
        }
    }
    Ok(out)
}

fn new_ctx(
    program: Arc<Program>,
    run: Value,
    configs: HashMap<String, Value>,
    secrets: HashMap<String, String>,
    progress: &Arc<Progress>,
) -> Ctx {
    let redactor = Redactor::new(secrets.values().cloned());
    let p = progress.clone();
    Ctx {
        program,
        configs,
        secrets,
        redactor,
        run,
        http: reqwest::Client::builder().build().unwrap_or_default(),
        log: Arc::new(move |line| p.log(line)),
    }
}

/// Config values: defaults, then the environment's overrides, then `--config`.
async fn config_values(
    program: &Arc<Program>,
    env: Option<&str>,
    given: &[(String, String)],
) -> Result<HashMap<String, Value>, RunError> {
    let progress = Arc::new(Progress::new(false, true));
    let mut ctx = new_ctx(program.clone(), Value::Null, HashMap::new(), HashMap::new(), &progress);
    for (name, def) in &program.configs {
        let v = eval::eval(&ctx, &mut Locals::default(), &def.default)
            .await
            .map_err(|e| RunError::Usage(format!("config `{name}`: {}", e.message)))?;
        ctx.configs.insert(name.clone(), v);
    }
    if let Some(env) = env {
        let Some(def) = program.environments.get(env) else {
            let known: Vec<&str> = program.environments.keys().map(String::as_str).collect();
            return Err(RunError::Usage(format!(
                "there is no environment `{env}` (known: {})",
                if known.is_empty() { "none".into() } else { known.join(", ") }
            )));
        };
        for (name, x) in &def.overrides {
            let v = eval::eval(&ctx, &mut Locals::default(), x)
                .await
                .map_err(|e| RunError::Usage(format!("environment `{env}`, `{name}`: {}", e.message)))?;
            ctx.configs.insert(name.clone(), v);
        }
    }
    for (name, text) in given {
        let Some(def) = program.configs.get(name) else {
            return Err(RunError::Config(Code::ConfigUnknown, format!("--config {name}: there is no config `{name}`")));
        };
        let v = parse_cli_value(text, &def.ty, program)
            .map_err(|e| RunError::Config(Code::ConfigType, format!("--config {name}: {e}")))?;
        ctx.configs.insert(name.clone(), v);
    }
    Ok(ctx.configs)
}

/// Parses the workflow's inputs by their types; product parameters take subscription ids.
fn parse_inputs(
    program: &Program,
    workflow: &str,
    req_inputs: &[(String, String)],
    json_inputs: Option<&Value>,
    store: &dyn Store,
) -> Result<(State, Vec<String>), RunError> {
    let wf = &program.workflows[workflow];
    let mut state = State::default();
    let mut subscriptions = vec![];
    for (k, _) in req_inputs {
        if !wf.params.iter().any(|p| &p.name == k) {
            return Err(RunError::Usage(format!(
                "workflow `{workflow}` has no parameter `{k}` (its parameters: {})",
                param_list(&wf.params)
            )));
        }
    }
    if let Some(Value::Object(o)) = json_inputs {
        if let Some(k) = o.keys().find(|k| !wf.params.iter().any(|p| &p.name == *k)) {
            return Err(RunError::Usage(format!("--inputs: workflow `{workflow}` has no parameter `{k}`")));
        }
    } else if json_inputs.is_some() {
        return Err(RunError::Usage("--inputs: the file must hold a JSON object".into()));
    }
    for p in &wf.params {
        let raw = req_inputs.iter().rev().find(|(k, _)| k == &p.name).map(|(_, v)| v.clone());
        let v = match (raw, json_inputs.and_then(|o| o.get(&p.name))) {
            (Some(text), _) => Some(
                parse_cli_value(&text, &p.ty, program)
                    .map_err(|e| RunError::Usage(format!("input `{}` ({}): {e}", p.name, p.ty)))?,
            ),
            (None, Some(j)) => Some(match &p.ty {
                Type::Product { .. } => j.clone(),
                ty => value::conform(j, ty, program)
                    .map_err(|e| RunError::Usage(format!("input `{}` ({}): {e}", p.name, p.ty)))?,
            }),
            (None, None) => None,
        };
        let v = match (v, &p.default, &p.ty) {
            (Some(v), _, Type::Product { .. }) => {
                let id = v.as_str().unwrap_or_default().to_string();
                let rec = store.subscription(&id)?.ok_or_else(|| {
                    RunError::Subscription(format!("input `{}`: there is no subscription `{id}`", p.name))
                })?;
                let sub = value::conform(&rec.value, &p.ty, program)
                    .map_err(|e| RunError::Subscription(format!("input `{}`: subscription {}: {e}", p.name, rec.id)))?;
                subscriptions.push(rec.id.clone());
                sub
            }
            (Some(v), _, _) => v,
            (None, Some(_), _) => continue,
            (None, None, Type::Optional(_)) => Value::Null,
            (None, None, ty) => {
                return Err(RunError::Usage(format!("missing input `{}` ({ty}): give -i {}=...", p.name, p.name)))
            }
        };
        state.insert(p.name.clone(), v);
    }
    Ok((state, subscriptions))
}

fn param_list(params: &[crate::ir::Param]) -> String {
    if params.is_empty() {
        return "none".into();
    }
    params.iter().map(|p| format!("{}: {}", p.name, p.ty)).collect::<Vec<_>>().join(", ")
}

/// Starts a run: everything the request gives is checked before the run is stored.
pub async fn start(store: Arc<dyn Store>, req: RunRequest, progress: Arc<Progress>) -> Result<RunOutcome, RunError> {
    let program = Arc::new(req.program);
    let Some(wf) = program.workflows.get(&req.workflow) else {
        let known: Vec<&str> = program.workflows.keys().filter(|k| !k.contains('.')).map(String::as_str).collect();
        return Err(RunError::Usage(format!(
            "there is no workflow `{}` (workflows: {})",
            req.workflow,
            known.join(", ")
        )));
    };
    let (mut state, subscriptions) =
        parse_inputs(&program, &req.workflow, &req.inputs, req.inputs_json.as_ref(), store.as_ref())?;
    let configs = config_values(&program, req.env.as_deref(), &req.configs).await?;
    for id in &subscriptions {
        if let Some(rec) = store.subscription(id)? {
            if let Some(holder) = rec.locked_by {
                return Err(RunError::Locked(format!("subscription {id} is locked by run {holder}")));
            }
        }
    }
    // Defaults are part of what the run was started with.
    {
        let progress = Arc::new(Progress::new(false, true));
        let ctx = new_ctx(program.clone(), Value::Null, configs.clone(), HashMap::new(), &progress);
        for p in &wf.params {
            if !state.contains_key(&p.name) {
                if let Some(d) = &p.default {
                    let v =
                        eval::eval(&ctx, &mut Locals::default(), d).await.map_err(|e| RunError::Usage(e.message))?;
                    state.insert(p.name.clone(), v);
                }
            }
        }
    }
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let owner = owner_id();
    let secret_names = program.secrets.clone();
    let secrets = secret_values(&secret_names, &req.secrets, |_| true);
    let redactor = Redactor::new(secrets.as_ref().map(|s| s.values().cloned().collect::<Vec<_>>()).unwrap_or_default());
    store.create_run(&NewRun {
        id: run_id.clone(),
        workflow: req.workflow.clone(),
        inputs: redactor.value(json!(state)),
        program: serde_json::to_string(program.as_ref()).expect("the program serializes"),
        program_hash: program.hash(),
        env: req.env.clone(),
        configs: redactor.value(json!(configs)),
        secret_names,
        owner: owner.clone(),
    })?;
    progress.about(&run_id, "running");
    for id in &subscriptions {
        if let Err(holder) = store.lock_subscription(id, &run_id)? {
            let error = json!({ "code": Code::RunSubscriptionLocked.as_str(), "message": format!("subscription {id} is locked by run {holder}") });
            // The locks taken so far go; the run is left failed and free for a later `retry`.
            store.release_locks(&run_id)?;
            store.end(&run_id, &owner, "failed", None, Some(&error), None)?;
            return Err(RunError::Locked(format!("subscription {id} is locked by run {holder}")));
        }
    }
    let secrets = match secrets {
        Ok(s) => s,
        Err(message) => {
            // A run that needs a missing secret fails before its first step.
            let error = json!({ "code": "orch::run::missing_secret", "message": message });
            store.end(&run_id, &owner, "failed", None, Some(&error), None)?;
            return Ok(RunOutcome {
                run_id,
                status: "failed".into(),
                outputs: None,
                error: Some(error),
                waiting: None,
            });
        }
    };
    let rec = store.run(&run_id)?.ok_or_else(|| RunError::Store("the run just stored is missing".into()))?;
    drive(store, rec, program, configs, secrets, owner, progress).await
}

fn load(store: &dyn Store, id: &str) -> Result<(RunRecord, Arc<Program>), RunError> {
    let rec = store.run(id)?.ok_or_else(|| RunError::NotFound(format!("there is no run `{id}`")))?;
    let program: Program = store::from_json(&rec.program)
        .map_err(|e| RunError::Store(format!("run {}: its stored program cannot be read: {e}", rec.id)))?;
    Ok((rec, Arc::new(program)))
}

fn stored_configs(rec: &RunRecord) -> HashMap<String, Value> {
    rec.configs.as_object().map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
}

/// Takes (again) the locks of the subscriptions the run's product parameters name, before
/// `resume` or `retry` lets it run: a run refused at its start, or one whose locks were released,
/// never runs on a subscription another run holds. Refused with `orch::run::subscription_locked`,
/// naming the holder; the locks this call took are then released again.
fn relock(store: &dyn Store, program: &Program, rec: &RunRecord) -> Result<(), RunError> {
    let Some(wf) = program.workflows.get(&rec.workflow) else { return Ok(()) };
    let ids: Vec<&str> = wf
        .params
        .iter()
        .filter(|p| matches!(p.ty, Type::Product { .. }))
        .filter_map(|p| rec.inputs.get(&p.name).and_then(|v| v.get("id")).and_then(Value::as_str))
        .collect();
    let mut held = false;
    for id in &ids {
        held |= store.subscription(id)?.and_then(|s| s.locked_by).as_deref() == Some(rec.id.as_str());
    }
    for id in &ids {
        if let Err(holder) = store.lock_subscription(id, &rec.id)? {
            if !held {
                store.release_locks(&rec.id)?;
            }
            return Err(RunError::Locked(format!("subscription {id} is locked by run {holder}")));
        }
    }
    Ok(())
}

/// Takes the run for this process and the locks of its subscriptions; the run is left as it was
/// when the locks cannot be had.
fn take(store: &dyn Store, program: &Program, rec: &RunRecord, owner: &str) -> Result<(), RunError> {
    claim(store, rec, owner)?;
    relock(store, program, rec).or_else(|e| {
        store.release(&rec.id, owner)?;
        Err(e)
    })
}

/// Takes the run for this process, if it is still as `rec` says (another command may have taken
/// or changed it since it was read).
fn claim(store: &dyn Store, rec: &RunRecord, owner: &str) -> Result<(), RunError> {
    match store.claim(&rec.id, owner, STALE_MS, &owner_alive, (&rec.status, rec.updated_ms))? {
        Ok(()) => Ok(()),
        Err(store::Refused::Changed(now)) => Err(RunError::Busy(format!(
            "run {} changed while this command was starting (it was {}, it is now {now}); nothing was done: look at it with `orchc show {}`",
            rec.id, rec.status, rec.id
        ))),
        Err(store::Refused::Owner(holder)) => Err(RunError::Busy(format!(
            "run {} is being driven by another orchc process ({}); wait for it to finish or stop it first",
            rec.id,
            holder.split(':').next().map(|p| format!("pid {p}")).unwrap_or(holder.clone())
        ))),
    }
}

/// Continues a suspended run with the values of its input step, or a run whose process died.
pub async fn resume(
    store: Arc<dyn Store>,
    id: &str,
    inputs: &[(String, String)],
    secrets: &[(String, String)],
    progress: Arc<Progress>,
) -> Result<RunOutcome, RunError> {
    let (rec, program) = load(store.as_ref(), id)?;
    match rec.status.as_str() {
        "completed" | "aborted" => {
            return Err(RunError::Usage(format!("run {} is {}; there is nothing to resume", rec.id, rec.status)))
        }
        "failed" => {
            return Err(RunError::Usage(format!(
                "run {} failed; continue it with `orchc retry {}` or end it with `orchc abort {}`",
                rec.id, rec.id, rec.id
            )))
        }
        _ => {}
    }
    let secret_map = secret_values(&rec.secret_names, secrets, |_| true).map_err(RunError::Usage)?;
    if rec.status == "suspended" {
        let path = rec.waiting.clone().unwrap_or_default();
        let mut step_name = String::new();
        store.each_step(&rec.id, &mut |s| {
            if s.path == path {
                step_name = s.step;
            }
            step_name.is_empty()
        })?;
        let Some(step) = program.steps.get(&step_name) else {
            return Err(RunError::Store(format!("run {} waits on `{path}`, which its program does not have", rec.id)));
        };
        let wanted = step.outputs.iter().map(|(k, t)| format!("{k} ({t})")).collect::<Vec<_>>().join(", ");
        if inputs.is_empty() {
            return Err(RunError::Usage(format!(
                "run {} waits for input step `{step_name}`: give -i KEY=VALUE for {wanted}",
                rec.id
            )));
        }
        let mut values = serde_json::Map::new();
        for (k, text) in inputs {
            let Some(ty) = step.outputs.get(k) else {
                return Err(RunError::Usage(format!(
                    "input step `{step_name}` has no output `{k}` (it needs {wanted}); the run stays suspended"
                )));
            };
            let v = parse_cli_value(text, ty, &program)
                .map_err(|e| RunError::Usage(format!("`{k}` ({ty}): {e}; the run stays suspended")))?;
            values.insert(k.clone(), v);
        }
        for (k, ty) in &step.outputs {
            if !values.contains_key(k) {
                if ty.is_optional() {
                    values.insert(k.clone(), Value::Null);
                } else {
                    return Err(RunError::Usage(format!(
                        "missing `{k}` ({ty}) for input step `{step_name}`; the run stays suspended"
                    )));
                }
            }
        }
        let owner = owner_id();
        take(store.as_ref(), &program, &rec, &owner)?;
        let redactor = Redactor::new(secret_map.values().cloned());
        store.give_input(&rec.id, &path, &redactor.value(Value::Object(values)))?;
        store.set_status(&rec.id, "running", None, None, None)?;
        let configs = stored_configs(&rec);
        return drive(store, rec, program, configs, secret_map, owner, progress).await;
    }
    if !inputs.is_empty() {
        return Err(RunError::Usage(format!("run {} is not waiting for input", rec.id)));
    }
    let owner = owner_id();
    take(store.as_ref(), &program, &rec, &owner)?;
    store.event(&rec.id, "run_resumed", &json!({ "reason": "its process stopped while it was running" }))?;
    progress.note(&format!("resuming run {} (its process stopped while it was running)", rec.id));
    let configs = stored_configs(&rec);
    drive(store, rec, program, configs, secret_map, owner, progress).await
}

/// Continues a failed run from the failed step (steps undone by compensation run again).
pub async fn retry(
    store: Arc<dyn Store>,
    id: &str,
    secrets: &[(String, String)],
    progress: Arc<Progress>,
) -> Result<RunOutcome, RunError> {
    let (rec, program) = load(store.as_ref(), id)?;
    if rec.status != "failed" {
        return Err(RunError::Usage(format!("run {} is {}; only a failed run can be retried", rec.id, rec.status)));
    }
    let secret_map = secret_values(&rec.secret_names, secrets, |_| true).map_err(RunError::Usage)?;
    let owner = owner_id();
    take(store.as_ref(), &program, &rec, &owner)?;
    store.set_status(&rec.id, "running", None, None, None)?;
    let configs = stored_configs(&rec);
    drive(store, rec, program, configs, secret_map, owner, progress).await
}

/// Runs the compensations still due and ends the run as `aborted`, releasing its subscriptions.
pub async fn abort(
    store: Arc<dyn Store>,
    id: &str,
    secrets: &[(String, String)],
    progress: Arc<Progress>,
) -> Result<RunOutcome, RunError> {
    let (rec, program) = load(store.as_ref(), id)?;
    if matches!(rec.status.as_str(), "completed" | "aborted") {
        return Err(RunError::Usage(format!("run {} is {}; there is nothing to abort", rec.id, rec.status)));
    }
    // Only the secrets that the compensations still due read must be given: an abort undoes what
    // was done and need not know what the rest of the workflow would have used. The others are
    // read when they are set, to hide their values all the same.
    let done = store.completed_steps(&rec.id)?;
    let needed: std::collections::BTreeSet<String> = store
        .compensations(&rec.id)?
        .into_iter()
        .filter(|(path, seq, _)| !done.contains_key(&engine::compensation_path(path, *seq)))
        .filter_map(|(_, _, comp)| comp["step"].as_str().and_then(|s| program.steps.get(s)).map(|s| s.secrets()))
        .flatten()
        .collect();
    let secret_map =
        secret_values(&rec.secret_names, secrets, |name| needed.contains(name)).map_err(RunError::Usage)?;
    let owner = owner_id();
    claim(store.as_ref(), &rec, &owner)?;
    // Until the compensations are done, the run keeps the status it had.
    progress.about(&rec.id, &rec.status);
    let ctx = new_ctx(program.clone(), run_value(&rec), stored_configs(&rec), secret_map, &progress);
    let engine = Engine {
        ctx: Arc::new(ctx),
        committer: Committer::new(store.clone(), rec.id.clone(), owner.clone()),
        done,
        tried: store.attempt_counts(&rec.id)?,
        store: store.clone(),
        run_id: rec.id.clone(),
        progress,
    };
    let failures = match engine.compensate().await {
        Ok(f) => f,
        Err(Halt::Store(e)) => return Err(RunError::Store(e)),
        Err(_) => vec![],
    };
    // The run's own error stays; compensations that failed are added to it.
    let error = if failures.is_empty() {
        rec.error.clone()
    } else {
        let mut error = rec.error.clone().unwrap_or_else(|| json!({ "code": null, "message": "aborted" }));
        error["compensation_failures"] =
            json!(failures.iter().map(|f| json!({"step": f.step, "message": f.error.message})).collect::<Vec<_>>());
        Some(error)
    };
    store.end(&rec.id, &owner, "aborted", None, error.as_ref(), None)?;
    Ok(RunOutcome { run_id: rec.id, status: "aborted".into(), outputs: None, error, waiting: None })
}

fn run_value(rec: &RunRecord) -> Value {
    json!({ "id": rec.id, "workflow": rec.workflow, "env": rec.env.clone().unwrap_or_default() })
}

/// Runs (or continues) a run's workflow from its stored inputs; completed steps are not run again.
async fn drive(
    store: Arc<dyn Store>,
    rec: RunRecord,
    program: Arc<Program>,
    configs: HashMap<String, Value>,
    secrets: HashMap<String, String>,
    owner: String,
    progress: Arc<Progress>,
) -> Result<RunOutcome, RunError> {
    progress.about(&rec.id, "running");
    let wf = program
        .workflows
        .get(&rec.workflow)
        .cloned()
        .ok_or_else(|| RunError::Store(format!("run {}: no workflow `{}`", rec.id, rec.workflow)))?;
    let ctx = Arc::new(new_ctx(program.clone(), run_value(&rec), configs, secrets, &progress));
    let engine = Engine {
        ctx: ctx.clone(),
        committer: Committer::new(store.clone(), rec.id.clone(), owner.clone()),
        done: store.completed_steps(&rec.id)?,
        tried: store.attempt_counts(&rec.id)?,
        store: store.clone(),
        run_id: rec.id.clone(),
        progress: progress.clone(),
    };
    let mut state: State =
        rec.inputs.as_object().map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
    let mut pending = engine::Pending::new();
    let result = engine.flow(&wf.flow, "", &mut state, &mut pending).await;
    // Every completion is on disk before the run's outcome is recorded.
    let result = engine::both(result, engine::settle(&mut pending).await);
    let outcome = match result {
        Ok(()) => {
            let outputs: serde_json::Map<String, Value> =
                wf.outputs.keys().map(|k| (k.clone(), state.get(k).cloned().unwrap_or(Value::Null))).collect();
            let outputs = ctx.redactor.value(Value::Object(outputs));
            store.end(&rec.id, &owner, "completed", Some(&outputs), None, None)?;
            RunOutcome {
                run_id: rec.id.clone(),
                status: "completed".into(),
                outputs: Some(outputs),
                error: None,
                waiting: None,
            }
        }
        Err(Halt::Suspended { path, step, prompt }) => {
            store.end(&rec.id, &owner, "suspended", None, None, Some(&path))?;
            RunOutcome {
                run_id: rec.id.clone(),
                status: "suspended".into(),
                outputs: None,
                error: None,
                waiting: Some((step, prompt)),
            }
        }
        Err(Halt::Failed(f)) => {
            let mut error = json!({
                "code": f.error.code.map(|c| c.as_str()),
                "message": f.error.message,
                "step": f.step,
                "path": f.path,
                "attempt": f.attempt,
            });
            if let Some(loc) = f.error.loc {
                error["file"] = json!(program.files.get(loc.file as usize).map(|s| s.name.clone()));
                error["line"] = json!(loc.line);
            }
            let error = ctx.redactor.value(error);
            store.set_status(&rec.id, "failed", None, Some(&error), None)?;
            match engine.compensate().await {
                Ok(failures) if !failures.is_empty() => {
                    let detail = json!(failures
                        .iter()
                        .map(|f| json!({"step": f.step, "message": f.error.message}))
                        .collect::<Vec<_>>());
                    store.event(&rec.id, "compensation_failed", &detail)?;
                }
                Ok(_) => {}
                Err(Halt::Store(e)) => return Err(RunError::Store(e)),
                Err(_) => {}
            }
            store.release(&rec.id, &owner)?;
            RunOutcome {
                run_id: rec.id.clone(),
                status: "failed".into(),
                outputs: None,
                error: Some(error),
                waiting: None,
            }
        }
        Err(Halt::Store(e)) => return Err(RunError::Store(e)),
    };
    Ok(outcome)
}
