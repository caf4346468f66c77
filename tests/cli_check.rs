//! `orchc check` through the real binary: rendered diagnostics (insta snapshots of the human,
//! json and github formats), exit statuses, directory walking, `--deny-warnings` and colour.
//!
//! Every command runs from the repository root with relative paths, `--color never` where the
//! output is snapshotted, and `COLUMNS=100`, so the output does not depend on the machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

fn finish(out: Output) -> Run {
    Run {
        status: out.status.code().expect("orchc exited by a signal"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orchc"));
    cmd.current_dir(dir).arg("check").args(args).env("COLUMNS", "100").env_remove("NO_COLOR");
    cmd
}

/// `orchc check ARGS` from the repository root.
fn check(args: &[&str]) -> Run {
    finish(command(&root(), args).output().expect("orchc runs"))
}

const ERR: &str = "tests/check/err";

/// The human rendering of one err case, snapshotted under the test's name.
macro_rules! human_cases {
    ($($test:ident => $file:literal,)*) => {$(
        #[test]
        fn $test() {
            let path = format!("{ERR}/{}.orch", $file);
            let run = check(&["--color", "never", &path]);
            assert_eq!(run.status, 1, "exit status for {path}; stdout:\n{}", run.stdout);
            assert!(run.stdout.contains(&path), "the output names the file:\n{}", run.stdout);
            assert!(!run.stdout.contains('\u{1b}'), "no colour with --color never");
            assert!(run.stderr.is_empty(), "stderr: {}", run.stderr);
            insta::assert_snapshot!(run.stdout);
        }
    )*};
}

human_cases! {
    human_parse_missing_sequence_operator => "parse_missing_sequence_operator",
    human_parse_unterminated_string => "parse_unterminated_string",
    human_name_unknown_config => "name_unknown_config",
    human_name_unknown_type => "name_unknown_type",
    human_import_cycle_between_libs => "import_cycle_between_libs",
    human_import_cycle_self => "import_cycle_self",
    human_type_mismatch_let_annotation => "type_mismatch_let_annotation",
    human_type_unknown_field_block => "type_unknown_field_block",
    human_type_missing_field_product_new => "type_missing_field_product_new",
    human_type_arity_replace => "type_arity_replace",
    human_type_effect_config_default => "type_effect_config_default",
    human_step_output_missing_key => "step_output_missing_key",
    human_flow_missing_key_written_later => "flow_missing_key_written_later",
    human_flow_missing_key_compensation => "flow_missing_key_compensation",
    human_flow_key_type_list_from_for => "flow_key_type_list_from_for",
    human_flow_key_type_optional_from_if => "flow_key_type_optional_from_if",
    human_flow_parallel_dependency_sibling_output => "flow_parallel_dependency_sibling_output",
    human_flow_conflicting_writes_parallel => "flow_conflicting_writes_parallel",
    human_flow_cycle_three_items => "flow_cycle_three_items",
    human_flow_missing_output_one_arm => "flow_missing_output_one_arm",
    human_lifecycle_unknown_state_when => "lifecycle_unknown_state_when",
    human_lifecycle_bad_transition_skips_state => "lifecycle_bad_transition_skips_state",
    human_lifecycle_state_mismatch_skipped_step => "lifecycle_state_mismatch_skipped_step",
    human_secret_leak_log_interpolation => "secret_leak_log_interpolation",
    human_config_unknown_typo => "config_unknown_typo",
    human_config_type_string_for_int => "config_type_string_for_int",
    human_flow_missing_key_compensation_imported => "flow_missing_key_compensation_imported",
    human_type_effect_flow_binding => "type_effect_flow_binding",
    human_secret_leak_step_output => "secret_leak_step_output",
    human_flow_conflicting_writes_for_existing_key => "flow_conflicting_writes_for_existing_key",
    human_flow_cycle_workflow_through_nested_flows => "flow_cycle_workflow_through_nested_flows",
}

/// `--format json` of one err case: checked against the brief's shape, then snapshotted.
macro_rules! json_cases {
    ($($test:ident => $file:literal,)*) => {$(
        #[test]
        fn $test() {
            let path = format!("{ERR}/{}.orch", $file);
            let run = check(&["--format", "json", &path]);
            assert_eq!(run.status, 1, "exit status for {path}; stdout:\n{}", run.stdout);
            assert_eq!(run.stdout.lines().count(), 1, "one JSON object on one line:\n{}", run.stdout);
            let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("stdout is JSON");
            assert_eq!(report["files"], 1);
            assert!(report["errors"].as_u64().unwrap() >= 1);
            let expected = std::fs::read_to_string(root().join(&path)).unwrap();
            let header = expected.lines().next().unwrap().trim_start_matches("// expect: ");
            let (code, line) = header.split_once(" line ").unwrap();
            let diags = report["diagnostics"].as_array().expect("diagnostics is a list");
            assert!(
                diags.iter().any(|d| d["code"] == code
                    && d["line"] == line.parse::<u64>().unwrap()
                    && d["file"] == path.as_str()
                    && d["severity"] == "error"),
                "no {code} at line {line} in {report:#}"
            );
            for d in diags {
                for key in ["code", "severity", "message", "file", "line", "column", "end_line", "end_column", "help", "labels"] {
                    assert!(d.get(key).is_some(), "diagnostic without `{key}`: {d:#}");
                }
            }
            insta::assert_json_snapshot!(report);
        }
    )*};
}

json_cases! {
    json_flow_cycle_two_items => "flow_cycle_two_items",
    json_secret_leak_url => "secret_leak_url",
    json_config_type_duration => "config_type_duration",
    json_name_duplicate_workflow => "name_duplicate_workflow",
}

/// `--format github`: one workflow command per diagnostic, no summary line.
macro_rules! github_cases {
    ($($test:ident => $file:literal,)*) => {$(
        #[test]
        fn $test() {
            let path = format!("{ERR}/{}.orch", $file);
            let run = check(&["--format", "github", &path]);
            assert_eq!(run.status, 1, "exit status for {path}; stdout:\n{}", run.stdout);
            for line in run.stdout.lines() {
                assert!(line.starts_with(&format!("::error file={path},line=")), "not a workflow command: {line}");
            }
            insta::assert_snapshot!(run.stdout);
        }
    )*};
}

github_cases! {
    github_flow_key_type_workflow_param => "flow_key_type_workflow_param",
    github_lifecycle_bad_transition_custom => "lifecycle_bad_transition_custom",
}

#[test]
fn clean_directory_exits_0_and_walks_subdirectories() {
    let run = check(&["--color", "never", "tests/check/cli/clean"]);
    assert_eq!(run.status, 0, "stdout:\n{}", run.stdout);
    // ntp.orch and network/syslog.orch; README.txt is not an .orch file.
    assert_eq!(run.stdout, "checked 2 files: 0 errors, 0 warnings\n");
}

#[test]
fn without_paths_the_current_directory_is_checked() {
    let run = finish(command(&root().join("tests/check/cli/clean"), &["--color", "never"]).output().unwrap());
    assert_eq!(run.status, 0, "stdout:\n{}", run.stdout);
    assert_eq!(run.stdout, "checked 2 files: 0 errors, 0 warnings\n");
}

#[test]
fn files_and_directories_mix_and_errors_exit_1() {
    let run = check(&[
        "--color",
        "never",
        "tests/check/cli/clean",
        "tests/check/err/flow_cycle_after.orch",
        "tests/check/err/secret_leak_url.orch",
    ]);
    assert_eq!(run.status, 1, "stdout:\n{}", run.stdout);
    assert!(run.stdout.contains("orch::flow::cycle"), "{}", run.stdout);
    assert!(run.stdout.contains("orch::secret::leak"), "{}", run.stdout);
    assert!(run.stdout.ends_with("checked 4 files: 2 errors, 0 warnings\n"), "{}", run.stdout);
}

#[test]
fn a_directory_of_errors_reports_every_file() {
    let run = check(&["--format", "json", "tests/check/err"]);
    assert_eq!(run.status, 1);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let cases = walkdir::WalkDir::new(root().join(ERR))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "orch"))
        .count();
    assert_eq!(report["files"], cases as u64);
    // Every case outside lib/ has at least one error in its own file.
    let diags = report["diagnostics"].as_array().unwrap();
    for entry in std::fs::read_dir(root().join(ERR)).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".orch") {
            let file = format!("{ERR}/{name}");
            assert!(
                diags.iter().any(|d| d["file"] == file.as_str() && d["severity"] == "error"),
                "no error reported for {file}"
            );
        }
    }
}

#[test]
fn a_nonexistent_path_exits_2() {
    let run = check(&["--color", "never", "tests/check/no_such_dir/missing.orch"]);
    assert_eq!(run.status, 2, "stdout:\n{}", run.stdout);
    assert!(run.stdout.contains("orch::io::read"), "{}", run.stdout);
    assert!(run.stdout.contains("tests/check/no_such_dir/missing.orch"), "{}", run.stdout);
}

#[test]
fn a_nonexistent_path_next_to_a_clean_one_still_exits_2() {
    let run = check(&["--color", "never", "tests/check/cli/clean", "nowhere.orch"]);
    assert_eq!(run.status, 2, "stdout:\n{}", run.stdout);
    assert!(run.stdout.contains("nowhere.orch"), "{}", run.stdout);
}

#[test]
fn a_nonexistent_path_beats_errors_in_other_files() {
    let run = check(&["--color", "never", "tests/check/err/flow_cycle_after.orch", "nowhere.orch"]);
    assert_eq!(run.status, 2, "stdout:\n{}", run.stdout);
    assert!(run.stdout.contains("orch::flow::cycle"), "the readable file is still checked: {}", run.stdout);
}

#[test]
fn an_unknown_flag_exits_2() {
    let run = check(&["--colour", "never", "tests/check/cli/clean"]);
    assert_eq!(run.status, 2, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("--colour"), "stderr names the flag: {}", run.stderr);
}

#[test]
fn an_unknown_format_exits_2() {
    let run = check(&["--format", "sarif", "tests/check/cli/clean"]);
    assert_eq!(run.status, 2, "stderr:\n{}", run.stderr);
    assert!(run.stderr.contains("sarif"), "{}", run.stderr);
}

#[test]
fn warnings_pass_unless_denied() {
    let run = check(&["--color", "never", "tests/check/cli/warn"]);
    assert_eq!(run.status, 0, "stdout:\n{}", run.stdout);
    assert!(run.stdout.contains("orch::lint::unused_output"), "{}", run.stdout);
    assert!(run.stdout.ends_with("checked 1 file: 0 errors, 1 warning\n"), "{}", run.stdout);

    let denied = check(&["--color", "never", "--deny-warnings", "tests/check/cli/warn"]);
    assert_eq!(denied.status, 1, "stdout:\n{}", denied.stdout);
    assert!(denied.stdout.contains("orch::lint::unused_output"), "{}", denied.stdout);
    assert!(denied.stdout.ends_with("checked 1 file: 1 error, 0 warnings\n"), "{}", denied.stdout);
}

#[test]
fn warnings_in_json_and_github() {
    let run = check(&["--format", "json", "tests/check/cli/warn/unused_output.orch"]);
    assert_eq!(run.status, 0);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["errors"], 0);
    assert_eq!(report["warnings"], 1);
    assert_eq!(report["diagnostics"][0]["severity"], "warning");
    assert_eq!(report["diagnostics"][0]["line"], 6);

    let run = check(&["--format", "github", "tests/check/cli/warn/unused_output.orch"]);
    assert_eq!(run.status, 0);
    assert!(
        run.stdout.starts_with("::warning file=tests/check/cli/warn/unused_output.orch,line=6,col=44,"),
        "{}",
        run.stdout
    );

    let denied = check(&["--format", "json", "--deny-warnings", "tests/check/cli/warn/unused_output.orch"]);
    assert_eq!(denied.status, 1);
    let report: serde_json::Value = serde_json::from_str(&denied.stdout).unwrap();
    assert_eq!(report["errors"], 1);
}

#[test]
fn clean_json_report() {
    let run = check(&["--format", "json", "tests/check/cli/clean"]);
    assert_eq!(run.status, 0);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report, serde_json::json!({"files": 2, "errors": 0, "warnings": 0, "diagnostics": []}));
}

const ESC: &str = "\u{1b}[";

#[test]
fn color_always_and_never() {
    let file = "tests/check/err/flow_cycle_after.orch";
    let always = check(&["--color", "always", file]);
    assert_eq!(always.status, 1);
    assert!(always.stdout.contains(ESC), "--color always colours:\n{}", always.stdout);
    let never = check(&["--color", "never", file]);
    assert!(!never.stdout.contains(ESC), "--color never does not:\n{}", never.stdout);
    // Auto with stdout a pipe: no colour.
    let auto = check(&[file]);
    assert!(!auto.stdout.contains(ESC), "a pipe is not a terminal:\n{}", auto.stdout);
}

/// Runs `orchc check --color auto FILE` with stdout on a pseudo-terminal (util-linux `script`).
fn on_terminal(file: &str, no_color: Option<&str>) -> Option<String> {
    let bin = env!("CARGO_BIN_EXE_orchc");
    let mut cmd = Command::new("script");
    cmd.current_dir(root())
        .args(["-qec", &format!("{bin} check --color auto {file}"), "/dev/null"])
        .env("COLUMNS", "100")
        .env_remove("NO_COLOR");
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let out = cmd.output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).to_string())
}

#[test]
fn no_color_turns_colour_off_on_a_terminal() {
    let file = "tests/check/err/flow_cycle_after.orch";
    let Some(tty) = on_terminal(file, None) else {
        panic!("util-linux `script` is needed to give orchc a terminal");
    };
    assert!(tty.contains("orch::flow::cycle"), "the check ran on the terminal:\n{tty}");
    assert!(tty.contains(ESC), "a terminal gets colour by default:\n{tty}");
    let plain = on_terminal(file, Some("1")).unwrap();
    assert!(plain.contains("orch::flow::cycle"), "{plain}");
    assert!(!plain.contains(ESC), "NO_COLOR=1 turns colour off:\n{plain}");
    // An empty NO_COLOR does not count (no-color.org).
    let empty = on_terminal(file, Some("")).unwrap();
    assert!(empty.contains(ESC), "an empty NO_COLOR keeps colour:\n{empty}");
}

#[test]
fn columns_sets_the_width_of_the_human_output() {
    let file = "tests/check/err/flow_key_type_optional_from_if.orch";
    let widest = |cols: &str| {
        let out = command(&root(), &["--color", "never", file]).env("COLUMNS", cols).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        (text.lines().map(|l| l.chars().count()).max().unwrap(), text)
    };
    let (narrow, narrow_text) = widest("50");
    let (wide, _) = widest("160");
    assert!(narrow <= wide, "narrow {narrow} > wide {wide}");
    assert_ne!(narrow_text, widest("160").1, "COLUMNS changes the rendering");
}
