//! `orchc repl`: the session core driven directly, and the real binary driven through a real
//! pseudo-terminal (Python's `pty` module: typing, continuation lines, Tab completion, an error
//! that leaves the session usable, history kept across sessions).

use orch::repl::{completions, open_brackets, Reply, Session};
use std::path::{Path, PathBuf};
use std::process::Command;

fn out(r: Reply) -> String {
    match r {
        Reply::Out(s) => s,
        other => panic!("expected output, got {other:?}"),
    }
}

fn err(r: Reply) -> String {
    match r {
        Reply::Err(s) => s,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn session() -> Session {
    Session::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")), None)
}

#[test]
fn expressions_are_evaluated_and_printed_with_their_type() {
    let mut s = session();
    assert_eq!(out(s.handle("1 + 2 * 3")), "7 : Int");
    assert_eq!(out(s.handle("7 / 2.0")), "3.5 : Float");
    assert_eq!(out(s.handle("\"a\" + upper(\"b\")")), "\"aB\" : Str");
    assert_eq!(out(s.handle("[1, 2] + [3]")), "[1, 2, 3] : [Int]");
    assert_eq!(out(s.handle("for v in range(5) if v % 2 == 0 { v * 10 }")), "[0, 20, 40] : [Int]");
    assert_eq!(out(s.handle("{ a: 1, b: \"x\" } with { a: 5 }")), "{ a: 5, b: \"x\" } : { a: Int, b: Str }");
    assert_eq!(out(s.handle("90s")), "90s : Duration");
    assert_eq!(out(s.handle("json_parse(\"{\\\"a-b\\\": 1}\") as [Str: Int]")), "{ \"a-b\": 1 } : [Str: Int]");
    assert_eq!(out(s.handle("if 1 < 2 { \"yes\" } else { \"no\" }")), "\"yes\" : Str");
    assert_eq!(out(s.handle("json_parse(\"[1, 2]\") as [Int]")), "[1, 2] : [Int]");
    assert!(err(s.handle("json_parse(\"[1, 2]\") as Str")).contains("orch::run::conversion"));
    assert!(err(s.handle("1 / 0")).contains("division by zero"));
    assert!(err(s.handle("1.0 / 0.0")).contains("division by zero"));
    assert!(err(s.handle("fail(\"boom\")")).contains("boom"));
    assert!(err(s.handle("[1, 2][5]")).contains("index 5 is out of range"));
    assert_eq!(out(s.handle(":type split(\"a,b\", \",\")")), "split(\"a,b\", \",\") : [Str]");
}

#[test]
fn let_bindings_and_declarations_join_the_session_and_are_checked() {
    let mut s = session();
    assert_eq!(out(s.handle("let xs = [3, 4]")), "xs = [3, 4] : [Int]");
    assert_eq!(out(s.handle("len(xs)")), "2 : Int");
    // Rebinding shadows; what was bound from the old value keeps working.
    assert_eq!(out(s.handle("let n = len(xs)")), "n = 2 : Int");
    assert_eq!(out(s.handle("let xs = \"now a string\"")), "xs = \"now a string\" : Str");
    assert_eq!(out(s.handle("n + len(xs)")), "14 : Int");
    assert_eq!(out(s.handle("let xs = [3, 4]")), "xs = [3, 4] : [Int]");
    // Field paths over a binding (read in place, without copying the binding).
    s.handle("let resp = { status: 200, json: json_parse(\"{\\\"a\\\": {\\\"b\\\": [7]}}\") }");
    assert_eq!(out(s.handle("resp.status")), "200 : Int");
    assert_eq!(out(s.handle("resp.json.a.b")), "[7] : Json");
    assert_eq!(out(s.handle("resp.json.a.missing.b")), "null : Json");
    assert_eq!(out(s.handle("resp.json.a.b[0]")), "7 : Json");
    assert_eq!(out(s.handle("enum Color { red, green }")), "defined Color");
    assert_eq!(out(s.handle("type Pair = { a: Int, b: Str }")), "defined Pair");
    assert_eq!(out(s.handle("let p: Pair = { a: 1, b: \"x\" }")), "p = { a: 1, b: \"x\" } : { a: Int, b: Str }");
    assert_eq!(out(s.handle("let c: Color = green")), "c = green : Color");
    // A declaration with an error is shown with its diagnostic and left out.
    let e = err(s.handle("step bad() -> (x: Int) { { x: \"no\" } }"));
    assert!(e.contains("orch::"), "{e}");
    assert!(!s.names().contains(&"bad".to_string()));
    assert_eq!(out(s.handle("step double(n: Int) -> (m: Int) { { m: n * 2 } }")), "defined double");
    let o = out(s.handle(":step double n=21"));
    assert!(o.starts_with("run ") && o.ends_with("completed\nm = 42 : Int"), "{o}");
    assert!(err(s.handle(":step double n=abc")).contains("`abc` is not an `Int`"));
    assert!(err(s.handle(":step double")).contains("missing input `n` (Int)"));
    // An unknown name is an error with its code, shown against what was typed; the session goes on.
    let e = err(s.handle("nope + 1"));
    assert!(e.contains("orch::name::unknown") && e.contains("[<input>:1:1]") && e.contains("1 │ nope + 1"), "{e}");
    assert!(!e.contains("__repl"), "{e}");
    let e = err(s.handle("let bad: Str = 1"));
    assert!(e.contains("orch::type::mismatch") && e.contains("[<input>:1:16]"), "{e}");
    assert_eq!(out(s.handle("xs[1]")), "4 : Int");
    let state = out(s.handle(":state"));
    assert!(state.contains("let xs = [3, 4] : [Int]") && state.contains("steps: double"), "{state}");
    assert!(state.contains(":step double completed"), "{state}");
    assert!(state.contains("store: in memory"), "{state}");
    assert!(s.names().contains(&"double".to_string()) && s.names().contains(&"xs".to_string()));
}

#[test]
fn files_load_and_steps_and_workflows_run_through_the_interpreter() {
    let mut s = session();
    assert_eq!(out(s.handle(":load tests/graph/deploy.orch")), "loaded tests/graph/deploy.orch");
    assert_eq!(out(s.handle(":type render")), "step render(hosts: [Str], settings: Str) -> (plan: Str)");
    assert_eq!(out(s.handle(":type approve")), "input step approve(plan: Str) -> (approved: Bool)");
    assert_eq!(out(s.handle(":type refresh")), "workflow refresh(site: Str) -> (kept: Str)");
    // `:load` paths stay relative to where the session started.
    assert!(err(s.handle(":load tests/graph/deploy.orch")).contains("orch::name::duplicate"));
    let o = out(s.handle(":step render hosts=[\"a\",\"b\"] settings=x"));
    assert!(o.ends_with("completed\nplan = \"x\" : Str"), "{o}");
    assert!(err(s.handle(":step render hosts=[\"a\"] nope=1")).contains("no parameter `nope`"));
    assert!(err(s.handle(":load tests/graph/missing.orch")).contains("orch::io::read"));
    assert!(err(s.handle(":run nope")).contains("no workflow `nope`"));
    // A run that suspends on its input step, then resumes with the input.
    let o = out(s.handle(":run deploy site=lab"));
    assert!(o.contains("suspended") && o.contains("waiting for input step `approve`: Apply c?"), "{o}");
    let id = o.split_whitespace().nth(1).unwrap().to_string();
    let o = out(s.handle(&format!(":resume {id} approved=false")));
    assert_eq!(o, format!("run {id} completed\nplan = \"c\" : Str"));
    let o = out(s.handle(":run refresh site=lab"));
    assert!(o.ends_with("completed\nkept = \"lab\" : Str"), "{o}");
    assert_eq!(s.handle(":quit"), Reply::Quit);
}

#[test]
fn runs_go_to_the_db_when_one_is_given() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("state.db");
    let mut s = Session::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")), Some(db.clone()));
    out(s.handle(":load tests/graph/deploy.orch"));
    let o = out(s.handle(":run refresh site=lab"));
    let id = o.split_whitespace().nth(1).unwrap().to_string();
    drop(s);
    let listed = Command::new(env!("CARGO_BIN_EXE_orchc")).args(["runs", "--db"]).arg(&db).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains(&id) && listed.contains("completed"), "{listed}");
}

#[test]
fn completion_offers_commands_keywords_and_names() {
    let names = vec!["deploy".to_string(), "delete_node".to_string(), "lifecycles.Standard".to_string()];
    assert_eq!(completions(":st", 3, &names), (0, vec![":state".to_string(), ":step".to_string()]));
    assert_eq!(completions("let x = de", 10, &names), (8, vec!["delete_node".to_string(), "deploy".to_string()]));
    assert_eq!(completions("wor", 3, &names), (0, vec!["workflow".to_string()]));
    assert_eq!(completions("x + lifecycles.S", 16, &names), (4, vec!["lifecycles.Standard".to_string()]));
    // After a multi-byte character.
    assert_eq!(completions("\"é\" + dep", 10, &names), (7, vec!["deploy".to_string()]));
    assert_eq!(completions("éde", 4, &names), (2, vec!["delete_node".to_string(), "deploy".to_string()]));
    assert_eq!(completions("1 + ", 4, &names), (4, vec![]));
}

#[test]
fn open_brackets_decide_continuation() {
    assert_eq!(open_brackets("let r = {"), 1);
    assert_eq!(open_brackets("f(\"(\", [1,"), 2);
    assert_eq!(open_brackets("{ a: 1 } // {"), 0);
    assert_eq!(open_brackets("\"\\\"{\""), 0);
}

// ---------------------------------------------------------------------------------------------
// Through a pseudo-terminal

/// Starts `argv` in a pseudo-terminal, then for each `[send, expect]` pair types `send` and waits
/// (10 s at most) for `expect` to appear in the output (escape sequences removed). Exits 1 with
/// the transcript when something does not appear; prints the transcript otherwise.
const DRIVER: &str = r#"
import json, os, pty, re, select, signal, struct, sys, termios, fcntl, time
argv = json.loads(sys.argv[1]); steps = json.loads(sys.argv[2])
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
buf = ""
def clean(s):
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\r", "", s)
def read_until(pattern, timeout=10.0):
    global buf
    end = time.time() + timeout
    while True:
        text = clean(buf)
        i = text.find(pattern)
        if i >= 0:
            buf = text[i + len(pattern):]
            return True
        left = end - time.time()
        if left <= 0:
            return False
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return clean(buf).find(pattern) >= 0
            if not data:
                return False
            sys.stdout.write(data.decode("utf-8", "replace"))
            buf += data.decode("utf-8", "replace")
for send, expect in steps:
    if send:
        for ch in send:
            os.write(fd, ch.encode())
            time.sleep(0.01)
    if expect and not read_until(expect):
        sys.stdout.write("\n\n### did not see %r after sending %r; pending output: %r\n" % (expect, send, clean(buf)))
        os.kill(pid, signal.SIGKILL)
        sys.exit(1)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else 0)
"#;

fn drive(args: &[&str], state_home: &Path, steps: &[(&str, &str)]) -> String {
    let mut argv = vec![env!("CARGO_BIN_EXE_orchc").to_string(), "repl".to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    let steps: Vec<[&str; 2]> = steps.iter().map(|(a, b)| [*a, *b]).collect();
    let output = Command::new("python3")
        .arg("-c")
        .arg(DRIVER)
        .arg(serde_json::to_string(&argv).unwrap())
        .arg(serde_json::to_string(&steps).unwrap())
        .env("XDG_STATE_HOME", state_home)
        .env("TERM", "xterm")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 runs (it drives the pseudo-terminal)");
    let transcript = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "the session did not go as expected:\n{transcript}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    transcript
}

#[test]
fn typing_continuation_completion_and_errors_through_a_pty() {
    let state = tempfile::tempdir().unwrap();
    drive(
        &[],
        state.path(),
        &[
            ("", "orch> "),
            // Typing an expression.
            ("1 + 2\r", "3 : Int"),
            // A continuation line: the record stays open after the first line.
            ("let r = {\r", ""),
            ("  a: 1,\r", ""),
            ("  b: \"two\"\r", ""),
            ("}\r", "r = { a: 1, b: \"two\" } : { a: Int, b: Str }"),
            // Tab completes a name in scope and a command.
            ("let greeting = \"hi\"\r", "greeting = \"hi\" : Str"),
            ("upper(gree\t)\r", "\"HI\" : Str"),
            (":he\t\r", "Type an expression"),
            // ... and a keyword.
            ("wor\t w0() -> () {}\r", "defined w0"),
            // An error, then the session is still usable.
            ("missing_name * 2\r", "orch::name::unknown"),
            ("r.a + 41\r", "42 : Int"),
            ("step twice(n: Int) -> (m: Int) {\r", ""),
            ("  { m: n * 2 }\r", ""),
            ("}\r", "defined twice"),
            (":step twi\t n=5\r", "m = 10 : Int"),
            // A run with live progress.
            (":load tests/graph/deploy.orch\r", "loaded tests/graph/deploy.orch"),
            (":run refresh site=lab\r", "kept = \"lab\" : Str"),
            (":quit\r", ""),
        ],
    );
    let history = std::fs::read_to_string(state.path().join("orch/history")).expect("the history file is written");
    assert!(history.contains("r.a + 41"), "{history}");
    // The next session finds the history: Up twice recalls the line before `:quit` (the workflow
    // it names belonged to the first session).
    drive(&[], state.path(), &[("", "orch> "), ("\x1b[A\x1b[A\r", "no workflow `refresh`"), ("\x04", "")]);
}

#[test]
fn a_file_given_on_the_command_line_is_loaded() {
    let state = tempfile::tempdir().unwrap();
    drive(
        &["tests/graph/deploy.orch"],
        state.path(),
        &[
            ("", "loaded tests/graph/deploy.orch"),
            ("", "orch> "),
            (":step keep site=lab\r", "kept = \"lab\" : Str"),
            (":state\r", "workflows: announce, deploy, refresh"),
            ("\x04", ""),
        ],
    );
}

#[test]
fn a_line_that_is_not_utf8_is_skipped_and_the_session_goes_on() {
    use std::io::Write;
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_orchc"))
        .arg("repl")
        .env("HOME", home.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b":type 1 + 1\n\xff\xfe\n:type \"a\"\n:quit\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("error[orch::io::read]: the line is not UTF-8"), "{stderr}");
    assert!(stdout.contains("1 + 1 : Int") && stdout.contains("\"a\" : Str"), "{stdout}");
}

/// The hidden `let __repl_value = (` around an expression never shows: a short unknown name (whose
/// letters occur in the wrapper) and an unterminated string are shown against what was typed.
#[test]
fn diagnostics_point_at_what_was_typed_not_at_the_wrapper() {
    let mut s = session();
    for input in ["a", "l", "_", "\"abc", "1 +", "let v = \"abc"] {
        let e = err(s.handle(input));
        assert!(e.contains("orch::"), "{input}: {e}");
        assert!(e.contains("[<input>:1:"), "{input}: shown against the input: {e}");
        assert!(!e.contains("__repl") && !e.contains("<repl>"), "{input}: {e}");
    }
    let e = err(s.handle("a"));
    assert!(e.contains("[<input>:1:1]") && e.contains("1 │ a"), "{e}");
}

#[test]
fn diagnostics_through_a_pty_do_not_show_the_wrapper() {
    let state = tempfile::tempdir().unwrap();
    let transcript = drive(
        &[],
        state.path(),
        &[("", "orch> "), ("a\r", "orch::name::unknown"), ("\"abc\r", "orch::parse::syntax"), ("\x04", "")],
    );
    assert!(!transcript.contains("__repl") && !transcript.contains("<repl>"), "{transcript}");
    assert!(transcript.contains("<input>:1:1"), "{transcript}");
}
