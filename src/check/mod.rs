//! The checker: names, types, data flow and lifecycles; lowers the AST to `crate::ir`.
//!
//! It keeps going after an error and reports all of them, across all files. Errors are plain data
//! (`error::CheckError`) turned into `Diagnostic`s once, at the end.
//!
//! Phases: load the root and its imports (`load`), collect names, resolve the declarations'
//! types (`decls`), check every expression (`expr`) and every workflow's data flow (`flow`), then
//! lint the root module.

mod calls;
mod decls;
mod error;
mod expr;
mod flow;
mod load;
mod types;

use crate::diagnostics::{Code, Diagnostic, Source};
use crate::ir::{self, Program, Type};
use crate::syntax::ast::{self, Span};
use error::{At, CheckError, ModId};
use indexmap::IndexMap;
use load::{ItemTag, ModuleInfo};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// What checking one root file (and its imports) gives.
pub struct CheckResult {
    /// The checked program; `None` when there is any error.
    pub program: Option<Program>,
    /// Errors and warnings, in source order per file.
    pub diagnostics: Vec<Diagnostic>,
}

impl CheckResult {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == crate::diagnostics::Severity::Error)
    }
}

/// Checks the file at `path` and every module it imports.
pub fn check_path(path: &Path) -> CheckResult {
    let name = path.to_string_lossy().to_string();
    let name = name.strip_prefix("./").map(str::to_string).unwrap_or(name);
    match load::read_source(path) {
        Ok(text) => {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            let key = std::fs::canonicalize(path).ok();
            check(&name, &text, Some(&dir), key)
        }
        Err(e) => CheckResult {
            program: None,
            diagnostics: vec![Diagnostic::error(Code::IoRead, format!("cannot read `{name}`: {e}"))
                .in_source(&Source::new(name.clone(), ""))],
        },
    }
}

/// Checks source text; relative imports resolve against `dir`.
pub fn check_source(name: &str, text: &str, dir: &Path) -> CheckResult {
    check(name, text, Some(dir), None)
}

fn check(name: &str, text: &str, dir: Option<&Path>, key: Option<std::path::PathBuf>) -> CheckResult {
    let loaded = load::load(name, text, dir, key);
    let mut checker = Checker::new(loaded.modules);
    checker.errors = loaded.errors;
    checker.run();
    let sources: Vec<Arc<Source>> = checker.modules.iter().map(|m| m.source.clone()).collect();
    let mut errors = std::mem::take(&mut checker.errors);
    // Source order per file, files in load order; one report per place and message.
    errors.sort_by_key(|e| (e.labels[0].0.module, e.labels[0].0.span.start, e.labels[0].0.span.end));
    let mut seen = HashSet::new();
    errors.retain(|e| seen.insert((e.code, e.labels[0].0.module, e.labels[0].0.span, e.message.clone())));
    let failed = errors.iter().any(|e| !e.warning);
    let diagnostics = errors.iter().map(|e| e.to_diagnostic(&sources)).collect();
    let program = if failed { None } else { Some(checker.into_program()) };
    CheckResult { program, diagnostics }
}

/// A step's or workflow's signature, as flows see it.
#[derive(Clone, Debug)]
pub(crate) struct Sig {
    pub qname: String,
    pub module: ModId,
    pub params: Vec<SigParam>,
    pub outputs: IndexMap<String, (Type, Span)>,
    /// The compensating step's IR name and the `compensate` clause.
    pub compensate: Option<(String, At)>,
    pub is_workflow: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct SigParam {
    pub name: String,
    pub ty: Type,
    pub has_default: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct ConfigSig {
    pub ty: Type,
    pub at: At,
}

pub(crate) struct Checker {
    pub modules: Vec<ModuleInfo>,
    pub errors: Vec<CheckError>,
    pub enums: IndexMap<String, ir::EnumDef>,
    pub lifecycles: IndexMap<String, ir::LifecycleDef>,
    pub blocks: IndexMap<String, ir::BlockDef>,
    pub products: IndexMap<String, ir::ProductDef>,
    pub aliases: HashMap<String, Type>,
    pub resolving: HashSet<String>,
    pub configs: IndexMap<String, ConfigSig>,
    pub secrets: IndexMap<String, At>,
    pub sigs: IndexMap<String, Sig>,
    // What the program is made of.
    pub config_defs: IndexMap<String, ir::ConfigDef>,
    pub environments: IndexMap<String, ir::EnvironmentDef>,
    pub steps: IndexMap<String, ir::StepDef>,
    pub workflows: IndexMap<String, ir::WorkflowDef>,
    // For the lints.
    pub called: HashSet<String>,
    /// A record literal whose fields the caller compares itself, with a better message: the
    /// record ending a step body (`step::output_mismatch`), a block given to `P.new` (per state).
    pub literal_checked_by_caller: Option<ast::Span>,
    pub used_outputs: HashSet<(String, String)>,
}

/// An item found by name.
#[derive(Clone, Debug)]
pub(crate) struct Found {
    pub tag: ItemTag,
    pub qname: String,
    pub module: ModId,
    pub index: usize,
}

impl Checker {
    fn new(modules: Vec<ModuleInfo>) -> Checker {
        Checker {
            modules,
            errors: vec![],
            enums: IndexMap::new(),
            lifecycles: IndexMap::new(),
            blocks: IndexMap::new(),
            products: IndexMap::new(),
            aliases: HashMap::new(),
            resolving: HashSet::new(),
            configs: IndexMap::new(),
            secrets: IndexMap::new(),
            sigs: IndexMap::new(),
            config_defs: IndexMap::new(),
            environments: IndexMap::new(),
            steps: IndexMap::new(),
            workflows: IndexMap::new(),
            called: HashSet::new(),
            literal_checked_by_caller: None,
            used_outputs: HashSet::new(),
        }
    }

    fn run(&mut self) {
        load::collect_names(&mut self.modules, &mut self.errors);
        self.check_use_names();
        self.declare_all();
        self.check_bodies();
        self.check_workflow_calls();
        self.lint_root();
    }

    pub fn err(&mut self, e: CheckError) {
        self.errors.push(e);
    }

    pub fn at(m: ModId, span: Span) -> At {
        At { module: m, span }
    }

    pub fn loc(&self, m: ModId, span: Span) -> ir::Loc {
        let (line, column) = self.modules[m].source.line_col(span.start);
        ir::Loc {
            file: m as u32,
            start: span.start as u32,
            end: span.end as u32,
            line: line as u32,
            column: column as u32,
        }
    }

    /// The parsed modules, in load order.
    pub fn parsed(&self) -> Vec<ModId> {
        (0..self.modules.len()).filter(|&m| self.modules[m].ast.is_some()).collect()
    }

    /// An import alias may not clash with an item of the same module.
    fn check_use_names(&mut self) {
        let mut errs = vec![];
        for m in self.parsed() {
            let info = &self.modules[m];
            for item in &info.ast().items {
                if let ast::ItemKind::Use(_) = item.kind {
                    let name = item.kind.name().expect("a use names its module");
                    if let Some((_, idx)) = info.items.get(&name.name) {
                        let other = info.ast().items[*idx].kind.name().expect("named").span;
                        errs.push(
                            CheckError::new(
                                Code::NameDuplicate,
                                Self::at(m, other),
                                format!("`{}` is both an imported module and a declaration", name.name),
                                "declared here",
                            )
                            .label(Self::at(m, name.span), "imported here"),
                        );
                    }
                }
            }
        }
        self.errors.extend(errs);
    }

    /// Item `i` of module `m` repeats an earlier item's name (reported by `collect_names`): it is
    /// left out, so that uses of the name are checked against the first definition only.
    pub fn is_duplicate(&self, m: ModId, i: usize) -> bool {
        let info = &self.modules[m];
        let Some(name) = info.ast().items[i].kind.name() else { return false };
        info.items.get(&name.name).is_some_and(|&(_, first)| first != i)
    }

    /// Resolves `a` or `module.a` as seen from module `m`.
    pub fn lookup(&self, m: ModId, path: &[&str]) -> Option<Found> {
        match path {
            [name] => {
                let info = &self.modules[m];
                let (tag, index) = *info.items.get(*name)?;
                Some(Found { tag, qname: format!("{}{}", info.prefix, name), module: m, index })
            }
            [module, name] => {
                let target = *self.modules[m].imports.get(*module)?;
                self.modules[target].ast.as_ref()?;
                self.lookup(target, &[name])
            }
            _ => None,
        }
    }

    /// Like `lookup`, reporting `orch::name::unknown` at `span` when the name is not found.
    pub fn lookup_or_report(&mut self, m: ModId, path: &ast::Path, what: &str) -> Option<Found> {
        let segs: Vec<&str> = path.segments.iter().map(|s| s.name.as_str()).collect();
        if let Some(found) = self.lookup(m, &segs) {
            return Some(found);
        }
        // A name in a module that failed to import or to parse: that failure is the one error.
        if segs.len() == 2 {
            let info = &self.modules[m];
            let broken = info.failed_imports.contains(segs[0])
                || info.imports.get(segs[0]).is_some_and(|&t| self.modules[t].ast.is_none());
            if broken {
                return None;
            }
        }
        let dotted = path.dotted();
        let mut e = CheckError::new(
            Code::NameUnknown,
            Self::at(m, path.span),
            format!("unknown {what} `{dotted}`"),
            format!("no {what} named `{dotted}` here"),
        );
        if segs.len() == 2 && !self.modules[m].imports.contains_key(segs[0]) {
            e = e.help(format!(
                "`{}` is not an imported module; add `use std.{}` or `use \"...\" as {}`",
                segs[0], segs[0], segs[0]
            ));
        } else if let Some(s) = self.similar_name(m, segs[segs.len() - 1]) {
            e = e.help(format!("did you mean `{s}`?"));
        }
        self.err(e);
        None
    }

    /// A declared name close to `name` (edit distance at most 2), for "did you mean".
    pub fn similar_name(&self, m: ModId, name: &str) -> Option<String> {
        self.modules[m]
            .items
            .keys()
            .filter(|k| edit_distance(k, name) <= 2 && k.as_str() != name)
            .min_by_key(|k| edit_distance(k, name))
            .cloned()
    }

    fn into_program(self) -> Program {
        Program {
            files: self
                .modules
                .iter()
                .map(|m| ir::SourceFile { name: m.source.name.clone(), text: m.source.text.to_string() })
                .collect(),
            enums: self.enums,
            lifecycles: self.lifecycles,
            blocks: self.blocks,
            products: self.products,
            configs: self.config_defs,
            secrets: self.secrets.keys().cloned().collect(),
            environments: self.environments,
            steps: self.steps,
            workflows: self.workflows,
        }
    }

    /// Warnings for the root module: steps nothing calls, outputs nothing reads. A file without
    /// workflows is a library (like the stdlib modules): its steps are there for importers to call.
    fn lint_root(&mut self) {
        if self.modules.is_empty() || self.modules[0].ast.is_none() || self.errors.iter().any(|e| !e.warning) {
            return;
        }
        if !self.sigs.values().any(|s| s.module == 0 && s.is_workflow) {
            return;
        }
        let mut warnings = vec![];
        let compensators: HashSet<String> =
            self.sigs.values().filter_map(|s| s.compensate.as_ref().map(|c| c.0.clone())).collect();
        for (qname, sig) in &self.sigs {
            if sig.module != 0 || sig.is_workflow {
                continue;
            }
            let Some((_, idx)) = self.modules[0].items.get(qname) else { continue };
            let ast::ItemKind::Step(step) = &self.modules[0].ast().items[*idx].kind else { continue };
            if !self.called.contains(qname) {
                if !compensators.contains(qname) {
                    warnings.push(
                        CheckError::new(
                            Code::LintUnusedStep,
                            Self::at(0, step.name.span),
                            format!("step `{qname}` is never used"),
                            "no workflow calls this step and no step compensates with it",
                        )
                        .warning(),
                    );
                }
                continue;
            }
            for (out, (_, span)) in &sig.outputs {
                if !self.used_outputs.contains(&(qname.clone(), out.clone())) {
                    warnings.push(
                        CheckError::new(
                            Code::LintUnusedOutput,
                            Self::at(0, *span),
                            format!("output `{out}` of step `{qname}` is never read"),
                            "no later step reads it and no workflow returns it",
                        )
                        .warning()
                        .help("remove the output, or read it in a later step or return it from the workflow"),
                    );
                }
            }
        }
        self.errors.extend(warnings);
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = if ca == *cb { 0 } else { 1 };
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
