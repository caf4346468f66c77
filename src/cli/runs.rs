//! `orchc runs`, `show`, `subscriptions` and `subscription`: reading the store.

use super::run::{existing_store, refuse, required_store};
use super::{exit, ListArgs, ShowArgs, StoreArgs, SubscriptionArgs};
use crate::run::error::RunError;
use crate::run::progress::human;
use crate::run::store::Access;
use crate::run::store::{RunRecord, RunSummary, StepRecord, SubscriptionSummary};
use serde_json::{json, Value};
use std::io::Write;
use std::time::Duration;

fn time_of(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

fn took(start: i64, end: Option<i64>) -> String {
    end.map(|e| human(Duration::from_millis((e - start).max(0) as u64))).unwrap_or_else(|| "-".into())
}

pub fn runs(args: StoreArgs, json_out: bool) -> i32 {
    // No store yet: no runs (nothing is created by looking).
    let store = match existing_store(&args, Access::Read) {
        Ok(s) => s,
        Err(e) => return refuse(&e, json_out),
    };
    let path = super::run::db_path(&args);
    let empty = match store {
        Some(_) => format!("no runs in {}", path.display()),
        None => format!("no runs: there is no store at {} yet", path.display()),
    };
    let head = format!("{:<14} {:<24} {:<10} {:<26} TOOK", "RUN", "WORKFLOW", "STATUS", "STARTED");
    list(
        json_out,
        &head,
        &empty,
        |f| store.as_ref().map_or(Ok(()), |s| s.each_run(f)),
        run_summary,
        |r| {
            let end = (r.status != "running").then_some(r.updated_ms);
            format!(
                "{:<14} {:<24} {:<10} {:<26} {}",
                r.id,
                r.workflow,
                r.status,
                time_of(r.created_ms),
                took(r.created_ms, end)
            )
        },
    )
}

/// Writes the rows `read` hands over as it hands them (a store of many runs or subscriptions is
/// never in memory whole): a JSON array, or a table under `head`, or `empty` when there are none.
/// A row that cannot be read half-way is reported after what was written.
fn list<T>(
    json_out: bool,
    head: &str,
    empty: &str,
    read: impl FnOnce(&mut dyn FnMut(T) -> bool) -> Result<(), RunError>,
    as_json: impl Fn(&T) -> Value,
    as_line: impl Fn(&T) -> String,
) -> i32 {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut count = 0;
    let mut written = Ok(());
    let read = read(&mut |row| {
        let text = match (json_out, count) {
            (true, 0) => format!("[{}", as_json(&row)),
            (true, _) => format!(",{}", as_json(&row)),
            (false, 0) => format!("{head}\n{}\n", as_line(&row)),
            (false, _) => format!("{}\n", as_line(&row)),
        };
        count += 1;
        written = out.write_all(text.as_bytes());
        written.is_ok()
    });
    if let Err(e) = read {
        let _ = writeln!(out).and_then(|()| out.flush());
        return refuse(&e, json_out);
    }
    if written.is_ok() {
        written = match (json_out, count) {
            (true, 0) => writeln!(out, "[]"),
            (true, _) => writeln!(out, "]"),
            (false, 0) => writeln!(out, "{empty}"),
            (false, _) => Ok(()),
        };
    }
    if written.and_then(|()| out.flush()).is_err() {
        return exit::FAILED;
    }
    exit::OK
}

fn run_summary(r: &RunSummary) -> Value {
    json!({
        "run_id": r.id, "workflow": r.workflow, "status": r.status,
        "created": time_of(r.created_ms), "updated": time_of(r.updated_ms),
        "outputs": r.outputs, "error": r.error,
    })
}

fn step_json(s: &StepRecord) -> Value {
    json!({
        "path": s.path, "step": s.step, "status": s.status,
        "started": time_of(s.started_ms), "finished": s.finished_ms.map(time_of),
        "duration_ms": s.finished_ms.map(|f| f - s.started_ms),
        "inputs": s.reads, "outputs": s.outputs, "error": s.error,
        "attempts": s.attempts.iter().map(|a| json!({
            "attempt": a.n, "status": a.status, "error": a.error,
            "started": time_of(a.started_ms), "started_ms": a.started_ms,
            "finished_ms": a.finished_ms, "duration_ms": a.finished_ms.map(|f| f - a.started_ms),
        })).collect::<Vec<_>>(),
    })
}

pub fn show(args: ShowArgs) -> i32 {
    let store = match required_store(&args.store, Access::Read) {
        Ok(s) => s,
        Err(e) => return refuse(&e, args.json),
    };
    let rec = match store.run(&args.run) {
        Ok(Some(r)) => r,
        Ok(None) => return refuse(&RunError::NotFound(format!("there is no run `{}`", args.run)), args.json),
        Err(e) => return refuse(&e, args.json),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // Steps and events are written as they are read: a long run's records are never in memory
    // all at once.
    // Records whether a write failed; false stops the reading.
    let mut failed_write = false;
    let mut note = |written: std::io::Result<()>| {
        failed_write |= written.is_err();
        !failed_write
    };
    let read = if args.json {
        let mut v = run_summary(&rec.summary());
        v["inputs"] = rec.inputs.clone();
        v["env"] = json!(rec.env);
        v["configs"] = rec.configs.clone();
        v["program_hash"] = json!(rec.program_hash);
        let head = v.to_string();
        let mut first = true;
        note(write!(out, "{},\"steps\":[", head.strip_suffix('}').unwrap_or(&head)));
        store
            .each_step(&rec.id, &mut |s| {
                let comma = if std::mem::take(&mut first) { "" } else { "," };
                note(write!(out, "{comma}{}", step_json(&s)))
            })
            .and_then(|()| {
                first = true;
                note(write!(out, "],\"events\":["));
                store.each_event(&rec.id, &mut |e| {
                    let comma = if std::mem::take(&mut first) { "" } else { "," };
                    let e = json!({"seq": e.seq, "at": time_of(e.at_ms), "kind": e.kind, "detail": e.detail});
                    note(write!(out, "{comma}{e}"))
                })
            })
            .map(|()| note(writeln!(out, "]}}")))
    } else {
        show_timeline(&mut out, &rec, store.as_ref(), &mut note)
    };
    if let Err(e) = read {
        // What was written stays incomplete; the error follows on lines of its own.
        let _ = writeln!(out).and_then(|()| out.flush());
        return refuse(&e, args.json);
    }
    if failed_write || out.flush().is_err() {
        return exit::FAILED;
    }
    exit::OK
}

/// The human form of `show`: a timeline of the run's steps and attempts.
fn show_timeline(
    out: &mut impl Write,
    rec: &RunRecord,
    store: &dyn crate::run::store::Store,
    note: &mut impl FnMut(std::io::Result<()>) -> bool,
) -> Result<bool, RunError> {
    note(writeln!(out, "run {}  workflow {}  status {}", rec.id, rec.workflow, rec.status));
    note(writeln!(
        out,
        "started {}  program {}",
        time_of(rec.created_ms),
        &rec.program_hash[..12.min(rec.program_hash.len())]
    ));
    if let Some(env) = &rec.env {
        note(writeln!(out, "environment {env}"));
    }
    note(writeln!(out, "inputs {}", rec.inputs));
    store.each_step(&rec.id, &mut |s| {
        let mut text = format!("\n{:<12} {}  [{}]  {}\n", s.status, s.step, s.path, took(s.started_ms, s.finished_ms));
        for a in &s.attempts {
            let err = a.error.as_deref().map(|e| format!("  {e}")).unwrap_or_default();
            text += &format!(
                "    attempt {}  {:<10} {}  {}{err}\n",
                a.n,
                a.status,
                time_of(a.started_ms),
                took(a.started_ms, a.finished_ms)
            );
        }
        if let Some(o) = &s.outputs {
            text += &format!("    outputs {o}\n");
        }
        note(out.write_all(text.as_bytes()))
    })?;
    note(writeln!(out));
    match rec.status.as_str() {
        "completed" => note(writeln!(out, "outputs {}", rec.outputs.clone().unwrap_or(Value::Null))),
        "failed" | "aborted" => note(writeln!(out, "error {}", rec.error.clone().unwrap_or(Value::Null))),
        "suspended" => note(writeln!(out, "waiting at {}", rec.waiting.clone().unwrap_or_default())),
        _ => true,
    };
    let mut events = 0;
    store.each_event(&rec.id, &mut |_| {
        events += 1;
        true
    })?;
    Ok(note(writeln!(out, "{events} events in the audit log (show --json lists them)")))
}

pub fn subscriptions(args: ListArgs) -> i32 {
    let store = match existing_store(&args.store, Access::Read) {
        Ok(s) => s,
        Err(e) => return refuse(&e, args.json),
    };
    let head = format!("{:<38} {:<20} {:<16} {:<14} LOCKED BY", "ID", "PRODUCT", "CUSTOMER", "STATE");
    list(
        args.json,
        &head,
        "no subscriptions",
        |f| store.as_ref().map_or(Ok(()), |s| s.each_subscription(f)),
        |s: &SubscriptionSummary| json!({"id": s.id, "product": s.product, "customer": s.customer, "state": s.state, "locked_by": s.locked_by, "version": s.version}),
        |s| {
            format!(
                "{:<38} {:<20} {:<16} {:<14} {}",
                s.id,
                s.product,
                s.customer,
                s.state,
                s.locked_by.as_deref().unwrap_or("-")
            )
        },
    )
}

pub fn subscription(args: SubscriptionArgs) -> i32 {
    let store = match required_store(&args.store, Access::Read) {
        Ok(s) => s,
        Err(e) => return refuse(&e, args.json),
    };
    let s = match store.subscription(&args.id) {
        Ok(Some(s)) => s,
        Ok(None) => return refuse(&RunError::NotFound(format!("there is no subscription `{}`", args.id)), args.json),
        Err(e) => return refuse(&e, args.json),
    };
    if args.json {
        println!(
            "{}",
            json!({"id": s.id, "product": s.product, "customer": s.customer, "state": s.state, "locked_by": s.locked_by,
                   "version": s.version, "updated": time_of(s.updated_ms), "fixed": s.value["fixed"], "fields": s.value["fields"]})
        );
        return exit::OK;
    }
    println!("subscription {}", s.id);
    println!("  product   {}", s.product);
    println!("  customer  {}", s.customer);
    println!("  state     {}", s.state);
    println!("  locked by {}", s.locked_by.as_deref().unwrap_or("-"));
    println!("  version   {} (updated {})", s.version, time_of(s.updated_ms));
    println!("  fixed     {}", s.value["fixed"]);
    println!("  fields    {}", s.value["fields"]);
    exit::OK
}
