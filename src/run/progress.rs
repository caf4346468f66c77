//! What a run shows while it runs: on a terminal, a live line per running step (indicatif); in a
//! pipe, plain timestamped lines. Both go to standard error, so standard output stays the result.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Progress {
    live: Option<MultiProgress>,
    /// The live line of each running step execution, by its path: the iterations of a `for` run
    /// one step many times at once, each with a line of its own.
    bars: Mutex<HashMap<String, ProgressBar>>,
    /// The run this progress is about and its status in the store while the command drives it,
    /// once the command has it: what an interrupted command names.
    run: Mutex<Option<(String, String)>>,
    quiet: bool,
    plain: Arc<Mutex<Plain>>,
}

/// Plain lines not written yet. A `for` of many short steps prints thousands of lines a second:
/// written one system call (and one wake-up of the reader) each, they cost more than the steps.
/// So a line goes out at once after a quiet spell, and otherwise with the others of its
/// `PLAIN_EVERY`.
struct Plain {
    text: String,
    written: Instant,
    /// The `HH:MM:SS ` (UTC) that starts the lines of one second, with that second since the
    /// epoch: formatted once a second rather than once a line.
    stamp: (u64, String),
}

const PLAIN_EVERY: Duration = Duration::from_millis(50);

impl Plain {
    fn write(&mut self) {
        if !self.text.is_empty() {
            let _ = std::io::stderr().lock().write_all(self.text.as_bytes());
            self.text.clear();
        }
        self.written = Instant::now();
    }
}

impl Progress {
    /// `terminal`: draw live progress; otherwise print plain lines. `quiet`: print nothing.
    pub fn new(terminal: bool, quiet: bool) -> Progress {
        let live = (terminal && !quiet).then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        let plain = Arc::new(Mutex::new(Plain {
            text: String::new(),
            written: Instant::now().checked_sub(PLAIN_EVERY).unwrap_or_else(Instant::now),
            stamp: (u64::MAX, String::new()),
        }));
        if live.is_none() && !quiet {
            // Writes what waits in `plain` every `PLAIN_EVERY`, until the progress is dropped.
            let waiting = Arc::downgrade(&plain);
            let _ = std::thread::Builder::new().name("orch-progress".into()).spawn(move || loop {
                std::thread::sleep(PLAIN_EVERY);
                match waiting.upgrade() {
                    Some(plain) => plain.lock().unwrap_or_else(|p| p.into_inner()).write(),
                    None => break,
                }
            });
        }
        Progress { live, bars: Mutex::new(HashMap::new()), run: Mutex::new(None), quiet, plain }
    }

    /// The command now drives run `id`, which stays `status` in the store until it ends.
    pub fn about(&self, id: &str, status: &str) {
        *self.run.lock().unwrap_or_else(|p| p.into_inner()) = Some((id.to_string(), status.to_string()));
    }

    /// The run and its status, when the command has stored or taken one.
    pub fn run(&self) -> Option<(String, String)> {
        self.run.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Clears the live lines of steps that will not finish: the command was interrupted.
    pub fn stop(&self) {
        for (_, bar) in self.bars.lock().unwrap_or_else(|p| p.into_inner()).drain() {
            bar.finish_and_clear();
        }
    }

    /// A line, which `text` writes in place: a `for` of short steps prints two lines per
    /// iteration, and through `format_args!` they were 5% of the engine's instructions.
    fn line(&self, text: impl FnOnce(&mut String)) {
        if self.quiet {
            return;
        }
        match &self.live {
            Some(mp) => {
                let mut s = String::new();
                text(&mut s);
                let _ = mp.println(s);
            }
            None => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let mut guard = self.plain.lock().unwrap_or_else(|p| p.into_inner());
                let plain = &mut *guard;
                if plain.stamp.0 != now {
                    let t = now % 86_400;
                    plain.stamp = (now, format!("{:02}:{:02}:{:02} ", t / 3600, t / 60 % 60, t % 60));
                }
                plain.text.push_str(&plain.stamp.1);
                text(&mut plain.text);
                plain.text.push('\n');
                if plain.written.elapsed() >= PLAIN_EVERY {
                    plain.write();
                }
            }
        }
    }

    /// `path` tells apart executions of one step running at once; the lines name the step.
    pub fn started(&self, path: &str, step: &str, attempt: u32) {
        match &self.live {
            Some(mp) => {
                let bar = mp.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                let suffix = if attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
                bar.set_message(format!("{step}{suffix}"));
                bar.enable_steady_tick(Duration::from_millis(100));
                if let Some(old) = self.bars.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_string(), bar) {
                    old.finish_and_clear();
                }
            }
            None if attempt > 1 => self.line(|s| {
                let _ = write!(s, "start {step} (attempt {attempt})");
            }),
            None => self.line(|s| {
                s.push_str("start ");
                s.push_str(step);
            }),
        }
    }

    fn finish(&self, path: &str) {
        if self.live.is_none() {
            return;
        }
        if let Some(bar) = self.bars.lock().unwrap_or_else(|p| p.into_inner()).remove(path) {
            bar.finish_and_clear();
        }
    }

    pub fn done(&self, path: &str, step: &str, took: Duration) {
        self.finish(path);
        self.line(|s| {
            s.push_str("done  ");
            s.push_str(step);
            s.push_str(" in ");
            push_human(s, took);
        });
    }

    pub fn reused(&self, step: &str) {
        self.line(|s| {
            let _ = write!(s, "skip  {step} (completed earlier)");
        });
    }

    pub fn retrying(&self, path: &str, step: &str, attempt: u32, delay_ms: u64, error: &str) {
        self.finish(path);
        self.line(|s| {
            let _ = write!(s, "retry {step}: attempt {attempt} failed ({error}); next in ");
            push_human(s, Duration::from_millis(delay_ms));
        });
    }

    pub fn failed(&self, path: &str, step: &str, attempt: u32, error: &str) {
        self.finish(path);
        self.line(|s| {
            let _ = write!(s, "fail  {step} (attempt {attempt}): {error}");
        });
    }

    pub fn suspended(&self, step: &str, prompt: Option<&str>) {
        self.line(|s| {
            let _ = write!(s, "wait  {step}: {}", prompt.unwrap_or("waiting for input"));
        });
    }

    pub fn log(&self, text: &str) {
        self.line(|s| {
            s.push_str("log   ");
            s.push_str(text);
        });
    }

    pub fn note(&self, text: &str) {
        self.line(|s| s.push_str(text));
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.plain.lock().unwrap_or_else(|p| p.into_inner()).write();
    }
}

pub fn human(d: Duration) -> String {
    let mut s = String::new();
    push_human(&mut s, d);
    s
}

/// A duration as people read it: `340ms`, `2.5s`, `3m12s`.
fn push_human(out: &mut String, d: Duration) {
    let ms = d.as_millis();
    if ms < 1000 {
        out.push_str(itoa::Buffer::new().format(ms));
        out.push_str("ms");
    } else if ms < 60_000 {
        let _ = write!(out, "{:.1}s", ms as f64 / 1000.0);
    } else {
        let _ = write!(out, "{}m{}s", ms / 60_000, (ms % 60_000) / 1000);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Progress {
        let mut p = Progress::new(false, true);
        p.live = Some(MultiProgress::with_draw_target(ProgressDrawTarget::hidden()));
        p.quiet = false;
        p
    }

    fn running(p: &Progress) -> Vec<String> {
        let mut paths: Vec<String> = p.bars.lock().unwrap().keys().cloned().collect();
        paths.sort();
        paths
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human(Duration::from_millis(340)), "340ms");
        assert_eq!(human(Duration::from_millis(2_500)), "2.5s");
        assert_eq!(human(Duration::from_secs(192)), "3m12s");
    }

    #[test]
    fn executions_of_one_step_at_once_each_have_a_line() {
        let p = live();
        p.started("for1[0]/fetch@2", "fetch", 1);
        p.started("for1[1]/fetch@2", "fetch", 1);
        assert_eq!(running(&p), ["for1[0]/fetch@2", "for1[1]/fetch@2"]);
        p.done("for1[0]/fetch@2", "fetch", Duration::from_millis(3));
        assert_eq!(running(&p), ["for1[1]/fetch@2"], "the other iteration's line stays");
        p.retrying("for1[1]/fetch@2", "fetch", 1, 10, "503");
        assert!(running(&p).is_empty());
        p.started("for1[1]/fetch@2", "fetch", 2);
        p.failed("for1[1]/fetch@2", "fetch", 2, "503");
        assert!(running(&p).is_empty());
    }
}
