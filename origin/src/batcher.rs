//! Dynamic micro-batching in front of a backend (the scheme of Triton's
//! dynamic batcher: a maximum batch size and a maximum queue delay).
//!
//! Requests queue in a bounded channel. A collector takes the first waiting
//! request, then whatever else is queued (waiting up to `max_queue_delay` for
//! more, if configured) up to `max_batch`, and hands the batch to one of
//! `workers` blocking threads (`spawn_blocking`: model runs never occupy the
//! async workers). While all workers are busy, new requests accumulate, so
//! batches grow with load and stay size 1 when idle: no added latency at low load.
//!
//! A job whose caller is gone (its request hit the deadline, or the edge
//! gave up and closed the connection) is dropped before its model run: after
//! an overload burst the backlog of abandoned work drains at once instead of
//! delaying the requests that still wait.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::inference::Ranked;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::backend::Backend;

/// Batching settings.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Largest batch.
    pub max_batch: usize,
    /// Longest wait for a batch to fill after its first request.
    pub max_queue_delay: Duration,
    /// Batches run in parallel.
    pub workers: usize,
    /// Requests that may wait; beyond, [`BatchError::QueueFull`].
    pub queue_capacity: usize,
}

/// Why a request got no model answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError {
    /// The queue is full: the server is overloaded (503).
    #[error("inference queue is full")]
    QueueFull,
    /// The model run failed.
    #[error("inference failed: {0}")]
    Failed(Arc<str>),
    /// The batcher is gone (shutdown).
    #[error("inference is shutting down")]
    Closed,
}

struct Job {
    row: Vec<(usize, f32)>,
    reply: oneshot::Sender<Result<Ranked, BatchError>>,
}

/// Handle to a model's batcher; cheap to clone. The batcher stops when the
/// last handle is dropped and its queue is drained.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
}

impl Batcher {
    /// Starts the collector task for `backend`.
    pub fn start(backend: Arc<dyn Backend>, cfg: BatchConfig) -> Self {
        let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
        tokio::spawn(collect(rx, backend, cfg));
        Batcher { tx }
    }

    /// Scores one row (see `Backend::run`), batched with concurrent callers.
    ///
    /// # Errors
    /// [`BatchError`].
    pub async fn run(&self, row: Vec<(usize, f32)>) -> Result<Ranked, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.tx.try_send(Job { row, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => BatchError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => BatchError::Closed,
        })?;
        queue_depth(self.tx.max_capacity() - self.tx.capacity());
        answer.await.map_err(|_| BatchError::Closed)?
    }
}

async fn collect(mut rx: mpsc::Receiver<Job>, backend: Arc<dyn Backend>, cfg: BatchConfig) {
    let slots = Arc::new(Semaphore::new(cfg.workers.max(1)));
    loop {
        // Wait for a free worker first: requests pile up meanwhile and form the next batch.
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let Some(first) = rx.recv().await else { return };
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + cfg.max_queue_delay;
        while jobs.len() < cfg.max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) if cfg.max_queue_delay.is_zero() => break,
                Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(job)) => jobs.push(job),
                    _ => break,
                },
            }
        }
        queue_depth(rx.len());
        let backend = backend.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            for group in group_by_length(jobs) {
                run_group(&*backend, group);
            }
        });
    }
}

/// History entries per model run before a batch is split: the model's
/// gather materializes `[batch, L, n_items]`, so padding every row to the
/// longest one wastes time and memory (a 32 × 500 batch over 1,682 items is
/// 100 MB). Rows are sorted by length and cut into groups whose padded size
/// stays under this and whose lengths are within 2× of each other.
const MAX_PADDED_ENTRIES: usize = 2048;

/// `inference_queue_depth`: requests waiting for a model run (set when one
/// joins and when a batch leaves the queue). With `inference_batch_size` it
/// tells an operator (and an autoscaler) whether the workers keep up.
fn queue_depth(waiting: usize) {
    metrics::gauge!("inference_queue_depth").set(waiting as f64);
}

fn group_by_length(mut jobs: Vec<Job>) -> Vec<Vec<Job>> {
    jobs.sort_by_key(|j| j.row.len());
    let mut groups: Vec<Vec<Job>> = Vec::new();
    for job in jobs {
        let len = job.row.len().max(1);
        match groups.last_mut() {
            Some(g) if (g.len() + 1) * len <= MAX_PADDED_ENTRIES && len <= 2 * g[0].row.len().max(1) => g.push(job),
            _ => groups.push(vec![job]),
        }
    }
    groups
}

/// Drops jobs nobody waits for any more (the receiving half was dropped).
fn live(jobs: Vec<Job>) -> Vec<Job> {
    let before = jobs.len();
    let live: Vec<Job> = jobs.into_iter().filter(|j| !j.reply.is_closed()).collect();
    if live.len() < before {
        metrics::counter!("inference_skipped_total").increment((before - live.len()) as u64);
    }
    live
}

fn run_group(backend: &dyn Backend, jobs: Vec<Job>) {
    let mut jobs = live(jobs);
    if jobs.is_empty() {
        return;
    }
    let rows: Vec<_> = jobs.iter_mut().map(|j| std::mem::take(&mut j.row)).collect();
    let started = Instant::now();
    let result = backend.run(&rows);
    metrics::histogram!("inference_duration_seconds", "backend" => backend.name()).record(started.elapsed().as_secs_f64());
    metrics::histogram!("inference_batch_size").record(rows.len() as f64);
    match result {
        Ok(ranked) => {
            for (job, r) in jobs.into_iter().zip(ranked) {
                let _ = job.reply.send(Ok(r));
            }
        }
        Err(e) => {
            let msg: Arc<str> = e.to_string().into();
            for job in jobs {
                let _ = job.reply.send(Err(BatchError::Failed(msg.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(len: usize) -> Job {
        let (reply, _) = oneshot::channel();
        Job { row: vec![(0, 1.0); len], reply }
    }

    /// Hardening 12: work for nobody is skipped, work for a waiting caller is not.
    #[test]
    fn jobs_whose_caller_left_are_not_run() {
        struct Counting(std::sync::atomic::AtomicUsize);
        impl Backend for Counting {
            fn name(&self) -> &'static str {
                "counting"
            }
            fn run(&self, rows: &[Vec<(usize, f32)>]) -> Result<Vec<Ranked>, shared::InferenceError> {
                self.0.fetch_add(rows.len(), std::sync::atomic::Ordering::SeqCst);
                Ok(rows.iter().map(|_| Ranked { indices: vec![0], scores: vec![1.0] }).collect())
            }
        }
        let backend = Counting(Default::default());
        let (reply, mut waiting) = oneshot::channel();
        let alive = Job { row: vec![(1, 1.0)], reply };
        let gone = job(3); // its receiver is already dropped
        run_group(&backend, vec![alive, gone]);
        assert_eq!(backend.0.load(std::sync::atomic::Ordering::SeqCst), 1, "only the live job ran");
        assert!(waiting.try_recv().unwrap().is_ok());
        run_group(&backend, vec![job(2), job(2)]);
        assert_eq!(backend.0.load(std::sync::atomic::Ordering::SeqCst), 1, "a batch of abandoned jobs runs nothing");
    }

    #[test]
    fn groups_similar_lengths_within_the_padding_budget() {
        let groups = group_by_length([3, 500, 4, 6, 300, 2, 1000].into_iter().map(job).collect());
        let lens: Vec<Vec<usize>> = groups.iter().map(|g| g.iter().map(|j| j.row.len()).collect()).collect();
        assert_eq!(lens, vec![vec![2, 3, 4], vec![6], vec![300, 500], vec![1000]]);
        let many = group_by_length((0..100).map(|_| job(100)).collect());
        assert!(many.iter().all(|g| g.len() * 100 <= MAX_PADDED_ENTRIES) && many.len() == 5);
    }
}
