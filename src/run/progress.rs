//! What a run shows while it runs: on a terminal, a live line per running step (indicatif); in a
//! pipe, plain timestamped lines. Both go to standard error, so standard output stays the result.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

pub struct Progress {
    live: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    quiet: bool,
}

impl Progress {
    /// `terminal`: draw live progress; otherwise print plain lines. `quiet`: print nothing.
    pub fn new(terminal: bool, quiet: bool) -> Progress {
        let live = (terminal && !quiet).then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { live, bars: Mutex::new(HashMap::new()), quiet }
    }

    fn line(&self, text: String) {
        if self.quiet {
            return;
        }
        match &self.live {
            Some(mp) => {
                let _ = mp.println(text);
            }
            None => {
                // Formatted first, then written at once: stderr is unbuffered, and `eprintln!`
                // would make a system call per piece of the line.
                use std::io::Write;
                let now = time::OffsetDateTime::now_utc();
                let line = format!("{:02}:{:02}:{:02} {text}\n", now.hour(), now.minute(), now.second());
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
        }
    }

    pub fn started(&self, step: &str, attempt: u32) {
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
                if let Some(old) = self.bars.lock().unwrap_or_else(|p| p.into_inner()).insert(step.to_string(), bar) {
                    old.finish_and_clear();
                }
            }
            None if attempt > 1 => self.line(format!("start {step} (attempt {attempt})")),
            None => self.line(format!("start {step}")),
        }
    }

    fn finish(&self, step: &str) {
        if let Some(bar) = self.bars.lock().unwrap_or_else(|p| p.into_inner()).remove(step) {
            bar.finish_and_clear();
        }
    }

    pub fn done(&self, step: &str, took: Duration) {
        self.finish(step);
        self.line(format!("done  {step} in {}", human(took)));
    }

    pub fn reused(&self, step: &str) {
        self.line(format!("skip  {step} (completed earlier)"));
    }

    pub fn retrying(&self, step: &str, attempt: u32, delay_ms: u64, error: &str) {
        self.finish(step);
        self.line(format!(
            "retry {step}: attempt {attempt} failed ({error}); next in {}",
            human(Duration::from_millis(delay_ms))
        ));
    }

    pub fn failed(&self, step: &str, attempt: u32, error: &str) {
        self.finish(step);
        self.line(format!("fail  {step} (attempt {attempt}): {error}"));
    }

    pub fn suspended(&self, step: &str, prompt: Option<&str>) {
        self.line(format!("wait  {step}: {}", prompt.unwrap_or("waiting for input")));
    }

    pub fn log(&self, text: &str) {
        self.line(format!("log   {text}"));
    }

    pub fn note(&self, text: &str) {
        self.line(text.to_string());
    }
}

pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}
