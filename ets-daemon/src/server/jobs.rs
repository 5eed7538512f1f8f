//! Jobs: the table of queued and running searches, the FIFO queue with its search slots and
//! KV-budget reservations, and each job's stop signal and live progress.
//!
//! A job takes a seat when it is registered, in submission order: at most `max_concurrent`
//! running plus `max_queue` loading or waiting jobs, so a full daemon refuses the newest
//! submission at once (before its models load or its prompt is tokenized, which finish in any
//! order). It reserves its worst-case live KV (bytes per token × (prompt + width × max tokens))
//! when it leaves the queue and gives it back when it ends. The queue is ordered by submission;
//! its head starts when a slot is free and its reservation fits the budget; nothing behind it
//! overtakes it.
//!
//! The budget also holds memory that is not a job's but gives way to jobs ([`YieldingKv`]: the
//! models' warm prompts). When a job starts, that memory is trimmed to what the running jobs'
//! reservations leave of the budget, so it never keeps a job waiting and reservations plus
//! warm prompts stay within the budget at every start.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use ets_core::protocol::{JobEvent, JobId, JobInfo, JobState, Response};
use ets_core::Method;
use tokio::sync::{oneshot, Notify};

pub use super::outbox::Outbox;

/// Why a job was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StopReason {
    /// A `cancel` request.
    Cancelled = 1,
    /// The client that started it disconnected.
    ClientGone = 2,
    /// The daemon is shutting down.
    ShuttingDown = 3,
    /// Its deadline passed.
    Deadline = 4,
}

impl StopReason {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Cancelled,
            2 => Self::ClientGone,
            3 => Self::ShuttingDown,
            4 => Self::Deadline,
            _ => return None,
        })
    }
}

/// A job's stop flag: set once (the first reason wins), checked by the search between steps.
#[derive(Debug, Default)]
pub struct StopSignal {
    reason: AtomicU8,
    notify: Notify,
    deadline: Option<Instant>,
}

impl StopSignal {
    /// Asks the job to stop; false if it was already asked.
    pub fn stop(&self, reason: StopReason) -> bool {
        let set = self
            .reason
            .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if set {
            self.notify.notify_waiters();
        }
        set
    }

    /// The reason to stop, if any; a passed deadline counts (and is recorded) here.
    pub fn check(&self) -> Option<StopReason> {
        if let Some(r) = StopReason::from_u8(self.reason.load(Ordering::Acquire)) {
            return Some(r);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.stop(StopReason::Deadline);
            return self.check();
        }
        None
    }

    /// Resolves once the job is asked to stop (or its deadline passes).
    pub async fn stopped(&self) -> StopReason {
        loop {
            let notified = self.notify.notified();
            if let Some(r) = self.check() {
                return r;
            }
            match self.deadline {
                Some(d) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(d.into()) => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

/// Live numbers of a running search, written by the search thread.
#[derive(Debug, Default)]
pub struct Progress {
    /// Deepest depth done.
    pub depth: AtomicUsize,
    /// Nodes created.
    pub nodes: AtomicUsize,
    /// Live KV tokens of the last depth.
    pub live_tokens: AtomicU64,
    /// Live KV bytes of the last depth.
    pub live_bytes: AtomicU64,
}

/// What the daemon knows of one job.
#[derive(Debug)]
pub struct Job {
    /// Id.
    pub id: JobId,
    /// The connection that started it.
    pub conn: u64,
    /// Client tag.
    pub tag: Option<String>,
    /// First line of the problem (for listings).
    pub problem_line: String,
    /// Method.
    pub method: Method,
    /// Width.
    pub width: usize,
    /// When it was accepted.
    pub accepted: Instant,
    /// Its wall-clock budget.
    pub deadline_ms: Option<u64>,
    /// Stop flag.
    pub stop: StopSignal,
    /// Live progress.
    pub progress: Progress,
    running: std::sync::atomic::AtomicBool,
}

impl Job {
    /// A job accepted now.
    pub fn new(id: JobId, conn: u64, request: &ets_core::protocol::SolveRequest) -> Self {
        let accepted = Instant::now();
        let mut problem_line: String = request.problem.lines().next().unwrap_or("").to_owned();
        if problem_line.chars().count() > 80 {
            problem_line = problem_line.chars().take(79).collect::<String>() + "…";
        }
        Self {
            id,
            conn,
            tag: request.tag.clone(),
            problem_line,
            method: request.config.method,
            width: request.config.width,
            accepted,
            deadline_ms: request.deadline_ms,
            stop: StopSignal {
                deadline: request
                    .deadline_ms
                    .map(|ms| accepted + std::time::Duration::from_millis(ms)),
                ..StopSignal::default()
            },
            progress: Progress {
                nodes: AtomicUsize::new(1),
                ..Progress::default()
            },
            running: false.into(),
        }
    }

    /// Whether its search has started.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }
}

struct Waiting {
    id: JobId,
    estimate: u64,
    grant: oneshot::Sender<()>,
    outbox: Option<Outbox>,
    last_position: Option<usize>,
}

#[derive(Default)]
struct Queue {
    /// Registered jobs not running yet: loading their models, or waiting.
    seated: BTreeSet<JobId>,
    /// Waiting jobs, by submission (job id).
    waiting: VecDeque<Waiting>,
    running: HashMap<JobId, u64>,
    reserved: u64,
}

/// Why a job could not enter the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Its worst case exceeds the whole budget.
    OverBudget {
        /// Bytes it may need.
        estimate: u64,
        /// The budget.
        budget: u64,
    },
    /// Every seat is taken: `running` jobs run and `queued` load or wait.
    QueueFull {
        /// Jobs running.
        running: usize,
        /// Jobs loading or waiting.
        queued: usize,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::OverBudget { estimate, budget } => write!(
                f,
                "a worst case of {estimate} bytes of live KV exceeds the budget of {budget} bytes"
            ),
            Refusal::QueueFull { running, queued } => write!(
                f,
                "the job queue is full ({running} running, {queued} queued or loading; etsd \
                 --max-queue raises it); try again later"
            ),
        }
    }
}

/// KV memory outside the jobs' reservations that the KV budget holds and that gives way to
/// jobs: the models' warm prompts.
pub trait YieldingKv: Send + Sync {
    /// Bytes it holds now.
    fn bytes(&self) -> u64;
    /// Gives bytes back until it holds at most `max_bytes`.
    fn trim(&self, max_bytes: u64);
}

/// Every job, and the queue.
pub struct Jobs {
    all: Mutex<BTreeMap<JobId, Arc<Job>>>,
    queue: Mutex<Queue>,
    next_id: AtomicU64,
    max_concurrent: usize,
    max_queue: usize,
    kv_budget: Option<u64>,
    /// What else the budget holds, once the daemon has it.
    yielding: OnceLock<Box<dyn YieldingKv>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Jobs {
    /// An empty table.
    pub fn new(max_concurrent: usize, max_queue: usize, kv_budget: Option<u64>) -> Self {
        Self {
            all: Mutex::new(BTreeMap::new()),
            queue: Mutex::new(Queue::default()),
            next_id: AtomicU64::new(1),
            max_concurrent: max_concurrent.max(1),
            max_queue,
            kv_budget,
            yielding: OnceLock::new(),
        }
    }

    /// Counts `memory` in the KV budget from now on (once; later calls are ignored).
    pub fn hold_in_budget(&self, memory: Box<dyn YieldingKv>) {
        let _ = self.yielding.set(memory);
    }

    /// Searches that may run at once.
    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    /// The KV budget.
    pub fn kv_budget(&self) -> Option<u64> {
        self.kv_budget
    }

    /// Registers a new job in a free seat, or refuses it when every seat is taken.
    pub fn register(
        &self,
        conn: u64,
        request: &ets_core::protocol::SolveRequest,
    ) -> Result<Arc<Job>, Refusal> {
        let mut q = lock(&self.queue);
        if q.seated.len() >= self.max_queue + self.max_concurrent.saturating_sub(q.running.len()) {
            return Err(Refusal::QueueFull {
                running: q.running.len(),
                queued: q.seated.len(),
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        q.seated.insert(id);
        let job = Arc::new(Job::new(id, conn, request));
        lock(&self.all).insert(id, job.clone());
        Ok(job)
    }

    /// A job by id.
    pub fn get(&self, id: JobId) -> Option<Arc<Job>> {
        lock(&self.all).get(&id).cloned()
    }

    /// Every job, oldest first.
    pub fn all(&self) -> Vec<Arc<Job>> {
        lock(&self.all).values().cloned().collect()
    }

    /// Puts a job in the queue; the receiver resolves when it may start. Queue positions are
    /// sent to `outbox` as they change.
    pub fn enqueue(
        &self,
        job: &Job,
        estimate: u64,
        outbox: Option<Outbox>,
    ) -> Result<oneshot::Receiver<()>, Refusal> {
        if let Some(budget) = self.kv_budget {
            if estimate > budget {
                return Err(Refusal::OverBudget { estimate, budget });
            }
        }
        let (grant, granted) = oneshot::channel();
        {
            let mut q = lock(&self.queue);
            // Its seat was taken at registration; the queue keeps submission order.
            let at = q.waiting.partition_point(|w| w.id < job.id);
            q.waiting.insert(
                at,
                Waiting {
                    id: job.id,
                    estimate,
                    grant,
                    outbox,
                    last_position: None,
                },
            );
        }
        self.pump();
        Ok(granted)
    }

    /// Takes a job out of the queue or its slot (it ended or gave up) and forgets it.
    pub fn leave(&self, id: JobId) {
        {
            let mut q = lock(&self.queue);
            q.seated.remove(&id);
            q.waiting.retain(|w| w.id != id);
            if let Some(est) = q.running.remove(&id) {
                q.reserved -= est;
            }
        }
        lock(&self.all).remove(&id);
        self.pump();
    }

    /// Starts queued jobs while slots and budget allow, then tells the rest their positions.
    fn pump(&self) {
        let mut q = lock(&self.queue);
        while let Some(head) = q.waiting.front() {
            let fits = self
                .kv_budget
                .is_none_or(|b| q.running.is_empty() || q.reserved + head.estimate <= b);
            if q.running.len() >= self.max_concurrent || !fits {
                break;
            }
            let head = q.waiting.pop_front().expect("front exists");
            q.seated.remove(&head.id);
            if head.grant.send(()).is_ok() {
                q.running.insert(head.id, head.estimate);
                q.reserved += head.estimate;
                if let (Some(budget), Some(memory)) = (self.kv_budget, self.yielding.get()) {
                    let room = budget.saturating_sub(q.reserved);
                    if memory.bytes() > room {
                        memory.trim(room);
                    }
                }
                if let Some(job) = lock(&self.all).get(&head.id) {
                    job.running.store(true, Ordering::Release);
                }
            }
        }
        for (position, w) in q.waiting.iter_mut().enumerate() {
            if w.last_position != Some(position) {
                w.last_position = Some(position);
                if let Some(outbox) = &w.outbox {
                    let _ = outbox.send(Response::Event {
                        job: w.id,
                        event: JobEvent::Queued { position },
                    });
                }
            }
        }
    }

    /// Position in the queue (0 = next), if queued.
    #[cfg(test)]
    pub fn position(&self, id: JobId) -> Option<usize> {
        lock(&self.queue).waiting.iter().position(|w| w.id == id)
    }

    /// KV bytes reserved by running jobs.
    pub fn reserved_kv(&self) -> u64 {
        lock(&self.queue).reserved
    }

    /// Listing for `ps` and status.
    pub fn infos(&self) -> Vec<JobInfo> {
        let positions: HashMap<JobId, usize> = lock(&self.queue)
            .waiting
            .iter()
            .enumerate()
            .map(|(i, w)| (w.id, i))
            .collect();
        self.all()
            .iter()
            .map(|j| JobInfo {
                job: j.id,
                tag: j.tag.clone(),
                state: if j.is_running() {
                    JobState::Running
                } else {
                    JobState::Queued
                },
                queue_position: positions.get(&j.id).copied(),
                method: j.method,
                width: j.width,
                depth: j.progress.depth.load(Ordering::Relaxed),
                nodes: j.progress.nodes.load(Ordering::Relaxed),
                live_tokens: j.progress.live_tokens.load(Ordering::Relaxed),
                live_bytes: j.progress.live_bytes.load(Ordering::Relaxed),
                age_ms: j.accepted.elapsed().as_millis() as u64,
                problem: j.problem_line.clone(),
            })
            .collect()
    }

    /// Asks every job to stop.
    pub fn stop_all(&self, reason: StopReason) {
        for j in self.all() {
            j.stop.stop(reason);
        }
    }

    /// Asks every job of a connection to stop.
    pub fn stop_connection(&self, conn: u64, reason: StopReason) -> usize {
        self.all()
            .iter()
            .filter(|j| j.conn == conn)
            .filter(|j| j.stop.stop(reason))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ets_core::protocol::SolveRequest;

    fn job(jobs: &Jobs) -> Arc<Job> {
        jobs.register(1, &SolveRequest::new("1+1?")).unwrap()
    }

    /// Warm prompts of a given size that record how they were trimmed.
    struct Warm(Arc<AtomicU64>);

    impl YieldingKv for Warm {
        fn bytes(&self) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
        fn trim(&self, max_bytes: u64) {
            self.0.fetch_min(max_bytes, Ordering::Relaxed);
        }
    }

    #[test]
    fn warm_prompts_count_in_the_budget_and_give_way_to_jobs() {
        let jobs = Jobs::new(2, 10, Some(100));
        let warm = Arc::new(AtomicU64::new(90));
        jobs.hold_in_budget(Box::new(Warm(warm.clone())));
        let (a, b, c) = (job(&jobs), job(&jobs), job(&jobs));
        let mut ga = jobs.enqueue(&a, 30, None).unwrap();
        assert!(
            ga.try_recv().is_ok(),
            "warm prompts never keep a job waiting"
        );
        assert_eq!(warm.load(Ordering::Relaxed), 70, "trimmed to what a leaves");
        let mut gb = jobs.enqueue(&b, 20, None).unwrap();
        assert!(gb.try_recv().is_ok());
        assert_eq!(warm.load(Ordering::Relaxed), 50);
        // They grow back while jobs run; a job's end gives its room back to them.
        warm.store(65, Ordering::Relaxed);
        jobs.leave(a.id);
        assert_eq!(
            warm.load(Ordering::Relaxed),
            65,
            "nothing started, nothing trimmed"
        );
        let mut gc = jobs.enqueue(&c, 60, None).unwrap();
        assert!(gc.try_recv().is_ok());
        assert_eq!(warm.load(Ordering::Relaxed), 20, "100 - (20 + 60)");
        assert_eq!(jobs.reserved_kv() + warm.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn without_a_budget_warm_prompts_are_left_alone() {
        let jobs = Jobs::new(2, 10, None);
        let warm = Arc::new(AtomicU64::new(1 << 40));
        jobs.hold_in_budget(Box::new(Warm(warm.clone())));
        let a = job(&jobs);
        let mut ga = jobs.enqueue(&a, 1 << 30, None).unwrap();
        assert!(ga.try_recv().is_ok());
        assert_eq!(warm.load(Ordering::Relaxed), 1 << 40);
    }

    #[test]
    fn the_queue_starts_jobs_in_order_within_slots_and_budget() {
        let jobs = Jobs::new(2, 10, Some(100));
        let (a, b, c, d) = (job(&jobs), job(&jobs), job(&jobs), job(&jobs));
        let mut ga = jobs.enqueue(&a, 60, None).unwrap();
        let mut gb = jobs.enqueue(&b, 50, None).unwrap();
        let mut gc = jobs.enqueue(&c, 10, None).unwrap();
        assert!(ga.try_recv().is_ok(), "a fits");
        assert!(gb.try_recv().is_err(), "b waits for budget");
        assert!(gc.try_recv().is_err(), "c does not overtake b");
        assert_eq!(
            (jobs.position(b.id), jobs.position(c.id)),
            (Some(0), Some(1))
        );
        assert_eq!(
            jobs.enqueue(&d, 101, None).unwrap_err(),
            Refusal::OverBudget {
                estimate: 101,
                budget: 100
            }
        );
        jobs.leave(a.id);
        assert!(gb.try_recv().is_ok() && gc.try_recv().is_ok());
        assert_eq!(jobs.reserved_kv(), 60);
        jobs.leave(b.id);
        jobs.leave(c.id);
        assert_eq!(jobs.reserved_kv(), 0);
    }

    #[test]
    fn queued_jobs_hear_their_positions() {
        let jobs = Jobs::new(1, 10, None);
        let (tx, mut rx) = super::super::outbox::outbox(16);
        let (a, b) = (job(&jobs), job(&jobs));
        let _ga = jobs.enqueue(&a, 0, Some(tx.clone())).unwrap();
        let _gb = jobs.enqueue(&b, 0, Some(tx)).unwrap();
        let first = rx.try_recv().unwrap();
        assert_eq!(
            first,
            Response::Event {
                job: b.id,
                event: JobEvent::Queued { position: 0 }
            }
        );
        assert!(rx.try_recv().is_none());
        assert_eq!(jobs.infos()[0].state, JobState::Running);
        assert_eq!(jobs.infos()[1].queue_position, Some(0));
    }

    #[test]
    fn seats_are_taken_in_submission_order_and_the_newest_is_refused() {
        // One slot, one queue seat: two jobs fit, the third is refused at registration even
        // though neither earlier job has reached the queue yet (still loading).
        let jobs = Jobs::new(1, 1, None);
        let (a, b) = (job(&jobs), job(&jobs));
        assert_eq!(
            jobs.register(1, &SolveRequest::new("1+1?")).unwrap_err(),
            Refusal::QueueFull {
                running: 0,
                queued: 2
            }
        );
        // b finishes loading first: it waits behind nothing and starts; a then waits.
        let mut gb = jobs.enqueue(&b, 0, None).unwrap();
        assert!(gb.try_recv().is_ok());
        let mut ga = jobs.enqueue(&a, 0, None).unwrap();
        assert!(ga.try_recv().is_err());
        // A running job frees its seat for the next submission only when it ends.
        assert!(jobs.register(1, &SolveRequest::new("1+1?")).is_err());
        jobs.leave(b.id);
        assert!(ga.try_recv().is_ok());
    }

    #[test]
    fn waiting_jobs_keep_submission_order_whatever_order_they_enqueue_in() {
        let jobs = Jobs::new(1, 3, None);
        let (a, b, c) = (job(&jobs), job(&jobs), job(&jobs));
        let _ga = jobs.enqueue(&a, 0, None).unwrap();
        let _gc = jobs.enqueue(&c, 0, None).unwrap();
        let _gb = jobs.enqueue(&b, 0, None).unwrap();
        assert_eq!(
            (jobs.position(b.id), jobs.position(c.id)),
            (Some(0), Some(1))
        );
    }

    #[test]
    fn a_stop_is_recorded_once_and_deadlines_count() {
        let s = StopSignal::default();
        assert_eq!(s.check(), None);
        assert!(s.stop(StopReason::Cancelled));
        assert!(!s.stop(StopReason::ShuttingDown));
        assert_eq!(s.check(), Some(StopReason::Cancelled));
        let late = StopSignal {
            deadline: Some(Instant::now()),
            ..StopSignal::default()
        };
        assert_eq!(late.check(), Some(StopReason::Deadline));
    }
}
