//! The `orchc` command line (brief §9). Each command lives in its own file; this one only parses
//! arguments and dispatches.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

mod check;
mod fmt;
mod graph;
mod repl;
mod run;
mod runs;

/// Exit statuses shared by the commands.
pub mod exit {
    pub const OK: i32 = 0;
    /// Check errors for `check`; a failed run for `run`, `resume`, `retry`.
    pub const FAILED: i32 = 1;
    /// Usage errors, unreadable files, and check errors for the run commands.
    pub const USAGE: i32 = 2;
    /// The run is suspended on an input step.
    pub const SUSPENDED: i32 = 3;
}

#[derive(Parser, Debug)]
#[command(name = "orchc", version, about = "The orch compiler and durable interpreter")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check files, or every `.orch` file under directories.
    Check(CheckArgs),
    /// Run a workflow, persisting every step's result.
    Run(RunArgs),
    /// List runs.
    Runs(ListArgs),
    /// Show one run: every step, attempt, timing and output.
    Show(ShowArgs),
    /// Continue a suspended run (with inputs) or a run whose process died.
    Resume(ResumeArgs),
    /// Continue a failed run from the failed step.
    Retry(RunRefArgs),
    /// Run the compensations of a failed or suspended run and end it.
    Abort(RunRefArgs),
    /// List subscriptions and their lifecycle states.
    Subscriptions(ListArgs),
    /// Show one subscription.
    Subscription(SubscriptionArgs),
    /// Draw a workflow's flow.
    Graph(GraphArgs),
    /// Format files in place.
    Fmt(FmtArgs),
    /// An interactive session.
    Repl(ReplArgs),
    /// Kills an `exec` child's process group if orchc dies (started by orchc itself).
    #[command(name = "__watch-group", hide = true)]
    WatchGroup { pgid: i32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    Human,
    Json,
    Github,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Files or directories (default: the current directory).
    pub paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "human")]
    pub format: CheckFormat,
    /// Treat warnings as errors.
    #[arg(long)]
    pub deny_warnings: bool,
    #[arg(long, value_enum, default_value = "auto")]
    pub color: ColorChoice,
}

#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// The store (default `.orch/state.db`).
    #[arg(long, env = "ORCH_DB")]
    pub db: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    pub file: PathBuf,
    /// May be omitted when the file has one workflow.
    pub workflow: Option<String>,
    /// An input, `KEY=VALUE`, parsed by the parameter's type.
    #[arg(short = 'i', long = "input", value_name = "K=V")]
    pub inputs: Vec<String>,
    /// A JSON object of inputs.
    #[arg(long = "inputs", value_name = "FILE.json")]
    pub inputs_file: Option<PathBuf>,
    #[arg(long)]
    pub env: Option<String>,
    #[arg(long = "config", value_name = "K=V")]
    pub configs: Vec<String>,
    #[arg(long = "secret", value_name = "K=V")]
    pub secrets: Vec<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Print `{"run_id", "status", "outputs", "error"}` as the last line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    pub run: String,
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    pub run: String,
    #[arg(short = 'i', long = "input", value_name = "K=V")]
    pub inputs: Vec<String>,
    #[arg(long = "secret", value_name = "K=V")]
    pub secrets: Vec<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RunRefArgs {
    pub run: String,
    #[arg(long = "secret", value_name = "K=V")]
    pub secrets: Vec<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SubscriptionArgs {
    pub id: String,
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

#[derive(Args, Debug)]
pub struct GraphArgs {
    pub file: PathBuf,
    pub workflow: String,
    #[arg(long, value_enum, default_value = "mermaid")]
    pub format: GraphFormat,
}

#[derive(Args, Debug)]
pub struct FmtArgs {
    /// Files or directories; `-` reads standard input and writes standard output.
    pub paths: Vec<PathBuf>,
    /// List the files that would change and exit 1; change nothing.
    #[arg(long)]
    pub check: bool,
}

#[derive(Args, Debug)]
pub struct ReplArgs {
    pub file: Option<PathBuf>,
    /// Store runs here instead of in memory.
    #[arg(long, env = "ORCH_DB")]
    pub db: Option<PathBuf>,
}

/// Parses the arguments, runs the command, and returns the exit status.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { exit::USAGE } else { exit::OK };
        }
    };
    crate::run::watchdog::enable();
    match cli.command {
        Command::WatchGroup { pgid } => crate::run::watchdog::main(pgid),
        Command::Check(args) => check::run(args),
        Command::Fmt(args) => fmt::run(args),
        Command::Graph(args) => graph::run(args),
        Command::Repl(args) => repl::run(args),
        Command::Run(args) => run::run(args),
        Command::Resume(args) => run::resume(args),
        Command::Retry(args) => run::retry(args),
        Command::Abort(args) => run::abort(args),
        Command::Runs(args) => runs::runs(args.store, args.json),
        Command::Show(args) => runs::show(args),
        Command::Subscriptions(args) => runs::subscriptions(args),
        Command::Subscription(args) => runs::subscription(args),
    }
}
