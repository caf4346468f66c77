//! Group commit: the writes of concurrent branches (`&`, `graph`, `for ... limit N`) share one
//! transaction and one fsync.
//!
//! A branch that completes a step (or fails an attempt) hands the write to the committer's thread
//! and waits for it to be committed before it goes on, so every step's result is still durable
//! before anything that depends on it starts. While the thread commits one batch, other branches
//! keep running and their writes queue up; the thread takes everything queued as the next batch.
//! A sequential flow sees no difference: each batch holds one step.
//!
//! Attempt starts are not waited for: a step that did not complete runs again on resume whether
//! or not its start was recorded. They wait in `pending` and go with the next write, or on their
//! own after `FLUSH_STARTS`, so that `orchc show` sees a long step running.

use super::error::RunError;
use super::store::{Result, StepWrite, Store};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// How long attempt starts wait for a write to go with before they are committed on their own.
const FLUSH_STARTS: std::time::Duration = std::time::Duration::from_millis(50);

/// How often the run's heartbeat is written when no write carries it. On this thread rather than
/// the runtime's, so that a step busy with computation cannot starve it.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// Writes to commit together, and where to say they are committed.
type Job = (Vec<StepWrite>, oneshot::Sender<std::result::Result<(), String>>);

pub struct Committer {
    /// `None` only while dropping.
    jobs: Option<mpsc::Sender<Job>>,
    pending: Arc<Mutex<Vec<StepWrite>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Committer {
    /// Starts the committer's thread for `owner`'s run; it ends when the committer is dropped.
    /// Besides the writes, the thread keeps the run's heartbeat.
    pub fn new(store: Arc<dyn Store>, run: String, owner: String) -> Committer {
        let (jobs, queue) = mpsc::channel::<Job>();
        let pending: Arc<Mutex<Vec<StepWrite>>> = Arc::default();
        let starts = pending.clone();
        let mut beat = std::time::Instant::now();
        let thread = std::thread::Builder::new()
            .name("orch-committer".into())
            .spawn(move || loop {
                if beat.elapsed() >= HEARTBEAT {
                    // A lost run shows at the next write, which the store refuses.
                    let _ = store.heartbeat(&run, &owner);
                    beat = std::time::Instant::now();
                }
                let batch: Vec<Job> = match queue.recv_timeout(FLUSH_STARTS) {
                    Ok(first) => std::iter::once(first).chain(queue.try_iter()).collect(),
                    Err(mpsc::RecvTimeoutError::Timeout) => vec![],
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                };
                let (mut writes, waiting): (Vec<Vec<StepWrite>>, Vec<_>) = batch.into_iter().unzip();
                // Starts still pending were queued after every write already sent: they go last.
                writes.push(std::mem::take(&mut *starts.lock().unwrap_or_else(|e| e.into_inner())));
                let writes: Vec<StepWrite> = writes.into_iter().flatten().collect();
                if writes.is_empty() {
                    continue;
                }
                let result = store.write(&owner, &writes).map_err(|e| e.to_string());
                for done in waiting {
                    let _ = done.send(result.clone());
                }
            })
            .expect("spawn the committer thread");
        Committer { jobs: Some(jobs), pending, thread: Some(thread) }
    }

    /// Commits `write`, after the starts pending, and returns once it is on disk.
    pub async fn write(&self, write: StepWrite) -> Result<()> {
        let mut writes = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        writes.push(write);
        let (done, committed) = oneshot::channel();
        self.jobs.as_ref().ok_or_else(stopped)?.send((writes, done)).map_err(|_| stopped())?;
        committed.await.map_err(|_| stopped())?.map_err(RunError::Store)
    }

    /// Records an attempt start without waiting: it goes with the next write.
    pub fn queue(&self, write: StepWrite) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(write);
    }
}

impl Drop for Committer {
    /// Writes the starts still pending (a run that stops while a step is in flight) and waits for
    /// the thread to finish, so that nothing queued is lost when the process exits.
    fn drop(&mut self) {
        let writes = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(jobs) = self.jobs.take() {
            if !writes.is_empty() {
                let (done, _) = oneshot::channel();
                let _ = jobs.send((writes, done));
            }
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn stopped() -> RunError {
    RunError::Store("the committer has stopped".into())
}
