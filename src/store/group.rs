//! Group commit: one writer gathers the steps of concurrent requests and makes them durable
//! in one transaction, then answers each. A lone step is written at once; under load, the
//! steps that queue while a batch commits form the next batch. Each step keeps its own
//! all-or-nothing outcome (savepoints), steps on one instance stay in arrival order, and a
//! full queue refuses new steps ([`StoreError::Busy`]) instead of dropping accepted ones.
//!
//! A client that is plainly alone (many one-step commits in a row, nothing queued, nothing
//! under way) has its steps written on its own task instead, as without group commit: the
//! two hand-overs between threads cost it about a fifth of its rate. Such a step is not
//! queued; if its caller goes away before the commit, nothing was answered and the step is
//! written whole or not at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::{
    Checkpoint, Claim, DefinitionVersion, Delivery, DeliveryOutcome, FactRecord, InstanceHead,
    InstanceQuery, InstanceRecord, Links, Step, Store, StoreError, StoredAnswer, StoredDefinition,
    StoredSnapshot, TokenRecord, TraceRecord,
};

/// How batches are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitConfig {
    /// Most steps in one commit.
    pub max_batch: usize,
    /// After the first step of a batch, wait this long for more (zero: take only what is
    /// already queued, so a lone client never waits).
    pub max_wait: Duration,
    /// Steps that may wait for the writers; more are refused as busy.
    pub queue: usize,
    /// Writers, each owning the instances whose id hashes to it, so steps on one instance
    /// stay in order. One suits SQLite (one writer at a time anyway); several let
    /// PostgreSQL commit batches in parallel.
    pub shards: usize,
    /// How often a writer yields, at most, for the callers of its previous batch to join
    /// the next one rather than wait a whole commit: worth it on PostgreSQL, whose commit
    /// costs about the same whatever its size. On SQLite a commit costs by the page it
    /// writes, and the callers' next steps are better computed while a smaller batch is on
    /// its way to the disk: zero.
    pub rejoin_yields: u32,
    /// Run each writer on a thread of its own rather than among the engine's tasks. Its
    /// batch's statements are then sent the moment the database answers the one before,
    /// not after the callers' tasks queued ahead of it on the engine's threads: on SQLite,
    /// whose one writer is the ceiling, that shortens every batch. PostgreSQL's writers
    /// share the connection pool with the engine's reads and gave less on threads of their
    /// own (3,700 – 5,400 transitions/s at 16 clients against 5,900 – 7,800): off.
    pub own_thread: bool,
    /// After this many commits in a row that carried one step each (a lone client), a step
    /// that finds its writer idle and its queue empty is written on its caller's task, sparing
    /// it two hand-overs between threads; zero: never. Any commit of several steps ends the
    /// streak, so under load every step goes through the writer and is batched.
    pub inline_after: u32,
}

impl GroupCommitConfig {
    /// PostgreSQL's: two writers, so that one batch is written while the other gathers
    /// (more writers make smaller batches, and each call costs the server a fixed part:
    /// measured at 16 clients, 2 beat 1, 3 and 4), each yielding up to 8 times for the
    /// callers of its previous batch. Every step goes through the writers: a lone client
    /// already commits faster than one commit per transition does (1,480 – 1,603 against
    /// 1,242 – 1,417/s).
    pub fn postgres() -> Self {
        Self {
            shards: 2,
            rejoin_yields: 8,
            own_thread: false,
            inline_after: 0,
            ..Self::default()
        }
    }
}

/// SQLite's: one writer (SQLite writes one transaction at a time) on a thread of its own,
/// that never yields; a client alone for 16 commits writes on its own task (measured, one
/// client: 3,800 – 4,300 transitions/s against 2,800 – 3,200 through the writer, with 8 and
/// 32 clients unchanged).
impl Default for GroupCommitConfig {
    fn default() -> Self {
        Self {
            max_batch: 128,
            max_wait: Duration::ZERO,
            queue: 4096,
            shards: 1,
            rejoin_yields: 0,
            own_thread: true,
            inline_after: 16,
        }
    }
}

/// Below this, a wait for more steps yields instead of setting a timer.
const TIMER_RESOLUTION: Duration = Duration::from_millis(1);

/// What one writer has done since the store opened: with it an operator sees how many
/// steps each commit carries and whether the writer is the ceiling (busy nearly all the
/// time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed (or refused whole).
    pub commits: u64,
    /// Steps those transactions carried, refused ones included.
    pub steps: u64,
    /// Time spent writing batches, from the batch's close to the end of its commit.
    pub busy: Duration,
}

impl WriterStats {
    /// Steps per commit on average (zero before the first).
    pub fn steps_per_commit(&self) -> f64 {
        if self.commits == 0 {
            0.0
        } else {
            self.steps as f64 / self.commits as f64
        }
    }

    /// What was done between `before` (an earlier reading) and this reading.
    pub fn since(&self, before: &WriterStats) -> WriterStats {
        WriterStats {
            commits: self.commits.saturating_sub(before.commits),
            steps: self.steps.saturating_sub(before.steps),
            busy: self.busy.saturating_sub(before.busy),
        }
    }

    /// The sum of several writers' figures.
    pub fn total(all: &[WriterStats]) -> WriterStats {
        all.iter().fold(WriterStats::default(), |a, w| WriterStats {
            commits: a.commits + w.commits,
            steps: a.steps + w.steps,
            busy: a.busy + w.busy,
        })
    }
}

/// A writer's [`WriterStats`], updated after each batch, and what decides whether a step
/// may be written on its caller's task ([`GroupCommitConfig::inline_after`]).
#[derive(Debug, Default)]
struct WriterCounters {
    commits: AtomicU64,
    steps: AtomicU64,
    busy_ns: AtomicU64,
    /// Commits in a row that carried one step each.
    lone_streak: AtomicU32,
    /// Commits under way: the writer's batch, or a step written on its caller's task.
    in_flight: AtomicU32,
}

impl WriterCounters {
    fn add(&self, steps: usize, busy: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.steps.fetch_add(steps as u64, Ordering::Relaxed);
        let ns = u64::try_from(busy.as_nanos()).unwrap_or(u64::MAX);
        self.busy_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Notes a writer's commit of `steps` steps: one extends the streak of lone steps, more
    /// end it.
    fn note_batch(&self, steps: usize) {
        if steps == 1 {
            self.lone_streak.fetch_add(1, Ordering::Relaxed);
        } else {
            self.lone_streak.store(0, Ordering::Relaxed);
        }
    }

    /// Claims the right to write a step on its caller's task: after `after` lone commits in
    /// a row, with nothing under way. The claim ends when the guard is dropped.
    fn claim_inline(&self, after: u32) -> Option<InFlight<'_>> {
        if after == 0 || self.lone_streak.load(Ordering::Relaxed) < after {
            return None;
        }
        self.in_flight
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| InFlight(&self.in_flight))
    }

    /// Marks a commit under way until the guard is dropped.
    fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Acquire);
        InFlight(&self.in_flight)
    }

    fn read(&self) -> WriterStats {
        WriterStats {
            commits: self.commits.load(Ordering::Relaxed),
            steps: self.steps.load(Ordering::Relaxed),
            busy: Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed)),
        }
    }
}

/// A commit under way, counted in [`WriterCounters::in_flight`] until dropped (also when
/// its caller goes away half-way).
struct InFlight<'a>(&'a AtomicU32);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

struct Pending {
    step: Step,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

/// A store whose steps are committed in groups by its writers (one per shard).
pub struct GroupCommit {
    inner: Arc<dyn Store>,
    queues: Vec<mpsc::Sender<Pending>>,
    counters: Vec<Arc<WriterCounters>>,
    inline_after: u32,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("inner", &self.inner)
            .finish()
    }
}

impl GroupCommit {
    /// Wraps `inner`; starts the writers, on threads of their own or on the current Tokio
    /// runtime as `config` says. They end when the store is dropped. Fails only when the
    /// system refuses a thread.
    pub fn new(inner: Arc<dyn Store>, config: GroupCommitConfig) -> std::io::Result<Self> {
        let shards = config.shards.max(1);
        let counters: Vec<Arc<WriterCounters>> = (0..shards).map(|_| Arc::default()).collect();
        let queues = counters
            .iter()
            .enumerate()
            .map(|(shard, counts)| {
                let (queue, rx) = mpsc::channel((config.queue / shards).max(1));
                // A writer on a thread of its own has the callers' tasks woken on the
                // engine's runtime, and goes on to its next batch meanwhile.
                let answers = config
                    .own_thread
                    .then(tokio::runtime::Handle::try_current)
                    .and_then(Result::ok);
                let writer = write_batches(inner.clone(), rx, config, counts.clone(), answers);
                if config.own_thread {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    std::thread::Builder::new()
                        .name(format!("opsflow-writer-{shard}"))
                        .spawn(move || runtime.block_on(writer))?;
                } else {
                    tokio::spawn(writer);
                }
                Ok(queue)
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Self {
            inner,
            queues,
            counters,
            inline_after: config.inline_after,
        })
    }

    /// The writer (shard) that owns the step's (first) instance.
    fn shard_for(&self, step: &Step) -> usize {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let owner = step.writes.first().map(|w| w.instance.id.as_str());
        if let Some(id) = owner {
            id.hash(&mut h);
        }
        (h.finish() % self.queues.len() as u64) as usize
    }
}

/// One writer's loop: gathers a batch, commits it, answers its callers (on `answers`, a
/// runtime of the callers', when given), and so on until the store is dropped.
async fn write_batches(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Pending>,
    config: GroupCommitConfig,
    counters: Arc<WriterCounters>,
    answers: Option<tokio::runtime::Handle>,
) {
    let max = config.max_batch.max(1);
    // Size of the batch before: its callers are probably computing their next steps right
    // now. Rather than commit a smaller batch and make them wait a whole commit, the
    // writer may yield a few times to let them join (`rejoin_yields`). A lone client
    // (last = 1) never waits.
    let mut last = 1;
    while let Some(first) = rx.recv().await {
        let opened = Instant::now();
        let mut batch = vec![first];
        let mut yields = 0;
        while batch.len() < max {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) if batch.len() < last && yields < config.rejoin_yields => {
                    yields += 1;
                    tokio::task::yield_now().await;
                }
                Err(_) => {
                    let left = config.max_wait.saturating_sub(opened.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    if left < TIMER_RESOLUTION {
                        // Tokio's timers tick in milliseconds: wait shorter by yielding.
                        tokio::task::yield_now().await;
                    } else {
                        match tokio::time::timeout(left, rx.recv()).await {
                            Ok(Some(p)) => batch.push(p),
                            _ => break,
                        }
                    }
                }
            }
        }
        last = batch.len();
        let under_way = counters.start();
        let started = Instant::now();
        let (steps, replies): (Vec<Step>, Vec<_>) =
            batch.into_iter().map(|p| (p.step, p.reply)).unzip();
        let (results, written) = if steps.len() == 1 {
            let step = steps.into_iter().next().unwrap_or_default();
            (vec![store.commit(step).await], Vec::new())
        } else {
            tracing::trace!(steps = steps.len(), "group commit");
            (store.commit_batch(&steps).await, steps)
        };
        // Counted before anyone is answered: a caller that has its answer sees its commit.
        counters.add(last, started.elapsed());
        counters.note_batch(last);
        drop(under_way);
        let answer = move || {
            // Dropped first: the engine keeps what it wrote, and should own it alone.
            drop(written);
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that went away still had its step written; nothing to undo.
                let _ = reply.send(result);
            }
        };
        match &answers {
            // Waking each caller from a foreign thread costs the writer a system call or
            // more per caller, and freeing the batch's steps takes a while too: one task
            // on the callers' runtime does both, while the writer goes on.
            Some(runtime) if last > 1 => drop(runtime.spawn(async move { answer() })),
            _ => answer(),
        }
    }
}

#[async_trait]
impl Store for GroupCommit {
    async fn save_definition(&self, d: &StoredDefinition) -> Result<i64, StoreError> {
        self.inner.save_definition(d).await
    }
    async fn definition_versions(
        &self,
        process: &str,
    ) -> Result<Vec<DefinitionVersion>, StoreError> {
        self.inner.definition_versions(process).await
    }
    async fn save_kpi_set(&self, hash: &str, source: &str) -> Result<i64, StoreError> {
        self.inner.save_kpi_set(hash, source).await
    }
    async fn kpi_set_source(&self, hash: &str) -> Result<Option<String>, StoreError> {
        self.inner.kpi_set_source(hash).await
    }
    async fn save_report_snapshot(&self, s: &StoredSnapshot) -> Result<(), StoreError> {
        self.inner.save_report_snapshot(s).await
    }
    async fn report_snapshot(&self, hash: &str) -> Result<Option<StoredSnapshot>, StoreError> {
        self.inner.report_snapshot(hash).await
    }
    async fn load_definition(&self, hash: &str) -> Result<Option<StoredDefinition>, StoreError> {
        self.inner.load_definition(hash).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn save_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.inner.save_token(token).await
    }
    async fn token_by_digest(&self, digest: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.inner.token_by_digest(digest).await
    }
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.inner.tokens().await
    }
    async fn revoke_token(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        self.inner.revoke_token(id, at).await
    }
    async fn get_instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        self.inner.get_instance(id).await
    }
    async fn process_facts(
        &self,
        process: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, Vec<FactRecord>)>, StoreError> {
        self.inner.process_facts(process, after, limit).await
    }
    async fn list_instances(&self, q: &InstanceQuery) -> Result<Vec<InstanceRecord>, StoreError> {
        self.inner.list_instances(q).await
    }
    async fn trace(&self, id: &str) -> Result<Vec<TraceRecord>, StoreError> {
        self.inner.trace(id).await
    }
    async fn links(&self, id: &str) -> Result<Links, StoreError> {
        self.inner.links(id).await
    }
    async fn heads(&self, ids: &[String]) -> Result<Vec<InstanceHead>, StoreError> {
        self.inner.heads(ids).await
    }
    async fn answer(&self, actor: &str, key: &str) -> Result<Option<StoredAnswer>, StoreError> {
        self.inner.answer(actor, key).await
    }
    async fn purge_answers(&self, before: i64) -> Result<u64, StoreError> {
        self.inner.purge_answers(before).await
    }
    async fn claim_due_instances(&self, c: &Claim) -> Result<Vec<InstanceRecord>, StoreError> {
        self.inner.claim_due_instances(c).await
    }
    async fn write_checkpoint(&self, at: i64) -> Result<Option<Checkpoint>, StoreError> {
        self.inner.write_checkpoint(at).await
    }
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.inner.checkpoints().await
    }
    async fn claim_deliveries(&self, c: &Claim) -> Result<Vec<Delivery>, StoreError> {
        self.inner.claim_deliveries(c).await
    }
    async fn record_delivery(&self, id: &str, outcome: &DeliveryOutcome) -> Result<(), StoreError> {
        self.inner.record_delivery(id, outcome).await
    }

    async fn commit(&self, step: Step) -> Result<(), StoreError> {
        let shard = self.shard_for(&step);
        let (queue, counters) = (&self.queues[shard], &self.counters[shard]);
        if queue.capacity() == queue.max_capacity()
            && let Some(_claim) = counters.claim_inline(self.inline_after)
        {
            let started = Instant::now();
            let result = self.inner.commit(step).await;
            counters.add(1, started.elapsed());
            return result;
        }
        let (reply, answer) = oneshot::channel();
        queue
            .try_send(Pending { step, reply })
            .map_err(|_| StoreError::Busy)?;
        // Once queued, the step is written or refused by the writer; never dropped.
        answer
            .await
            .map_err(|_| StoreError::Batch("the writer stopped".into()))?
    }

    async fn commit_batch(&self, steps: &[Step]) -> Vec<Result<(), StoreError>> {
        self.inner.commit_batch(steps).await
    }

    fn writer_stats(&self) -> Vec<WriterStats> {
        self.counters.iter().map(|c| c.read()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{InstanceWrite, MemoryStore};

    /// A store whose commits take a while, so the writer stays busy; it says when a commit
    /// starts, and notes the id of the step's instance and the thread that wrote it.
    #[derive(Debug, Default)]
    struct SlowStore(
        MemoryStore,
        tokio::sync::Notify,
        std::sync::Mutex<Vec<(String, String)>>,
    );

    #[async_trait]
    impl Store for SlowStore {
        async fn save_definition(&self, d: &StoredDefinition) -> Result<i64, StoreError> {
            self.0.save_definition(d).await
        }
        async fn definition_versions(
            &self,
            process: &str,
        ) -> Result<Vec<DefinitionVersion>, StoreError> {
            self.0.definition_versions(process).await
        }
        async fn save_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
            self.0.save_token(token).await
        }
        async fn token_by_digest(&self, d: &str) -> Result<Option<TokenRecord>, StoreError> {
            self.0.token_by_digest(d).await
        }
        async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
            self.0.tokens().await
        }
        async fn revoke_token(&self, id: &str, at: i64) -> Result<bool, StoreError> {
            self.0.revoke_token(id, at).await
        }
        async fn save_kpi_set(&self, hash: &str, source: &str) -> Result<i64, StoreError> {
            self.0.save_kpi_set(hash, source).await
        }
        async fn kpi_set_source(&self, hash: &str) -> Result<Option<String>, StoreError> {
            self.0.kpi_set_source(hash).await
        }
        async fn save_report_snapshot(&self, s: &StoredSnapshot) -> Result<(), StoreError> {
            self.0.save_report_snapshot(s).await
        }
        async fn report_snapshot(&self, h: &str) -> Result<Option<StoredSnapshot>, StoreError> {
            self.0.report_snapshot(h).await
        }
        async fn load_definition(&self, h: &str) -> Result<Option<StoredDefinition>, StoreError> {
            self.0.load_definition(h).await
        }
        async fn get_instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
            self.0.get_instance(id).await
        }
        async fn list_instances(
            &self,
            q: &InstanceQuery,
        ) -> Result<Vec<InstanceRecord>, StoreError> {
            self.0.list_instances(q).await
        }
        async fn trace(&self, id: &str) -> Result<Vec<TraceRecord>, StoreError> {
            self.0.trace(id).await
        }
        async fn links(&self, id: &str) -> Result<Links, StoreError> {
            self.0.links(id).await
        }
        async fn heads(&self, ids: &[String]) -> Result<Vec<InstanceHead>, StoreError> {
            self.0.heads(ids).await
        }
        async fn answer(&self, a: &str, k: &str) -> Result<Option<StoredAnswer>, StoreError> {
            self.0.answer(a, k).await
        }
        async fn purge_answers(&self, before: i64) -> Result<u64, StoreError> {
            self.0.purge_answers(before).await
        }
        async fn claim_due_instances(&self, c: &Claim) -> Result<Vec<InstanceRecord>, StoreError> {
            self.0.claim_due_instances(c).await
        }
        async fn claim_deliveries(&self, c: &Claim) -> Result<Vec<Delivery>, StoreError> {
            self.0.claim_deliveries(c).await
        }
        async fn write_checkpoint(&self, at: i64) -> Result<Option<Checkpoint>, StoreError> {
            self.0.write_checkpoint(at).await
        }
        async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
            self.0.checkpoints().await
        }
        async fn record_delivery(
            &self,
            id: &str,
            outcome: &DeliveryOutcome,
        ) -> Result<(), StoreError> {
            self.0.record_delivery(id, outcome).await
        }
        async fn commit(&self, step: Step) -> Result<(), StoreError> {
            let id = step.writes.first().map(|w| w.instance.id.clone());
            let thread = std::thread::current().name().unwrap_or("").to_owned();
            self.2
                .lock()
                .unwrap()
                .push((id.unwrap_or_default(), thread));
            self.1.notify_one();
            tokio::time::sleep(Duration::from_millis(200)).await;
            self.0.commit(step).await
        }
    }

    fn create(id: &str) -> Step {
        Step {
            writes: vec![InstanceWrite {
                instance: std::sync::Arc::new(InstanceRecord {
                    id: id.into(),
                    process: "p".into(),
                    definition_hash: "h".into(),
                    state: "a".into(),
                    data: Default::default(),
                    version: 1,
                    created_by: "x".into(),
                    created_at: 0,
                    updated_at: 0,
                    votes: Vec::new(),
                    slas: Vec::new(),
                    trace_hash: String::new(),
                    timers: Vec::new(),
                }),
                previous_version: None,
            }],
            ..Step::default()
        }
    }

    #[test]
    fn a_writer_on_a_thread_of_its_own_commits_while_the_engine_thread_is_busy() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Its commit waits on a timer, as a database's on its disk.
        let inner = Arc::new(SlowStore::default());
        runtime.block_on(async {
            let store = GroupCommit::new(inner.clone(), GroupCommitConfig::default()).unwrap();
            let caller = tokio::spawn(async move { store.commit(create("a")).await });
            tokio::task::yield_now().await; // the caller queues its step
            // The engine's only thread now blocks: a writer among its tasks could not run.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while futures::executor::block_on(inner.get_instance("a"))
                .unwrap()
                .is_none()
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the step was not written"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(caller.await.unwrap().is_ok());
        });
    }

    #[tokio::test]
    async fn the_writer_counts_its_commits_the_steps_they_carried_refused_ones_too_and_its_busy_time()
     {
        let inner = Arc::new(SlowStore::default());
        let config = GroupCommitConfig::default();
        let store = Arc::new(GroupCommit::new(inner.clone(), config).unwrap());
        assert_eq!(store.writer_stats(), vec![WriterStats::default()]);
        let started = Instant::now();
        let commit = |id: &'static str| {
            let s = store.clone();
            tokio::spawn(async move { s.commit(create(id)).await })
        };
        let first = commit("a");
        inner.1.notified().await; // the writer is writing `a` alone
        // The next three wait for it and make one batch; `a` again loses its race.
        let rest = [commit("b"), commit("c"), commit("a")];
        while store.queues[0].capacity() > config.queue - 3 {
            tokio::task::yield_now().await;
        }
        assert!(first.await.unwrap().is_ok());
        let [b, c, again] = rest;
        assert!(b.await.unwrap().is_ok());
        assert!(c.await.unwrap().is_ok());
        assert!(matches!(again.await.unwrap(), Err(StoreError::Conflict)));
        let stats = store.writer_stats();
        assert_eq!(stats.len(), 1);
        let w = stats[0];
        assert_eq!((w.commits, w.steps), (2, 4));
        assert_eq!(w.steps_per_commit(), 2.0);
        // Four commits of the inner store, 200 ms each, within the time the test took.
        assert!(w.busy >= Duration::from_millis(800), "{w:?}");
        assert!(w.busy <= started.elapsed(), "{w:?}");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_new_steps_and_keeps_every_accepted_one() {
        let inner = Arc::new(SlowStore::default());
        let config = GroupCommitConfig {
            max_batch: 1,
            queue: 1,
            ..GroupCommitConfig::default()
        };
        let store = Arc::new(GroupCommit::new(inner.clone(), config).unwrap());
        let first = tokio::spawn({
            let s = store.clone();
            async move { s.commit(create("a")).await }
        });
        inner.1.notified().await; // the writer is writing `a`
        let second = tokio::spawn({
            let s = store.clone();
            async move { s.commit(create("b")).await }
        });
        while store.queues[0].capacity() > 0 {
            tokio::task::yield_now().await; // until `b` waits in the queue
        }
        assert!(matches!(
            store.commit(create("c")).await,
            Err(StoreError::Busy)
        ));
        assert!(first.await.unwrap().is_ok());
        assert!(second.await.unwrap().is_ok());
        assert!(inner.get_instance("a").await.unwrap().is_some());
        assert!(inner.get_instance("b").await.unwrap().is_some());
        assert!(inner.get_instance("c").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_lone_client_writes_on_its_own_task_after_a_streak_of_lone_commits_until_a_batch() {
        let inner = Arc::new(SlowStore::default());
        let config = GroupCommitConfig {
            inline_after: 2,
            ..GroupCommitConfig::default()
        };
        let store = Arc::new(GroupCommit::new(inner.clone(), config).unwrap());
        let commit = |id: &'static str| {
            let s = store.clone();
            tokio::spawn(async move { s.commit(create(id)).await })
        };
        for id in ["a", "b", "c"] {
            assert!(commit(id).await.unwrap().is_ok()); // two lone commits, then `c` inline
        }
        inner.1.notified().await; // the commits so far left their notice
        let d = commit("d");
        inner.1.notified().await; // `d` is being written, inline: the next goes to the writer
        let e = commit("e");
        inner.1.notified().await; // the writer is writing `e` alone
        let (f, g) = (commit("f"), commit("g"));
        while store.queues[0].capacity() > config.queue - 2 {
            tokio::task::yield_now().await; // `f` and `g` wait: one batch, the streak ends
        }
        for step in [d, e, f, g] {
            assert!(step.await.unwrap().is_ok());
        }
        assert!(commit("h").await.unwrap().is_ok());
        let writer = "opsflow-writer-0";
        let wrote: Vec<(String, bool)> = inner
            .2
            .lock()
            .unwrap()
            .iter()
            .map(|(id, thread)| (id.clone(), thread == writer))
            .collect();
        let by_writer = |ids: &str| {
            ids.chars()
                .map(|c| (c.to_string(), true))
                .collect::<Vec<_>>()
        };
        let mut want = by_writer("ab");
        want.extend([("c".to_string(), false), ("d".to_string(), false)]);
        want.extend(by_writer("efgh"));
        assert_eq!(wrote, want);
        let w = store.writer_stats()[0];
        assert_eq!((w.commits, w.steps), (7, 8));
    }
}
