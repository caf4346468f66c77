//! The parser on real programs, on broken ones, and on hostile ones.

use orch::syntax::ast::{BinaryOp, Else, ExprKind, FlowKind, ItemKind, Stmt};
use orch::syntax::{parse, ParseError};
use std::path::Path;

/// The ```orch blocks of the design brief, if it is beside the repository.
fn brief_examples() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/design/LANGUAGE.md");
    let Ok(text) = std::fs::read_to_string(path) else { return vec![] };
    text.split("```orch\n").skip(1).map(|b| b.split("```").next().unwrap_or("").to_string()).collect()
}

fn error_of(src: &str) -> ParseError {
    match parse(src) {
        Ok(_) => panic!("expected a syntax error in {src:?}"),
        Err(e) => e,
    }
}

#[test]
fn the_brief_examples_parse() {
    let examples = brief_examples();
    if examples.is_empty() {
        eprintln!("skipped: ../shared/design/LANGUAGE.md is not beside the repository");
        return;
    }
    for (i, src) in examples.iter().enumerate() {
        if let Err(e) = parse(src) {
            panic!("brief example {i} does not parse: {} at {:?}", e.message, e.span);
        }
    }
}

#[test]
fn syntax_errors_say_what_was_expected_in_words_and_where() {
    let cases: &[(&str, &str, &str)] = &[
        // (source, the text at the error, the message)
        ("step a(x: Int -> () { {} }", "-", "expected a name, `)`, `,` or `=`, found `-`"),
        ("workflow w() -> () { a >> }", "}", "expected a step call, `for`, `graph` or `if`, found `}`"),
        ("step s() -> () { let x = 1 let y = 2\n {} }", "l", "expected a newline or `;` before this"),
        ("config x: Int = ", "", "expected an expression, found the end of the file"),
        ("enum E { a b }", "b", "expected a newline or `,` before this"),
        ("product P lifecycle L { fixed x Str = 1 }", "S", "expected a field or `:`, found `Str`"),
        ("step s() -> () { log(\"a\" \"b\") \n {} }", "\"", "`)` or `,`, found `\"`"),
        ("step step() -> () { {} }", "step", "`step` is a reserved word and cannot be used as a name"),
        ("workflow w() -> (a: Int) { a b }", "b", "expected"),
        ("step s() -> () { \"unterminated\n {} }", "\n", "found the end of the line"),
        ("step s() -> () { \"bad \\q escape\" }", "\\q", "unknown escape `\\q`"),
        ("config big: Int = 99999999999999999999", "99999999999999999999", "too large"),
        ("step s() -> ()", "step", "this step has no body"),
        ("input step s() -> () { {} }", "{ {} }", "an input step has no body"),
    ];
    for (src, at, message) in cases {
        let e = error_of(src);
        assert!(e.message.contains(message), "{src:?}: message {:?} lacks {message:?}", e.message);
        assert!(
            src[e.span.start..].starts_with(at) && (at.is_empty() || e.span.end > e.span.start),
            "{src:?}: error at {:?} ({:?}), expected at {at:?}",
            e.span,
            &src[e.span.start..]
        );
    }
}

#[test]
fn a_line_starting_with_a_bracket_is_a_new_statement() {
    let m = parse("step s(xs: [Int]) -> (n: Int) {\n  let f = len\n  (xs)\n  { n: 1 }\n}").unwrap();
    let ItemKind::Step(step) = &m.items[0].kind else { panic!("not a step") };
    let body = step.body.as_ref().unwrap();
    assert_eq!(body.stmts.len(), 2, "`len` then `(xs)`, not the call `len(xs)`");
    assert!(matches!(&body.stmts[1], Stmt::Expr(e) if matches!(e.kind, ExprKind::Paren(_))));
    assert!(matches!(body.result.as_ref().unwrap().kind, ExprKind::Record(_)));
}

#[test]
fn an_unfinished_expression_continues_on_the_next_line() {
    let m = parse("config x: Int = 1 +\n  2 *\n  3\nconfig y: Str = \"a\"\n  .b").unwrap();
    let ItemKind::Config(c) = &m.items[0].kind else { panic!() };
    let ExprKind::Binary(BinaryOp::Add, _, rhs) = &c.value.kind else { panic!("not an addition: {:?}", c.value.kind) };
    assert!(matches!(rhs.kind, ExprKind::Binary(BinaryOp::Mul, _, _)));
    let ItemKind::Config(c) = &m.items[1].kind else { panic!() };
    assert!(matches!(c.value.kind, ExprKind::Field(_, _)), "`.b` on the next line continues the expression");
}

#[test]
fn precedence_follows_the_brief() {
    // `??` binds tighter than comparisons, looser than `+`; `as` looser than unary; `>>` looser than `&`.
    let m = parse("config x: Bool = a + b ?? c == d and not e as Bool or f").unwrap();
    let ItemKind::Config(c) = &m.items[0].kind else { panic!() };
    let ExprKind::Binary(BinaryOp::Or, lhs, _) = &c.value.kind else { panic!("top is not `or`") };
    let ExprKind::Binary(BinaryOp::And, cmp, cast) = &lhs.kind else { panic!("then `and`") };
    let ExprKind::Binary(BinaryOp::Eq, coalesce, _) = &cmp.kind else { panic!("then `==`") };
    assert!(
        matches!(&coalesce.kind, ExprKind::Binary(BinaryOp::Coalesce, l, _) if matches!(l.kind, ExprKind::Binary(BinaryOp::Add, _, _)))
    );
    assert!(matches!(&cast.kind, ExprKind::As(inner, _) if matches!(inner.kind, ExprKind::Unary(_, _))));

    let m = parse("workflow w() -> () { a >> b & c >> d }").unwrap();
    let ItemKind::Workflow(w) = &m.items[0].kind else { panic!() };
    let FlowKind::Seq(parts) = &w.body.kind else { panic!("top is `>>`") };
    assert_eq!(parts.len(), 3);
    assert!(matches!(parts[1].kind, FlowKind::Par(ref b) if b.len() == 2));
}

#[test]
fn spans_end_at_the_last_token_not_at_trailing_comments() {
    let src = "block B {\n  a: Int // the first\n  b: Str?\n}\n";
    let m = parse(src).unwrap();
    let ItemKind::Block(b) = &m.items[0].kind else { panic!() };
    assert_eq!(&src[b.fields[0].span.start..b.fields[0].span.end], "a: Int");
    assert_eq!(&src[b.fields[1].span.start..b.fields[1].span.end], "b: Str?");
}

#[test]
fn comments_are_kept_and_doc_comments_attach_to_the_next_declaration() {
    let src = "// file header\n\n/// Creates a node.\n/// Twice.\nstep s() -> () {\n  log(\"// not a comment ${1}\") // trailing\n  {}\n}\n";
    let m = parse(src).unwrap();
    let texts: Vec<(&str, bool)> = m.comments.iter().map(|c| (c.text.as_str(), c.doc)).collect();
    assert_eq!(
        texts,
        vec![(" file header", false), (" Creates a node.", true), (" Twice.", true), (" trailing", false)]
    );
    assert_eq!(m.items[0].doc.as_deref(), Some("Creates a node.\nTwice."));
}

#[test]
fn contextual_keywords_are_ordinary_names_elsewhere() {
    let src = "step s(timeout: Duration, input: Str, graph: Int, after: Int) -> (limit: Int) {\n  { limit: graph + after }\n}";
    parse(src).unwrap();
}

#[test]
fn hostile_nesting_is_a_syntax_error_not_a_crash() {
    let n = 100_000;
    let cases = [
        format!("config x: Int = {}1{}", "(".repeat(n), ")".repeat(n)),
        format!("config x: [Int] = {}1{}", "[".repeat(n), "]".repeat(n)),
        format!("config x: Bool = {}true", "not ".repeat(n)),
        format!("config x: Int = {}", vec!["1"; n].join(" + ")),
        format!("config x: Int = a{}", ".b".repeat(n)),
        format!("config x: Int = 1{}", " as Int".repeat(n)),
        format!("config x: [{}Int{}] = 1", "[".repeat(n), "]".repeat(n)),
        format!("workflow w() -> () {{ {}a{} }}", "if c { ".repeat(n), " }".repeat(n)),
        format!("config x: Str = {}{}", "\"${".repeat(5_000), "}\"".repeat(5_000)),
        format!("config x: Int = {}1", "-".repeat(n)),
        // An `else if` chain has no nested brackets, but each link nests the tree.
        format!("step s() -> () {{ {}{{ 1 }} }}", "if true { 1 } else ".repeat(60_000)),
        format!("workflow w() -> () {{ {}{{ a }} }}", "if c { a } else ".repeat(60_000)),
        // Brackets inside an interpolation count.
        format!("config x: Str = \"${{{}1{}}}\"", "(".repeat(n), ")".repeat(n)),
        format!("config x: Str = \"${{ \"${{ [{}1{}] }}\" }}\"", "(".repeat(n), ")".repeat(n)),
    ];
    for src in &cases {
        // Run on a thread with a small stack: the limits must hold there too.
        let src = src.clone();
        let result = std::thread::Builder::new().stack_size(4 << 20).spawn(move || parse(&src).map(|_| ()));
        let outcome = result.unwrap().join().expect("the parser must not panic or overflow");
        assert!(outcome.is_err(), "hostile nesting was accepted");
    }
}

#[test]
fn long_flat_programs_are_fine() {
    let steps: String = (0..2_000).map(|i| format!("step s{i}(x: Int) -> (x: Int) {{ {{ x: x + 1 }} }}\n")).collect();
    let chain: Vec<String> = (0..2_000).map(|i| format!("s{i}")).collect();
    let src = format!("{steps}workflow w(x: Int) -> (x: Int) {{ {} }}", chain.join(" >> "));
    let m = parse(&src).unwrap();
    assert_eq!(m.items.len(), 2_001);
}

#[test]
fn deep_nesting_errors_have_a_location() {
    let chain = format!("step s() -> (x: Int) {{\n  {}{{ 1 }}\n}}\n", "if true { 1 } else ".repeat(60_000));
    let e = parse(&chain).unwrap_err();
    assert!(e.message.contains("levels deep"), "{}", e.message);
    assert!(e.span.start > 0 && e.span.start < chain.len(), "{:?}", e.span);
    let interp = format!("config x: Str = \"${{{}1{}}}\"\n", "(".repeat(100_000), ")".repeat(100_000));
    let e = parse(&interp).unwrap_err();
    assert!(e.message.contains("levels deep"), "{}", e.message);
    assert!(e.span.start > 0, "{:?}", e.span);
}

#[test]
fn else_if_chains_nest_as_before() {
    let src = "config x: Int = if a { 1 } else if b { 2 } else if c { 3 } else { 4 }";
    let m = parse(src).unwrap();
    let ItemKind::Config(c) = &m.items[0].kind else { panic!() };
    let ExprKind::If { otherwise: Some(Else::If(second)), .. } = &c.value.kind else { panic!("else if") };
    assert_eq!(&src[second.span.start..second.span.end], "if b { 2 } else if c { 3 } else { 4 }");
    let ExprKind::If { otherwise: Some(Else::If(third)), .. } = &second.kind else { panic!("else if") };
    assert!(matches!(third.kind, ExprKind::If { otherwise: Some(Else::Block(_)), .. }));
    let src = "workflow w() -> () { if a { s } else if b { t } else { u } }";
    let m = parse(src).unwrap();
    let ItemKind::Workflow(w) = &m.items[0].kind else { panic!() };
    let FlowKind::If { otherwise: Some(second), .. } = &w.body.kind else { panic!("else") };
    assert_eq!(&src[second.span.start..second.span.end], "if b { t } else { u }");
    assert!(matches!(second.kind, FlowKind::If { otherwise: Some(_), .. }));
}

#[test]
fn a_leading_byte_order_mark_is_skipped_and_spans_stay_right() {
    let src = "\u{feff}step s() -> () { {} }\n";
    let m = parse(src).unwrap();
    assert_eq!(&src[m.items[0].span.start..m.items[0].span.end], "step s() -> () { {} }");
    assert!(parse("\u{feff}").unwrap().items.is_empty());
    // Only at the start.
    assert!(parse("step s() -> () { {} }\n\u{feff}").is_err());
}
