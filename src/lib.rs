//! orch: a typed language for infrastructure workflows.
//!
//! The pipeline: `syntax` (pest → AST with spans) → `check` (names, types, data flow, lifecycles)
//! → `ir` (the checked program) → `run` (the durable interpreter and its store). `cli`, `repl` and
//! `fmt` are front ends over those; `diagnostics` renders every stage's errors.

pub mod check;
pub mod cli;
pub mod diagnostics;
pub mod fmt;
pub mod graph;
pub mod ir;
pub mod repl;
pub mod run;
pub mod stdlib;
pub mod syntax;
