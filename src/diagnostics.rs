//! Diagnostics as plain data, and their three renderings (brief §9): human (miette), json, github.
//!
//! Each stage has its own error type (`syntax::ParseError`, `check::CheckError`, `run::RunError`)
//! and turns it into a `Diagnostic` in one place; rendering happens only at the edge (the CLI).

use crate::syntax::ast::Span;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// Every stable diagnostic code (brief §10), plus the warnings and the I/O error of `orchc check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    ParseSyntax,
    NameUnknown,
    NameDuplicate,
    ImportNotFound,
    ImportCycle,
    TypeMismatch,
    TypeUnknownField,
    TypeMissingField,
    TypeArity,
    TypeEffect,
    StepOutputMismatch,
    FlowMissingKey,
    FlowKeyType,
    FlowParallelDependency,
    FlowConflictingWrites,
    FlowCycle,
    FlowMissingOutput,
    LifecycleUnknownState,
    LifecycleBadTransition,
    LifecycleStateMismatch,
    SecretLeak,
    ConfigUnknown,
    ConfigType,
    RunConversion,
    RunLifecycleFields,
    RunPollTimeout,
    RunSubscriptionLocked,
    /// A file could not be read.
    IoRead,
    IoWrite,
    /// Warning: a step output that no later step reads and no workflow returns.
    LintUnusedOutput,
    /// Warning: a step that no workflow calls and nothing compensates with.
    LintUnusedStep,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::ParseSyntax => "orch::parse::syntax",
            Code::NameUnknown => "orch::name::unknown",
            Code::NameDuplicate => "orch::name::duplicate",
            Code::ImportNotFound => "orch::import::not_found",
            Code::ImportCycle => "orch::import::cycle",
            Code::TypeMismatch => "orch::type::mismatch",
            Code::TypeUnknownField => "orch::type::unknown_field",
            Code::TypeMissingField => "orch::type::missing_field",
            Code::TypeArity => "orch::type::arity",
            Code::TypeEffect => "orch::type::effect",
            Code::StepOutputMismatch => "orch::step::output_mismatch",
            Code::FlowMissingKey => "orch::flow::missing_key",
            Code::FlowKeyType => "orch::flow::key_type",
            Code::FlowParallelDependency => "orch::flow::parallel_dependency",
            Code::FlowConflictingWrites => "orch::flow::conflicting_writes",
            Code::FlowCycle => "orch::flow::cycle",
            Code::FlowMissingOutput => "orch::flow::missing_output",
            Code::LifecycleUnknownState => "orch::lifecycle::unknown_state",
            Code::LifecycleBadTransition => "orch::lifecycle::bad_transition",
            Code::LifecycleStateMismatch => "orch::lifecycle::state_mismatch",
            Code::SecretLeak => "orch::secret::leak",
            Code::ConfigUnknown => "orch::config::unknown",
            Code::ConfigType => "orch::config::type",
            Code::RunConversion => "orch::run::conversion",
            Code::RunLifecycleFields => "orch::run::lifecycle_fields",
            Code::RunPollTimeout => "orch::run::poll_timeout",
            Code::RunSubscriptionLocked => "orch::run::subscription_locked",
            Code::IoRead => "orch::io::read",
            Code::IoWrite => "orch::io::write",
            Code::LintUnusedOutput => "orch::lint::unused_output",
            Code::LintUnusedStep => "orch::lint::unused_step",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A source file as the diagnostics see it.
#[derive(Debug)]
pub struct Source {
    /// As the user named it; diagnostics print it as is.
    pub name: String,
    pub text: Arc<str>,
    /// Byte offset of the start of every line, so positions are found in logarithmic time (the
    /// checker asks for one per expression).
    line_starts: Vec<usize>,
    /// Whether each line is ASCII: there a column is a byte difference, not a count of the
    /// characters before it (which made a long line quadratic).
    line_ascii: Vec<bool>,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Arc<Source> {
        let text: Arc<str> = text.into();
        let line_starts: Vec<usize> = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        let line_ascii = line_starts
            .iter()
            .enumerate()
            .map(|(i, &start)| text[start..line_starts.get(i + 1).copied().unwrap_or(text.len())].is_ascii())
            .collect();
        Arc::new(Source { name: name.into(), text, line_starts, line_ascii })
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let mut line_start = self.line_starts[line - 1];
        // A leading byte order mark takes no column.
        if line == 1 && self.text.starts_with('\u{feff}') && offset >= 3 {
            line_start = 3;
        }
        let column = if self.line_ascii[line - 1] {
            offset - line_start + 1
        } else {
            self.text[line_start..offset].chars().count() + 1
        };
        (line, column)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[derive(Clone, Debug)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

impl Label {
    pub fn new(span: Span, message: impl Into<String>) -> Label {
        Label { span, message: message.into() }
    }
}

/// One diagnostic: the first label is the primary location.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub source: Option<Arc<Source>>,
    pub labels: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: Code, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            source: None,
            labels: vec![],
            help: None,
        }
    }

    pub fn warning(code: Code, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, message) }
    }

    pub fn in_source(mut self, source: &Arc<Source>) -> Diagnostic {
        self.source = Some(source.clone());
        self
    }

    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label::new(span, message));
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// 1-based (line, column) of the primary label, or (1, 1) without one.
    pub fn position(&self) -> (usize, usize) {
        match (&self.source, self.labels.first()) {
            (Some(src), Some(label)) => src.line_col(label.span.start),
            _ => (1, 1),
        }
    }

    fn end_position(&self) -> (usize, usize) {
        match (&self.source, self.labels.first()) {
            (Some(src), Some(label)) => src.line_col(label.span.end),
            _ => (1, 1),
        }
    }

    pub fn file_name(&self) -> &str {
        self.source.as_ref().map_or("", |s| s.name.as_str())
    }
}

/// How `orchc check` and the run commands print diagnostics.
#[derive(Clone, Copy, Debug)]
pub struct HumanStyle {
    pub color: bool,
    pub width: usize,
}

/// Renders with miette's graphical handler: code, message, source excerpt with labels, help.
pub fn render_human(diag: &Diagnostic, style: HumanStyle) -> String {
    use miette::{GraphicalReportHandler, GraphicalTheme};
    let theme = if style.color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(style.width).with_links(false);
    let mut out = String::new();
    let report = MietteView(diag);
    if handler.render_report(&mut out, &report).is_err() {
        out = format!("{}: {}\n", diag.code, diag.message);
    }
    out
}

/// `orchc check --format json` (brief §9).
pub fn render_json(files: usize, diags: &[Diagnostic]) -> String {
    #[derive(Serialize)]
    struct JsonLabel<'a> {
        message: &'a str,
        line: usize,
        column: usize,
    }
    #[derive(Serialize)]
    struct JsonDiag<'a> {
        code: &'static str,
        severity: Severity,
        message: &'a str,
        file: &'a str,
        line: usize,
        column: usize,
        end_line: usize,
        end_column: usize,
        help: Option<&'a str>,
        labels: Vec<JsonLabel<'a>>,
    }
    #[derive(Serialize)]
    struct Report<'a> {
        files: usize,
        errors: usize,
        warnings: usize,
        diagnostics: Vec<JsonDiag<'a>>,
    }
    let diagnostics = diags
        .iter()
        .map(|d| {
            let (line, column) = d.position();
            let (end_line, end_column) = d.end_position();
            let labels = d
                .labels
                .iter()
                .map(|l| {
                    let (line, column) = d.source.as_ref().map_or((1, 1), |s| s.line_col(l.span.start));
                    JsonLabel { message: &l.message, line, column }
                })
                .collect();
            JsonDiag {
                code: d.code.as_str(),
                severity: d.severity,
                message: &d.message,
                file: d.file_name(),
                line,
                column,
                end_line,
                end_column,
                help: d.help.as_deref(),
                labels,
            }
        })
        .collect();
    let report = Report {
        files,
        errors: diags.iter().filter(|d| d.severity == Severity::Error).count(),
        warnings: diags.iter().filter(|d| d.severity == Severity::Warning).count(),
        diagnostics,
    };
    serde_json::to_string(&report).expect("the report serializes")
}

/// `orchc check --format github`: one workflow command per diagnostic.
pub fn render_github(diag: &Diagnostic) -> String {
    let (line, col) = diag.position();
    let kind = match diag.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    // GitHub's workflow commands need `%`, CR and LF escaped in the message, and `,` `:` in properties.
    let escape_data = |s: &str| s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
    let escape_prop = |s: &str| escape_data(s).replace(':', "%3A").replace(',', "%2C");
    format!(
        "::{kind} file={},line={line},col={col},title={}::{}",
        escape_prop(diag.file_name()),
        escape_prop(diag.code.as_str()),
        escape_data(&diag.message)
    )
}

/// Adapts a `Diagnostic` to miette's trait, only for rendering.
struct MietteView<'a>(&'a Diagnostic);

impl fmt::Debug for MietteView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.message)
    }
}

impl fmt::Display for MietteView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.message)
    }
}

impl std::error::Error for MietteView<'_> {}

impl miette::Diagnostic for MietteView<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.0.code.as_str()))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.0.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.0.help.as_ref().map(|h| Box::new(h.as_str()) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.0.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        if self.0.source.is_none() || self.0.labels.is_empty() {
            return None;
        }
        let text_len = self.0.source.as_ref().map_or(0, |s| s.text.len());
        Some(Box::new(self.0.labels.iter().enumerate().map(move |(i, l)| {
            let start = l.span.start.min(text_len);
            let len = l.span.end.min(text_len).saturating_sub(start);
            let label = if l.message.is_empty() { None } else { Some(l.message.clone()) };
            if i == 0 {
                miette::LabeledSpan::new_primary_with_span(label, (start, len))
            } else {
                miette::LabeledSpan::new_with_span(label, (start, len))
            }
        })))
    }
}

impl miette::SourceCode for Source {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let inner = self.text.read_span(span, context_lines_before, context_lines_after)?;
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line(),
            inner.column(),
            inner.line_count(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_is_one_based_in_characters() {
        let src = Source::new("a.orch", "ab\nçd\n");
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(3), (2, 1));
        assert_eq!(src.line_col(5), (2, 2)); // after the two-byte `ç`
    }

    #[test]
    fn github_format_escapes() {
        let src = Source::new("x,y.orch", "step");
        let d = Diagnostic::error(Code::NameUnknown, "100% wrong\nagain")
            .in_source(&src)
            .with_label(Span::new(0, 4), "here");
        assert_eq!(
            render_github(&d),
            "::error file=x%2Cy.orch,line=1,col=1,title=orch%3A%3Aname%3A%3Aunknown::100%25 wrong%0Aagain"
        );
    }
}
