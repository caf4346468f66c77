//! Editor support (`editors/`): the TextMate grammar `editors/vscode/syntaxes/orch.tmLanguage.json`
//! tokenized with the engine VS Code itself uses (vscode-textmate on vscode-oniguruma, driven by
//! `editors/vscode/test/tokenize.js`, installed by `scripts/install-test-deps`), and the vim files.
//!
//! - The fixtures `editors/vscode/test/fixtures/*.orch` carry their expected scopes in comment
//!   lines of `^` under the line they describe (`// <- S` for column 0; `- S` = must not have S).
//! - Every `.orch` file of the repository (and every orch example of the design brief) is
//!   tokenized and compared with what the real parser makes of it: declaration names, parameters,
//!   types and `P@state`, literals, clauses, calls, fields and comments must carry the scopes of
//!   what they are, and each declaration must start at the top level of the scope stack.
//! - Every keyword of `grammar/orch.pest` must be in the TextMate grammar and in the vim syntax.

use orch::syntax::parse;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

mod support;
use support::repo;

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Tokenizing with vscode-textmate

#[derive(Debug, Clone)]
struct Token {
    text: String,
    /// UTF-16 columns, as VS Code counts them.
    start: usize,
    end: usize,
    scopes: Vec<String>,
}

struct Tokenized {
    file: PathBuf,
    /// `lines[i]` holds the tokens of line `i + 1`.
    lines: Vec<Vec<Token>>,
}

impl Tokenized {
    /// The token covering UTF-16 column `col` of 1-based `line`.
    fn at(&self, line: usize, col: usize) -> Option<&Token> {
        self.lines.get(line.checked_sub(1)?)?.iter().find(|t| t.start <= col && col < t.end)
    }
}

/// Tokenizes the files with `node editors/vscode/test/tokenize.js`, in one process.
fn tokenize(files: &[PathBuf]) -> Vec<Tokenized> {
    let script = repo().join("editors/vscode/test/tokenize.js");
    assert!(
        repo().join("editors/vscode/test/node_modules/vscode-textmate").is_dir(),
        "vscode-textmate is not installed: run `bash scripts/install-test-deps`"
    );
    let out = Command::new("node")
        .arg(&script)
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): run `bash scripts/install-test-deps`"));
    assert!(out.status.success(), "tokenize.js failed: {}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("tokenize.js prints JSON");
    let result: Vec<Tokenized> = doc["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| Tokenized {
            file: PathBuf::from(f["file"].as_str().expect("file")),
            lines: f["lines"]
                .as_array()
                .expect("lines")
                .iter()
                .map(|l| {
                    l["tokens"]
                        .as_array()
                        .expect("tokens")
                        .iter()
                        .map(|t| Token {
                            text: t["text"].as_str().expect("text").to_string(),
                            start: t["start"].as_u64().expect("start") as usize,
                            end: t["end"].as_u64().expect("end") as usize,
                            scopes: t["scopes"]
                                .as_array()
                                .expect("scopes")
                                .iter()
                                .map(|s| s.as_str().expect("scope").to_string())
                                .collect(),
                        })
                        .collect()
                })
                .collect(),
        })
        .collect();
    assert_eq!(result.len(), files.len(), "one result per file");
    result
}

/// `scope` matches `selector` when it is the selector or starts with it followed by a `.`
/// (TextMate's prefix matching: `keyword` matches `keyword.other.retry.orch`).
fn scope_matches(scope: &str, selector: &str) -> bool {
    scope == selector || (scope.starts_with(selector) && scope.as_bytes().get(selector.len()) == Some(&b'.'))
}

fn has_scope(token: &Token, selector: &str) -> bool {
    token.scopes.iter().any(|s| scope_matches(s, selector))
}

fn rel(path: &Path) -> String {
    path.strip_prefix(repo()).unwrap_or(path).display().to_string()
}

// ---------------------------------------------------------------------------------------------
// The fixtures and their scope assertions

fn fixtures() -> Vec<PathBuf> {
    let dir = repo().join("editors/vscode/test/fixtures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("editors/vscode/test/fixtures")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "orch"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "expected the grammar fixtures in {}", dir.display());
    files
}

/// One `// ^^^ scope - scope` line: the columns it marks on `line`, and the scopes every token
/// there must have and must not have.
#[derive(Debug)]
struct Assertion {
    /// 1-based line of the assertion comment itself, for messages.
    at: usize,
    line: usize,
    columns: Vec<usize>,
    want: Vec<String>,
    refuse: Vec<String>,
}

fn assertions(text: &str) -> Vec<Assertion> {
    let mut out = vec![];
    let mut subject = 0;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let Some(rest) = trimmed.strip_prefix("//") else {
            subject = i + 1;
            continue;
        };
        let rest_trim = rest.trim_start();
        let (columns, tail) = if let Some(tail) = rest_trim.strip_prefix("<-") {
            (vec![0], tail)
        } else if rest_trim.starts_with('^') {
            let first = line.find('^').expect("a caret");
            let count = line[first..].chars().take_while(|&c| c == '^').count();
            ((first..first + count).collect(), &line[first + count..])
        } else {
            subject = i + 1;
            continue;
        };
        let mut want = vec![];
        let mut refuse = vec![];
        let mut negative = false;
        for word in tail.split_whitespace() {
            if word == "-" {
                negative = true;
            } else if negative {
                refuse.push(word.to_string());
            } else {
                want.push(word.to_string());
            }
        }
        assert!(subject > 0, "line {}: an assertion before any source line", i + 1);
        assert!(!want.is_empty() || !refuse.is_empty(), "line {}: an assertion without scopes", i + 1);
        out.push(Assertion { at: i + 1, line: subject, columns, want, refuse });
    }
    out
}

#[test]
fn the_fixtures_have_the_scopes_their_assertions_name() {
    let files = fixtures();
    let tokenized = tokenize(&files);
    let mut failures = vec![];
    let mut checked = 0;
    let mut asserted: BTreeSet<String> = BTreeSet::new();
    for (file, toks) in files.iter().zip(&tokenized) {
        let text = std::fs::read_to_string(file).unwrap();
        let list = assertions(&text);
        assert!(list.len() >= 10, "{}: too few assertions ({})", rel(file), list.len());
        for a in &list {
            asserted.extend(a.want.iter().cloned());
            for &col in &a.columns {
                checked += 1;
                let Some(token) = toks.at(a.line, col) else {
                    failures.push(format!("{}:{}: no token at line {} column {}", rel(file), a.at, a.line, col + 1));
                    continue;
                };
                let missing: Vec<&String> = a.want.iter().filter(|w| !has_scope(token, w)).collect();
                let unwanted: Vec<&String> = a.refuse.iter().filter(|r| has_scope(token, r)).collect();
                if !missing.is_empty() || !unwanted.is_empty() {
                    failures.push(format!(
                        "{}:{}: `{}` at {}:{} has scopes {:?}; missing {:?}, should not have {:?}",
                        rel(file),
                        a.at,
                        token.text,
                        a.line,
                        col + 1,
                        token.scopes,
                        missing,
                        unwanted
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} scope assertions failed:\n{}", failures.len(), failures.join("\n"));

    // Each kind of token the grammar must tell apart is asserted somewhere.
    let kinds = [
        "keyword.control",
        "keyword.other",
        "storage.type",
        "entity.name.function",
        "entity.name.type",
        "support.type",
        "constant.numeric.integer",
        "constant.numeric.float",
        "constant.numeric.duration",
        "constant.language",
        "string.quoted.double",
        "meta.interpolation",
        "punctuation.section.interpolation",
        "meta.embedded",
        "constant.character.escape",
        "comment.line.double-slash",
        "comment.line.documentation",
        "keyword.operator.sequence",
        "keyword.operator.parallel",
        "keyword.operator.arrow",
        "keyword.operator.coalescing",
        "keyword.operator.comparison",
        "keyword.operator.arithmetic",
        "keyword.operator.logical",
        "meta.state",
        "constant.other.state",
        "variable.parameter",
        "variable.other.property",
    ];
    let unasserted: Vec<&str> =
        kinds.iter().copied().filter(|k| !asserted.iter().any(|a| scope_matches(a, k))).collect();
    assert!(unasserted.is_empty(), "no fixture asserts a token of these kinds: {unasserted:?}");
}

#[test]
fn the_assertion_reader_finds_columns_and_scopes() {
    let text = "step run_it(x: Int) -> ()\n// <- storage.type.step.orch\n//   ^^^^^^ entity.name.function - keyword\n";
    let list = assertions(text);
    assert_eq!(list.len(), 2);
    assert_eq!((list[0].line, list[0].columns.clone()), (1, vec![0]));
    assert_eq!(list[1].columns, (5..11).collect::<Vec<_>>());
    assert_eq!(list[1].want, vec!["entity.name.function"]);
    assert_eq!(list[1].refuse, vec!["keyword"]);
    assert!(scope_matches("keyword.other.retry.orch", "keyword.other"));
    assert!(!scope_matches("keyword.otherwise.orch", "keyword.other"));
}

// ---------------------------------------------------------------------------------------------
// Every .orch file of the repository, against the parser

/// Every `.orch` file of the repository (outside `target/`, `node_modules/` and hidden
/// directories), and the ```orch examples of its README, its docs and the design brief (when it
/// is beside the repository), written to `scratch`.
fn corpus(scratch: &Path) -> Vec<PathBuf> {
    let mut files = support::orch_files();
    // The orch examples of the Markdown files: the README, the docs and the design brief.
    let mut docs = vec![repo().join("README.md"), repo().join("../shared/design/LANGUAGE.md")];
    if let Ok(entries) = std::fs::read_dir(repo().join("docs")) {
        let mut more: Vec<PathBuf> =
            entries.filter_map(|e| Some(e.ok()?.path())).filter(|p| p.extension().is_some_and(|x| x == "md")).collect();
        more.sort();
        docs.extend(more);
    }
    for doc in docs {
        let Ok(text) = std::fs::read_to_string(&doc) else { continue };
        let stem = doc.file_name().unwrap().to_string_lossy().to_string();
        for (i, block) in text.split("```orch\n").skip(1).enumerate() {
            let path = scratch.join(format!("{stem}-example-{i}.orch"));
            std::fs::write(&path, block.split("```").next().unwrap_or("")).unwrap();
            files.push(path);
        }
    }
    files
}

/// Byte offsets to 1-based lines and UTF-16 columns.
struct Positions<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Positions<'a> {
    fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Positions { text, line_starts }
    }
    fn of(&self, offset: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        (line, self.text[start..offset].encode_utf16().count())
    }
}

/// What the parser says is at a byte offset, and the scopes the token there may have (any one).
struct Expect {
    offset: usize,
    what: &'static str,
    scopes: &'static [&'static str],
}

fn span_start(v: &Value) -> Option<usize> {
    v.get("span")?.get("start")?.as_u64().map(|s| s as usize)
}

/// Walks the parser's tree (as JSON) and lists what each named, literal or keyword position must be.
fn expectations(v: &Value, out: &mut Vec<Expect>) {
    fn at(out: &mut Vec<Expect>, node: &Value, what: &'static str, scopes: &'static [&'static str]) {
        if let Some(offset) = span_start(node) {
            out.push(Expect { offset, what, scopes });
        }
    }
    fn each(out: &mut Vec<Expect>, list: &Value, what: &'static str, scopes: &'static [&'static str]) {
        for node in list.as_array().into_iter().flatten() {
            at(out, node, what, scopes);
        }
    }
    fn path_last(out: &mut Vec<Expect>, path: &Value, what: &'static str, scopes: &'static [&'static str]) {
        if let Some(last) = path.get("segments").and_then(|s| s.as_array()).and_then(|s| s.last()) {
            at(out, last, what, scopes);
        }
    }
    const PARAM: &[&str] = &["variable.parameter.orch"];
    const OUTPUT: &[&str] = &["variable.parameter.output.orch"];
    const TYPE_NAME: &[&str] = &["entity.name.type", "support.type.builtin.orch"];
    const FUNCTION: &[&str] = &["entity.name.function"];
    const PROPERTY: &[&str] = &["variable.other.property.orch"];
    const STATE: &[&str] = &["constant.other.state.orch"];
    match v {
        Value::Array(items) => items.iter().for_each(|x| expectations(x, out)),
        Value::Object(map) => {
            if let Some(kind) = map.get("kind") {
                if kind.as_str() == Some("None") {
                    at(out, v, "none", &["constant.language.none.orch"]);
                }
                if let Some((tag, body)) = kind.as_object().and_then(|k| k.iter().next()) {
                    match tag.as_str() {
                        "Int" => at(out, v, "an integer", &["constant.numeric.integer.orch"]),
                        "Float" => at(out, v, "a float", &["constant.numeric.float.orch"]),
                        "Duration" => at(out, v, "a duration", &["constant.numeric.duration.orch"]),
                        "Str" => {
                            at(out, v, "a string", &["string.quoted.double.orch"]);
                            for part in body.as_array().into_iter().flatten() {
                                if let Some(expr) = part.get("Interp") {
                                    at(out, expr, "an interpolated expression", &["meta.embedded.line.orch"]);
                                }
                            }
                        }
                        "Name" => at(
                            out,
                            v,
                            "a name",
                            &["variable.other", "variable.language", "support.function.builtin", "entity.name.type"],
                        ),
                        "Bool" => at(out, v, "true or false", &["constant.language.boolean.orch"]),
                        "Named" => {
                            path_last(out, &body["path"], "a type name", TYPE_NAME);
                            if !body["state"].is_null() {
                                at(out, &body["state"], "the state of P@state", &["constant.other.state.orch"]);
                                at(out, &body["state"], "the state of P@state", &["meta.state.orch"]);
                            }
                        }
                        "Field" => {
                            at(out, &body[1], "a field name", &["variable.other.property.orch", "support.function"])
                        }
                        "Step" => {
                            at(out, &body["name"], "a step name", &["entity.name.function.step.orch"]);
                            for p in body["params"].as_array().into_iter().flatten() {
                                at(out, &p["name"], "a parameter", PARAM);
                            }
                            for o in body["outputs"].as_array().into_iter().flatten() {
                                at(out, &o["name"], "an output", OUTPUT);
                            }
                            at(out, &body["retry"], "retry", &["keyword.other.retry.orch"]);
                            at(out, &body["timeout"], "timeout", &["keyword.other.timeout.orch"]);
                            at(out, &body["poll"], "poll", &["keyword.other.poll.orch"]);
                            at(out, &body["compensate"], "compensate", &["keyword.other.compensate.orch"]);
                            path_last(out, &body["compensate"]["value"], "a compensating step", FUNCTION);
                            if body["input"] == Value::Bool(true) {
                                at(out, v, "input", &["keyword.other.input.orch"]);
                            }
                        }
                        "Workflow" => {
                            at(out, &body["name"], "a workflow name", &["entity.name.function.workflow.orch"]);
                            for p in body["params"].as_array().into_iter().flatten() {
                                at(out, &p["name"], "a parameter", PARAM);
                            }
                            for o in body["outputs"].as_array().into_iter().flatten() {
                                at(out, &o["name"], "an output", OUTPUT);
                            }
                        }
                        "Type" if body.get("ty").is_some() => {
                            at(out, &body["name"], "a type name", &["entity.name.type.alias.orch"])
                        }
                        "Enum" => {
                            at(out, &body["name"], "an enum name", &["entity.name.type.enum.orch"]);
                            each(out, &body["variants"], "an enum member", &["variable.other.enummember.orch"]);
                        }
                        "Lifecycle" => {
                            at(out, &body["name"], "a lifecycle name", &["entity.name.type.lifecycle.orch"]);
                            for chain in body["chains"].as_array().into_iter().flatten() {
                                each(out, chain, "a lifecycle state", STATE);
                            }
                        }
                        "Block" => at(out, &body["name"], "a block name", &["entity.name.type.block.orch"]),
                        "Product" => {
                            at(out, &body["name"], "a product name", &["entity.name.type.product.orch"]);
                            path_last(out, &body["lifecycle"], "a product's lifecycle", &["entity.name.type"]);
                        }
                        "Config" => at(out, &body["name"], "a config name", &["variable.other.constant.config.orch"]),
                        "Secret" => at(out, &body["name"], "a secret name", &["variable.other.constant.secret.orch"]),
                        "Environment" => {
                            at(out, &body["name"], "an environment name", &["entity.name.section.environment.orch"]);
                            for o in body["overrides"].as_array().into_iter().flatten() {
                                at(out, &o[0], "an overridden config", &["variable.other.constant.config.orch"]);
                            }
                        }
                        "Use" => {
                            if let Some(std) = body["target"].get("Std") {
                                at(out, &std["name"], "a module", &["entity.name.namespace.orch"]);
                            }
                            if let Some(file) = body["target"].get("File") {
                                at(out, &file["alias"], "a module alias", &["entity.name.namespace.orch"]);
                                if let Some(offset) = file["path_span"]["start"].as_u64() {
                                    out.push(Expect {
                                        offset: offset as usize,
                                        what: "an import path",
                                        scopes: &["string.quoted.double.orch"],
                                    });
                                }
                            }
                        }
                        "Call" if body.get("target").is_some() => {
                            path_last(out, &body["target"], "a step call", FUNCTION);
                            for a in body["args"].as_array().into_iter().flatten() {
                                at(out, &a[0], "a bound parameter", PARAM);
                            }
                            for r in body["renames"].as_array().into_iter().flatten() {
                                at(out, &r[0], "a renamed key", &["variable.other.orch"]);
                                at(out, &r[1], "a renamed output", OUTPUT);
                            }
                        }
                        "Call" => {
                            // `f(...)`, or the `new` of `P.new(...)` and the `post` of `http.post(...)`.
                            let callee = &body["callee"];
                            let last = callee["kind"].get("Field").map(|f| &f[1]).unwrap_or(callee);
                            at(out, last, "a callee", &["support.function", "entity.name.function"]);
                            for a in body["args"].as_array().into_iter().flatten() {
                                if !a["name"].is_null() {
                                    at(out, &a["name"], "a named argument", PARAM);
                                }
                            }
                        }
                        "Graph" => {
                            for item in body.as_array().into_iter().flatten() {
                                each(out, &item["after"], "a step named after `after`", FUNCTION);
                            }
                        }
                        "For" => at(out, &body["var"], "a loop variable", &["entity.name.variable.loop.orch"]),
                        "With" => {
                            for u in body["updates"].as_array().into_iter().flatten() {
                                each(out, &u[0], "an updated field", PROPERTY);
                            }
                        }
                        "Record" => {
                            for f in body.as_array().into_iter().flatten() {
                                // A record literal's `key: value` (not the shorthand `key`), or a
                                // record type's `field: TYPE`.
                                if !f["value"].is_null() || f.get("ty").is_some() {
                                    at(out, &f["name"], "a record key", PROPERTY);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            // Fields of blocks and products.
            if map.contains_key("when") && map.contains_key("ty") {
                at(out, &map["name"], "a field name", PROPERTY);
                each(out, &map["when"], "a `when` state", STATE);
            }
            if let Some(fixed) = map.get("Fixed") {
                at(out, &fixed["name"], "a fixed field", PROPERTY);
                at(out, fixed, "fixed", &["keyword.other.fixed.orch"]);
            }
            if let Some(stmt) = map.get("Let") {
                at(out, &stmt["name"], "a let name", &["entity.name.variable.orch"]);
            }
            map.values().for_each(|x| expectations(x, out));
        }
        _ => {}
    }
}

/// What the parser's tree of a module says about its positions (comments included).
fn module_expectations(module: &orch::syntax::ast::Module) -> Vec<Expect> {
    let mut expect = vec![];
    for c in &module.comments {
        let scopes: &'static [&'static str] =
            if c.doc { &["comment.line.documentation.orch"] } else { &["comment.line.double-slash.orch"] };
        expect.push(Expect { offset: c.span.start, what: "a comment", scopes });
        // The end of the comment too: nothing in it ends it early.
        expect.push(Expect { offset: c.span.end - 1, what: "the end of a comment", scopes });
    }
    let tree = serde_json::to_value(&module.items).expect("the tree serializes");
    expectations(&tree, &mut expect);
    // A called name is a function, not a variable.
    let callees: BTreeSet<usize> = expect.iter().filter(|e| e.what == "a callee").map(|e| e.offset).collect();
    expect.retain(|e| !(e.what == "a name" && callees.contains(&e.offset)));
    expect
}

const DECLARATION_META: &[&str] = &[
    "meta.import.orch",
    "meta.config.orch",
    "meta.secret.orch",
    "meta.type.alias.orch",
    "meta.enum.orch",
    "meta.lifecycle.orch",
    "meta.block.orch",
    "meta.product.orch",
    "meta.step.orch",
    "meta.workflow.orch",
    "meta.environment.orch",
];

#[test]
fn every_orch_file_is_tokenized_as_the_parser_reads_it() {
    let scratch = tempfile::tempdir().unwrap();
    let files = corpus(scratch.path());
    assert!(files.len() >= 20, "expected the examples, stdlib and test corpus, found {} files", files.len());
    let tokenized = tokenize(&files);
    let mut failures: Vec<String> = vec![];
    let (mut parsed, mut checks) = (0, 0);
    for (file, toks) in files.iter().zip(&tokenized) {
        let name = rel(file);
        assert_eq!(toks.file, *file);
        let text = std::fs::read_to_string(file).unwrap();
        // Every token that is not blank has a scope of its own besides `source.orch`.
        for (i, line) in toks.lines.iter().enumerate() {
            for t in line {
                if !t.text.trim().is_empty() && t.scopes.len() < 2 {
                    failures.push(format!("{name}:{}:{}: `{}` has no scope", i + 1, t.start + 1, t.text));
                }
            }
        }
        let Ok(module) = parse(&text) else {
            continue; // a test of syntax errors: only the check above applies
        };
        parsed += 1;
        let pos = Positions::new(&text);
        let expect = module_expectations(&module);
        for e in &expect {
            checks += 1;
            let (line, col) = pos.of(e.offset);
            let Some(token) = toks.at(line, col) else {
                failures.push(format!("{name}:{line}:{}: no token for {}", col + 1, e.what));
                continue;
            };
            if !e.scopes.iter().any(|s| has_scope(token, s)) {
                failures.push(format!(
                    "{name}:{line}:{}: `{}` is {} and should have one of {:?}, has {:?}",
                    col + 1,
                    token.text,
                    e.what,
                    e.scopes,
                    token.scopes
                ));
            }
        }
        // Each declaration starts at the top level: nothing before it was left open.
        for item in &module.items {
            checks += 1;
            let (line, col) = pos.of(item.span.start);
            match toks.at(line, col) {
                Some(t) if t.scopes.len() == 3 && DECLARATION_META.contains(&t.scopes[1].as_str()) => {}
                Some(t) => failures.push(format!(
                    "{name}:{line}:{}: the declaration starting with `{}` is not at the top level: {:?}",
                    col + 1,
                    t.text,
                    t.scopes
                )),
                None => failures.push(format!("{name}:{line}:{}: no token for a declaration", col + 1)),
            }
        }
        // Nothing the parser accepts is marked invalid.
        for (i, line) in toks.lines.iter().enumerate() {
            for t in line.iter().filter(|t| has_scope(t, "invalid")) {
                failures.push(format!(
                    "{name}:{}:{}: `{}` is marked invalid: {:?}",
                    i + 1,
                    t.start + 1,
                    t.text,
                    t.scopes
                ));
            }
        }
    }
    eprintln!("{} files tokenized, {parsed} parsed, {checks} positions compared with the parser", files.len());
    assert!(parsed >= 20, "only {parsed} files parsed");
    let shown: Vec<&String> = failures.iter().take(60).collect();
    assert!(
        failures.is_empty(),
        "{} disagreements between the grammar and the parser (first {}):\n{}",
        failures.len(),
        shown.len(),
        shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Keywords of grammar/orch.pest

/// The string literals of one pest rule `NAME = @{ ... }`, line by line.
fn rule_lines(pest: &str, rule: &str) -> Vec<Vec<String>> {
    let start = pest
        .lines()
        .position(|l| l.starts_with(&format!("{rule} ")) || l.starts_with(&format!("{rule}=")))
        .unwrap_or_else(|| panic!("grammar/orch.pest has no rule `{rule}`"));
    let mut out = vec![];
    for (i, line) in pest.lines().enumerate().skip(start) {
        let code = line.split("//").next().unwrap_or("");
        out.push(code.split('"').skip(1).step_by(2).map(str::to_string).collect());
        if i > start && line.starts_with('}') || (i == start && line.trim_end().ends_with('}')) {
            break;
        }
    }
    out
}

/// Every keyword of the pest grammar: the `reserved` words (written as a first letter and the
/// rests), the `contextual_keyword`s and every `kw_*` rule, with where each was found.
fn pest_keywords() -> BTreeMap<String, &'static str> {
    let pest = read("grammar/orch.pest");
    let mut words = BTreeMap::new();
    for lits in rule_lines(&pest, "reserved") {
        if let Some((first, rests)) = lits.split_first() {
            for rest in rests {
                words.insert(format!("{first}{rest}"), "reserved");
            }
        }
    }
    let reserved = words.len();
    for lits in rule_lines(&pest, "contextual_keyword") {
        for w in lits {
            words.insert(w, "contextual_keyword");
        }
    }
    let contextual = words.len() - reserved;
    let mut kw_rules = 0;
    for line in pest.lines().filter(|l| l.starts_with("kw_")) {
        if let Some(word) = line.split('"').nth(1) {
            kw_rules += 1;
            words.entry(word.to_string()).or_insert("kw_ rule");
        }
    }
    assert!(reserved >= 20 && contextual >= 10 && kw_rules >= reserved + contextual, "keywords misread: {words:?}");
    words
}

fn contextual_keywords() -> &'static [String] {
    static WORDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    WORDS.get_or_init(|| {
        pest_keywords().into_iter().filter(|(_, from)| *from == "contextual_keyword").map(|(w, _)| w).collect()
    })
}

/// Every regular expression of a TextMate grammar (`match`, `begin`, `end`, `while`).
fn grammar_regexes(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                match (k.as_str(), x) {
                    ("match" | "begin" | "end" | "while", Value::String(s)) => out.push(s.clone()),
                    _ => grammar_regexes(x, out),
                }
            }
        }
        Value::Array(xs) => xs.iter().for_each(|x| grammar_regexes(x, out)),
        _ => {}
    }
}

/// The keywords that no regular expression of the grammar spells as a whole word.
fn missing_from_textmate(grammar_json: &str, keywords: &[String]) -> Vec<String> {
    let grammar: Value = serde_json::from_str(grammar_json).expect("the grammar is JSON");
    let mut regexes = vec![];
    grammar_regexes(&grammar, &mut regexes);
    // `\bin\b` spells `in`: escapes become spaces before looking for whole words.
    let words: BTreeSet<String> = regexes
        .iter()
        .flat_map(|r| {
            let mut plain = String::new();
            let mut chars = r.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    chars.next();
                    plain.push(' ');
                } else {
                    plain.push(c);
                }
            }
            plain
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    keywords.iter().filter(|k| !words.contains(*k)).cloned().collect()
}

#[test]
fn every_keyword_of_the_pest_grammar_is_in_the_textmate_grammar() {
    let keywords: Vec<String> = pest_keywords().into_keys().collect();
    let missing = missing_from_textmate(&read("editors/vscode/syntaxes/orch.tmLanguage.json"), &keywords);
    assert!(
        missing.is_empty(),
        "keywords of grammar/orch.pest missing from editors/vscode/syntaxes/orch.tmLanguage.json: {missing:?}"
    );
}

#[test]
fn a_keyword_taken_out_of_the_textmate_grammar_is_reported() {
    let grammar = read("editors/vscode/syntaxes/orch.tmLanguage.json");
    let keywords: Vec<String> = pest_keywords().into_keys().collect();
    assert!(keywords.iter().any(|k| k == "within") && keywords.iter().any(|k| k == "enum"));
    let without = grammar.replace("within", "wi_thin").replace("enum", "e_num");
    assert_eq!(missing_from_textmate(&without, &keywords), vec!["enum".to_string(), "within".to_string()]);
}

#[test]
fn every_keyword_is_highlighted_in_the_fixtures_and_contextual_ones_also_as_plain_names() {
    let files = fixtures();
    let tokenized = tokenize(&files);
    let keyword_scopes = ["keyword", "storage.type", "constant.language"];
    let mut as_keyword: BTreeSet<String> = BTreeSet::new();
    let mut as_name: BTreeSet<String> = BTreeSet::new();
    for toks in &tokenized {
        for t in toks.lines.iter().flatten() {
            if has_scope(t, "comment") || has_scope(t, "string") {
                continue;
            }
            if keyword_scopes.iter().any(|s| has_scope(t, s)) {
                as_keyword.insert(t.text.clone());
            } else {
                as_name.insert(t.text.clone());
            }
        }
    }
    let never: Vec<String> = pest_keywords().into_keys().filter(|k| !as_keyword.contains(k)).collect();
    assert!(never.is_empty(), "keywords never highlighted as keywords in the fixtures: {never:?}");
    let never_names: Vec<&String> = contextual_keywords().iter().filter(|k| !as_name.contains(*k)).collect();
    assert!(never_names.is_empty(), "contextual keywords never seen as plain names in the fixtures: {never_names:?}");
}

// ---------------------------------------------------------------------------------------------
// The VS Code extension's manifest and the vim files

#[test]
fn the_vscode_extension_contributes_the_language_and_the_grammar() {
    let manifest: Value = serde_json::from_str(&read("editors/vscode/package.json")).expect("package.json is JSON");
    let language = &manifest["contributes"]["languages"][0];
    assert_eq!(language["id"], "orch");
    assert!(language["extensions"].as_array().unwrap().contains(&Value::from(".orch")));
    let config_path = language["configuration"].as_str().expect("a language configuration");
    let config: Value =
        serde_json::from_str(&read(&format!("editors/vscode/{config_path}"))).expect("language configuration is JSON");
    assert_eq!(config["comments"]["lineComment"], "//");
    for pair in ["{", "[", "(", "\""] {
        assert!(
            config["autoClosingPairs"].as_array().unwrap().iter().any(|p| p["open"] == pair),
            "no auto-closing pair for {pair}"
        );
    }
    let grammar = &manifest["contributes"]["grammars"][0];
    assert_eq!(grammar["language"], "orch");
    assert_eq!(grammar["scopeName"], "source.orch");
    let path = grammar["path"].as_str().unwrap();
    let tm: Value = serde_json::from_str(&read(&format!("editors/vscode/{path}"))).expect("grammar is JSON");
    assert_eq!(tm["scopeName"], "source.orch");
}

#[test]
fn the_vim_syntax_names_every_keyword() {
    let syntax = read("editors/vim/syntax/orch.vim");
    let words: BTreeSet<&str> =
        syntax.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).collect();
    let missing: Vec<String> = pest_keywords().into_keys().filter(|k| !words.contains(k.as_str())).collect();
    assert!(missing.is_empty(), "keywords of grammar/orch.pest missing from editors/vim/syntax/orch.vim: {missing:?}");
    let ftdetect = read("editors/vim/ftdetect/orch.vim");
    assert!(ftdetect.contains("*.orch") && ftdetect.contains("filetype=orch"), "ftdetect: {ftdetect}");
}

/// The vim syntax group of every character of each file (`""` where there is none), from a real
/// `vim -es` with `editors/vim` first on its runtime path.
fn vim_groups(files: &[PathBuf]) -> Vec<Vec<Vec<String>>> {
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("groups.txt");
    let script = scratch.path().join("dump.vim");
    let rtp = repo().join("editors/vim");
    std::fs::write(
        &script,
        format!(
            r#"let &rtp = '{rtp},' . &rtp
filetype on
syntax on
let s:out = []
for s:f in argv()
  execute 'edit ' . fnameescape(s:f)
  call add(s:out, 'FILE ' . &filetype . ' ' . b:current_syntax)
  for s:l in range(1, line('$'))
    let s:names = []
    for s:c in range(1, col([s:l, '$']) - 1)
      call add(s:names, synIDattr(synID(s:l, s:c, 1), 'name'))
    endfor
    call add(s:out, join(s:names, ','))
  endfor
endfor
call writefile(s:out, '{out}')
qall!
"#,
            rtp = rtp.display(),
            out = out.display()
        ),
    )
    .unwrap();
    let status = Command::new("vim")
        .args(["-N", "-u", "NONE", "-i", "NONE", "-n", "-es", "-S"])
        .arg(&script)
        .arg("--")
        .args(files)
        .status()
        .unwrap_or_else(|e| panic!("cannot run vim ({e}): run `bash scripts/install-test-deps`"));
    assert!(status.success(), "vim failed");
    let text = std::fs::read_to_string(&out).expect("vim wrote the syntax groups");
    let mut result: Vec<Vec<Vec<String>>> = vec![];
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("FILE ") {
            assert_eq!(rest, "orch orch", "filetype and syntax of a .orch file in vim");
            result.push(vec![]);
        } else {
            let groups = if line.is_empty() { vec![] } else { line.split(',').map(str::to_string).collect() };
            result.last_mut().expect("a FILE line first").push(groups);
        }
    }
    assert_eq!(result.len(), files.len());
    result
}

/// The vim groups that stand for a TextMate scope the fixtures assert, where there is one.
fn vim_equivalent(scope: &str) -> Option<&'static [&'static str]> {
    let contextual = contextual_keywords();
    let table: &[(&str, &'static [&'static str])] = &[
        ("comment.line.documentation", &["orchDocComment"]),
        ("comment.line.double-slash", &["orchComment"]),
        ("constant.numeric.duration", &["orchDuration"]),
        ("constant.numeric.integer", &["orchNumber"]),
        ("constant.numeric.float", &["orchFloat"]),
        ("constant.character.escape", &["orchEscape"]),
        ("punctuation.section.interpolation", &["orchInterpolationDelimiter"]),
        ("constant.language.boolean", &["orchBoolean"]),
        ("constant.language.none", &["orchNone"]),
        ("keyword.control.import", &["orchImport"]),
        ("keyword.other.std", &["orchImport"]),
        ("keyword.control.conditional", &["orchConditional"]),
        ("keyword.control.loop", &["orchRepeat"]),
        ("keyword.operator.logical", &["orchOperatorWord"]),
        ("keyword.operator.expression", &["orchOperatorWord"]),
        ("storage.type.let", &["orchStatement"]),
        ("storage.type", &["orchDeclaration"]),
        ("entity.name.function.step", &["orchFunctionName"]),
        ("entity.name.function.workflow", &["orchFunctionName"]),
        ("entity.name.type.alias", &["orchTypeName"]),
        ("entity.name.type.enum", &["orchTypeName"]),
        ("entity.name.type.block", &["orchTypeName"]),
        ("entity.name.type.product", &["orchTypeName"]),
        ("entity.name.type.lifecycle", &["orchTypeName"]),
        ("support.type.builtin", &["orchBuiltinType"]),
        ("entity.name.type", &["orchType", "orchTypeName", "orchBuiltinType"]),
        ("string.quoted.double", &["orchString"]),
        ("meta.state", &["orchState"]),
        ("support.function.builtin", &["orchBuiltin"]),
    ];
    if let Some(kw) = scope.strip_prefix("keyword.other.") {
        if contextual.iter().any(|c| kw.strip_suffix(".orch").unwrap_or(kw) == c) {
            return Some(&["orchContextual"]);
        }
    }
    table.iter().find(|(tm, _)| scope_matches(scope, tm)).map(|(_, vim)| *vim)
}

const VIM_KEYWORD_GROUPS: &[&str] = &[
    "orchContextual",
    "orchDeclaration",
    "orchStatement",
    "orchConditional",
    "orchRepeat",
    "orchOperatorWord",
    "orchImport",
    "orchBoolean",
    "orchNone",
];

#[test]
fn vim_highlights_the_fixtures_as_their_assertions_say() {
    let files = fixtures();
    let groups = vim_groups(&files);
    let mut failures = vec![];
    let mut checked = 0;
    for (file, lines) in files.iter().zip(&groups) {
        let text = std::fs::read_to_string(file).unwrap();
        for a in assertions(&text) {
            // vim gives one group per character: inside `${}` it is the interpolation's, not the string's.
            let interpolated = a.want.iter().any(|w| w.contains("interpolation") || w.starts_with("meta.embedded"));
            let wanted: Vec<&'static [&'static str]> = a
                .want
                .iter()
                .filter(|w| !(interpolated && w.starts_with("string")))
                .filter_map(|s| vim_equivalent(s))
                .collect();
            let refuse_keyword = a.refuse.iter().any(|r| r == "keyword" || r == "storage");
            for &col in &a.columns {
                let group = lines.get(a.line - 1).and_then(|l| l.get(col)).map(String::as_str).unwrap_or("");
                for w in &wanted {
                    checked += 1;
                    if !w.contains(&group) {
                        failures.push(format!(
                            "{}:{}:{}: vim group `{group}`, expected one of {w:?}",
                            rel(file),
                            a.line,
                            col + 1
                        ));
                    }
                }
                if refuse_keyword {
                    checked += 1;
                    if VIM_KEYWORD_GROUPS.contains(&group) {
                        failures.push(format!(
                            "{}:{}:{}: vim highlights a plain name as `{group}`",
                            rel(file),
                            a.line,
                            col + 1
                        ));
                    }
                }
            }
        }
    }
    eprintln!("{checked} vim checks");
    assert!(checked >= 300, "only {checked} vim checks");
    assert!(failures.is_empty(), "{} of {checked} vim checks failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn the_textmate_grammar_is_what_build_py_makes() {
    let out = Command::new("python3")
        .arg(repo().join("editors/vscode/syntaxes/build.py"))
        .arg("--check")
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): run `bash scripts/install-test-deps`"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn vim_highlights_every_orch_file_as_the_parser_reads_it() {
    let scratch = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> =
        corpus(scratch.path()).into_iter().filter(|f| parse(&std::fs::read_to_string(f).unwrap()).is_ok()).collect();
    assert!(files.len() >= 20, "only {} files parse", files.len());
    let groups = vim_groups(&files);
    let mut failures = vec![];
    let mut checked = 0;
    for (file, lines) in files.iter().zip(&groups) {
        let text = std::fs::read_to_string(file).unwrap();
        let module = parse(&text).unwrap();
        let pos = Positions::new(&text);
        for e in module_expectations(&module) {
            let (line, _) = pos.of(e.offset);
            let byte_col = e.offset - pos.line_starts[line - 1];
            let group = lines.get(line - 1).and_then(|l| l.get(byte_col)).map(String::as_str).unwrap_or("");
            if e.what == "a name" {
                checked += 1;
                if VIM_KEYWORD_GROUPS.contains(&group) {
                    failures.push(format!("{}:{line}:{}: vim highlights a name as `{group}`", rel(file), byte_col + 1));
                }
                continue;
            }
            // Only where every scope the grammar may give has a vim counterpart.
            let Some(allowed) = e.scopes.iter().map(|s| vim_equivalent(s)).collect::<Option<Vec<_>>>() else {
                continue;
            };
            checked += 1;
            if !allowed.iter().any(|groups| groups.contains(&group)) {
                failures.push(format!(
                    "{}:{line}:{}: {} is `{group}` in vim, expected one of {:?}",
                    rel(file),
                    byte_col + 1,
                    e.what,
                    allowed.concat()
                ));
            }
        }
    }
    eprintln!("{checked} positions of {} files compared in vim", files.len());
    assert!(checked >= 2000, "only {checked} vim checks");
    let shown: Vec<&String> = failures.iter().take(60).collect();
    assert!(
        failures.is_empty(),
        "{} disagreements between vim and the parser (first {}):\n{}",
        failures.len(),
        shown.len(),
        shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    );
}
