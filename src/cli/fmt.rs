//! `orchc fmt [PATH...] [--check]`: formats files in place, or every `.orch` file under
//! directories (default: the current directory); `-` reads standard input and writes the
//! formatted text to standard output.
//!
//! Exit status: 0 when every file was formatted (or, with `--check`, is already formatted);
//! 1 when `--check` found files that would change (their names are printed, one per line);
//! 2 when a file could not be read or does not parse. A file that does not parse is reported with
//! its `orch::parse::syntax` diagnostic and left untouched; the other files are still formatted.

use super::{exit, FmtArgs};
use crate::diagnostics::{render_human, Code, Diagnostic, HumanStyle, Source};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub fn run(args: FmtArgs) -> i32 {
    let paths = if args.paths.is_empty() { vec![PathBuf::from(".")] } else { args.paths.clone() };
    let mut status = exit::OK;
    // The worst status wins: unparseable (2) over would-change (1) over clean (0).
    let worse = |s: i32, status: &mut i32| *status = s.max(*status);
    for p in &paths {
        if p.as_os_str() == "-" {
            worse(stdin_to_stdout(args.check), &mut status);
        } else if p.is_dir() {
            let mut found: Vec<PathBuf> = walkdir::WalkDir::new(p)
                .into_iter()
                .filter_entry(|e| e.depth() == 0 || !is_hidden_or_target(e.path()))
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "orch"))
                .map(|e| e.into_path())
                .collect();
            found.sort();
            for f in found {
                worse(file(&f, args.check), &mut status);
            }
        } else {
            worse(file(p, args.check), &mut status);
        }
    }
    status
}

fn is_hidden_or_target(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.') || n == "target" || n == "node_modules")
}

fn report(d: &Diagnostic) {
    eprint!("{}", render_human(d, HumanStyle { color: false, width: 100 }));
}

fn display_name(p: &Path) -> String {
    let name = p.to_string_lossy().to_string();
    name.strip_prefix("./").map(str::to_string).unwrap_or(name)
}

/// Formats one file in place (or checks it); returns its exit status.
fn file(p: &Path, check: bool) -> i32 {
    let name = display_name(p);
    let text = match std::fs::read_to_string(p) {
        Ok(t) => t,
        Err(e) => {
            report(
                &Diagnostic::error(Code::IoRead, format!("cannot read `{name}`: {e}"))
                    .in_source(&Source::new(name, "")),
            );
            return exit::USAGE;
        }
    };
    let formatted = match crate::fmt::format_source(&text) {
        Ok(f) => f,
        Err(e) => {
            report(&e.to_diagnostic(&Source::new(name.clone(), text.as_str())));
            eprintln!("orchc fmt: `{name}` does not parse; left unchanged");
            return exit::USAGE;
        }
    };
    if formatted == text {
        return exit::OK;
    }
    if check {
        println!("{name}");
        return exit::FAILED;
    }
    if let Err(e) = std::fs::write(p, formatted) {
        report(
            &Diagnostic::error(Code::IoWrite, format!("cannot write `{name}`: {e}")).in_source(&Source::new(name, "")),
        );
        return exit::USAGE;
    }
    exit::OK
}

fn stdin_to_stdout(check: bool) -> i32 {
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        report(
            &Diagnostic::error(Code::IoRead, format!("cannot read standard input: {e}"))
                .in_source(&Source::new("-", "")),
        );
        return exit::USAGE;
    }
    match crate::fmt::format_source(&text) {
        Ok(formatted) => {
            if check {
                if formatted != text {
                    println!("-");
                    return exit::FAILED;
                }
                return exit::OK;
            }
            let _ = std::io::stdout().write_all(formatted.as_bytes());
            exit::OK
        }
        Err(e) => {
            report(&e.to_diagnostic(&Source::new("<stdin>", text.as_str())));
            exit::USAGE
        }
    }
}
