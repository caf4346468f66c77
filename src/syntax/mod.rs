//! Source text to AST. The only module that touches pest types.

pub mod ast;
mod parser;

pub use parser::{parse_duration, scan_comments, CONTEXTUAL, DECLARATION_KEYWORDS, MAX_DEPTH, RESERVED};

use crate::diagnostics::{Code, Diagnostic, Source};
use ast::Span;
use std::sync::Arc;

/// A syntax error: where, and what was expected, in words.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseError {
    pub span: Span,
    pub message: String,
}

impl ParseError {
    pub fn to_diagnostic(&self, source: &Arc<Source>) -> Diagnostic {
        Diagnostic::error(Code::ParseSyntax, self.message.clone()).in_source(source).with_label(self.span, "here")
    }
}

/// Parses one file.
pub fn parse(source: &str) -> Result<ast::Module, ParseError> {
    parser::parse(source)
}
