//! `orchc check [PATH...]`: checks files, or every `.orch` file under directories.

use super::{exit, CheckArgs, CheckFormat, ColorChoice};
use crate::diagnostics::{self, Code, Diagnostic, HumanStyle, Severity, Source};
use is_terminal::IsTerminal;
use std::collections::HashSet;
use std::path::PathBuf;

pub fn run(args: CheckArgs) -> i32 {
    let paths = if args.paths.is_empty() { vec![PathBuf::from(".")] } else { args.paths.clone() };
    let mut files = vec![];
    let mut diags: Vec<Diagnostic> = vec![];
    let mut unreadable = false;
    for p in &paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = walkdir::WalkDir::new(p)
                .into_iter()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "orch"))
                .map(|e| e.into_path())
                .collect();
            found.sort();
            files.extend(found);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            unreadable = true;
            let name = p.to_string_lossy().to_string();
            diags.push(
                Diagnostic::error(Code::IoRead, format!("no such file or directory: `{name}`"))
                    .in_source(&Source::new(name, "")),
            );
        }
    }
    // A module imported by several checked files is reported once.
    let mut seen = HashSet::new();
    for f in &files {
        let mut result = crate::check::check_path(f);
        // The checked program is not needed; freeing a large one costs more than exiting.
        std::mem::forget(result.program.take());
        for d in result.diagnostics {
            if d.code == Code::IoRead {
                unreadable = true;
            }
            let (line, col) = d.position();
            if seen.insert((d.file_name().to_string(), line, col, d.code, d.message.clone())) {
                diags.push(d);
            }
        }
    }
    if args.deny_warnings {
        for d in &mut diags {
            d.severity = Severity::Error;
        }
    }
    let errors = diags.iter().filter(|d| d.severity == Severity::Error).count();
    let warnings = diags.len() - errors;
    match args.format {
        CheckFormat::Json => println!("{}", diagnostics::render_json(files.len(), &diags)),
        CheckFormat::Github => {
            for d in &diags {
                println!("{}", diagnostics::render_github(d));
            }
        }
        CheckFormat::Human => {
            let style = HumanStyle { color: use_color(args.color), width: width() };
            for d in &diags {
                print!("{}", human(d, style));
            }
            let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
            println!(
                "checked {}: {}, {}",
                plural(files.len(), "file"),
                plural(errors, "error"),
                plural(warnings, "warning")
            );
        }
    }
    if unreadable {
        exit::USAGE
    } else if errors > 0 {
        exit::FAILED
    } else {
        exit::OK
    }
}

fn human(d: &Diagnostic, style: HumanStyle) -> String {
    if d.labels.is_empty() {
        // Nothing to point at (an unreadable file): one line is clearer than an empty frame.
        return format!("error[{}]: {}\n", d.code.as_str(), d.message);
    }
    let mut s = diagnostics::render_human(d, style);
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
        }
    }
}

/// `COLUMNS` when set (tests fix it), else 100.
fn width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|&w: &usize| w >= 40).unwrap_or(100)
}
