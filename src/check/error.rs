//! The checker's errors as plain data, and their one conversion into `Diagnostic`s.
//!
//! A check error may point into several files (a `compensate` clause in an imported module, a
//! secret declared elsewhere); labels outside the primary label's file become help text, because
//! a rendered diagnostic shows one source.

use crate::diagnostics::{Code, Diagnostic, Source};
use crate::syntax::ast::Span;
use std::sync::Arc;

/// A module's index in the checker's module table (and in `ir::Program::files`).
pub type ModId = usize;

#[derive(Clone, Debug)]
pub struct At {
    pub module: ModId,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct CheckError {
    pub code: Code,
    pub warning: bool,
    pub message: String,
    /// The first label is the primary location.
    pub labels: Vec<(At, String)>,
    pub help: Option<String>,
}

impl CheckError {
    pub fn new(code: Code, at: At, message: impl Into<String>, label: impl Into<String>) -> CheckError {
        CheckError { code, warning: false, message: message.into(), labels: vec![(at, label.into())], help: None }
    }

    pub fn warning(mut self) -> CheckError {
        self.warning = true;
        self
    }

    pub fn label(mut self, at: At, message: impl Into<String>) -> CheckError {
        self.labels.push((at, message.into()));
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> CheckError {
        self.help = Some(help.into());
        self
    }

    pub fn to_diagnostic(&self, sources: &[Arc<Source>]) -> Diagnostic {
        let primary = &self.labels[0].0;
        let source = &sources[primary.module];
        let mut diag = if self.warning {
            Diagnostic::warning(self.code, self.message.clone())
        } else {
            Diagnostic::error(self.code, self.message.clone())
        };
        diag = diag.in_source(source);
        let mut elsewhere = vec![];
        for (at, message) in &self.labels {
            if at.module == primary.module {
                diag = diag.with_label(at.span, message.clone());
            } else {
                let other = &sources[at.module];
                let (line, col) = other.line_col(at.span.start);
                elsewhere.push(format!("{message} ({}:{line}:{col})", other.name));
            }
        }
        let help: Vec<String> = self.help.iter().cloned().chain(elsewhere).collect();
        if !help.is_empty() {
            diag = diag.with_help(help.join("\n"));
        }
        diag
    }
}
