//! The checker: names, types, data flow and lifecycles; lowers the AST to `crate::ir`.
//!
//! It keeps going after an error and reports all of them, across all files.

use crate::diagnostics::Diagnostic;
use crate::ir::Program;
use std::path::Path;

/// What checking one root file (and its imports) gives.
pub struct CheckResult {
    /// The checked program; `None` when there is any error.
    pub program: Option<Program>,
    /// Errors and warnings, in source order per file.
    pub diagnostics: Vec<Diagnostic>,
}

/// Checks the file at `path` and every module it imports.
pub fn check_path(_path: &Path) -> CheckResult {
    CheckResult { program: None, diagnostics: vec![] }
}

/// Checks source text; relative imports resolve against `dir`.
pub fn check_source(_name: &str, _text: &str, _dir: &Path) -> CheckResult {
    CheckResult { program: None, diagnostics: vec![] }
}
