//! `orchc fmt`: the formatter on every `.orch` file of the repository and the brief (idempotent,
//! same tree, same comments), golden files `tests/fmt/*.in.orch` → `*.out.orch`, and the command.

use orch::fmt::{format_source, format_source_width};
use orch::syntax::{ast::strip_spans, parse};
use std::path::Path;
use std::process::{Command, Stdio};

mod support;
use support::repo;

/// Every `.orch` file in the repository, and the ```orch blocks of the design brief when it is
/// beside the repository.
fn every_orch_source() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = support::orch_files()
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read_to_string(&p).expect("readable")))
        .collect();
    for (i, block) in support::brief_examples().into_iter().enumerate() {
        out.push((format!("LANGUAGE.md example {i}"), block));
    }
    out
}

fn comment_texts(src: &str) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> =
        parse(src).expect("parses").comments.into_iter().map(|c| (c.text.trim_end().to_string(), c.doc)).collect();
    v.sort();
    v
}

#[test]
fn every_orch_file_formats_to_a_fixed_point_with_the_same_tree_and_comments() {
    let sources = every_orch_source();
    assert!(sources.len() >= 3, "expected the stdlib and the golden files at least, found {}", sources.len());
    let mut formatted_count = 0;
    for (name, src) in &sources {
        let Ok(module) = parse(src) else {
            // Files that are meant not to parse (tests of syntax errors) are skipped.
            continue;
        };
        let once = format_source(src).unwrap_or_else(|e| panic!("{name}: {}", e.message));
        let reparsed =
            parse(&once).unwrap_or_else(|e| panic!("{name}: the formatted text does not parse: {}\n{once}", e.message));
        assert_eq!(strip_spans(&reparsed), strip_spans(&module), "{name}: formatting changed the tree:\n{once}");
        let twice = format_source(&once).expect("parses");
        assert_eq!(twice, once, "{name}: formatting twice changes the text");
        assert_eq!(comment_texts(&once), comment_texts(src), "{name}: comments differ after formatting");
        for line in once.lines() {
            assert!(!line.ends_with(' '), "{name}: trailing space in {line:?}");
        }
        formatted_count += 1;
    }
    assert!(formatted_count >= 3);
}

#[test]
fn comments_on_every_line_and_between_every_line_survive_in_every_file() {
    // The hardest case for comment placement: comments after every line, including in the
    // middle of expressions, argument lists, types and flows.
    let mut checked = 0;
    for (name, src) in every_orch_source() {
        let commented: String = src
            .split('\n')
            .enumerate()
            // Not after a trailing `-` or `>`: the parser (src/syntax) panics on `a - // c` (its
            // operator rules take the comment into the operator's text); reported to the lead.
            .map(|(i, l)| {
                let t = l.trim_end();
                if t.is_empty() || t.ends_with('-') || t.ends_with('>') {
                    l.to_string()
                } else {
                    format!("{l} // c{i}")
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        // And a comment line between every two lines.
        let lines: Vec<&str> = src.split('\n').collect();
        let mut interleaved = String::new();
        for (i, l) in lines.iter().enumerate() {
            interleaved.push_str(l);
            if i + 1 < lines.len() {
                let t = l.trim_end();
                if t.ends_with('-') || t.ends_with('>') {
                    interleaved.push('\n'); // the same parser issue
                } else {
                    interleaved.push_str(&format!("\n// k{i}\n"));
                }
            }
        }
        for variant in [commented, interleaved] {
            let Ok(module) = parse(&variant) else { continue };
            let once = format_source(&variant).expect("parses");
            let reparsed = parse(&once).unwrap_or_else(|e| panic!("{name}: does not parse: {}\n{once}", e.message));
            assert_eq!(strip_spans(&reparsed), strip_spans(&module), "{name}: the tree changed:\n{once}");
            assert_eq!(format_source(&once).unwrap(), once, "{name}: not a fixed point");
            assert_eq!(comment_texts(&once), comment_texts(&variant), "{name}: comments differ:\n{once}");
            checked += 1;
        }
    }
    assert!(checked >= 3);
}

#[test]
fn the_layout_does_not_depend_on_the_input_layout() {
    // Laid out very narrow or very wide first, every file still formats to the same text.
    for (name, src) in every_orch_source() {
        let Ok(canonical) = format_source(&src) else { continue };
        for width in [20, 60, 1000] {
            let other = format_source_width(&src, width).unwrap();
            assert_eq!(format_source(&other).unwrap(), canonical, "{name}: differs after a layout at width {width}");
        }
    }
}

#[test]
fn golden_files() {
    let dir = repo().join("tests/fmt");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/fmt") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix(".in.orch") else { continue };
        let input = std::fs::read_to_string(&path).expect("input");
        let expected = std::fs::read_to_string(dir.join(format!("{stem}.out.orch"))).expect("expected output");
        let got = format_source(&input).expect("the input parses");
        assert_eq!(got, expected, "tests/fmt/{stem}: the formatted text differs from {stem}.out.orch");
        // The canonical layout is its own fixed point.
        assert_eq!(format_source(&expected).expect("parses"), expected, "{stem}.out.orch is not canonical");
        count += 1;
    }
    assert!(count >= 3, "expected golden files in tests/fmt, found {count}");
}

#[test]
fn long_lists_break_one_element_per_line_and_short_ones_stay_on_one_line() {
    let src = "step s() -> (x: [Str]) { { x: [\"aaaaaaaaaaaaaaaaaaaa\", \"bbbbbbbbbbbbbbbbbbbbbbbbb\", \"cccccccccccccccccccccccccc\", \"dddddddddddd\"] } }\n";
    let out = format_source(src).unwrap();
    assert_eq!(
        out,
        "step s() -> (x: [Str]) {\n  {\n    x: [\n      \"aaaaaaaaaaaaaaaaaaaa\",\n      \"bbbbbbbbbbbbbbbbbbbbbbbbb\",\n      \"cccccccccccccccccccccccccc\",\n      \"dddddddddddd\",\n    ],\n  }\n}\n"
    );
    let out = format_source("workflow w() -> () { a>>b  >>c&d }").unwrap();
    assert_eq!(out, "workflow w() -> () {\n  a >> b >> c & d\n}\n");
    for line in format_source(src).unwrap().lines() {
        assert!(line.len() <= 100);
    }
}

#[test]
fn a_statement_starting_with_minus_keeps_its_separator() {
    // On its own line, `-x` would continue the previous statement as a subtraction.
    let src = "step s(x: Int) -> (y: Int) { log(\"a\"); -x; { y: x } }";
    let out = format_source(src).unwrap();
    assert_eq!(strip_spans(&parse(&out).unwrap()), strip_spans(&parse(src).unwrap()), "{out}");
    assert!(out.contains("log(\"a\");\n  -x\n"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// The command

fn orchc(args: &[&str], dir: &Path, stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_orchc"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("orchc starts");
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

const UGLY: &str = "workflow w() -> () {a>>b}\n";
const PRETTY: &str = "workflow w() -> () {\n  a >> b\n}\n";

#[test]
fn cli_formats_files_in_place_and_walks_directories() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("sub")).unwrap();
    std::fs::write(tmp.path().join("a.orch"), UGLY).unwrap();
    std::fs::write(tmp.path().join("sub/b.orch"), UGLY).unwrap();
    std::fs::write(tmp.path().join("sub/notes.txt"), UGLY).unwrap();
    let (code, stdout, stderr) = orchc(&["fmt", "a.orch"], tmp.path(), None);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(std::fs::read_to_string(tmp.path().join("a.orch")).unwrap(), PRETTY);
    assert_eq!(std::fs::read_to_string(tmp.path().join("sub/b.orch")).unwrap(), UGLY);
    let (code, _, stderr) = orchc(&["fmt"], tmp.path(), None);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(std::fs::read_to_string(tmp.path().join("sub/b.orch")).unwrap(), PRETTY);
    assert_eq!(std::fs::read_to_string(tmp.path().join("sub/notes.txt")).unwrap(), UGLY, "only .orch files");
}

#[test]
fn cli_check_lists_files_that_would_change_and_exits_1_without_writing() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("ugly.orch"), UGLY).unwrap();
    std::fs::write(tmp.path().join("pretty.orch"), PRETTY).unwrap();
    let (code, stdout, _) = orchc(&["fmt", "--check", "."], tmp.path(), None);
    assert_eq!(code, 1);
    assert_eq!(stdout, "ugly.orch\n");
    assert_eq!(std::fs::read_to_string(tmp.path().join("ugly.orch")).unwrap(), UGLY);
    let (code, stdout, _) = orchc(&["fmt", "--check", "pretty.orch"], tmp.path(), None);
    assert_eq!((code, stdout.as_str()), (0, ""));
}

#[test]
fn cli_dash_reads_stdin_and_writes_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = orchc(&["fmt", "-"], tmp.path(), Some(UGLY));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, PRETTY);
    let (code, stdout, _) = orchc(&["fmt", "--check", "-"], tmp.path(), Some(UGLY));
    assert_eq!((code, stdout.as_str()), (1, "-\n"));
}

#[test]
fn cli_a_file_that_does_not_parse_is_reported_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let broken = "workflow w() -> () {a >> }\n// keep me   \n";
    std::fs::write(tmp.path().join("broken.orch"), broken).unwrap();
    std::fs::write(tmp.path().join("ok.orch"), UGLY).unwrap();
    let (code, _, stderr) = orchc(&["fmt", "broken.orch", "ok.orch"], tmp.path(), None);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("orch::parse::syntax"), "{stderr}");
    assert!(stderr.contains("broken.orch"), "{stderr}");
    assert!(stderr.contains("[broken.orch:1:26]"), "the location is given: {stderr}");
    assert!(stderr.contains("`broken.orch` does not parse; left unchanged"), "{stderr}");
    assert_eq!(std::fs::read(tmp.path().join("broken.orch")).unwrap(), broken.as_bytes());
    assert_eq!(std::fs::read_to_string(tmp.path().join("ok.orch")).unwrap(), PRETTY, "the other files are formatted");
    let (code, _, stderr) = orchc(&["fmt", "-"], tmp.path(), Some(broken));
    assert_eq!(code, 2);
    assert!(stderr.contains("orch::parse::syntax"), "{stderr}");
    let (code, _, stderr) = orchc(&["fmt", "missing.orch"], tmp.path(), None);
    assert_eq!(code, 2);
    assert!(stderr.contains("orch::io::read"), "{stderr}");
}

#[test]
fn deep_nesting_round_trips() {
    // Close to the parser's bracket limit (100), in a test thread's small stack.
    let depth = 95;
    let expr = format!("{}1{}", "(".repeat(depth), ")".repeat(depth));
    let list = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let src = format!("step s() -> (x: Int, y: Json) {{\n  {{ x: {expr}, y: {list} }}\n}}\n");
    let out = format_source(&src).unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(strip_spans(&parse(&out).unwrap()), strip_spans(&parse(&src).unwrap()));
    assert_eq!(format_source(&out).unwrap(), out);
    // A long operator chain nests as deep as it is long.
    let chain = vec!["x"; 180].join(" + ");
    let src = format!("step s(x: Int) -> (y: Int) {{ {{ y: {chain} }} }}");
    let out = format_source(&src).unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(strip_spans(&parse(&out).unwrap()), strip_spans(&parse(&src).unwrap()));
}

#[test]
fn cli_standard_input_that_is_not_utf8_is_an_io_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_orchc"))
        .args(["fmt", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"workflow w() -> () {\xff}\n")?;
            child.wait_with_output()
        })
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("orch::io::read") && stderr.contains("standard input"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_leading_byte_order_mark_is_dropped() {
    let src = "\u{feff}step s() -> () {\n  {}\n}\n";
    let out = format_source(src).unwrap();
    assert_eq!(out, "step s() -> () {\n  {}\n}\n");
    assert_eq!(format_source(&out).unwrap(), out);
    let with_comment = format_source("\u{feff}// header\nstep s() -> () { {} }\n").unwrap();
    assert!(with_comment.starts_with("// header\n"), "{with_comment}");
}
