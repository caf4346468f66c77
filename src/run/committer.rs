//! Group commit: the writes of concurrent branches (`&`, `graph`, `for ... limit N`) share one
//! transaction and one fsync.
//!
//! A branch that starts an attempt or completes a step hands the write to the committer's thread
//! and waits for it to be committed before it goes on, so every step's result is still durable
//! before anything that depends on it starts. While the thread commits one batch, other branches
//! keep running and their writes queue up; the thread takes everything queued as the next batch.
//! A sequential flow sees no difference: each batch holds one write.

use super::error::RunError;
use super::store::{Result, StepWrite, Store};
use std::sync::mpsc;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A write and, when its writer waits for it, where to say it is committed.
/// How long attempt starts wait for company before they are committed on their own.
const HOLD_STARTS: std::time::Duration = std::time::Duration::from_millis(20);

type Job = (StepWrite, Option<oneshot::Sender<std::result::Result<(), String>>>);

pub struct Committer {
    jobs: mpsc::Sender<Job>,
}

impl Committer {
    /// Starts the committer's thread; it ends when the committer is dropped.
    pub fn new(store: Arc<dyn Store>) -> Committer {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("orch-committer".into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut batch = vec![first];
                    batch.extend(queue.try_iter());
                    // Nobody waits for attempt starts: hold them briefly so that they share the
                    // transaction of the completion that usually follows at once.
                    if batch.iter().all(|(_, done)| done.is_none()) {
                        if let Ok(next) = queue.recv_timeout(HOLD_STARTS) {
                            batch.push(next);
                            batch.extend(queue.try_iter());
                        }
                    }
                    let writes: Vec<StepWrite> = batch.iter().map(|(w, _)| w.clone()).collect();
                    let result = store.write(&writes).map_err(|e| e.to_string());
                    for done in batch.into_iter().filter_map(|(_, done)| done) {
                        let _ = done.send(result.clone());
                    }
                }
            })
            .expect("spawn the committer thread");
        Committer { jobs }
    }

    /// Commits `write` (with whatever else is queued) and returns once it is on disk.
    pub async fn write(&self, write: StepWrite) -> Result<()> {
        let (done, committed) = oneshot::channel();
        self.jobs.send((write, Some(done))).map_err(|_| stopped())?;
        committed.await.map_err(|_| stopped())?.map_err(RunError::Store)
    }

    /// Queues `write` without waiting: for attempt starts, which need not be on disk before the
    /// attempt runs (a step that did not complete runs again on resume either way). The queue is
    /// in order, so a start is always committed before the step's completion.
    pub fn queue(&self, write: StepWrite) -> Result<()> {
        self.jobs.send((write, None)).map_err(|_| stopped())
    }
}

fn stopped() -> RunError {
    RunError::Store("the committer has stopped".into())
}
