//! Run-time errors: what failed, whether a retry may help, and where in the source.

use crate::diagnostics::Code;
use crate::ir::Loc;
use std::fmt;

/// Why a step attempt (or an expression in a flow) failed.
#[derive(Clone, Debug, PartialEq)]
pub struct StepError {
    pub message: String,
    /// Transport errors, timeouts, 429 and 5xx, `fail(..., retryable: true)`.
    pub retryable: bool,
    /// A stable code for the failures the brief names (`orch::run::conversion`, ...).
    pub code: Option<Code>,
    pub loc: Option<Loc>,
}

impl StepError {
    pub fn permanent(message: impl Into<String>) -> StepError {
        StepError { message: message.into(), retryable: false, code: None, loc: None }
    }
    pub fn retryable(message: impl Into<String>) -> StepError {
        StepError { message: message.into(), retryable: true, code: None, loc: None }
    }
    pub fn coded(code: Code, message: impl Into<String>) -> StepError {
        StepError { message: message.into(), retryable: false, code: Some(code), loc: None }
    }
    pub fn at(mut self, loc: Loc) -> StepError {
        self.loc.get_or_insert(loc);
        self
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)
    }
}

/// Errors of the run commands before or around execution (not a step's failure).
#[derive(Debug)]
pub enum RunError {
    /// Bad command-line input: an `-i` value, an unknown workflow. Nothing stored.
    Usage(String),
    /// A `--config` that names no config (`orch::config::unknown`) or has the wrong type
    /// (`orch::config::type`). Nothing stored.
    Config(Code, String),
    /// The store could not be opened or written.
    Store(String),
    /// Another process drives this run.
    Busy(String),
    /// No run or subscription has the id (or id prefix) given.
    NotFound(String),
    /// A subscription is locked by another run (`orch::run::subscription_locked`).
    Locked(String),
    /// A subscription is not in the state a parameter needs, or does not exist.
    Subscription(String),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Usage(m)
            | RunError::Store(m)
            | RunError::Busy(m)
            | RunError::Locked(m)
            | RunError::Subscription(m)
            | RunError::Config(_, m)
            | RunError::NotFound(m) => {
                write!(f, "{m}")
            }
        }
    }
}

impl RunError {
    pub fn code(&self) -> &'static str {
        match self {
            RunError::Locked(_) => Code::RunSubscriptionLocked.as_str(),
            RunError::Config(code, _) => code.as_str(),
            RunError::Usage(_) => "orch::run::usage",
            RunError::Store(_) => "orch::run::store",
            RunError::Busy(_) => "orch::run::busy",
            RunError::NotFound(_) => "orch::run::not_found",
            RunError::Subscription(_) => "orch::run::subscription",
        }
    }
}

/// A stored value that cannot be read, raised inside a row mapping (which can only return a
/// `rusqlite::Error`); its message names the run and what could not be read.
#[derive(Debug)]
pub struct Unreadable(pub String);

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for Unreadable {}

impl From<rusqlite::Error> for RunError {
    fn from(e: rusqlite::Error) -> RunError {
        match e {
            rusqlite::Error::ToSqlConversionFailure(e) if e.is::<Unreadable>() => RunError::Store(e.to_string()),
            e => RunError::Store(format!("store error: {e}")),
        }
    }
}
