//! `orchc run`, `resume`, `retry` and `abort`.

use super::{exit, ResumeArgs, RunArgs, RunRefArgs, StoreArgs};
use crate::diagnostics::{self, HumanStyle, Severity};
use crate::run::error::RunError;
use crate::run::progress::Progress;
use crate::run::store::{Access, SqliteStore, Store};
use crate::run::{self, split_assignment, RunOutcome, RunRequest};
use is_terminal::IsTerminal;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;

pub fn db_path(args: &StoreArgs) -> PathBuf {
    args.db.clone().unwrap_or_else(|| PathBuf::from(".orch/state.db"))
}

pub fn open_store(args: &StoreArgs) -> Result<Arc<dyn Store>, RunError> {
    Ok(Arc::new(SqliteStore::open(&db_path(args))?))
}

/// The existing store, for the commands that only continue runs or read them: they create
/// nothing. `None` when there is no store at the path.
pub fn existing_store(args: &StoreArgs, access: Access) -> Result<Option<Arc<dyn Store>>, RunError> {
    Ok(SqliteStore::open_existing(&db_path(args), access)?.map(|s| Arc::new(s) as Arc<dyn Store>))
}

/// The existing store, for a command that needs one (`show`, `subscription`; `resume`, `retry`
/// and `abort`, which write it): an error when there is none.
pub fn required_store(args: &StoreArgs, access: Access) -> Result<Arc<dyn Store>, RunError> {
    existing_store(args, access)?.ok_or_else(|| {
        RunError::Store(format!("there is no store at `{}`; `orchc run` creates one", db_path(args).display()))
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("the async runtime starts")
}

fn progress(json: bool) -> Arc<Progress> {
    Arc::new(Progress::new(std::io::stderr().is_terminal() && !json, false))
}

fn assignments(list: &[String]) -> Result<Vec<(String, String)>, RunError> {
    list.iter().map(|s| split_assignment(s)).collect()
}

/// Drives a run command to its end, or until the process is asked to stop (SIGINT, as Ctrl-C sends,
/// or SIGTERM). Then the command's future is dropped: the run stays where it was, as after a crash
/// (a step in flight runs again when the run is continued), but its writes in progress finish, its
/// `exec` children are killed and its store is closed; the command says how to continue it
/// (`orchc AGAIN RUN`) and exits with 128 + the signal's number, as a shell reports it.
fn until_stopped(
    command: impl std::future::Future<Output = Result<RunOutcome, RunError>>,
    progress: &Progress,
    json: bool,
    again: &str,
) -> i32 {
    let ended = runtime().block_on(async {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => signal.recv().await,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            outcome = command => Ok(outcome),
            Ok(()) = tokio::signal::ctrl_c() => Err(("SIGINT", libc::SIGINT)),
            Some(()) = terminate => Err(("SIGTERM", libc::SIGTERM)),
        }
    });
    let (name, number) = match ended {
        Ok(Ok(outcome)) => return report(&outcome, json),
        Ok(Err(e)) => return refuse(&e, json),
        Err(signal) => signal,
    };
    progress.stop();
    let run = progress.run();
    let message = match &run {
        Some((id, _)) => {
            format!("stopped by {name}: run {id} is left as it was; continue it with `orchc {again} {id}`")
        }
        // `run`: nothing stored yet; `resume`, `retry`, `abort`: the run not taken yet.
        None => format!("stopped by {name} before it drove a run; nothing was run"),
    };
    eprintln!("error[orch::run::interrupted]: {message}");
    if json {
        let (id, status) = run.unzip();
        print_error_line(id.as_deref(), status.as_deref(), "orch::run::interrupted", &message);
    }
    128 + number
}

/// The `--json` last line of a run command that ends without an outcome of the run's own (§9).
fn print_error_line(run_id: Option<&str>, status: Option<&str>, code: &str, message: &str) {
    let error = json!({ "code": code, "message": message });
    println!("{}", json!({ "run_id": run_id, "status": status, "outputs": Value::Null, "error": error }));
}

/// Prints a command's error (with `--json`, also as the JSON last line) and gives the exit status.
pub(super) fn refuse(e: &RunError, json: bool) -> i32 {
    eprintln!("error[{}]: {e}", e.code());
    if json {
        print_error_line(None, Some("error"), e.code(), &e.to_string());
    }
    match e {
        RunError::Store(_) => exit::FAILED,
        _ => exit::USAGE,
    }
}

/// Prints how a run stands and gives the exit status of §9.
pub fn report(outcome: &RunOutcome, json: bool) -> i32 {
    let id = &outcome.run_id;
    match outcome.status.as_str() {
        "completed" => {
            if !json {
                println!("run {id} completed");
                if let Some(Value::Object(o)) = &outcome.outputs {
                    for (k, v) in o {
                        println!("  {k} = {}", v);
                    }
                }
            }
        }
        "suspended" => {
            if !json {
                let (step, prompt) = outcome.waiting.clone().unwrap_or_default();
                println!(
                    "run {id} suspended: input step `{step}` waits{}",
                    prompt.map(|p| format!(": {p}")).unwrap_or_default()
                );
                println!("  continue with: orchc resume {id} -i KEY=VALUE ...");
            }
        }
        status => {
            if !json {
                let e = outcome.error.clone().unwrap_or(Value::Null);
                let code = e["code"].as_str().map(|c| format!("[{c}] ")).unwrap_or_default();
                let mut place = vec![];
                if let Some(s) = e["step"].as_str() {
                    place.push(format!("step `{s}`"));
                }
                if let Some(a) = e["attempt"].as_u64().filter(|a| *a > 0) {
                    place.push(format!("attempt {a}"));
                }
                if let (Some(f), Some(l)) = (e["file"].as_str(), e["line"].as_u64()) {
                    place.push(format!("{f}:{l}"));
                }
                let place = if place.is_empty() { String::new() } else { format!(" ({})", place.join(", ")) };
                println!("run {id} {status}: {code}{}{place}", e["message"].as_str().unwrap_or(""));
            }
        }
    }
    if json {
        println!("{}", outcome.to_json());
    }
    match outcome.status.as_str() {
        "completed" | "aborted" => exit::OK,
        "suspended" => exit::SUSPENDED,
        _ => exit::FAILED,
    }
}

pub fn run(args: RunArgs) -> i32 {
    let checked = crate::check::check_path(&args.file);
    let style =
        HumanStyle { color: std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(), width: 100 };
    for d in &checked.diagnostics {
        if d.severity == Severity::Error || d.code == crate::diagnostics::Code::IoRead {
            eprint!("{}", diagnostics::render_human(d, style));
        }
    }
    let Some(program) = checked.program else {
        eprintln!("orchc: {} does not check; nothing was run", args.file.display());
        if args.json {
            print_error_line(None, Some("error"), "orch::check", "the file does not check");
        }
        return exit::USAGE;
    };
    let workflow = match args.workflow.clone() {
        Some(w) => w,
        None => {
            let own: Vec<&String> = program.workflows.keys().filter(|k| !k.contains('.')).collect();
            match own.as_slice() {
                [one] => (*one).clone(),
                [] => return refuse(&RunError::Usage(format!("{} has no workflow", args.file.display())), args.json),
                many => {
                    let names: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
                    return refuse(
                        &RunError::Usage(format!(
                            "{} has several workflows; name one: {}",
                            args.file.display(),
                            names.join(", ")
                        )),
                        args.json,
                    );
                }
            }
        }
    };
    let inputs_json = match &args.inputs_file {
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()))
        {
            Ok(v) => Some(v),
            Err(e) => return refuse(&RunError::Usage(format!("--inputs {}: {e}", path.display())), args.json),
        },
        None => None,
    };
    let request = (|| {
        Ok::<_, RunError>(RunRequest {
            program,
            workflow,
            inputs: assignments(&args.inputs)?,
            inputs_json,
            env: args.env.clone(),
            configs: assignments(&args.configs)?,
            secrets: assignments(&args.secrets)?,
        })
    })();
    let request = match request {
        Ok(r) => r,
        Err(e) => return refuse(&e, args.json),
    };
    let store = match open_store(&args.store) {
        Ok(s) => s,
        Err(e) => return refuse(&e, args.json),
    };
    let progress = progress(args.json);
    until_stopped(run::start(store, request, progress.clone()), &progress, args.json, "resume")
}

pub fn resume(args: ResumeArgs) -> i32 {
    let (inputs, secrets) = match (assignments(&args.inputs), assignments(&args.secrets)) {
        (Ok(i), Ok(s)) => (i, s),
        (Err(e), _) | (_, Err(e)) => return refuse(&e, args.json),
    };
    let store = match required_store(&args.store, Access::Write) {
        Ok(s) => s,
        Err(e) => return refuse(&e, args.json),
    };
    let progress = progress(args.json);
    until_stopped(run::resume(store, &args.run, &inputs, &secrets, progress.clone()), &progress, args.json, "resume")
}

pub fn retry(args: RunRefArgs) -> i32 {
    let secrets = match assignments(&args.secrets) {
        Ok(s) => s,
        Err(e) => return refuse(&e, args.json),
    };
    let store = match required_store(&args.store, Access::Write) {
        Ok(s) => s,
        Err(e) => return refuse(&e, args.json),
    };
    let progress = progress(args.json);
    until_stopped(run::retry(store, &args.run, &secrets, progress.clone()), &progress, args.json, "resume")
}

pub fn abort(args: RunRefArgs) -> i32 {
    let secrets = match assignments(&args.secrets) {
        Ok(s) => s,
        Err(e) => return refuse(&e, args.json),
    };
    let store = match required_store(&args.store, Access::Write) {
        Ok(s) => s,
        Err(e) => return refuse(&e, args.json),
    };
    let progress = progress(args.json);
    until_stopped(run::abort(store, &args.run, &secrets, progress.clone()), &progress, args.json, "abort")
}
