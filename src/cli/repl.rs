//! `orchc repl [FILE] [--db PATH]`: the interactive session (see `crate::repl`).

use super::ReplArgs;

pub fn run(args: ReplArgs) -> i32 {
    crate::repl::run(args.file.as_deref(), args.db)
}
