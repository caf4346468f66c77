//! The checker's corpus: `tests/check/ok/*.orch` must check clean, and each
//! `tests/check/err/*.orch` must give the code its header names at the line it names.
//!
//! Files under a `lib/` folder are helper modules imported by the cases, not cases themselves.
//! One test per directory reports every failing file at once.

use orch::check::{check_path, CheckResult};
use orch::diagnostics::{Diagnostic, Severity};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Every `.orch` file below `dir`, sorted, skipping `lib/` folders.
fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    if !dir.is_dir() {
        return out;
    }
    for entry in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| !(e.file_type().is_dir() && e.file_name() == "lib"))
        .filter_map(Result::ok)
    {
        if entry.file_type().is_file() && entry.path().extension().is_some_and(|x| x == "orch") {
            out.push(entry.into_path());
        }
    }
    out.sort();
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn describe(d: &Diagnostic) -> String {
    let (line, col) = d.position();
    let sev = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let root = format!("{}/", root().display());
    let file = d.file_name().strip_prefix(root.as_str()).unwrap_or(d.file_name());
    format!("{sev} {} at {file}:{line}:{col}: {}", d.code.as_str(), d.message)
}

fn listing(result: &CheckResult) -> String {
    let mut s = String::new();
    if result.diagnostics.is_empty() {
        s.push_str("      (no diagnostics)\n");
    }
    for d in &result.diagnostics {
        let _ = writeln!(s, "      {}", describe(d));
    }
    s
}

/// `// warnings: N` in the leading comment lines of an ok file.
fn allowed_warnings(text: &str) -> usize {
    text.lines()
        .take_while(|l| l.trim_start().starts_with("//"))
        .find_map(|l| l.trim_start().trim_start_matches('/').trim().strip_prefix("warnings:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Checks every file of `dirs` (relative to the repository root) cleanly; returns the failures.
/// With `library`, warnings are not counted: a library's steps are there for importers, so
/// "never used" is expected when it is checked on its own.
fn check_clean(dirs: &[&str], library: bool) -> (usize, String) {
    let mut failures = String::new();
    let mut count = 0;
    for dir in dirs {
        for path in cases(&root().join(dir)) {
            count += 1;
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let allowed = allowed_warnings(&text);
            let result = check_path(&path);
            let errors = result.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
            let warnings = result.diagnostics.len() - errors;
            if errors > 0 || (!library && warnings != allowed) || result.program.is_none() {
                let _ = writeln!(
                    failures,
                    "  {}: {errors} errors, {warnings} warnings (allowed {allowed}), program {}\n{}",
                    path.strip_prefix(root()).unwrap_or(&path).display(),
                    if result.program.is_some() { "built" } else { "missing" },
                    listing(&result)
                );
            }
        }
    }
    (count, failures)
}

#[test]
fn ok_files_check_clean() {
    let (count, failures) = check_clean(&["tests/check/ok"], false);
    assert!(count >= 12, "expected at least 12 ok cases, found {count}");
    assert!(failures.is_empty(), "ok files that do not check clean:\n{failures}");
}

#[test]
fn examples_and_stdlib_check_clean() {
    // Either may not exist yet: then the walk finds nothing and there is nothing to prove.
    let (_, mut failures) = check_clean(&["examples"], false);
    failures += &check_clean(&["stdlib"], true).1;
    assert!(failures.is_empty(), "examples/stdlib files that do not check clean:\n{failures}");
}

/// Parses `// expect: orch::CODE line N` from the first line.
fn expectation(text: &str) -> Option<(String, usize)> {
    let first = text.lines().next()?.trim();
    let rest = first.strip_prefix("//")?.trim().strip_prefix("expect:")?.trim();
    let mut parts = rest.split_whitespace();
    let code = parts.next()?.to_string();
    if parts.next()? != "line" {
        return None;
    }
    let line = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((code, line))
}

#[test]
fn err_files_give_the_expected_diagnostic() {
    let mut failures = String::new();
    let mut count = 0;
    for path in cases(&root().join("tests/check/err")) {
        count += 1;
        let shown = path.strip_prefix(root()).unwrap_or(&path).display().to_string();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let Some((code, line)) = expectation(&text) else {
            let _ = writeln!(failures, "  {shown}: first line is not `// expect: orch::CODE line N`\n");
            continue;
        };
        let result = check_path(&path);
        // The expected code must be reported, as an error, at the expected line of this file
        // (not of a helper module it imports).
        let own_name = path.to_string_lossy().to_string();
        let found = result.diagnostics.iter().any(|d| {
            d.code.as_str() == code
                && d.severity == Severity::Error
                && d.position().0 == line
                && d.file_name() == own_name
        });
        // Any other error (a different code) means the case tests more than one thing.
        let stray: Vec<&Diagnostic> =
            result.diagnostics.iter().filter(|d| d.severity == Severity::Error && d.code.as_str() != code).collect();
        if !found || !stray.is_empty() || result.program.is_some() {
            let mut why = vec![];
            if !found {
                why.push(format!("expected {code} at line {line}"));
            }
            if !stray.is_empty() {
                why.push(format!("{} other error(s)", stray.len()));
            }
            if result.program.is_some() {
                why.push("a program was built".to_string());
            }
            let _ = writeln!(failures, "  {shown}: {}; got:\n{}", why.join(", "), listing(&result));
        }
    }
    assert!(count >= 70, "expected at least 70 err cases, found {count}");
    assert!(failures.is_empty(), "err files that do not give their expected diagnostic:\n{failures}");
}

/// The check-time codes of the brief's section 10.
const CHECK_TIME_CODES: &[&str] = &[
    "orch::parse::syntax",
    "orch::name::unknown",
    "orch::name::duplicate",
    "orch::import::not_found",
    "orch::import::cycle",
    "orch::type::mismatch",
    "orch::type::unknown_field",
    "orch::type::missing_field",
    "orch::type::arity",
    "orch::type::effect",
    "orch::step::output_mismatch",
    "orch::flow::missing_key",
    "orch::flow::key_type",
    "orch::flow::parallel_dependency",
    "orch::flow::conflicting_writes",
    "orch::flow::cycle",
    "orch::flow::missing_output",
    "orch::lifecycle::unknown_state",
    "orch::lifecycle::bad_transition",
    "orch::lifecycle::state_mismatch",
    "orch::secret::leak",
    "orch::config::unknown",
    "orch::config::type",
];

#[test]
fn every_check_time_code_has_several_cases() {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for path in cases(&root().join("tests/check/err")) {
        let text = std::fs::read_to_string(&path).unwrap();
        if let Some((code, _)) = expectation(&text) {
            *counts.entry(code).or_default() += 1;
        }
    }
    let thin: Vec<String> = CHECK_TIME_CODES
        .iter()
        .filter(|c| counts.get(**c).copied().unwrap_or(0) < 3)
        .map(|c| format!("{c} ({})", counts.get(*c).copied().unwrap_or(0)))
        .collect();
    assert!(thin.is_empty(), "codes with fewer than 3 err cases: {}", thin.join(", "));
    let unknown: Vec<&String> = counts.keys().filter(|c| !CHECK_TIME_CODES.contains(&c.as_str())).collect();
    assert!(unknown.is_empty(), "err cases expecting codes that are not check-time codes: {unknown:?}");
}

#[test]
fn expectation_header_is_parsed_strictly() {
    assert_eq!(expectation("// expect: orch::flow::cycle line 12\n"), Some(("orch::flow::cycle".into(), 12)));
    assert_eq!(expectation("// expect: orch::flow::cycle at 12\n"), None);
    assert_eq!(expectation("// expect: orch::flow::cycle line x\n"), None);
    assert_eq!(expectation("step a() -> () { {} }\n"), None);
    assert_eq!(allowed_warnings("// a test\n// warnings: 2\nstep x() -> () { {} }"), 2);
    assert_eq!(allowed_warnings("step x() -> () { {} }\n// warnings: 2"), 0);
}

/// Every ```orch example of the brief checks clean (skipped where the brief is not beside the
/// repository, as in a bare CI checkout; `tests/check/ok/brief_1_node.orch` is a copy).
#[test]
fn the_brief_examples_check_clean() {
    let brief = root().join("../shared/design/LANGUAGE.md");
    let Ok(text) = std::fs::read_to_string(&brief) else {
        eprintln!("skipped: {} is not there", brief.display());
        return;
    };
    let mut failures = String::new();
    for (i, block) in text.split("```orch\n").skip(1).enumerate() {
        let src = block.split("```").next().unwrap_or("");
        let result = orch::check::check_source(&format!("brief example {}", i + 1), src, &root());
        if result.program.is_none() || !result.diagnostics.is_empty() {
            let _ = writeln!(failures, "  brief example {}:\n{}", i + 1, listing(&result));
        }
    }
    assert!(failures.is_empty(), "brief examples that do not check clean:\n{failures}");
}

/// Runs `f` on a thread with the stack of the main thread the commands run on (8 MiB).
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let thread = std::thread::Builder::new().stack_size(8 << 20).spawn(f).unwrap();
    thread.join().expect("no panic, no overflow")
}

/// The deepest `else if` chains the parser accepts (in a step body and in a flow) check, lower
/// to the IR and format without overflowing the stack.
#[test]
fn the_deepest_accepted_else_if_chains_check_and_format() {
    let body =
        |n: usize| format!("step s(c: Bool) -> (x: Int) {{\n  {{ x: {}{{ 0 }} }}\n}}\n", "if c { 1 } else ".repeat(n));
    let flow = |n: usize| {
        format!(
            "step s() -> () {{ {{}} }}\nworkflow w(c: Bool) -> () {{\n  {}{{ s }}\n}}\n",
            "if c { s } else ".repeat(n)
        )
    };
    for make in [body, flow] {
        let deepest = (1..=orch::syntax::MAX_DEPTH).rev().find(|&n| orch::syntax::parse(&make(n)).is_ok()).unwrap();
        assert!(deepest >= 60, "only {deepest} links are accepted");
        assert!(orch::syntax::parse(&make(deepest + 1)).is_err());
        let src = make(deepest);
        on_small_stack(move || {
            let result = orch::check::check_source("deep.orch", &src, &root());
            assert!(result.program.is_some(), "{}", listing(&result));
            let out = orch::fmt::format_source(&src).unwrap();
            assert_eq!(orch::fmt::format_source(&out).unwrap(), out);
        });
    }
}

/// Brackets inside an interpolation at the deepest accepted nesting check and format.
#[test]
fn the_deepest_accepted_interpolation_checks_and_formats() {
    let make = |n: usize| format!("config x: Int = 1\nconfig y: Str = \"${{{}x{}}}\"\n", "(".repeat(n), ")".repeat(n));
    let deepest = (1..=200).rev().find(|&n| orch::syntax::parse(&make(n)).is_ok()).unwrap();
    assert!(deepest >= 90, "only {deepest} levels are accepted");
    let src = make(deepest);
    on_small_stack(move || {
        let result = orch::check::check_source("deep.orch", &src, &root());
        assert!(result.program.is_some(), "{}", listing(&result));
        orch::fmt::format_source(&src).unwrap();
    });
}

/// Imports are resolved without recursing per level: a long chain checks on a small stack.
#[test]
fn a_long_import_chain_checks_on_a_small_stack() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3_000;
    for i in 0..n {
        let next = if i + 1 < n { format!("use \"m{}.orch\" as m\n", i + 1) } else { String::new() };
        std::fs::write(dir.path().join(format!("m{i}.orch")), format!("{next}step s{i}() -> () {{ {{}} }}\n")).unwrap();
    }
    let root_file = dir.path().join("m0.orch");
    // A quarter of a test thread's stack: a walk recursing per import would not fit.
    let thread = std::thread::Builder::new().stack_size(512 << 10);
    let result = thread
        .spawn(move || {
            let r = check_path(&root_file);
            (r.program.is_some(), listing(&r))
        })
        .unwrap()
        .join()
        .expect("no panic, no overflow");
    assert!(result.0, "{}", result.1);
}

/// Only regular files are imported: a device would be read forever, a directory is not source.
#[test]
fn imports_of_devices_and_directories_are_refused_with_their_span() {
    let src = "use \"/dev/zero\" as z\nuse \"/tmp\" as t\n";
    let result = orch::check::check_source("imports.orch", src, &root());
    let found: Vec<String> = result.diagnostics.iter().map(describe).collect();
    assert_eq!(result.diagnostics.len(), 2, "{found:?}");
    assert!(
        found[0].contains("orch::import::not_found at imports.orch:1:5") && found[0].contains("not a regular file"),
        "{found:?}"
    );
    assert!(
        found[1].contains("orch::import::not_found at imports.orch:2:5") && found[1].contains("directory"),
        "{found:?}"
    );
}

/// A file may start with a UTF-8 byte order mark; columns on the first line do not count it.
#[test]
fn a_byte_order_mark_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lib.orch"), "\u{feff}step t() -> () { {} }\n").unwrap();
    let src = "\u{feff}use \"lib.orch\" as lib\nworkflow w() -> () { lib.t >> nope }\n";
    let result = orch::check::check_source("bom.orch", src, dir.path());
    let found: Vec<String> = result.diagnostics.iter().map(describe).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("orch::name::unknown at bom.orch:2:31"), "{found:?}");
    let bad = orch::check::check_source("bom.orch", "\u{feff}nope", dir.path());
    assert!(describe(&bad.diagnostics[0]).contains("at bom.orch:1:1"), "{}", listing(&bad));
}

/// Counts past the largest one say what the largest is.
#[test]
fn too_large_counts_name_the_maximum() {
    let src =
        "step s() -> () retry 4294967296 { {} }\nworkflow w(xs: [Int]) -> () { for x in xs limit 4294967296 { s } }\n";
    let result = orch::check::check_source("big.orch", src, &root());
    let found: Vec<String> = result.diagnostics.iter().map(describe).collect();
    assert_eq!(found.len(), 2, "{found:?}");
    for f in &found {
        assert!(f.contains("orch::type::mismatch") && f.contains("the largest is 4294967295"), "{found:?}");
    }
}
