//! Walks a workflow's flow, running each step with its retries, timeout and polling, and
//! persisting every step's result before anything that depends on it starts.
//!
//! Every step execution is stored under a path: the call's stable id, prefixed by the ids of the
//! enclosing workflow calls and `for` iterations (`provision@4/for2[3]/patch@6`). On resume, a path
//! with a completed execution is not run again: its stored outputs are used.

use super::committer::{Committer, Receipt};
use super::error::StepError;
use super::eval::{self, Ctx, Locals};
use super::progress::Progress;
use super::store::{StepWrite, Store};
use crate::diagnostics::Code;
use crate::ir::{ArgSource, Call, CallTarget, Flow, Param, StepDef, StepKind, Type};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use indexmap::IndexMap;
use serde_json::{json, Value};
use std::sync::Arc;

pub type State = IndexMap<String, Value, foldhash::fast::RandomState>;

/// Why a flow stopped before its end.
#[derive(Debug)]
pub enum Halt {
    /// An input step waits for its outputs.
    Suspended { path: String, step: String, prompt: Option<String> },
    /// A step failed permanently (or ran out of attempts).
    Failed(Failure),
    /// The store failed; nothing more can be recorded.
    Store(String),
}

#[derive(Clone, Debug)]
pub struct Failure {
    pub path: String,
    pub step: String,
    pub attempt: u32,
    pub error: StepError,
}

impl From<super::error::RunError> for Halt {
    fn from(e: super::error::RunError) -> Halt {
        Halt::Store(e.to_string())
    }
}

pub struct Engine {
    pub ctx: Arc<Ctx>,
    pub store: Arc<dyn Store>,
    /// Attempt starts and step completions go through it, so concurrent branches share commits.
    pub committer: Committer,
    /// The outputs of the steps this run completed before this process took it (read once: only
    /// this process drives the run, so nothing else adds to them).
    pub done: std::collections::HashMap<String, Value>,
    /// The last attempt number recorded for each path before this process took the run (read once,
    /// like `done`): this process numbers a step's attempts after them.
    pub tried: std::collections::HashMap<String, i64>,
    pub run_id: String,
    pub progress: Arc<Progress>,
}

impl Engine {
    async fn start(&self, path: &str, step: &str, n: i64, reads: &Value) -> Result<(), Halt> {
        let write = StepWrite::Start {
            run: self.run_id.clone(),
            path: path.to_string(),
            step: step.to_string(),
            n,
            reads: reads.clone(),
            at_ms: super::store::now_ms(),
        };
        self.committer.queue(write);
        Ok(())
    }

    /// Runs `f` over `state`. The completions of its steps are handed to the committer; those not
    /// waited for yet are left in `pending`, and every step waits for them before it starts, so
    /// that nothing runs on results that are not on disk.
    pub fn flow<'a>(
        &'a self,
        f: &'a Flow,
        prefix: &'a str,
        state: &'a mut State,
        pending: &'a mut Pending,
    ) -> BoxFuture<'a, Result<(), Halt>> {
        async move {
            match f {
                Flow::Call(c) => {
                    let writes = self.call(c, prefix, state, pending).await?;
                    state.extend(writes);
                }
                Flow::Seq { items, .. } => {
                    for it in items {
                        self.flow(it, prefix, state, pending).await?;
                    }
                }
                Flow::Par { branches, .. } => {
                    settle(pending).await?;
                    let runs = branches.iter().map(|b| {
                        let mut st = self.reads_of(b, state);
                        async move {
                            let mut own = Pending::new();
                            let r = self.flow(b, prefix, &mut st, &mut own).await;
                            (both(r, settle(&mut own).await), st)
                        }
                    });
                    let results = futures::future::join_all(runs).await;
                    self.merge(state, results)?;
                }
                Flow::Graph { nodes, edges, .. } => {
                    settle(pending).await?;
                    self.graph(nodes, edges, prefix, state).await?
                }
                Flow::If { cond, then, otherwise, .. } => {
                    let c = self.flow_expr(cond, state).await?;
                    if c == json!(true) {
                        self.flow(then, prefix, state, pending).await?;
                    } else if let Some(o) = otherwise {
                        self.flow(o, prefix, state, pending).await?;
                    }
                }
                Flow::For { id, var, iter, limit, body, collects } => {
                    let xs = match self.flow_expr(iter, state).await? {
                        Value::Array(xs) => xs,
                        Value::Null => vec![],
                        other => vec![other],
                    };
                    settle(pending).await?;
                    // Each iteration starts from the keys its body can read, not from the whole
                    // state: a `for` over a list in the state would otherwise copy that list into
                    // every iteration (quadratic in time and memory).
                    let mut base = self.reads_of(body, state);
                    base.swap_remove(var);
                    let mut results = self.iterations(id, var, xs, *limit, body, prefix, &base, collects).await;
                    results.sort_by_key(|(i, _, _)| *i);
                    let mut lists: IndexMap<String, Vec<Value>> =
                        collects.iter().map(|k| (k.clone(), Vec::with_capacity(results.len()))).collect();
                    let mut halt = None;
                    for (_, r, collected) in results {
                        match r {
                            Ok(()) => {
                                for ((_, list), v) in lists.iter_mut().zip(collected) {
                                    list.push(v);
                                }
                            }
                            Err(h) => halt = Some(worse(halt, h)),
                        }
                    }
                    if let Some(h) = halt {
                        return Err(h);
                    }
                    for (k, list) in lists {
                        state.insert(k, Value::Array(list));
                    }
                }
            }
            Ok(())
        }
        .boxed()
    }

    /// Runs a `for`'s iterations, at most `limit` at a time, each from `state` with its element
    /// as `var`; gives each one's outcome and the values it left in the keys of `collects`.
    /// Unordered, so that a slow iteration does not hold the slots of the ones after it.
    ///
    /// An iteration's slot is free once its body has run: its last completions are made durable
    /// while the next iterations run (they cannot read them). At most `3 * limit` iterations are
    /// running or waiting for the disk, which bounds what a crash makes run again; the `for` ends
    /// only when all of them are on disk (docs/running.md, "`for` iterations and the disk").
    #[allow(clippy::too_many_arguments)]
    async fn iterations(
        &self,
        id: &str,
        var: &str,
        xs: Vec<Value>,
        limit: u32,
        body: &Flow,
        prefix: &str,
        state: &State,
        collects: &[String],
    ) -> Vec<(usize, Result<(), Halt>, Vec<Value>)> {
        let limit = limit.max(1) as usize;
        let mut elements = xs.into_iter().enumerate();
        let mut running = FuturesUnordered::new();
        let mut committing = FuturesUnordered::new();
        let mut results = vec![];
        loop {
            while running.len() < limit && running.len() + committing.len() < 3 * limit {
                let Some((i, x)) = elements.next() else { break };
                let mut st = state.clone();
                st.insert(var.to_string(), x);
                // Joined into a string sized once: built with `format!` (which grows its string as
                // it goes), this path and the call's were a tenth of the engine's instructions in a
                // `for` of short steps.
                let p = [prefix, id, "[", itoa::Buffer::new().format(i), "]/"].concat();
                running.push(async move {
                    let mut own = Pending::new();
                    let r = self.flow(body, &p, &mut st, &mut own).await;
                    (i, r, st, own)
                });
            }
            tokio::select! {
                Some((i, r, mut st, mut own)) = running.next(), if !running.is_empty() => {
                    let collected: Vec<Value> =
                        collects.iter().map(|k| st.swap_remove(k).unwrap_or(Value::Null)).collect();
                    committing.push(async move {
                        let r = both(r, settle(&mut own).await);
                        (i, r, collected)
                    });
                }
                Some(done) = committing.next(), if !committing.is_empty() => results.push(done),
                else => break,
            }
        }
        results
    }

    /// The part of `state` that running `f` may read (`keys_read`): what a branch or an iteration
    /// starts from, rather than a copy of every value in the state.
    fn reads_of(&self, f: &Flow, state: &State) -> State {
        let mut read = std::collections::HashSet::new();
        keys_read(&self.ctx.program, f, &mut read);
        part(state, &read)
    }

    /// Branches of `&` (and a graph's nodes) start from one state; what each writes is merged.
    fn merge(&self, state: &mut State, results: Vec<(Result<(), Halt>, State)>) -> Result<(), Halt> {
        let before = state.clone();
        let mut halt = None;
        for (r, st) in results {
            match r {
                Ok(()) => {
                    for (k, v) in st {
                        if before.get(&k) != Some(&v) {
                            state.insert(k, v);
                        }
                    }
                }
                Err(h) => halt = Some(worse(halt, h)),
            }
        }
        halt.map_or(Ok(()), Err)
    }

    async fn graph(
        &self,
        nodes: &[Call],
        edges: &[(usize, usize)],
        prefix: &str,
        state: &mut State,
    ) -> Result<(), Halt> {
        let n = nodes.len();
        let mut done = vec![false; n];
        let mut started = vec![false; n];
        let mut running = FuturesUnordered::new();
        let mut halt: Option<Halt> = None;
        loop {
            if halt.is_none() {
                for i in 0..n {
                    let ready = edges.iter().filter(|(_, b)| *b == i).all(|(a, _)| done[*a]);
                    if !started[i] && ready {
                        started[i] = true;
                        let node = &nodes[i];
                        // What the node reads, as the state is when it starts (others go on
                        // writing to the state while it runs).
                        let mut read = std::collections::HashSet::new();
                        call_keys(&self.ctx.program, node, &mut read);
                        let snapshot = part(state, &read);
                        running.push(async move {
                            let mut own = Pending::new();
                            let r = self.call(node, prefix, &snapshot, &mut own).await;
                            let settled = settle(&mut own).await;
                            (i, r.and_then(|w| settled.map(|()| w)))
                        });
                    }
                }
            }
            match running.next().await {
                None => break,
                Some((i, Ok(writes))) => {
                    state.extend(writes);
                    done[i] = true;
                }
                Some((_, Err(h))) => halt = Some(worse(halt, h)),
            }
        }
        halt.map_or(Ok(()), Err)
    }

    /// An expression over the state (an `if` condition, a `for` list, an explicit argument).
    async fn flow_expr(&self, e: &crate::ir::Expr, state: &State) -> Result<Value, Halt> {
        let mut locals = locals_for(e, state);
        eval::eval(&self.ctx, &mut locals, e)
            .await
            .map_err(|error| Halt::Failed(Failure { path: String::new(), step: "(flow)".into(), attempt: 0, error }))
    }

    /// The values of a call's parameters.
    async fn args(
        &self,
        call_args: &[(String, ArgSource)],
        params: &[Param],
        state: &State,
    ) -> Result<State, StepError> {
        let mut out = State::with_capacity_and_hasher(call_args.len(), Default::default());
        for (name, src) in call_args {
            let param = params.iter().find(|p| &p.name == name);
            let default = || async {
                match param.and_then(|p| p.default.as_ref()) {
                    Some(d) => eval::eval(&self.ctx, &mut Locals::default(), d).await,
                    None => Ok(Value::Null),
                }
            };
            let v = match src {
                ArgSource::Key(k) => state.get(k).cloned().unwrap_or(Value::Null),
                ArgSource::Expr(e) => {
                    let mut locals = locals_for(e, state);
                    eval::eval(&self.ctx, &mut locals, e).await?
                }
                ArgSource::Default => default().await?,
                ArgSource::KeyOrDefault(k) => match state.get(k) {
                    Some(v) if !v.is_null() => v.clone(),
                    _ => default().await?,
                },
            };
            out.insert(name.clone(), v);
        }
        Ok(out)
    }

    fn call<'a>(
        &'a self,
        c: &'a Call,
        prefix: &'a str,
        state: &'a State,
        pending: &'a mut Pending,
    ) -> BoxFuture<'a, Result<Vec<(String, Value)>, Halt>> {
        async move {
            let path = [prefix, c.id.as_str()].concat();
            let program = self.ctx.program.clone();
            let fail = |step: &str, error: StepError| {
                Halt::Failed(Failure { path: path.clone(), step: step.to_string(), attempt: 0, error })
            };
            match &c.target {
                CallTarget::Workflow(name) => {
                    let wf = program
                        .workflows
                        .get(name)
                        .ok_or_else(|| fail(name, StepError::permanent("unknown workflow")))?;
                    let mut sub = self.args(&c.args, &wf.params, state).await.map_err(|e| fail(name, e.at(c.loc)))?;
                    self.flow(&wf.flow, &format!("{path}/"), &mut sub, pending).await?;
                    Ok(c.writes
                        .iter()
                        .map(|(key, out)| (key.clone(), sub.get(out).cloned().unwrap_or(Value::Null)))
                        .collect())
                }
                CallTarget::Step(name) => {
                    let step =
                        program.steps.get(name).ok_or_else(|| fail(name, StepError::permanent("unknown step")))?;
                    if let Some(out) = self.done.get(&path).cloned() {
                        self.progress.reused(name);
                        return Ok(writes(c, &out));
                    }
                    settle(pending).await?;
                    let args = self.args(&c.args, &step.params, state).await.map_err(|e| fail(name, e.at(c.loc)))?;
                    let reads = self
                        .ctx
                        .redactor
                        .value(Value::Object(args.iter().map(|(k, v)| (k.clone(), v.clone())).collect()));
                    let (outputs, attempt) = match &step.kind {
                        StepKind::Input { prompt } => match self.store.input(&self.run_id, &path)? {
                            Some(values) => {
                                let n = self.tried.get(&path).copied().unwrap_or(0) as u32 + 1;
                                self.start(&path, name, n as i64, &reads).await?;
                                (values, n)
                            }
                            None => {
                                let text = match prompt {
                                    Some(p) => {
                                        let mut locals = Locals::new(args.clone());
                                        eval::eval(&self.ctx, &mut locals, p)
                                            .await
                                            .ok()
                                            .and_then(|v| v.as_str().map(str::to_string))
                                    }
                                    None => None,
                                };
                                self.store.suspend_step(&self.run_id, &path, name, &reads)?;
                                self.progress.suspended(name, text.as_deref());
                                return Err(Halt::Suspended { path, step: name.clone(), prompt: text });
                            }
                        },
                        StepKind::Body(_) => self.attempts(step, &path, &args, &reads).await?,
                    };
                    let outputs = self.ctx.redactor.value(outputs);
                    let out = writes(c, &outputs);
                    let compensation = match &step.compensate {
                        Some(comp) => Some(self.compensation(comp, &out, state).await.map_err(|e| fail(name, e))?),
                        None => None,
                    };
                    let subs: Vec<Value> = step
                        .outputs
                        .iter()
                        .filter(|(_, t)| matches!(t.unwrap_optional(), Type::Product { .. }))
                        .filter_map(|(k, _)| outputs.get(k).filter(|v| v.is_object()).cloned())
                        .collect();
                    pending.push(self.committer.send(StepWrite::Complete {
                        run: self.run_id.clone(),
                        path,
                        n: attempt as i64,
                        at_ms: super::store::now_ms(),
                        outputs,
                        compensation,
                        subscriptions: subs,
                        undoes: None,
                    })?);
                    Ok(out)
                }
            }
        }
        .boxed()
    }

    /// The compensating step and its arguments, read by name from the state right after the step.
    async fn compensation(&self, comp: &str, writes: &[(String, Value)], state: &State) -> Result<Value, StepError> {
        // The state as it is right after the step: what the step wrote, then the rest.
        let after = |k: &str| writes.iter().rev().find(|(w, _)| w == k).map(|(_, v)| v).or_else(|| state.get(k));
        let Some(cstep) = self.ctx.program.steps.get(comp) else {
            return Err(StepError::permanent(format!("unknown step `{comp}`")));
        };
        let mut args = serde_json::Map::new();
        for p in &cstep.params {
            let v = match after(&p.name) {
                Some(v) if !v.is_null() => v.clone(),
                _ => match &p.default {
                    Some(d) => eval::eval(&self.ctx, &mut Locals::default(), d).await?,
                    None => Value::Null,
                },
            };
            args.insert(p.name.clone(), v);
        }
        Ok(json!({ "step": comp, "args": args }))
    }

    /// Runs a step's attempts with its retry policy; gives its outputs and the attempt that
    /// succeeded.
    pub async fn attempts(
        &self,
        step: &StepDef,
        path: &str,
        args: &State,
        reads: &Value,
    ) -> Result<(Value, u32), Halt> {
        let policy = step.retry;
        // `k` counts this process's attempts (the retry policy and its backoff); `n` is the
        // attempt's number for the step, after those of earlier processes.
        let before = self.tried.get(path).copied().unwrap_or(0) as u32;
        let mut k = 1;
        loop {
            let n = before + k;
            self.start(path, &step.name, n as i64, reads).await?;
            self.progress.started(path, &step.name, n);
            let started = std::time::Instant::now();
            match self.attempt(step, path, args).await {
                Ok(out) => {
                    self.progress.done(path, &step.name, started.elapsed());
                    return Ok((out, n));
                }
                Err(mut e) => {
                    e.loc.get_or_insert(step.loc);
                    e.message = self.ctx.redactor.text(std::mem::take(&mut e.message));
                    let last = k >= policy.attempts || !e.retryable;
                    self.committer
                        .write(StepWrite::Fail {
                            run: self.run_id.clone(),
                            path: path.to_string(),
                            n: n as i64,
                            at_ms: super::store::now_ms(),
                            error: e.message.clone(),
                            permanent: last,
                        })
                        .await?;
                    if last {
                        self.progress.failed(path, &step.name, n, &e.message);
                        return Err(Halt::Failed(Failure {
                            path: path.to_string(),
                            step: step.name.clone(),
                            attempt: n,
                            error: e,
                        }));
                    }
                    let delay = policy.delay_after(k);
                    self.progress.retrying(path, &step.name, n, delay, &e.message);
                    tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                    k += 1;
                }
            }
        }
    }

    async fn attempt(&self, step: &StepDef, path: &str, args: &State) -> Result<Value, StepError> {
        let StepKind::Body(body) = &step.kind else { return Err(StepError::permanent("an input step has no body")) };
        let mut locals = Locals::new(args.iter().map(|(k, v)| (k.clone(), v.clone())));
        locals.path = path.to_string();
        locals.step = step.name.clone();
        let work = async {
            match &step.poll {
                None => eval::eval_body(&self.ctx, &mut locals, body).await,
                Some(poll) => {
                    let start = std::time::Instant::now();
                    let timed_out = |within: u64| {
                        StepError::coded(
                            Code::RunPollTimeout,
                            format!(
                                "`{}`: the poll condition was not true within {}",
                                step.name,
                                super::value::format_duration(within)
                            ),
                        )
                    };
                    loop {
                        // A body that blocks (a slow HTTP call) is cut off when `within` runs out.
                        let out = match poll.within_ms {
                            Some(within) => {
                                let left = within.saturating_sub(start.elapsed().as_millis() as u64);
                                let run = eval::eval_body(&self.ctx, &mut locals, body);
                                match tokio::time::timeout(std::time::Duration::from_millis(left), run).await {
                                    Ok(out) => out?,
                                    Err(_) => return Err(timed_out(within)),
                                }
                            }
                            None => eval::eval_body(&self.ctx, &mut locals, body).await?,
                        };
                        let mut seen = locals.clone();
                        if let Value::Object(o) = &out {
                            for (k, v) in o {
                                seen.push(k, v.clone());
                            }
                        }
                        if eval::eval(&self.ctx, &mut seen, &poll.until).await? == json!(true) {
                            return Ok(out);
                        }
                        if let Some(within) = poll.within_ms {
                            if start.elapsed().as_millis() as u64 + poll.every_ms > within {
                                return Err(timed_out(within));
                            }
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(poll.every_ms)).await;
                    }
                }
            }
        };
        match step.timeout_ms {
            Some(ms) => match tokio::time::timeout(std::time::Duration::from_millis(ms), work).await {
                Ok(r) => r,
                Err(_) => Err(StepError::retryable(format!(
                    "the attempt timed out after {}",
                    super::value::format_duration(ms)
                ))),
            },
            None => work.await,
        }
    }

    /// Runs the registered compensations, most recently completed step first, each recorded like a
    /// step under `compensate:PATH#SEQ`: every completion of a step (a step compensated and run
    /// again by `retry` completes anew, with a new `SEQ`) is undone by its own compensation, with
    /// that completion's values. Returns the failures (a failed compensation does not stop the
    /// others).
    pub async fn compensate(&self) -> Result<Vec<Failure>, Halt> {
        let mut failures = vec![];
        for (path, seq, comp) in self.store.compensations(&self.run_id)? {
            let cpath = compensation_path(&path, seq);
            if self.done.contains_key(&cpath) {
                self.store.mark_step(&self.run_id, &path, "compensated")?;
                continue;
            }
            // Durably, before anything is undone: a process killed from here on leaves the step
            // `compensating`, which `abort` compensates again and `retry` runs again, rather than
            // a `completed` step whose outputs may be half undone.
            self.store.mark_step(&self.run_id, &path, "compensating")?;
            let name = comp["step"].as_str().unwrap_or_default().to_string();
            let Some(step) = self.ctx.program.steps.get(&name).cloned() else { continue };
            let args: State = comp["args"]
                .as_object()
                .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            let reads = json!(args);
            match self.attempts(&step, &cpath, &args, &reads).await {
                Ok((out, n)) => {
                    let out = self.ctx.redactor.value(out);
                    let subs: Vec<Value> = step
                        .outputs
                        .iter()
                        .filter(|(_, t)| matches!(t.unwrap_optional(), Type::Product { .. }))
                        .filter_map(|(k, _)| out.get(k).filter(|v| v.is_object()).cloned())
                        .collect();
                    self.committer
                        .write(StepWrite::Complete {
                            run: self.run_id.clone(),
                            path: cpath.clone(),
                            n: n as i64,
                            at_ms: super::store::now_ms(),
                            outputs: out,
                            compensation: None,
                            subscriptions: subs,
                            undoes: Some(path.clone()),
                        })
                        .await?;
                }
                Err(Halt::Failed(f)) => failures.push(f),
                Err(other) => return Err(other),
            }
        }
        Ok(failures)
    }
}

/// Where the compensation of one completion of the step at `path` is recorded.
pub fn compensation_path(path: &str, seq: i64) -> String {
    format!("compensate:{path}#{seq}")
}

/// Completions handed to the committer that their chain of steps has not waited for yet.
pub type Pending = Vec<Receipt>;

/// Waits until every completion in `pending` is on disk.
pub async fn settle(pending: &mut Pending) -> Result<(), Halt> {
    for receipt in pending.drain(..) {
        receipt.await?;
    }
    Ok(())
}

/// A flow's outcome once its completions were settled: a store failure outranks it.
pub fn both(r: Result<(), Halt>, settled: Result<(), Halt>) -> Result<(), Halt> {
    match (r, settled) {
        (Ok(()), s) => s,
        (Err(h), Ok(())) => Err(h),
        (Err(h), Err(s)) => Err(worse(Some(h), s)),
    }
}

/// The state keys an expression over the state names, as its locals: copying the whole state for
/// each condition or argument would copy every large value in it each time.
fn locals_for(e: &crate::ir::Expr, state: &State) -> Locals {
    let names = e.names();
    Locals::new(state.iter().filter(|(k, _)| names.contains(k.as_str())).map(|(k, v)| (k.clone(), v.clone())))
}

/// Adds the state keys that running `f` may read: its calls' arguments, the names in its
/// conditions, lists and argument expressions, and the parameters of the compensations of its
/// steps (read from the state right after the step). Names bound inside expressions may be added
/// too; that only copies a key that is not needed.
fn keys_read(program: &crate::ir::Program, f: &Flow, into: &mut std::collections::HashSet<String>) {
    match f {
        Flow::Call(c) => call_keys(program, c, into),
        Flow::Graph { nodes, .. } => nodes.iter().for_each(|c| call_keys(program, c, into)),
        Flow::Seq { items: fs, .. } | Flow::Par { branches: fs, .. } => {
            fs.iter().for_each(|f| keys_read(program, f, into))
        }
        Flow::If { cond, then, otherwise, .. } => {
            names(cond, into);
            keys_read(program, then, into);
            otherwise.iter().for_each(|o| keys_read(program, o, into));
        }
        Flow::For { iter, body, .. } => {
            names(iter, into);
            keys_read(program, body, into);
        }
    }
}

/// The keys of `state` in `keys`, with their values.
fn part(state: &State, keys: &std::collections::HashSet<String>) -> State {
    state.iter().filter(|(k, _)| keys.contains(k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The state keys a call reads: its arguments, and its step's compensation's parameters.
fn call_keys(program: &crate::ir::Program, c: &Call, into: &mut std::collections::HashSet<String>) {
    for (_, src) in &c.args {
        match src {
            ArgSource::Key(k) | ArgSource::KeyOrDefault(k) => {
                into.insert(k.clone());
            }
            ArgSource::Expr(e) => names(e, into),
            ArgSource::Default => {}
        }
    }
    let compensation = match &c.target {
        CallTarget::Step(s) => program.steps.get(s).and_then(|s| s.compensate.as_ref()),
        CallTarget::Workflow(_) => None,
    };
    if let Some(comp) = compensation.and_then(|name| program.steps.get(name)) {
        into.extend(comp.params.iter().map(|p| p.name.clone()));
    }
}

fn names(e: &crate::ir::Expr, into: &mut std::collections::HashSet<String>) {
    into.extend(e.names().into_iter().map(str::to_string));
}

fn writes(c: &Call, outputs: &Value) -> Vec<(String, Value)> {
    c.writes.iter().map(|(key, out)| (key.clone(), outputs.get(out).cloned().unwrap_or(Value::Null))).collect()
}

/// A failure outranks a suspension: a run with a failed branch is failed.
fn worse(current: Option<Halt>, new: Halt) -> Halt {
    match (current, new) {
        (None, h) => h,
        (Some(Halt::Store(s)), _) | (_, Halt::Store(s)) => Halt::Store(s),
        (Some(f @ Halt::Failed(_)), _) => f,
        (Some(Halt::Suspended { .. }), f @ Halt::Failed(_)) => f,
        (Some(s), _) => s,
    }
}
