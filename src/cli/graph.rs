//! `orchc graph FILE WORKFLOW [--format mermaid|dot]`: checks FILE and prints the workflow's flow
//! (see `crate::graph`). Exit status: 0 drawn; 1 check errors (printed) ; 2 an unknown workflow or
//! an unreadable file.

use super::{exit, GraphArgs, GraphFormat};
use crate::diagnostics::{render_human, Code, Diagnostic, HumanStyle, Severity, Source};

pub fn run(args: GraphArgs) -> i32 {
    let result = crate::check::check_path(&args.file);
    let Some(program) = result.program else {
        let mut status = exit::FAILED;
        for d in result.diagnostics.iter().filter(|d| d.severity == Severity::Error) {
            if d.code == Code::IoRead {
                status = exit::USAGE;
            }
            eprint!("{}", render_human(d, HumanStyle { color: false, width: 100 }));
        }
        return status;
    };
    let Some(drawing) = crate::graph::draw(&program, &args.workflow) else {
        let names: Vec<&str> = program.workflows.keys().map(String::as_str).filter(|n| !n.contains('.')).collect();
        let file = args.file.display().to_string();
        let d = Diagnostic::error(Code::NameUnknown, format!("there is no workflow `{}` in `{file}`", args.workflow))
            .in_source(&Source::new(file, ""))
            .with_help(format!(
                "its workflows: {}",
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            ));
        eprint!("{}", render_human(&d, HumanStyle { color: false, width: 100 }));
        return exit::USAGE;
    };
    match args.format {
        GraphFormat::Mermaid => print!("{}", crate::graph::to_mermaid(&drawing)),
        GraphFormat::Dot => print!("{}", crate::graph::to_dot(&drawing)),
    }
    exit::OK
}
