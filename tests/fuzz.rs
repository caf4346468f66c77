//! Feeds the parser and the checker thousands of mutated versions of every `.orch` file in the
//! repository (truncations, deleted, swapped, duplicated and inserted tokens) and asserts that
//! nothing panics and every diagnostic points inside its file and renders.

use orch::check::check_source;
use orch::diagnostics::{render_human, render_json, HumanStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Mutations per seed file; with the repository's files this gives thousands in all.
const MUTATIONS_PER_FILE: usize = 40;

mod support;

fn seed_files() -> Vec<(String, String)> {
    let mut seeds: Vec<(String, String)> = support::orch_files()
        .into_iter()
        .filter_map(|p| Some((p.display().to_string(), std::fs::read_to_string(&p).ok()?)))
        .collect();
    for (i, block) in support::brief_examples().into_iter().enumerate() {
        seeds.push((format!("brief_{i}.orch"), block));
    }
    seeds
}

/// Splits source into rough tokens (words, numbers, strings, punctuation runs, whitespace), so
/// that mutations move whole tokens around as a careless edit would.
fn tokens(src: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(c) = rest.chars().next() {
        let len = if c.is_alphanumeric() || c == '_' {
            rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len())
        } else if c.is_whitespace() {
            rest.find(|c: char| !c.is_whitespace()).unwrap_or(rest.len())
        } else if c == '"' {
            rest[1..].find('"').map_or(rest.len(), |i| i + 2)
        } else {
            c.len_utf8()
        };
        out.push(&rest[..len]);
        rest = &rest[len..];
    }
    out
}

/// Tokens an edit may insert besides the keywords: punctuation, operators, literals, comments.
const INSERTS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    ";",
    ":",
    "=",
    ".",
    "\"",
    "${",
    ">>",
    "&",
    "->",
    "@",
    "?",
    "??",
    "-",
    "0",
    "1s",
    "x",
    "\n",
    "///",
    "//",
    "new",
    "transition",
];

/// A token to insert: one of `INSERTS` or a keyword of the parser.
fn insert(rng: &mut StdRng) -> &'static str {
    let keywords = orch::syntax::RESERVED.iter().chain(orch::syntax::CONTEXTUAL);
    let all: Vec<&'static str> = INSERTS.iter().chain(keywords).copied().collect();
    all[rng.gen_range(0..all.len())]
}

fn mutate(src: &str, rng: &mut StdRng) -> String {
    let toks = tokens(src);
    if toks.is_empty() {
        return insert(rng).to_string();
    }
    let mut toks: Vec<&str> = toks;
    match rng.gen_range(0..6) {
        0 => {
            // Truncate at a character boundary.
            let cut = rng.gen_range(0..=src.len());
            let cut = (0..=cut).rev().find(|i| src.is_char_boundary(*i)).unwrap_or(0);
            return src[..cut].to_string();
        }
        1 => {
            let i = rng.gen_range(0..toks.len());
            toks.remove(i);
        }
        2 => {
            let (i, j) = (rng.gen_range(0..toks.len()), rng.gen_range(0..toks.len()));
            toks.swap(i, j);
        }
        3 => {
            let i = rng.gen_range(0..toks.len());
            toks.insert(i, toks[i]);
        }
        4 => {
            let i = rng.gen_range(0..=toks.len());
            toks.insert(i, insert(rng));
        }
        _ => {
            // Several edits at once.
            for _ in 0..3 {
                if toks.is_empty() {
                    break;
                }
                let i = rng.gen_range(0..toks.len());
                toks.remove(i);
            }
        }
    }
    toks.concat()
}

#[test]
fn mutated_programs_never_panic_and_diagnostics_point_inside_the_file() {
    let seeds = seed_files();
    assert!(!seeds.is_empty(), "no .orch files to mutate");
    let mut rng = StdRng::seed_from_u64(0x0_5eed);
    let dir = std::env::temp_dir();
    let mut total = 0;
    for (name, src) in &seeds {
        for _ in 0..MUTATIONS_PER_FILE {
            let mutated = mutate(src, &mut rng);
            let result = std::panic::catch_unwind(|| {
                let _ = orch::syntax::parse(&mutated);
                check_source("mutated.orch", &mutated, &dir)
            });
            let result = match result {
                Ok(r) => r,
                Err(_) => panic!("panic on a mutation of {name}:\n---\n{mutated}\n---"),
            };
            for d in &result.diagnostics {
                if let Some(source) = &d.source {
                    for label in &d.labels {
                        assert!(
                            label.span.start <= label.span.end && label.span.end <= source.text.len(),
                            "{}: label {:?} outside {} ({} bytes), from a mutation of {name}",
                            d.code,
                            label.span,
                            source.name,
                            source.text.len()
                        );
                    }
                }
                assert!(!render_human(d, HumanStyle { color: false, width: 100 }).is_empty());
            }
            let _ = render_json(1, &result.diagnostics);
            total += 1;
        }
    }
    assert!(total >= 1_000, "only {total} mutations; the repository should hold more seed files");
}
