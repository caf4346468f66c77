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
//! or not its start was recorded. They wait in `pending` and go with their attempt's end (the
//! store then writes the attempt's rows once, not inserted then updated), or on their own after
//! `FLUSH_STARTS`, so that `orchc show` sees a step that runs longer than that.

use super::error::RunError;
use super::store::{Result, StepWrite, Store};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// How long an attempt start waits for its attempt's end before it is committed on its own.
const FLUSH_STARTS: std::time::Duration = std::time::Duration::from_millis(50);

/// How often the run's heartbeat is written when no write carries it. On this thread rather than
/// the runtime's, so that a step busy with computation cannot starve it.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// Writes to commit together, and where to say they are committed. The writes go back with the
/// answer: they are freed by the thread that made them, as a memory allocator serves best (glibc's
/// takes a lock to free what another thread allocated).
type Job = (Vec<StepWrite>, oneshot::Sender<Committed>);
type Committed = (std::result::Result<(), String>, Vec<StepWrite>);

pub struct Committer {
    /// `None` only while dropping.
    jobs: Option<mpsc::Sender<Job>>,
    pending: Arc<Mutex<Vec<(std::time::Instant, StepWrite)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Committer {
    /// Starts the committer's thread for `owner`'s run; it ends when the committer is dropped.
    /// Besides the writes, the thread keeps the run's heartbeat.
    pub fn new(store: Arc<dyn Store>, run: String, owner: String) -> Committer {
        let (jobs, queue) = mpsc::channel::<Job>();
        let pending: Arc<Mutex<Vec<(std::time::Instant, StepWrite)>>> = Arc::default();
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
                let (groups, waiting): (Vec<Vec<StepWrite>>, Vec<_>) = batch.into_iter().unzip();
                let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
                let mut writes: Vec<StepWrite> = groups.into_iter().flatten().collect();
                // Starts pending long enough go too, last: they were queued after every write sent.
                writes.extend(due(&mut starts.lock().unwrap_or_else(|e| e.into_inner()), FLUSH_STARTS));
                if writes.is_empty() {
                    continue;
                }
                let result = store.write(&owner, &writes).map_err(|e| e.to_string());
                let mut writes = writes.into_iter();
                for (done, n) in waiting.into_iter().zip(sizes) {
                    let _ = done.send((result.clone(), writes.by_ref().take(n).collect()));
                }
            })
            .expect("spawn the committer thread");
        Committer { jobs: Some(jobs), pending, thread: Some(thread) }
    }

    /// Commits `write`, after its attempt's start if that is still pending, and returns once it
    /// is on disk.
    pub async fn write(&self, write: StepWrite) -> Result<()> {
        self.send(write)?.await
    }

    /// Hands `write` to the committer's thread (after its attempt's start if that is still
    /// pending) without waiting: the receipt resolves once it is on disk.
    pub fn send(&self, write: StepWrite) -> Result<Receipt> {
        let start = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let same = |w: &StepWrite| w.path() == write.path() && w.run() == write.run();
            pending.iter().position(|(_, w)| same(w)).map(|i| pending.remove(i).1)
        };
        let mut writes = Vec::with_capacity(2);
        writes.extend(start);
        writes.push(write);
        let (done, committed) = oneshot::channel();
        self.jobs.as_ref().ok_or_else(stopped)?.send((writes, done)).map_err(|_| stopped())?;
        Ok(Receipt(committed))
    }

    /// Records an attempt start without waiting: it goes with its attempt's end, or on its own
    /// after `FLUSH_STARTS`.
    pub fn queue(&self, write: StepWrite) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).push((std::time::Instant::now(), write));
    }
}

impl Drop for Committer {
    /// Writes the starts still pending (a run that stops while a step is in flight) and waits for
    /// the thread to finish, so that nothing queued is lost when the process exits.
    fn drop(&mut self) {
        let writes = due(&mut self.pending.lock().unwrap_or_else(|e| e.into_inner()), std::time::Duration::ZERO);
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

/// Takes the pending starts queued at least `age` ago, in the order they were queued.
fn due(pending: &mut Vec<(std::time::Instant, StepWrite)>, age: std::time::Duration) -> Vec<StepWrite> {
    // Queued in time order: the due ones are a prefix.
    let n = pending.iter().take_while(|(at, _)| at.elapsed() >= age).count();
    pending.drain(..n).map(|(_, w)| w).collect()
}

/// A write handed to the committer: awaiting it says whether it is on disk.
pub struct Receipt(oneshot::Receiver<Committed>);

impl std::future::Future for Receipt {
    type Output = Result<()>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<()>> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.map_err(|_| stopped()).and_then(|(r, _writes)| r.map_err(RunError::Store)))
    }
}

fn stopped() -> RunError {
    RunError::Store("the committer has stopped".into())
}
