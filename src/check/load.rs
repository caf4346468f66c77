//! Loading a root file and everything it imports: each file once, import cycles found, names
//! collected per module.

use super::error::{At, CheckError, ModId};
use crate::diagnostics::{Code, Source};
use crate::syntax::ast::{self, ItemKind, Span, UseTarget};
use indexmap::IndexMap;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What kind of declaration a module-level name refers to, and its index in `Module::items`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemTag {
    Config,
    Secret,
    Type,
    Enum,
    Lifecycle,
    Block,
    Product,
    Step,
    Workflow,
    Environment,
}

impl ItemTag {
    pub fn describe(self) -> &'static str {
        match self {
            ItemTag::Config => "a config",
            ItemTag::Secret => "a secret",
            ItemTag::Type => "a type",
            ItemTag::Enum => "an enum",
            ItemTag::Lifecycle => "a lifecycle",
            ItemTag::Block => "a block",
            ItemTag::Product => "a product",
            ItemTag::Step => "a step",
            ItemTag::Workflow => "a workflow",
            ItemTag::Environment => "an environment",
        }
    }
}

pub struct ModuleInfo {
    pub source: Arc<Source>,
    /// `None` when the file did not parse.
    pub ast: Option<ast::Module>,
    /// Prefix of the IR names of this module's items: `""` for the root, `"lifecycles."` for a
    /// module imported as `lifecycles`.
    pub prefix: String,
    /// Import alias to module.
    pub imports: HashMap<String, ModId>,
    /// Aliases of imports that failed (reported once): names under them are not reported again.
    pub failed_imports: HashSet<String>,
    /// Names defined twice as different kinds of item (an enum and a block, say): which one a use
    /// means is unknown, so its uses are not checked further.
    pub ambiguous: HashSet<String>,
    /// Name to (kind, index into `ast.items`).
    pub items: IndexMap<String, (ItemTag, usize)>,
}

impl ModuleInfo {
    pub fn ast(&self) -> &ast::Module {
        self.ast.as_ref().expect("only parsed modules are checked")
    }
}

pub struct Loaded {
    pub modules: Vec<ModuleInfo>,
    pub errors: Vec<CheckError>,
}

/// Where a module came from: files are identified by their canonical path so that a file imported
/// along two paths is one module.
#[derive(Clone, PartialEq, Eq, Hash)]
enum ModKey {
    Std(String),
    File(PathBuf),
    Text(String),
}

struct Loader {
    modules: Vec<ModuleInfo>,
    dirs: Vec<Option<PathBuf>>,
    keys: HashMap<ModKey, ModId>,
    errors: Vec<CheckError>,
    parse_errors: Vec<(ModId, crate::syntax::ParseError)>,
}

/// Loads `name`/`text` as the root module (relative imports resolve against `dir`) and every module
/// it imports, breadth first, so each module's prefix is the alias path of its first import.
pub fn load(name: &str, text: &str, dir: Option<&Path>, root_key: Option<PathBuf>) -> Loaded {
    let mut loader =
        Loader { modules: vec![], dirs: vec![], keys: HashMap::new(), errors: vec![], parse_errors: vec![] };
    let key = root_key.map(ModKey::File).unwrap_or_else(|| ModKey::Text(name.to_string()));
    let root = loader.add(key, name, text.to_string(), dir.map(Path::to_path_buf), String::new());
    let mut queue = std::collections::VecDeque::from([root]);
    while let Some(id) = queue.pop_front() {
        let uses: Vec<(UseTarget, Span)> = match &loader.modules[id].ast {
            Some(m) => m
                .items
                .iter()
                .filter_map(|it| match &it.kind {
                    ItemKind::Use(u) => Some((u.target.clone(), it.span)),
                    _ => None,
                })
                .collect(),
            None => vec![],
        };
        for (target, _) in uses {
            let (alias, found) = match &target {
                UseTarget::Std { name } => {
                    let key = ModKey::Std(name.name.clone());
                    let found = match loader.keys.get(&key) {
                        Some(&m) => Some(m),
                        None => match crate::stdlib::module(&name.name) {
                            Some(src) => {
                                let prefix = format!("{}{}.", loader.modules[id].prefix, name.name);
                                let m =
                                    loader.add(key, &format!("std/{}.orch", name.name), src.to_string(), None, prefix);
                                queue.push_back(m);
                                Some(m)
                            }
                            None => {
                                let known: Vec<&str> = crate::stdlib::MODULES.iter().map(|(n, _)| *n).collect();
                                loader.errors.push(
                                    CheckError::new(
                                        Code::ImportNotFound,
                                        At { module: id, span: name.span },
                                        format!("there is no standard module `std.{}`", name.name),
                                        "not in the standard library",
                                    )
                                    .help(format!("the standard modules are: {}", known.join(", "))),
                                );
                                None
                            }
                        },
                    };
                    (name.clone(), found)
                }
                UseTarget::File { path, path_span, alias } => {
                    let base = loader.dirs[id].clone().unwrap_or_else(|| PathBuf::from("."));
                    let full = base.join(path);
                    let found = match std::fs::canonicalize(&full) {
                        Ok(canon) => {
                            let key = ModKey::File(canon);
                            match loader.keys.get(&key) {
                                Some(&m) => Some(m),
                                None => match read_source(&full) {
                                    Ok(text) => {
                                        let prefix = format!("{}{}.", loader.modules[id].prefix, alias.name);
                                        let display = display_path(&full);
                                        let dir = full.parent().map(Path::to_path_buf);
                                        let m = loader.add(key, &display, text, dir, prefix);
                                        queue.push_back(m);
                                        Some(m)
                                    }
                                    Err(e) => {
                                        loader.errors.push(CheckError::new(
                                            Code::ImportNotFound,
                                            At { module: id, span: *path_span },
                                            format!("cannot read `{}`: {e}", display_path(&full)),
                                            "imported here",
                                        ));
                                        None
                                    }
                                },
                            }
                        }
                        Err(_) => {
                            loader.errors.push(CheckError::new(
                                Code::ImportNotFound,
                                At { module: id, span: *path_span },
                                format!("no file `{}`", display_path(&full)),
                                "not found",
                            ));
                            None
                        }
                    };
                    (alias.clone(), found)
                }
            };
            if found.is_none() {
                loader.modules[id].failed_imports.insert(alias.name.clone());
            }
            if let Some(m) = found {
                if loader.modules[id].imports.insert(alias.name.clone(), m).is_some()
                    || loader.modules[id].items.contains_key(&alias.name)
                {
                    // Reported by `collect_names` as a duplicate.
                }
            }
        }
    }
    loader.find_cycles();
    let parse_errors = std::mem::take(&mut loader.parse_errors);
    let mut errors = vec![];
    for (m, e) in parse_errors {
        errors.push(CheckError::new(Code::ParseSyntax, At { module: m, span: e.span }, e.message, "here"));
    }
    errors.append(&mut loader.errors);
    Loaded { modules: loader.modules, errors }
}

/// The largest source file read: a bigger one is refused rather than read until memory runs out.
pub const MAX_SOURCE_BYTES: u64 = 64 << 20;

/// Reads a source file: only a regular file (not a device, fifo or directory, which may never
/// end or block), of at most [`MAX_SOURCE_BYTES`].
pub fn read_source(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(if meta.is_dir() { "it is a directory".into() } else { "it is not a regular file".into() });
    }
    let too_big = || format!("it is larger than {} MiB, the largest source file read", MAX_SOURCE_BYTES >> 20);
    if meta.len() > MAX_SOURCE_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    file.take(MAX_SOURCE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_SOURCE_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|_| "stream did not contain valid UTF-8".to_string())
}

fn display_path(p: &Path) -> String {
    let s = p.to_string_lossy().to_string();
    s.strip_prefix("./").map(str::to_string).unwrap_or(s)
}

impl Loader {
    fn add(&mut self, key: ModKey, name: &str, text: String, dir: Option<PathBuf>, prefix: String) -> ModId {
        let id = self.modules.len();
        let ast = match crate::syntax::parse(&text) {
            Ok(m) => Some(m),
            Err(e) => {
                self.parse_errors.push((id, e));
                None
            }
        };
        self.modules.push(ModuleInfo {
            source: Source::new(name, text),
            ast,
            prefix,
            imports: HashMap::new(),
            failed_imports: HashSet::new(),
            ambiguous: HashSet::new(),
            items: IndexMap::new(),
        });
        self.dirs.push(dir);
        self.keys.insert(key, id);
        id
    }

    /// A module may not import itself, directly or through others. Each cycle is reported once, at
    /// the `use` in the root file (or the first module) through which it is reached.
    fn find_cycles(&mut self) {
        let n = self.modules.len();
        // 0 = unvisited, 1 = on the stack, 2 = done
        let mut mark = vec![0u8; n];
        let mut stack: Vec<(ModId, Span)> = vec![];
        let mut found: Vec<CheckError> = vec![];
        fn use_span(m: &ModuleInfo, alias: &str) -> Span {
            m.ast
                .as_ref()
                .and_then(|a| {
                    a.items.iter().find_map(|it| match &it.kind {
                        ItemKind::Use(_) if it.kind.name().map(|n| n.name.as_str()) == Some(alias) => Some(it.span),
                        _ => None,
                    })
                })
                .unwrap_or_default()
        }
        // Depth first without recursion: an import chain may be thousands of files long.
        // Each frame is a module and its imports in source order, with the next one to follow.
        let sorted_imports = |m: ModId| {
            let mut imports: Vec<(Span, ModId)> = self.modules[m]
                .imports
                .iter()
                .map(|(alias, &target)| (use_span(&self.modules[m], alias), target))
                .collect();
            imports.sort_by_key(|(span, _)| span.start);
            imports
        };
        type Frame = (ModId, Vec<(Span, ModId)>, usize);
        let mut frames: Vec<Frame> = vec![];
        if n > 0 {
            mark[0] = 1;
            frames.push((0, sorted_imports(0), 0));
        }
        while let Some((m, imports, next)) = frames.last_mut() {
            let m = *m;
            let Some(&(span, target)) = imports.get(*next) else {
                mark[m] = 2;
                frames.pop();
                stack.pop();
                continue;
            };
            *next += 1;
            if mark[target] == 1 {
                stack.push((m, span));
                let start = stack.iter().position(|(sm, _)| *sm == target).unwrap_or(0);
                let chain: Vec<String> = stack[start..]
                    .iter()
                    .map(|(sm, _)| self.modules[*sm].source.name.clone())
                    .chain(std::iter::once(self.modules[target].source.name.clone()))
                    .collect();
                let (at_mod, at_span) = stack[0];
                found.push(
                    CheckError::new(
                        Code::ImportCycle,
                        At { module: at_mod, span: at_span },
                        format!("import cycle: {}", chain.join(" imports ")),
                        "this import leads into the cycle",
                    )
                    .help("a module may not import itself, directly or through others"),
                );
                stack.pop();
            } else if mark[target] == 0 {
                stack.push((m, span));
                mark[target] = 1;
                frames.push((target, sorted_imports(target), 0));
            }
        }
        self.errors.extend(found);
    }
}

/// Fills `items` of every parsed module, reporting duplicates.
pub fn collect_names(modules: &mut [ModuleInfo], errors: &mut Vec<CheckError>) {
    for (id, m) in modules.iter_mut().enumerate() {
        let Some(ast) = &m.ast else { continue };
        let mut seen: HashMap<String, (Span, std::mem::Discriminant<ItemKind>)> = HashMap::new();
        let mut items = IndexMap::new();
        let mut ambiguous = HashSet::new();
        for (i, item) in ast.items.iter().enumerate() {
            let Some(name) = item.kind.name() else { continue };
            if let Some((first, kind)) = seen.get(&name.name) {
                if *kind != std::mem::discriminant(&item.kind) {
                    ambiguous.insert(name.name.clone());
                }
                errors.push(
                    CheckError::new(
                        Code::NameDuplicate,
                        At { module: id, span: name.span },
                        format!("`{}` is defined twice", name.name),
                        "defined again here",
                    )
                    .label(At { module: id, span: *first }, "first defined here")
                    .help("names are unique per module; rename one of them"),
                );
                continue;
            }
            seen.insert(name.name.clone(), (name.span, std::mem::discriminant(&item.kind)));
            let tag = match &item.kind {
                ItemKind::Use(_) => continue,
                ItemKind::Config(_) => ItemTag::Config,
                ItemKind::Secret(_) => ItemTag::Secret,
                ItemKind::Type(_) => ItemTag::Type,
                ItemKind::Enum(_) => ItemTag::Enum,
                ItemKind::Lifecycle(_) => ItemTag::Lifecycle,
                ItemKind::Block(_) => ItemTag::Block,
                ItemKind::Product(_) => ItemTag::Product,
                ItemKind::Step(_) => ItemTag::Step,
                ItemKind::Workflow(_) => ItemTag::Workflow,
                ItemKind::Environment(_) => ItemTag::Environment,
            };
            items.insert(name.name.clone(), (tag, i));
        }
        m.items = items;
        m.ambiguous = ambiguous;
    }
}
