//! pest pairs to AST. The grammar is `grammar/orch.pest`.

use super::ast::*;
use super::ParseError;
use pest::iterators::Pair;
use pest::Parser as _;

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/orch.pest"]
struct OrchParser;

/// How deep the syntax tree may nest (brackets, operator chains, flows). Deeper input is refused
/// with a syntax error rather than risking the stack of the checker or the interpreter.
/// Precedence of the comparison operators, which do not chain.
const COMPARISON: u8 = 3;

pub const MAX_DEPTH: usize = 200;
/// How deep brackets may nest; checked before pest runs so that pest's recursion stays shallow.
const MAX_BRACKETS: usize = 100;

type Result<T> = std::result::Result<T, ParseError>;

pub fn parse(source: &str) -> Result<Module> {
    check_brackets(source)?;
    let comments = scan_comments(source);
    // Declarations are parsed one stretch at a time: pest's token queue then stays small
    // instead of holding every token of a large file at once.
    let mut stretches = declaration_stretches(source);
    // A leading byte order mark is not part of the text; spans stay offsets into `source`.
    if source.starts_with('\u{feff}') {
        stretches[0].0 = '\u{feff}'.len_utf8();
    }
    let mut items = parse_stretches(source, &comments, &stretches)?;
    attach_docs(source, &mut items, &comments);
    Ok(Module { items, comments })
}

fn parse_stretches(source: &str, comments: &[Comment], stretches: &[(usize, usize)]) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    for &(start, end) in stretches {
        let file = match OrchParser::parse(Rule::file, &source[start..end]) {
            Ok(mut pairs) => pairs.next().expect("the file rule always produces a pair"),
            Err(_) => return Err(describe_failure(source, start, end)),
        };
        let mut builder = Builder { src: source, offset: start, comments, depth: 0 };
        for pair in file.into_inner() {
            if pair.as_rule() == Rule::EOI {
                break;
            }
            items.push(builder.item(pair)?);
        }
    }
    Ok(items)
}

/// Splits a file before every line that starts, in its first column, with a declaration keyword
/// followed by a name (`step deploy`, `input step`, `use "x.orch"`). Such a line cannot be inside
/// another declaration: the keywords are reserved, strings do not span lines, and a field named
/// like a keyword is followed by `:`. A stretch may still hold several declarations.
fn declaration_stretches(source: &str) -> Vec<(usize, usize)> {
    fn starts_declaration(line: &str) -> bool {
        let word_end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(line.len());
        let (word, rest) = line.split_at(word_end);
        let after_ws = rest.trim_start_matches([' ', '\t']);
        if after_ws.len() == rest.len() {
            return false;
        }
        if word == "input" {
            return starts_declaration(after_ws) && after_ws.starts_with("step");
        }
        DECLARATION_KEYWORDS.contains(&word)
            && after_ws.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '"')
    }
    let mut starts = vec![0];
    let mut offset = 0;
    for line in source.split_inclusive('\n') {
        if offset > 0 && starts_declaration(line) {
            starts.push(offset);
        }
        offset += line.len();
    }
    let mut stretches: Vec<(usize, usize)> = starts.windows(2).map(|w| (w[0], w[1])).collect();
    stretches.push((*starts.last().expect("at least one start"), source.len()));
    stretches
}

/// Parses once more with pest's error detail switched on, to name what was expected at the
/// furthest point the parser reached.
fn describe_failure(full: &str, start: usize, end: usize) -> ParseError {
    pest::set_error_detail(true);
    let result = OrchParser::parse(Rule::file, &full[start..end]);
    pest::set_error_detail(false);
    let err = match result {
        Err(e) => e,
        Ok(_) => return ParseError { span: Span::new(start, start), message: "the text is not orch".into() },
    };
    let mut pos = match err.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((s, _)) => s,
    };
    let mut words: Vec<&'static str> = Vec::new();
    let mut tokens: Vec<String> = Vec::new();
    match err.parse_attempts() {
        Some(attempts) if attempts.max_position >= pos => {
            pos = attempts.max_position;
            for stack in attempts.call_stacks() {
                // pest does not export `ParseAttempt`; its `Debug` form is `Rule(name)`.
                let deepest = format!("{:?}", stack.deepest);
                if let Some(rule) = Rule::all_rules().iter().find(|r| deepest == format!("Rule({r:?})")) {
                    words.extend(rule_in_words(*rule));
                }
            }
            // `ParsingToken` is not exported; its `Display` is the literal text for literals.
            tokens = attempts.expected_tokens().iter().map(ToString::to_string).collect();
        }
        _ => {
            if let pest::error::ErrorVariant::ParsingError { positives, .. } = &err.variant {
                words.extend(positives.iter().filter_map(|r| rule_in_words(*r)));
            }
        }
    }
    pos += start;
    let source = full;
    if let Some(e) = reserved_word_as_name(source, pos, &words) {
        return e;
    }
    let expected = expected_in_words(words, tokens);
    let found = describe_found(source, pos);
    let message = match expected.len() {
        0 => format!("unexpected {found}"),
        1 => format!("expected {}, found {found}", expected[0]),
        n => format!("expected {} or {}, found {found}", expected[..n - 1].join(", "), expected[n - 1]),
    };
    let end = (pos + source[pos..].chars().next().map_or(0, char::len_utf8)).min(source.len());
    ParseError { span: Span::new(pos, end), message }
}

/// `step step(`: pest gets as far as the end of the reserved word before giving up on a name.
fn reserved_word_as_name(source: &str, pos: usize, words: &[&str]) -> Option<ParseError> {
    if !words.contains(&"a name") {
        return None;
    }
    let before = &source[..pos];
    let start = before.trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_').len();
    let word = &before[start..];
    let reserved = RESERVED.contains(&word);
    reserved.then(|| ParseError {
        span: Span::new(start, pos),
        message: format!("`{word}` is a reserved word and cannot be used as a name"),
    })
}

/// The reserved words of §3 (the `reserved` rule of the grammar).
pub const RESERVED: &[&str] = &[
    "use",
    "config",
    "secret",
    "type",
    "enum",
    "block",
    "product",
    "lifecycle",
    "step",
    "workflow",
    "environment",
    "let",
    "if",
    "else",
    "for",
    "in",
    "as",
    "with",
    "true",
    "false",
    "none",
    "and",
    "or",
    "not",
];

/// The words that start a declaration (after an optional `input`).
pub const DECLARATION_KEYWORDS: &[&str] =
    &["use", "config", "secret", "type", "enum", "block", "product", "lifecycle", "step", "workflow", "environment"];

/// The contextual keywords of §3: keywords where they start their construct, names elsewhere.
pub const CONTEXTUAL: &[&str] = &[
    "fixed",
    "when",
    "input",
    "graph",
    "after",
    "limit",
    "retry",
    "backoff",
    "factor",
    "timeout",
    "compensate",
    "poll",
    "every",
    "until",
    "within",
];

/// What could continue a complete expression or type; noise next to a closing bracket or a
/// separator, which is what the writer most likely forgot.
const CONTINUATIONS: &[&str] = &[
    ".", "?", "@", "??", "+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "and", "or", "as", "with", "[",
    "(", "..", "|",
];
/// Tokens that start an expression; "an expression" says it.
const EXPRESSION_STARTS: &[&str] = &["(", "-", "[", "{", "not", "true", "false", "none", "if", "for"];

fn expected_in_words(words: Vec<&'static str>, tokens: Vec<String>) -> Vec<String> {
    let mut expected: Vec<String> = Vec::new();
    for w in &words {
        push_unique(&mut expected, w.to_string());
    }
    let expression = words.contains(&"an expression");
    let tokens: Vec<String> = tokens
        .into_iter()
        .filter(|t| !t.trim().is_empty() && t != "_" && t != "BUILTIN_RULE" && t != "\"" && t != "//")
        .filter(|t| !(t.chars().count() == 4 && t.contains("..")) || t == "..")
        .filter(|t| !(expression && EXPRESSION_STARTS.contains(&t.as_str())))
        .collect();
    let has_plain = tokens.iter().any(|t| !CONTINUATIONS.contains(&t.as_str())) || !expected.is_empty();
    for t in tokens {
        if has_plain && CONTINUATIONS.contains(&t.as_str()) {
            continue;
        }
        push_unique(&mut expected, format!("`{t}`"));
    }
    expected.truncate(8);
    expected
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

fn describe_found(source: &str, pos: usize) -> String {
    let rest = &source[pos..];
    match rest.chars().next() {
        None => "the end of the file".into(),
        Some('\n') | Some('\r') => "the end of the line".into(),
        Some(c) if c.is_ascii_alphanumeric() || c == '_' => {
            let word: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            format!("`{word}`")
        }
        Some(c) => format!("`{c}`"),
    }
}

/// What a grammar rule is, in words, for "expected ..." messages; `None` for rules whose
/// expected tokens already say it.
fn rule_in_words(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::ident | Rule::path | Rule::word => "a name",
        Rule::expr | Rule::operand | Rule::postfix_expr | Rule::primary => "an expression",
        Rule::type_expr | Rule::named_type | Rule::list_or_map_type | Rule::record_type => "a type",
        Rule::string => "a string",
        Rule::int => "an integer",
        Rule::float => "a number",
        Rule::duration => "a duration such as `30s`",
        Rule::flow | Rule::flow_par | Rule::flow_call => "a step call",
        Rule::use_decl
        | Rule::config_decl
        | Rule::secret_decl
        | Rule::type_decl
        | Rule::enum_decl
        | Rule::lifecycle_decl
        | Rule::block_decl
        | Rule::product_decl
        | Rule::step_decl
        | Rule::workflow_decl
        | Rule::environment_decl => "a declaration",
        Rule::EOI => "the end of the file",
        Rule::block => "`{`",
        Rule::params | Rule::outputs | Rule::call_args | Rule::call_bindings => "`(`",
        Rule::sep => "`,`",
        Rule::field_decl | Rule::fixed_field => "a field",
        Rule::param => "a parameter",
        Rule::output => "an output",
        Rule::let_stmt => "`let`",
        Rule::binary_op => "an operator",
        _ => return None,
    })
}

/// Refuses brackets nested deeper than `MAX_BRACKETS`, before pest recurses into them. A `${`
/// in a string opens code until its matching `}` and counts as a bracket, so brackets inside
/// interpolations (and strings inside those) are counted too.
fn check_brackets(source: &str) -> Result<()> {
    enum Mode {
        /// Code; `interp` is the bracket depth at which this code was opened by `${`.
        Code {
            interp: Option<usize>,
        },
        Str,
    }
    let mut depth = 0usize;
    let mut stack = vec![Mode::Code { interp: None }];
    let mut chars = source.char_indices().peekable();
    let too_deep = |i: usize| ParseError {
        span: Span::new(i, i + 1),
        message: format!("brackets nest more than {MAX_BRACKETS} levels deep here"),
    };
    while let Some((i, c)) = chars.next() {
        match stack.last().expect("the mode stack is never empty") {
            Mode::Str => match c {
                '\\' => {
                    chars.next();
                }
                // A string ends at its quote or, unterminated, at the end of the line.
                '"' | '\n' => {
                    stack.pop();
                }
                '$' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    depth += 1;
                    if depth > MAX_BRACKETS {
                        return Err(too_deep(i));
                    }
                    stack.push(Mode::Code { interp: Some(depth) });
                }
                _ => {}
            },
            Mode::Code { interp } => match c {
                '"' => stack.push(Mode::Str),
                '/' if chars.peek().map(|p| p.1) == Some('/') => {
                    while chars.peek().is_some_and(|p| p.1 != '\n') {
                        chars.next();
                    }
                }
                '(' | '[' | '{' => {
                    depth += 1;
                    if depth > MAX_BRACKETS {
                        return Err(too_deep(i));
                    }
                }
                ')' | ']' | '}' => {
                    if c == '}' && *interp == Some(depth) {
                        stack.pop();
                    }
                    depth = depth.saturating_sub(1);
                }
                _ => {}
            },
        }
    }
    Ok(())
}

struct Builder<'s> {
    /// The whole file; pest parsed the stretch starting at `offset`.
    src: &'s str,
    offset: usize,
    /// Every comment, sorted, to trim them off the ends of spans.
    comments: &'s [Comment],
    /// Nesting depth of the tree being built, counted as the AST will nest.
    depth: usize,
}

fn error(span: Span, message: impl Into<String>) -> ParseError {
    ParseError { span, message: message.into() }
}

impl<'s> Builder<'s> {
    /// The pair's span without trailing whitespace and comments, which pest includes when a
    /// rule ends in an optional part that did not match.
    fn span(&self, pair: &Pair<Rule>) -> Span {
        let (start, mut end) = (pair.as_span().start() + self.offset, pair.as_span().end() + self.offset);
        loop {
            end = start + self.src[start..end].trim_end().len();
            let ending_here = self.comments.binary_search_by(|c| c.span.end.cmp(&end));
            match ending_here {
                Ok(i) if self.comments[i].span.start >= start && end > start => end = self.comments[i].span.start,
                _ => return Span::new(start, end),
            }
        }
    }

    fn ident(&self, pair: Pair<Rule>) -> Ident {
        Ident { name: pair.as_str().to_string(), span: self.span(&pair) }
    }

    /// Runs `f` one level deeper (or `extra` levels deeper), refusing too deep a tree.
    fn nested<T>(&mut self, at: Span, extra: usize, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.depth += extra;
        if self.depth > MAX_DEPTH {
            self.depth -= extra;
            return Err(error(at, format!("this nests more than {MAX_DEPTH} levels deep; split it up")));
        }
        let result = f(self);
        self.depth -= extra;
        result
    }

    /// Items written on one line must be separated by `,` or `;` (the grammar makes separators
    /// optional so that newlines can separate too).
    fn check_separated(&self, items: &[(Span, bool)], what: &str) -> Result<()> {
        for pair in items.windows(2) {
            let ((prev, _), (next, separated)) = (pair[0], pair[1]);
            if !separated && !self.src[prev.end..next.start].contains('\n') {
                return Err(error(
                    Span::new(next.start, next.start + 1),
                    format!("expected a newline or `{what}` before this"),
                ));
            }
        }
        Ok(())
    }

    /// Walks `pairs`, building each non-separator with `build`, and checks the separators.
    fn separated<T>(
        &mut self,
        pairs: impl Iterator<Item = Pair<'s, Rule>>,
        sep_word: &str,
        mut build: impl FnMut(&mut Self, Pair<'s, Rule>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let mut seen: Vec<(Span, bool)> = Vec::new();
        let mut separated = true;
        for pair in pairs {
            if pair.as_rule() == Rule::sep {
                separated = true;
                continue;
            }
            seen.push((self.span(&pair), separated));
            separated = false;
            out.push(build(self, pair)?);
        }
        self.check_separated(&seen, sep_word)?;
        Ok(out)
    }

    fn item(&mut self, pair: Pair<'s, Rule>) -> Result<Item> {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut inner = pair.into_inner();
        let kind = match rule {
            Rule::use_decl => {
                inner.next(); // `use`
                let target = inner.next().expect("use target");
                match target.as_rule() {
                    Rule::std_module => {
                        let name = target.into_inner().nth(1).expect("std module name");
                        ItemKind::Use(UseDecl { target: UseTarget::Std { name: self.ident(name) } })
                    }
                    _ => {
                        let mut parts = target.into_inner();
                        let string = parts.next().expect("use path");
                        let path_span = self.span(&string);
                        let text = self.plain_string(string)?;
                        parts.next(); // `as`
                        let alias = self.ident(parts.next().expect("use alias"));
                        ItemKind::Use(UseDecl { target: UseTarget::File { path: text, path_span, alias } })
                    }
                }
            }
            Rule::config_decl => {
                inner.next();
                let name = self.ident(inner.next().expect("config name"));
                let ty = self.type_expr(inner.next().expect("config type"))?;
                let value = self.expr(inner.next().expect("config value"))?;
                ItemKind::Config(ConfigDecl { name, ty, value })
            }
            Rule::secret_decl => {
                inner.next();
                ItemKind::Secret(SecretDecl { name: self.ident(inner.next().expect("secret name")) })
            }
            Rule::type_decl => {
                inner.next();
                let name = self.ident(inner.next().expect("type name"));
                let ty = self.type_expr(inner.next().expect("type"))?;
                ItemKind::Type(TypeDecl { name, ty })
            }
            Rule::enum_decl => {
                inner.next();
                let name = self.ident(inner.next().expect("enum name"));
                let variants = self.separated(inner, ",", |b, p| Ok(b.ident(p)))?;
                ItemKind::Enum(EnumDecl { name, variants })
            }
            Rule::lifecycle_decl => {
                inner.next();
                let name = self.ident(inner.next().expect("lifecycle name"));
                let chains =
                    self.separated(inner, ";", |b, p| Ok(p.into_inner().map(|s| b.ident(s)).collect::<Vec<_>>()))?;
                ItemKind::Lifecycle(LifecycleDecl { name, chains })
            }
            Rule::block_decl => {
                inner.next();
                let name = self.ident(inner.next().expect("block name"));
                let fields = self.separated(inner, ",", |b, p| b.field_decl(p))?;
                ItemKind::Block(BlockDecl { name, fields })
            }
            Rule::product_decl => {
                inner.next();
                let name = self.ident(inner.next().expect("product name"));
                inner.next(); // `lifecycle`
                let lifecycle = self.path(inner.next().expect("product lifecycle"));
                let members = self.separated(inner, ",", |b, p| match p.as_rule() {
                    Rule::fixed_field => {
                        let span = b.span(&p);
                        let mut f = p.into_inner();
                        f.next(); // `fixed`
                        let name = b.ident(f.next().expect("fixed name"));
                        let ty = b.type_expr(f.next().expect("fixed type"))?;
                        let value = b.expr(f.next().expect("fixed value"))?;
                        Ok(ProductMember::Fixed { name, ty, value, span })
                    }
                    _ => Ok(ProductMember::Field(b.field_decl(p)?)),
                })?;
                ItemKind::Product(ProductDecl { name, lifecycle, members })
            }
            Rule::environment_decl => {
                inner.next();
                let name = self.ident(inner.next().expect("environment name"));
                let overrides = self.separated(inner, ",", |b, p| {
                    let mut o = p.into_inner();
                    let name = b.ident(o.next().expect("override name"));
                    let value = b.expr(o.next().expect("override value"))?;
                    Ok((name, value))
                })?;
                ItemKind::Environment(EnvironmentDecl { name, overrides })
            }
            Rule::step_decl => ItemKind::Step(Box::new(self.step(inner)?)),
            Rule::workflow_decl => {
                inner.next();
                let name = self.ident(inner.next().expect("workflow name"));
                let params = self.params(inner.next().expect("workflow params"))?;
                let outputs_pair = inner.next().expect("workflow outputs");
                let outputs_span = self.span(&outputs_pair);
                let outputs = self.outputs(outputs_pair)?;
                let body_span = Span::new(outputs_span.end, span.end);
                let body = match inner.next() {
                    Some(flow) => self.flow(flow)?,
                    None => Flow { kind: FlowKind::Seq(vec![]), span: body_span },
                };
                ItemKind::Workflow(Box::new(WorkflowDecl { name, params, outputs, outputs_span, body, body_span }))
            }
            other => unreachable!("not an item rule: {other:?}"),
        };
        Ok(Item { doc: None, kind, span })
    }

    fn field_decl(&mut self, pair: Pair<'s, Rule>) -> Result<FieldDecl> {
        let span = self.span(&pair);
        let mut f = pair.into_inner();
        let name = self.ident(f.next().expect("field name"));
        let ty = self.type_expr(f.next().expect("field type"))?;
        let when = match f.next() {
            Some(w) => w.into_inner().skip(1).map(|s| self.ident(s)).collect(),
            None => vec![],
        };
        Ok(FieldDecl { name, ty, when, span })
    }

    fn step(&mut self, mut inner: pest::iterators::Pairs<'s, Rule>) -> Result<StepDecl> {
        let mut first = inner.next().expect("step keyword");
        let input = first.as_rule() == Rule::kw_input;
        if input {
            first = inner.next().expect("step keyword");
        }
        let step_kw = self.span(&first);
        let name = self.ident(inner.next().expect("step name"));
        let params = self.params(inner.next().expect("step params"))?;
        let outputs_pair = inner.next().expect("step outputs");
        let outputs_span = self.span(&outputs_pair);
        let outputs = self.outputs(outputs_pair)?;
        let mut step = StepDecl {
            input,
            name,
            params,
            outputs,
            outputs_span,
            retry: None,
            timeout: None,
            poll: None,
            compensate: None,
            prompt: None,
            body: None,
        };
        for clause in inner {
            let span = self.span(&clause);
            match clause.as_rule() {
                Rule::retry_clause => {
                    let mut c = clause.into_inner();
                    c.next();
                    let attempts = self.literal(c.next().expect("retry count"))?;
                    let mut backoff = None;
                    let mut factor = None;
                    while let Some(kw) = c.next() {
                        if kw.as_rule() == Rule::kw_backoff {
                            let min = self.literal(c.next().expect("backoff min"))?;
                            let max = self.literal(c.next().expect("backoff max"))?;
                            backoff = Some((min, max));
                        } else {
                            factor = Some(self.literal(c.next().expect("factor"))?);
                        }
                    }
                    step.retry = Some(Box::new(RetryClause { attempts, backoff, factor, span }));
                }
                Rule::timeout_clause => {
                    let value = self.literal(clause.into_inner().nth(1).expect("timeout value"))?;
                    step.timeout = Some(Box::new(Clause { value, span }));
                }
                Rule::poll_clause => {
                    let mut c = clause.into_inner();
                    c.next();
                    c.next();
                    let every = self.literal(c.next().expect("poll every"))?;
                    c.next();
                    let until = self.expr(c.next().expect("poll until"))?;
                    let within = match c.nth(1) {
                        Some(p) => Some(self.literal(p)?),
                        None => None,
                    };
                    step.poll = Some(Box::new(PollClause { every, until, within, span }));
                }
                Rule::compensate_clause => {
                    let value = self.path(clause.into_inner().nth(1).expect("compensate target"));
                    step.compensate = Some(Clause { value, span });
                }
                Rule::block => {
                    if input {
                        return Err(error(
                            span,
                            "an input step has no body; its outputs are given when the run is resumed",
                        ));
                    }
                    step.body = Some(self.block(clause)?);
                }
                Rule::string => {
                    if !input {
                        return Err(error(
                            span,
                            "expected the step's body `{ ... }`; only an `input step` has a prompt string",
                        ));
                    }
                    step.prompt = Some(Box::new(self.expr_from_string(clause)?));
                }
                other => unreachable!("not a step clause: {other:?}"),
            }
        }
        if !input && step.body.is_none() {
            return Err(error(
                step_kw,
                "this step has no body; write `{ ... }` after its signature, or make it an `input step`",
            ));
        }
        Ok(step)
    }

    fn params(&mut self, pair: Pair<'s, Rule>) -> Result<Vec<Param>> {
        pair.into_inner()
            .map(|p| {
                let span = self.span(&p);
                let mut f = p.into_inner();
                let name = self.ident(f.next().expect("param name"));
                let ty = self.type_expr(f.next().expect("param type"))?;
                let default = match f.next() {
                    Some(d) => Some(Box::new(self.expr(d)?)),
                    None => None,
                };
                Ok(Param { name, ty, default, span })
            })
            .collect()
    }

    fn outputs(&mut self, pair: Pair<'s, Rule>) -> Result<Vec<Output>> {
        pair.into_inner()
            .map(|p| {
                let span = self.span(&p);
                let mut f = p.into_inner();
                let name = self.ident(f.next().expect("output name"));
                let ty = self.type_expr(f.next().expect("output type"))?;
                Ok(Output { name, ty, span })
            })
            .collect()
    }

    fn path(&self, pair: Pair<'s, Rule>) -> Path {
        let span = self.span(&pair);
        let segments = pair.into_inner().map(|p| self.ident(p)).collect();
        Path { segments, span }
    }

    // ---------------------------------------------------------------------------------------
    // Flows

    fn flow(&mut self, pair: Pair<'s, Rule>) -> Result<Flow> {
        let span = self.span(&pair);
        self.nested(span, 1, |b| match pair.as_rule() {
            Rule::flow | Rule::flow_par => {
                let seq = pair.as_rule() == Rule::flow;
                let mut parts: Vec<Flow> = pair.into_inner().map(|p| b.flow(p)).collect::<Result<_>>()?;
                if parts.len() == 1 {
                    return Ok(parts.pop().expect("one part"));
                }
                let kind = if seq { FlowKind::Seq(parts) } else { FlowKind::Par(parts) };
                Ok(Flow { kind, span })
            }
            Rule::flow_group => {
                let inner = b.flow(pair.into_inner().next().expect("group content"))?;
                Ok(Flow { kind: FlowKind::Group(Box::new(inner)), span })
            }
            Rule::flow_call => Ok(Flow { kind: FlowKind::Call(b.flow_call(pair)?), span }),
            Rule::flow_if => {
                // `if a { } else if b { } else { }` comes flat; nest it as `else { if b ... }`,
                // each link one level deeper, as the tree will be.
                let mut arms = vec![];
                let mut otherwise = None;
                let mut f = pair.into_inner();
                while let Some(p) = f.next() {
                    let link = arms.len();
                    match p.as_rule() {
                        Rule::kw_if => {
                            let at = Span::new(p.as_span().start() + b.offset, span.end);
                            let (cond, then) = b.nested(at, link, |b| {
                                let cond = b.expr(f.next().expect("if condition"))?;
                                Ok((cond, Box::new(b.flow(f.next().expect("if body"))?)))
                            })?;
                            arms.push((at, cond, then));
                        }
                        Rule::kw_else => {}
                        _ => otherwise = Some(Box::new(b.nested(span, link.saturating_sub(1), |b| b.flow(p))?)),
                    }
                }
                let mut flow = None;
                for (at, cond, then) in arms.into_iter().rev() {
                    let otherwise = flow.take().map(Box::new).or(otherwise.take());
                    flow = Some(Flow { kind: FlowKind::If { cond, then, otherwise }, span: at });
                }
                Ok(flow.expect("an if has a first arm"))
            }
            Rule::flow_for => {
                let mut f = pair.into_inner();
                f.next();
                let var = b.ident(f.next().expect("for variable"));
                f.next();
                let iter = b.expr(f.next().expect("for iterable"))?;
                let mut limit = None;
                let mut body = None;
                for p in f {
                    match p.as_rule() {
                        Rule::kw_limit => {}
                        Rule::int => limit = Some(b.literal(p)?),
                        _ => body = Some(Box::new(b.flow(p)?)),
                    }
                }
                let body = body.expect("for body");
                Ok(Flow { kind: FlowKind::For { var, iter, limit, body }, span })
            }
            Rule::flow_graph => {
                let items = b.separated(pair.into_inner().skip(1), ",", |b, item| {
                    let span = b.span(&item);
                    let mut parts = item.into_inner();
                    let call = b.flow_call(parts.next().expect("graph call"))?;
                    let after = parts.filter(|p| p.as_rule() == Rule::ident).map(|p| b.ident(p)).collect();
                    Ok(GraphItem { call, after, span })
                })?;
                Ok(Flow { kind: FlowKind::Graph(items), span })
            }
            other => unreachable!("not a flow rule: {other:?}"),
        })
    }

    fn flow_call(&mut self, pair: Pair<'s, Rule>) -> Result<FlowCall> {
        let span = self.span(&pair);
        let mut parts = pair.into_inner();
        let target = self.path(parts.next().expect("call target"));
        let mut args = Vec::new();
        let mut renames = Vec::new();
        for p in parts {
            match p.as_rule() {
                Rule::call_bindings => {
                    for binding in p.into_inner() {
                        let mut f = binding.into_inner();
                        let name = self.ident(f.next().expect("binding name"));
                        let value = self.expr(f.next().expect("binding value"))?;
                        args.push((name, value));
                    }
                }
                Rule::call_renames => {
                    for rename in p.into_inner().filter(|r| r.as_rule() == Rule::rename) {
                        let mut f = rename.into_inner();
                        let key = self.ident(f.next().expect("rename key"));
                        let out = self.ident(f.next().expect("rename output"));
                        renames.push((key, out));
                    }
                }
                other => unreachable!("not a call part: {other:?}"),
            }
        }
        Ok(FlowCall { target, args, renames, span })
    }

    // ---------------------------------------------------------------------------------------
    // Types

    fn type_expr(&mut self, pair: Pair<'s, Rule>) -> Result<TypeExpr> {
        let span = self.span(&pair);
        self.nested(span, 1, |b| {
            let mut parts = pair.into_inner();
            let atom = parts.next().expect("type atom");
            let atom_span = b.span(&atom);
            let kind = match atom.as_rule() {
                Rule::named_type => {
                    let mut f = atom.into_inner();
                    let path = b.path(f.next().expect("type name"));
                    let state = f.next().map(|s| b.ident(s));
                    TypeKind::Named { path, state }
                }
                Rule::list_or_map_type => {
                    let mut f = atom.into_inner();
                    let first = b.type_expr(f.next().expect("element type"))?;
                    match f.next() {
                        Some(value) => TypeKind::Map(Box::new(first), Box::new(b.type_expr(value)?)),
                        None => TypeKind::List(Box::new(first)),
                    }
                }
                Rule::record_type => {
                    let fields = b.separated(atom.into_inner(), ",", |b, field| {
                        let mut f = field.into_inner();
                        let name = b.ident(f.next().expect("field name"));
                        let ty = b.type_expr(f.next().expect("field type"))?;
                        Ok(RecordTypeField { name, ty })
                    })?;
                    TypeKind::Record(fields)
                }
                other => unreachable!("not a type rule: {other:?}"),
            };
            let mut ty = TypeExpr { kind, span: atom_span };
            for mark in parts {
                let end = mark.as_span().end() + b.offset;
                ty = TypeExpr { span: Span::new(atom_span.start, end), kind: TypeKind::Optional(Box::new(ty)) };
            }
            Ok(ty)
        })
    }

    // ---------------------------------------------------------------------------------------
    // Blocks and expressions

    fn block(&mut self, pair: Pair<'s, Rule>) -> Result<Block> {
        let span = self.span(&pair);
        let mut stmts = self.separated(pair.into_inner(), ";", |b, p| {
            if p.as_rule() == Rule::let_stmt {
                let span = b.span(&p);
                let mut f = p.into_inner();
                f.next();
                let name = b.ident(f.next().expect("let name"));
                let next = f.next().expect("let value");
                let (ty, value) = if next.as_rule() == Rule::type_expr {
                    (Some(b.type_expr(next)?), f.next().expect("let value"))
                } else {
                    (None, next)
                };
                Ok(Stmt::Let { name, ty, value: b.expr(value)?, span })
            } else {
                Ok(Stmt::Expr(b.expr(p)?))
            }
        })?;
        let result = match stmts.last() {
            Some(Stmt::Expr(_)) => match stmts.pop() {
                Some(Stmt::Expr(e)) => Some(Box::new(e)),
                _ => unreachable!("just matched an expression"),
            },
            _ => None,
        };
        Ok(Block { stmts, result, span })
    }

    fn expr(&mut self, pair: Pair<'s, Rule>) -> Result<Expr> {
        match pair.as_rule() {
            Rule::expr => self.binary(pair),
            Rule::operand => self.operand(pair),
            Rule::postfix_expr => self.postfix(pair),
            other => unreachable!("not an expression rule: {other:?}"),
        }
    }

    /// `unary_op* postfix (as T)*`: unary operators bind tighter than `as`.
    fn operand(&mut self, pair: Pair<'s, Rule>) -> Result<Expr> {
        let span = self.span(&pair);
        let mut ops = vec![];
        let mut operand = None;
        let mut types = vec![];
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::unary_op => ops.push(p),
                Rule::postfix_expr => operand = Some(p),
                Rule::kw_as => {}
                _ => types.push(p),
            }
        }
        let operand = operand.expect("an operand has a postfix expression");
        let depth = ops.len() + types.len();
        self.nested(span, depth, |b| {
            let mut e = b.postfix(operand)?;
            for op in ops.into_iter().rev() {
                let op_span = b.span(&op);
                let kind = if op.as_str() == "-" { UnaryOp::Neg } else { UnaryOp::Not };
                e = Expr { span: Span::new(op_span.start, e.span.end), kind: ExprKind::Unary(kind, Box::new(e)) };
            }
            for t in types {
                let ty = b.type_expr(t)?;
                let span = Span::new(e.span.start, ty.span.end);
                e = Expr { kind: ExprKind::As(Box::new(e), ty), span };
            }
            Ok(e)
        })
    }

    /// `operand (op operand)*` with the precedence of §5, folded to the left; comparisons do
    /// not chain. The chain's length counts as depth, as the tree it builds is that deep.
    fn binary(&mut self, pair: Pair<'s, Rule>) -> Result<Expr> {
        let span = self.span(&pair);
        let mut parts: Vec<Pair<Rule>> = pair.into_inner().collect();
        if parts.len() == 1 {
            return self.operand(parts.pop().expect("one operand"));
        }
        let links = parts.len() / 2;
        self.nested(span, links, |b| {
            let mut operands: Vec<Expr> = vec![];
            let mut ops: Vec<BinaryOp> = vec![];
            fn reduce(operands: &mut Vec<Expr>, op: BinaryOp) {
                let rhs = operands.pop().expect("right operand");
                let lhs = operands.pop().expect("left operand");
                let span = Span::new(lhs.span.start, rhs.span.end);
                operands.push(Expr { kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)), span });
            }
            for (i, p) in parts.into_iter().enumerate() {
                if i % 2 == 0 {
                    operands.push(b.operand(p)?);
                    continue;
                }
                let op_span = b.span(&p);
                let op = match p.as_str().trim() {
                    "*" => BinaryOp::Mul,
                    "/" => BinaryOp::Div,
                    "%" => BinaryOp::Rem,
                    "+" => BinaryOp::Add,
                    "-" => BinaryOp::Sub,
                    "??" => BinaryOp::Coalesce,
                    "==" => BinaryOp::Eq,
                    "!=" => BinaryOp::Ne,
                    "<" => BinaryOp::Lt,
                    "<=" => BinaryOp::Le,
                    ">" => BinaryOp::Gt,
                    ">=" => BinaryOp::Ge,
                    "and" => BinaryOp::And,
                    "or" => BinaryOp::Or,
                    other => unreachable!("binary_op matched {other:?}"),
                };
                while let Some(&top) = ops.last() {
                    if top.precedence() < op.precedence() {
                        break;
                    }
                    if top.precedence() == COMPARISON && op.precedence() == COMPARISON {
                        return Err(error(
                            op_span,
                            format!(
                                "comparisons do not chain: join them with `and`, as in `a {} b and b {} c`",
                                top.symbol(),
                                op.symbol()
                            ),
                        ));
                    }
                    ops.pop();
                    reduce(&mut operands, top);
                }
                ops.push(op);
            }
            while let Some(top) = ops.pop() {
                reduce(&mut operands, top);
            }
            Ok(operands.pop().expect("the whole expression"))
        })
    }

    fn postfix(&mut self, pair: Pair<'s, Rule>) -> Result<Expr> {
        let span = self.span(&pair);
        let mut parts: Vec<Pair<Rule>> = pair.into_inner().collect();
        let ops = parts.split_off(1);
        let count = ops.len();
        let primary = parts.pop().expect("primary");
        let mut e = self.nested(span, count, |b| b.primary(primary))?;
        for (i, op) in ops.into_iter().enumerate() {
            let op_span = self.span(&op);
            let whole = Span::new(e.span.start, op_span.end);
            let depth = count - i;
            e = match op.as_rule() {
                Rule::call_args => {
                    let args = self.nested(span, depth, |b| {
                        op.into_inner()
                            .map(|arg| {
                                let mut f: Vec<Pair<Rule>> = arg.into_inner().collect();
                                let value = b.expr(f.pop().expect("argument value"))?;
                                let name = f.pop().map(|n| b.ident(n));
                                Ok(Arg { name, value })
                            })
                            .collect::<Result<Vec<_>>>()
                    })?;
                    Expr { kind: ExprKind::Call { callee: Box::new(e), args }, span: whole }
                }
                Rule::index_suffix => {
                    let index = self.nested(span, depth, |b| b.expr(op.into_inner().next().expect("index")))?;
                    Expr { kind: ExprKind::Index(Box::new(e), Box::new(index)), span: whole }
                }
                Rule::field_suffix => {
                    let name = self.ident(op.into_inner().next().expect("field name"));
                    Expr { kind: ExprKind::Field(Box::new(e), name), span: whole }
                }
                Rule::with_suffix => {
                    let updates = self.nested(span, depth, |b| {
                        b.separated(op.into_inner().skip(1), ",", |b, update| {
                            let mut f: Vec<Pair<Rule>> = update.into_inner().collect();
                            let value = b.expr(f.pop().expect("update value"))?;
                            let path = f.into_iter().map(|p| b.ident(p)).collect();
                            Ok((path, value))
                        })
                    })?;
                    Expr { kind: ExprKind::With { base: Box::new(e), updates }, span: whole }
                }
                other => unreachable!("not a postfix rule: {other:?}"),
            };
        }
        Ok(e)
    }

    fn primary(&mut self, pair: Pair<'s, Rule>) -> Result<Expr> {
        let inner = pair.into_inner().next().expect("primary content");
        let span = self.span(&inner);
        let kind = match inner.as_rule() {
            Rule::duration | Rule::float | Rule::int => return self.literal(inner),
            Rule::string => return self.expr_from_string(inner),
            Rule::kw_true => ExprKind::Bool(true),
            Rule::kw_false => ExprKind::Bool(false),
            Rule::kw_none => ExprKind::None,
            Rule::ident => ExprKind::Name(self.ident(inner)),
            Rule::paren => ExprKind::Paren(Box::new(
                self.nested(span, 1, |b| b.expr(inner.into_inner().next().expect("parenthesised expression")))?,
            )),
            Rule::list => {
                let items =
                    self.nested(span, 1, |b| inner.into_inner().map(|p| b.expr(p)).collect::<Result<Vec<_>>>())?;
                ExprKind::List(items)
            }
            Rule::record => {
                let fields = self.nested(span, 1, |b| {
                    b.separated(inner.into_inner(), ",", |b, field| {
                        let mut f = field.into_inner();
                        let name = b.ident(f.next().expect("field name"));
                        let value = match f.next() {
                            Some(v) => Some(b.expr(v)?),
                            None => None,
                        };
                        Ok(RecordField { name, value })
                    })
                })?;
                ExprKind::Record(fields)
            }
            Rule::if_expr => return self.nested(span, 1, |b| b.if_expr(inner)),
            Rule::for_expr => {
                return self.nested(span, 1, |b| {
                    let mut f: Vec<Pair<Rule>> = inner.into_inner().filter(|p| p.as_rule() != Rule::kw_if).collect();
                    let body = b.block(f.pop().expect("for body"))?;
                    let mut f = f.into_iter().skip(1);
                    let var = b.ident(f.next().expect("for variable"));
                    f.next(); // `in`
                    let iter = Box::new(b.expr(f.next().expect("for iterable"))?);
                    let filter = match f.next() {
                        Some(p) => Some(Box::new(b.expr(p)?)),
                        None => None,
                    };
                    Ok(Expr { kind: ExprKind::For { var, iter, filter, body }, span })
                });
            }
            other => unreachable!("not a primary rule: {other:?}"),
        };
        Ok(Expr { kind, span })
    }

    /// `if a { } else if b { } else { }` comes flat (pest would recurse once per link); it is
    /// nested here as `else if`, each link one level deeper, as the tree will be.
    fn if_expr(&mut self, pair: Pair<'s, Rule>) -> Result<Expr> {
        let span = self.span(&pair);
        let mut arms = vec![];
        let mut otherwise = None;
        let mut f = pair.into_inner();
        while let Some(p) = f.next() {
            let link = arms.len();
            match p.as_rule() {
                Rule::kw_if => {
                    let at = Span::new(p.as_span().start() + self.offset, span.end);
                    let (cond, then) = self.nested(at, link, |b| {
                        let cond = Box::new(b.expr(f.next().expect("if condition"))?);
                        Ok((cond, b.block(f.next().expect("if body"))?))
                    })?;
                    arms.push((at, cond, then));
                }
                Rule::kw_else => {}
                _ => otherwise = Some(Else::Block(self.nested(span, link.saturating_sub(1), |b| b.block(p))?)),
            }
        }
        let mut expr = None;
        for (at, cond, then) in arms.into_iter().rev() {
            let otherwise = expr.take().map(|e| Else::If(Box::new(e))).or(otherwise.take());
            expr = Some(Expr { kind: ExprKind::If { cond, then, otherwise }, span: at });
        }
        Ok(expr.expect("an if has a first arm"))
    }

    fn literal(&self, pair: Pair<'s, Rule>) -> Result<Expr> {
        let span = self.span(&pair);
        let text = pair.as_str();
        let kind =
            match pair.as_rule() {
                Rule::int => ExprKind::Int(text.parse().map_err(|_| {
                    error(span, format!("the integer {text} is too large (the largest is {})", i64::MAX))
                })?),
                Rule::float => ExprKind::Float(
                    text.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .ok_or_else(|| error(span, "this number is too large for a `Float`"))?,
                ),
                Rule::duration => {
                    ExprKind::Duration(parse_duration(text).ok_or_else(|| error(span, "this duration is too long"))?)
                }
                other => unreachable!("not a literal rule: {other:?}"),
            };
        Ok(Expr { kind, span })
    }

    fn expr_from_string(&mut self, pair: Pair<'s, Rule>) -> Result<Expr> {
        let span = self.span(&pair);
        let parts = self.string_parts(pair)?;
        Ok(Expr { kind: ExprKind::Str(parts), span })
    }

    fn string_parts(&mut self, pair: Pair<'s, Rule>) -> Result<Vec<StrPart>> {
        let span = self.span(&pair);
        let mut parts: Vec<StrPart> = Vec::new();
        let mut text = String::new();
        for part in pair.into_inner() {
            match part.as_rule() {
                Rule::str_text => text.push_str(part.as_str()),
                Rule::str_escape => {
                    let c = match &part.as_str()[1..] {
                        "n" => '\n',
                        "t" => '\t',
                        "\\" => '\\',
                        "\"" => '"',
                        "$" => '$',
                        other => {
                            return Err(error(
                                self.span(&part),
                                format!("unknown escape `\\{other}`; the escapes are \\n \\t \\\\ \\\" \\$"),
                            ))
                        }
                    };
                    text.push(c);
                }
                Rule::str_interp => {
                    if !text.is_empty() {
                        parts.push(StrPart::Text(std::mem::take(&mut text)));
                    }
                    let e =
                        self.nested(span, 1, |b| b.expr(part.into_inner().next().expect("interpolated expression")))?;
                    parts.push(StrPart::Interp(e));
                }
                other => unreachable!("not a string part: {other:?}"),
            }
        }
        if !text.is_empty() {
            parts.push(StrPart::Text(text));
        }
        Ok(parts)
    }

    /// A string without interpolation, such as an import path.
    fn plain_string(&mut self, pair: Pair<'s, Rule>) -> Result<String> {
        let span = self.span(&pair);
        let mut out = String::new();
        for part in self.string_parts(pair)? {
            match part {
                StrPart::Text(t) => out.push_str(&t),
                StrPart::Interp(_) => return Err(error(span, "an import path cannot use `${...}`")),
            }
        }
        Ok(out)
    }
}

/// `250ms`, `5s`, `3m`, `2h`, `1d` to milliseconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let n: u64 = digits.parse().ok()?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// Every `//` comment outside strings, in order.
pub fn scan_comments(src: &str) -> Vec<Comment> {
    // Modes: code, or inside a string; a `${` in a string opens code until its matching `}`.
    enum Mode {
        Code { braces: usize },
        Str,
    }
    let bytes = src.as_bytes();
    let mut stack = vec![Mode::Code { braces: 0 }];
    let mut comments = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match stack.last_mut().expect("the mode stack is never empty") {
            Mode::Code { braces } => match c {
                b'/' if bytes.get(i + 1) == Some(&b'/') => {
                    let end = src[i..].find('\n').map_or(src.len(), |n| i + n);
                    let doc = src[i..end].starts_with("///") && !src[i..end].starts_with("////");
                    let text = src[i + if doc { 3 } else { 2 }..end].trim_end_matches('\r').to_string();
                    comments.push(Comment { span: Span::new(i, end), text, doc });
                    i = end;
                    continue;
                }
                b'"' => stack.push(Mode::Str),
                b'{' => *braces += 1,
                b'}' => {
                    if *braces == 0 {
                        if stack.len() > 1 {
                            stack.pop();
                        }
                    } else {
                        *braces -= 1;
                    }
                }
                _ => {}
            },
            Mode::Str => match c {
                b'\\' => i += 1,
                b'"' | b'\n' => {
                    stack.pop();
                    if stack.is_empty() {
                        stack.push(Mode::Code { braces: 0 });
                    }
                }
                b'$' if bytes.get(i + 1) == Some(&b'{') => {
                    stack.push(Mode::Code { braces: 0 });
                    i += 1;
                }
                _ => {}
            },
        }
        i += 1;
    }
    comments
}

/// Gives each item the `///` lines directly above it.
fn attach_docs(src: &str, items: &mut [Item], comments: &[Comment]) {
    let mut next_comment = 0;
    for item in items.iter_mut() {
        // The doc comments that end before this item, directly stacked above it.
        while next_comment < comments.len() && comments[next_comment].span.end <= item.span.start {
            next_comment += 1;
        }
        let mut lines: Vec<&str> = Vec::new();
        let mut boundary = item.span.start;
        for c in comments[..next_comment].iter().rev() {
            if !c.doc || !src[c.span.end..boundary].chars().all(char::is_whitespace) {
                break;
            }
            if src[c.span.end..boundary].matches('\n').count() > 1 {
                break;
            }
            lines.push(c.text.strip_prefix(' ').unwrap_or(&c.text));
            boundary = c.span.start;
        }
        if !lines.is_empty() {
            lines.reverse();
            item.doc = Some(lines.join("\n"));
        }
    }
}
