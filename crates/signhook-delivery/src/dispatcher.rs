//! The dispatcher: the loop of one node that decides what to send when.
//!
//! Work reaches it two ways. Deliveries created by a publish on this node
//! arrive already claimed through the [`Handoff`] and are queued at once.
//! The rest — retries, resends, recoveries, operational events, other
//! nodes' work, a dead node's leases — is claimed from the database in
//! batches under a lease, when the [`Agenda`](crate::agenda) says some may
//! be due: it keeps the earliest instant work is known to fall due, as an
//! absolute instant that no other activity moves, so a retry leaves on
//! time however busy the node is (the store announces every retry it
//! records, see [`signhook_store::work`]).
//!
//! One question to the database is under way at a time (a claim, or a look
//! at when work falls due), and the loop does not wait for it: while a
//! claim waits its turn at the database's writer, which may be busy
//! recording a batch, handed-over deliveries are queued and sent, ended
//! sends free their lanes and announcements reach the agenda. Fresh events
//! behind a backlog's claims thus wait for no claim (`signhook-bench drain`).
//!
//! Both kinds wait in their subscription's lane ([`Lanes`]), first come
//! first served; the lanes take turns to start send tasks, and the node's
//! send slots go to the waiting tasks in the order they asked, so neither
//! kind starves the other and one tenant's flood does not hold up another
//! tenant's retry. A recorder writes the results back in batches (one
//! transaction per batch).
//!
//! The dispatcher reaches its work through a [`WorkQueue`] (the store's
//! deliveries, for webhooks): claim, look ahead, record, release, and the
//! announcements of work written; it makes each attempt through the
//! queue's [`Attempter`] ([`WebhookAttempts`] for webhooks). Nothing here
//! depends on what an item is beyond its [`Claim`]: the inbox's forwards
//! run through the same loop.
//!
//! Shutdown (the token given to [`Dispatcher::run`]): claiming stops at once
//! and what waits in the lanes is released, with what a claim under way
//! brings; sends in flight get
//! `shutdown_grace` to finish and be recorded; any still running then are
//! abandoned and their claims released, so they are due again immediately
//! after a restart (or on another node). A crash skips all that: the node
//! started again under the same id gives its leases back before its
//! dispatcher runs (see [`signhook_store::claims`]); another node takes
//! them when they expire.

use crate::agenda::{Agenda, Claimed, FAILED_GAP};
use crate::lanes::{Lanes, Start};
use crate::metrics::DeliveryMetrics;
use crate::queue::{Attempter, Claim, HeldOf, LaneOf, WorkQueue};
use crate::sender::{self, error_chain, Outbound, SendResult};
use crate::DeliveryError;
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::SeedableRng;
use signhook_core::ids::AttemptId;
use signhook_core::netguard::AddressPolicy;
use signhook_core::retry::{decide, Decision, RetryPolicy};
use signhook_core::time::{to_millis, Clock};
use signhook_store::claims::{ClaimedDelivery, Lease};
use signhook_store::deliveries::{Attempt, AttemptRecord};
use signhook_store::{Store, StoreError};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How the dispatcher behaves; resolved once from flags.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// This node's id, recorded on every lease and attempt.
    pub node_id: String,
    /// The retry schedule.
    pub retry_policy: RetryPolicy,
    /// How long one attempt may take.
    pub request_timeout: Duration,
    /// How long a claim holds: longer than waiting for a lane plus any
    /// attempt, so that only a dead node's claims ever expire.
    pub lease: Duration,
    /// The most deliveries claimed at once.
    pub batch_size: u32,
    /// The most sends in flight on this node.
    pub max_in_flight: usize,
    /// The longest the dispatcher goes without a claim: a safety net for
    /// work nobody announced (a dead node's leases ending).
    pub idle_poll: Duration,
    /// How long in-flight sends may finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// The most sends in flight to one subscription on this node.
    pub per_subscription_in_flight: usize,
    /// Which endpoint addresses may be reached (the SSRF guard).
    pub addresses: Arc<AddressPolicy>,
    /// The operator's proxy for deliveries, if any (`--outbound-proxy`);
    /// proxy variables in the environment are never used.
    pub outbound_proxy: Option<url::Url>,
    /// Where attempts are counted.
    pub metrics: DeliveryMetrics,
    /// The `signhook listen` sockets this node holds, which relay
    /// subscriptions' attempts go over.
    pub relays: crate::RelayHub,
}

impl DispatcherConfig {
    /// The defaults for a node named `node_id` with the given schedule and
    /// request timeout.
    pub fn new(node_id: String, retry_policy: RetryPolicy, request_timeout: Duration) -> Self {
        Self {
            node_id,
            retry_policy,
            request_timeout,
            // Long enough for a delivery to wait its turn in a lane behind
            // one full timeout and then take one itself.
            lease: request_timeout * 2 + Duration::from_secs(30),
            batch_size: 200,
            max_in_flight: 512,
            idle_poll: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10).min(request_timeout),
            per_subscription_in_flight: 10,
            addresses: Arc::new(AddressPolicy::default()),
            outbound_proxy: None,
            metrics: DeliveryMetrics::default(),
            relays: crate::RelayHub::default(),
        }
    }
}

/// The most deliveries a node claims into its lanes; beyond, claims wait
/// (and handed-over work may go on up to [`MAX_HANDED_OVER`]).
/// Each queued delivery is a send task waiting for its lane's turn, so the
/// queue is kept to a couple of lane-fulls of a busy node (100 lanes of 10
/// in flight): `signhook-bench mixed` ran 9 % faster with 2,000 than with
/// 10,000 (BENCHMARKS.md).
const MAX_QUEUED: usize = 2_000;

/// The most deliveries a node keeps queued counting those handed over at
/// publish: claims stop at [`MAX_QUEUED`], and the room above it is fresh
/// work's, so a backlog claimed from the database never sends this node's
/// new events back to it (which would cost them a write and a claim).
const MAX_HANDED_OVER: usize = 2 * MAX_QUEUED;

/// Hands deliveries that a publish on this node claimed for it straight to
/// its dispatcher, which sends them at once: no claim round trip between a
/// commit and the send. Cheap to clone.
#[derive(Debug)]
pub struct Handoff<C = ClaimedDelivery> {
    queue: mpsc::UnboundedSender<Vec<C>>,
    node_id: String,
    lease: Duration,
}

// Not derived: a derive would ask `C: Clone`, which claims need not be.
impl<C> Clone for Handoff<C> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            node_id: self.node_id.clone(),
            lease: self.lease,
        }
    }
}

impl<C> Handoff<C> {
    /// The claim a publish at `now` takes on its deliveries for this node.
    pub fn lease(&self, now: DateTime<Utc>) -> Lease {
        Lease {
            node_id: self.node_id.clone(),
            until: now + self.lease,
        }
    }

    /// The node the claims are taken for.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Gives claimed deliveries to the dispatcher. Returns them if it has
    /// stopped (the caller releases them, or their lease ends).
    pub fn send(&self, claims: Vec<C>) -> Result<(), Vec<C>> {
        if claims.is_empty() {
            return Ok(());
        }
        self.queue.send(claims).map_err(|e| e.0)
    }
}

/// A question to the database in flight. The loop polls it beside
/// everything else, so sends, handovers and announcements go on while a
/// claim waits for the database's writer.
type Call<Q> = Pin<Box<dyn Future<Output = Answer<Q>> + Send>>;

/// What the database answered a [`Call`].
enum Answer<Q: WorkQueue> {
    /// A claim that began at `started` (the store's `now`), of at most
    /// `limit` deliveries.
    Claimed {
        started: Instant,
        now: DateTime<Utc>,
        limit: u32,
        claims: Result<Vec<Q::Item>, StoreError>,
    },
    /// When work is next due: after a claim that began at `started` and
    /// took `taken`, or, with `taken: None`, the safety net's look.
    NextDue {
        started: Instant,
        now: DateTime<Utc>,
        taken: Option<usize>,
        next: Result<Option<DateTime<Utc>>, StoreError>,
    },
}

/// A send's result, or the claim given back unsent.
enum Finished<Q: WorkQueue> {
    Attempted(Box<Q::Record>),
    Abandoned(HeldOf<Q>),
}

/// The delivery loop of one node, over the work of `Q` (the store's
/// webhook deliveries unless said otherwise), each attempt made by `A`.
pub struct Dispatcher<Q: WorkQueue = Store, A = WebhookAttempts> {
    queue: Q,
    config: DispatcherConfig,
    clock: Arc<dyn Clock>,
    attempts: Arc<A>,
    handoff: Handoff<Q::Item>,
    handoff_rx: Option<mpsc::UnboundedReceiver<Vec<Q::Item>>>,
}

/// What a running dispatcher holds; only its loop touches it.
struct Node<Q: WorkQueue> {
    agenda: Agenda,
    lanes: Lanes<Q::Item>,
    /// The node's send slots (`max_in_flight`), taken by tasks holding a
    /// turn of their lane, first come first served.
    slots: Arc<Semaphore>,
    /// Send tasks (sending or waiting), each known by its subscription.
    in_flight: JoinSet<()>,
    sending_to: HashMap<tokio::task::Id, LaneOf<Q>>,
    /// The lanes the last claim left out because they were full: when one
    /// has room again, its due work may be claimed.
    left_out: HashSet<LaneOf<Q>>,
    /// Claims to give back to the database, due at once.
    to_release: Vec<HeldOf<Q>>,
    results: mpsc::UnboundedSender<Finished<Q>>,
    /// Cancelled when the shutdown grace runs out.
    abandon: CancellationToken,
}

impl<Q: WorkQueue<Item = ClaimedDelivery, Record = AttemptRecord>> Dispatcher<Q, WebhookAttempts> {
    /// A dispatcher of webhooks over the work of `queue`.
    pub fn new(queue: Q, config: DispatcherConfig, clock: Arc<dyn Clock>) -> Result<Self, DeliveryError> {
        let attempts = WebhookAttempts::new(&config, clock.clone())?;
        Ok(Self::with_attempts(queue, attempts, config, clock))
    }
}

impl<Q: WorkQueue, A: Attempter<Q>> Dispatcher<Q, A> {
    /// A dispatcher over the work of `queue`, each attempt made by
    /// `attempts`.
    pub fn with_attempts(queue: Q, attempts: A, config: DispatcherConfig, clock: Arc<dyn Clock>) -> Self {
        let (handed_over, handoff_rx) = mpsc::unbounded_channel();
        let handoff = Handoff {
            queue: handed_over,
            node_id: config.node_id.clone(),
            lease: config.lease,
        };
        Self {
            queue,
            config,
            clock,
            attempts: Arc::new(attempts),
            handoff,
            handoff_rx: Some(handoff_rx),
        }
    }

    /// A handle that gives this dispatcher deliveries claimed at publish.
    pub fn handoff(&self) -> Handoff<Q::Item> {
        self.handoff.clone()
    }

    /// Runs until `shutdown` is cancelled, then drains as described in the
    /// module docs. Returns an error only if the store stays unusable.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), DeliveryError> {
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(record_results(
            self.queue.clone(),
            self.handoff.clone(),
            self.clock.clone(),
            results_rx,
            shutdown.clone(),
        ));
        let other_nodes = Arc::new(Notify::new());
        let listener = self.listen_for_other_nodes(other_nodes.clone()).await;
        let work = self.queue.announcements();
        let mut handed_over = self.handoff_rx.take().expect("run is called once");
        let mut node = Node {
            agenda: Agenda::new(Instant::now(), self.config.idle_poll),
            lanes: Lanes::new(self.config.per_subscription_in_flight),
            slots: Arc::new(Semaphore::new(self.config.max_in_flight.max(1))),
            in_flight: JoinSet::new(),
            sending_to: HashMap::new(),
            left_out: HashSet::new(),
            to_release: Vec::new(),
            results: results_tx,
            abandon: CancellationToken::new(),
        };
        let mut call: Option<Call<Q>> = None;

        while !shutdown.is_cancelled() {
            // Take in all that happened since the last turn, then claim if
            // the agenda says so — on every turn, so that no stream of
            // other events can keep a claim from happening — and start the
            // send tasks the lanes have room for.
            while let Some(ended) = node.in_flight.try_join_next_with_id() {
                self.ended(ended, &mut node);
            }
            while let Ok(claims) = handed_over.try_recv() {
                self.take_in(claims, &mut node);
            }
            if let Some(at) = work.take() {
                node.agenda.due_at(self.instant(at));
            }
            let now = Instant::now();
            if call.is_none() && node.lanes.queued() < MAX_QUEUED && node.agenda.is_due(now) {
                call = Some(if node.agenda.work_is_due(now) {
                    self.claim(&mut node)
                } else {
                    self.next_due(&mut node, now, self.clock.now(), None)
                });
            }
            self.start_sends(&mut node);
            self.release(&mut node).await;

            // While the lanes are full to the brim, a due claim waits for
            // sends to end instead of for its instant (passed already).
            let may_claim = call.is_none() && node.lanes.queued() < MAX_QUEUED;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {}
                answer = async { call.as_mut().expect("polled only while asked").await }, if call.is_some() => {
                    call = self.answered(answer, &mut node);
                }
                Some(ended) = node.in_flight.join_next_with_id(), if !node.in_flight.is_empty() => {
                    self.ended(ended, &mut node);
                }
                Some(claims) = handed_over.recv() => self.take_in(claims, &mut node),
                at = work.next() => node.agenda.due_at(self.instant(at)),
                _ = other_nodes.notified() => node.agenda.due_at(Instant::now()),
                _ = tokio::time::sleep_until(node.agenda.next_claim()), if may_claim => {}
            }
        }

        if let Some(listener) = listener {
            listener.abort();
        }
        self.stop(node, handed_over, call).await;
        recorder
            .await
            .map_err(|_| DeliveryError::Store(signhook_store::StoreError::Corrupt("recorder panicked".into())))?;
        Ok(())
    }

    /// Stops: what was handed over or claimed and never started goes back,
    /// due at once; sends in flight get the shutdown grace to finish, then
    /// are abandoned and their claims released. Returns once every result
    /// was passed to the recorder.
    async fn stop(
        &self,
        mut node: Node<Q>,
        mut handed_over: mpsc::UnboundedReceiver<Vec<Q::Item>>,
        call: Option<Call<Q>>,
    ) {
        handed_over.close();
        // A claim under way may have taken deliveries already: they go back
        // with the rest.
        if let Some(call) = call {
            if let Answer::Claimed { claims: Ok(claims), .. } = call.await {
                node.to_release.extend(claims.iter().map(Claim::held));
            }
        }
        while let Ok(claims) = handed_over.try_recv() {
            node.to_release.extend(claims.iter().map(Claim::held));
        }
        node.to_release.extend(node.lanes.drain().iter().map(Claim::held));
        self.release(&mut node).await;
        let Node {
            abandon,
            mut in_flight,
            results,
            ..
        } = node;
        tracing::info!(
            in_flight = in_flight.len(),
            "dispatcher stopping: finishing sends in flight"
        );
        let drained = tokio::time::timeout(self.config.shutdown_grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                abandoned = in_flight.len(),
                "sends still running after the grace period; releasing their claims"
            );
            abandon.cancel();
            while in_flight.join_next().await.is_some() {}
        }
        drop(results);
    }

    /// Queues deliveries claimed at publish in their lanes; beyond what the
    /// node keeps waiting, they go back to the database.
    fn take_in(&self, claims: Vec<Q::Item>, node: &mut Node<Q>) {
        for claim in claims {
            if node.lanes.queued() < MAX_HANDED_OVER {
                node.lanes.push(claim);
            } else {
                node.to_release.push(claim.held());
            }
        }
    }

    /// Asks the database for due deliveries, up to the room the lanes have
    /// left. The lanes it leaves out (full now) are the ones whose room, when
    /// it comes back, makes a claim due again (see `ended`).
    fn claim(&self, node: &mut Node<Q>) -> Call<Q> {
        let (started, now) = (Instant::now(), self.clock.now());
        let room = MAX_QUEUED.saturating_sub(node.lanes.queued());
        let limit = u32::try_from(room).unwrap_or(u32::MAX).min(self.config.batch_size);
        let per_lane = node.lanes.claim_per_subscription();
        let skip = node.lanes.full();
        node.left_out = skip.iter().cloned().collect();
        let (queue, node_id, lease_until) = (self.queue.clone(), self.config.node_id.clone(), now + self.config.lease);
        Box::pin(async move {
            let claims = queue.claim(&node_id, now, lease_until, limit, per_lane, &skip).await;
            Answer::Claimed {
                started,
                now,
                limit,
                claims,
            }
        })
    }

    /// Asks the database when work it holds for this node falls due next,
    /// outside the lanes full now: after a claim that took `taken` and could
    /// have taken more, or (`taken: None`) as the safety net's look.
    fn next_due(&self, node: &mut Node<Q>, started: Instant, now: DateTime<Utc>, taken: Option<usize>) -> Call<Q> {
        let left_out = node.lanes.full();
        node.left_out = left_out.iter().cloned().collect();
        let (queue, node_id) = (self.queue.clone(), self.config.node_id.clone());
        Box::pin(async move {
            let next = queue.next_due_at(&node_id, &left_out).await;
            Answer::NextDue {
                started,
                now,
                taken,
                next,
            }
        })
    }

    /// Takes in what the database answered: claimed deliveries go to their
    /// lanes, and the agenda learns what is left. Returns the question that
    /// follows, if any: when work falls due next after a claim that could
    /// have taken more, or the claim after a look that found work due.
    fn answered(&self, answer: Answer<Q>, node: &mut Node<Q>) -> Option<Call<Q>> {
        match answer {
            Answer::Claimed {
                started,
                now,
                limit,
                claims,
            } => {
                let claims = match claims {
                    Ok(claims) => claims,
                    Err(e) => {
                        tracing::error!(error = %error_chain(&e), "claiming due deliveries failed; retrying shortly");
                        node.agenda.failed(started);
                        return None;
                    }
                };
                let taken = claims.len();
                self.config.metrics.observe_claim(taken);
                for claim in claims {
                    node.lanes.push(claim);
                }
                if taken < limit as usize {
                    return Some(self.next_due(node, started, now, Some(taken)));
                }
                // More may be due at once; the lanes full now wait for room.
                node.left_out = node.lanes.full().into_iter().collect();
                node.agenda.claimed(
                    started,
                    Claimed {
                        taken,
                        full: true,
                        next_due: None,
                    },
                );
                None
            }
            Answer::NextDue {
                started,
                now,
                taken,
                next,
            } => {
                let next_due = match next {
                    Ok(next) => next.map(|at| instant_of(at, started, now)),
                    Err(e) => {
                        tracing::warn!(error = %error_chain(&e), "could not read when work falls due next; looking again shortly");
                        if taken.is_none() {
                            node.agenda.failed(started);
                            return None;
                        }
                        Some(started + FAILED_GAP)
                    }
                };
                // The safety net's look found work due: claim it (a look
                // never takes the database's writer otherwise).
                if taken.is_none() && next_due.is_some_and(|at| at <= started) {
                    node.agenda.due_at(started);
                    return Some(self.claim(node));
                }
                node.agenda.claimed(
                    started,
                    Claimed {
                        taken: taken.unwrap_or(0),
                        full: false,
                        next_due,
                    },
                );
                None
            }
        }
    }

    /// Starts send tasks for what the lanes have room for, in turn. A
    /// delivery that waited half its lease in its lane goes back to the
    /// database instead: its lease might end before its attempt, and
    /// another node would send it too.
    fn start_sends(&self, node: &mut Node<Q>) {
        let half_lease = i64::try_from(self.config.lease.as_millis() / 2).unwrap_or(i64::MAX);
        let now = to_millis(self.clock.now());
        while let Some(start) = node.lanes.next_start() {
            if start.claim.lease_until() - now < half_lease {
                node.lanes.finished(start.claim.lane());
                node.to_release.push(start.claim.held());
                continue;
            }
            self.spawn_send(start, node);
        }
    }

    /// Runs one send in its own task: it waits for a turn of its lane, its
    /// lane's rate limit and a send slot of the node, then makes the
    /// attempt. Ending, it frees the turn at once for the lane's next task.
    fn spawn_send(&self, start: Start<Q::Item>, node: &mut Node<Q>) {
        let Start { claim, turn, rate } = start;
        let attempts = self.attempts.clone();
        let slots = node.slots.clone();
        let results = node.results.clone();
        let abandon = node.abandon.clone();
        let lane = claim.lane().clone();
        let task = node.in_flight.spawn(async move {
            let finished = tokio::select! {
                record = async {
                    // Neither is ever closed.
                    let _turn = turn.acquire_owned().await.expect("a lane's turns stay open");
                    if let Some(limit) = rate {
                        limit.until_ready().await;
                    }
                    let _slot = slots.acquire_owned().await.expect("the send slots stay open");
                    // Boxed: a task waiting for its turn stays small.
                    Box::pin(attempts.attempt(&claim)).await
                } => Finished::Attempted(Box::new(record)),
                _ = abandon.cancelled() => Finished::Abandoned(claim.held()),
            };
            // The recorder outlives every send task; a closed channel
            // only happens when the process is already going down.
            let _ = results.send(finished);
        });
        node.sending_to.insert(task.id(), lane);
    }

    /// A send task ended: its place in its lane is free. If that lane was
    /// left out of the last claim, its due work may be claimed now.
    fn ended(&self, ended: Result<(tokio::task::Id, ()), tokio::task::JoinError>, node: &mut Node<Q>) {
        let id = match ended {
            Ok((id, ())) => id,
            Err(e) => {
                tracing::error!(error = %e, "a send task failed; its delivery goes out again when its lease ends");
                e.id()
            }
        };
        let Some(subscription) = node.sending_to.remove(&id) else {
            return;
        };
        node.lanes.finished(&subscription);
        if node.left_out.contains(&subscription) && !node.lanes.is_full(&subscription) {
            node.left_out.remove(&subscription);
            node.agenda.due_at(Instant::now());
        }
    }

    /// Gives back what the node will not send itself, due at once.
    async fn release(&self, node: &mut Node<Q>) {
        if node.to_release.is_empty() {
            return;
        }
        let claims = std::mem::take(&mut node.to_release);
        if let Err(e) = self
            .queue
            .release(&self.config.node_id, &claims, self.clock.now())
            .await
        {
            // Not fatal: their leases end by themselves.
            tracing::warn!(error = %error_chain(&e), "could not hand back claims; their leases will end");
        }
    }

    /// The tokio instant of the store's time `at`, as of now.
    fn instant(&self, at: DateTime<Utc>) -> Instant {
        instant_of(at, Instant::now(), self.clock.now())
    }

    /// On a shared database, tells this dispatcher whenever another node
    /// makes work due (PostgreSQL `LISTEN`), so an idle node's latency does
    /// not depend on the poll interval. Without it, polling still finds the
    /// work.
    async fn listen_for_other_nodes(&self, wake: Arc<Notify>) -> Option<tokio::task::JoinHandle<()>> {
        let mut listener = match self.queue.other_nodes().await {
            Ok(listener) => listener?,
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "cannot listen for other nodes' publishes; polling only");
                return None;
            }
        };
        Some(tokio::spawn(async move {
            loop {
                if let Err(e) = listener.recv().await {
                    // The listener reconnects on its next call; work may have
                    // been announced meanwhile, so look for it.
                    tracing::warn!(error = %error_chain(&e), "lost the notification connection; reconnecting");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                // Stores a permit when the dispatcher is busy: not lost.
                wake.notify_one();
            }
        }))
    }
}

/// The tokio instant of the store's time `at`, given that `instant` was
/// `now`: a time already past is `instant` itself, so a claim that began at
/// `instant` can tell what was due before it began.
fn instant_of(at: DateTime<Utc>, instant: Instant, now: DateTime<Utc>) -> Instant {
    instant + (at - now).to_std().unwrap_or(Duration::ZERO)
}

/// How a webhook's attempt is made: sign the event's envelope, POST it to
/// the subscription's endpoint through the guarded client, decide what
/// follows with the subscription's retry rules. The store's deliveries'
/// [`Attempter`].
pub struct WebhookAttempts {
    outbound: Outbound,
    clock: Arc<dyn Clock>,
    policy: RetryPolicy,
    timeout: Duration,
    node_id: String,
    metrics: DeliveryMetrics,
}

impl WebhookAttempts {
    /// The attempts `config` describes (timeout, schedule, address policy,
    /// proxy, metrics).
    pub fn new(config: &DispatcherConfig, clock: Arc<dyn Clock>) -> Result<Self, DeliveryError> {
        let outbound = Outbound::new(
            config.request_timeout,
            config.addresses.clone(),
            config.outbound_proxy.as_ref(),
        )?
        .with_relays(config.relays.clone());
        Ok(Self {
            outbound,
            clock,
            policy: config.retry_policy.clone(),
            timeout: config.request_timeout,
            node_id: config.node_id.clone(),
            metrics: config.metrics.clone(),
        })
    }
}

impl<Q: WorkQueue<Item = ClaimedDelivery, Record = AttemptRecord>> Attempter<Q> for WebhookAttempts {
    /// Makes one attempt and decides what follows. Can take up to the
    /// request timeout.
    async fn attempt(&self, claim: &ClaimedDelivery) -> AttemptRecord {
        let result: SendResult = sender::send(&self.outbound, claim, self.timeout, self.clock.now()).await;
        let mut rng = StdRng::from_entropy();
        let decision = decide(
            result.outcome,
            claim.schedule_attempt,
            claim.subscription.auto_retry,
            &self.policy,
            &mut rng,
        );
        let decided_at = self.clock.now();
        log_decision(claim, &result, decision);
        let late = (result.started_at - claim.due_at).to_std().unwrap_or(Duration::ZERO);
        self.metrics.observe(decision, result.duration, late);
        let error_kind = result.outcome.error_kind();
        AttemptRecord {
            delivery_id: claim.delivery_id.clone(),
            lease_until: claim.lease_until,
            attempt: Attempt {
                id: AttemptId::generate(),
                attempt_number: claim.attempt_number,
                started_at: result.started_at,
                duration_ms: u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX),
                status_code: result.status_code,
                response_body: result.response_body,
                error_kind,
                error_message: result.error_message,
                node_id: self.node_id.clone(),
                location: result.location,
                scheduled_at: Some(claim.due_at),
                request_headers: result.request_headers,
            },
            ordered: claim.ordering_key.is_some(),
            decision,
            decided_at,
            subscription_id: claim.subscription.id.clone(),
            event_type: claim.event.event_type.clone(),
        }
    }
}

fn log_decision(claim: &ClaimedDelivery, result: &SendResult, decision: Decision) {
    let delivery = claim.delivery_id.as_str();
    let attempt = claim.attempt_number;
    let status = result.status_code;
    match decision {
        Decision::Succeeded => tracing::debug!(delivery, attempt, status, "delivered"),
        Decision::RetryAfter { delay, reason } => {
            tracing::info!(
                delivery,
                attempt,
                status,
                reason,
                retry_in_ms = delay.as_millis() as u64,
                "attempt failed; will retry"
            )
        }
        Decision::DeadLetter { reason } => {
            tracing::warn!(
                delivery,
                attempt,
                status,
                reason,
                "attempt failed; delivery dead-lettered"
            )
        }
        Decision::DisableSubscription { reason } => {
            tracing::warn!(
                delivery,
                attempt,
                status,
                reason = reason.as_str(),
                "endpoint is gone; disabling its subscription"
            )
        }
    }
}

/// How many times a batch of results is retried once shutdown has begun.
const SHUTDOWN_WRITE_RETRIES: u32 = 10;

/// Writes results back in batches: whatever has arrived since the last
/// commit goes into the next one. A failed write is retried with the same
/// batch, so no result is dropped while the process lives — except at
/// shutdown, where the retries stop after [`SHUTDOWN_WRITE_RETRIES`]: those
/// deliveries are then sent again when their leases end (at least once, as
/// promised), rather than keeping the process from exiting. What a batch
/// lets go already claimed (an ordered key's next delivery) goes to the
/// dispatcher through `handoff`, as a publish's deliveries do.
async fn record_results<Q: WorkQueue>(
    queue: Q,
    handoff: Handoff<Q::Item>,
    clock: Arc<dyn Clock>,
    mut results: mpsc::UnboundedReceiver<Finished<Q>>,
    shutdown: CancellationToken,
) {
    const MAX_BATCH: usize = 512;
    let mut attempts = Vec::new();
    let mut released = Vec::new();
    while let Some(first) = results.recv().await {
        let mut next = Some(first);
        while let Some(finished) = next {
            match finished {
                Finished::Attempted(record) => attempts.push(*record),
                Finished::Abandoned(held) => released.push(held),
            }
            next = if attempts.len() + released.len() < MAX_BATCH {
                results.try_recv().ok()
            } else {
                None
            };
        }
        let mut failures = 0;
        loop {
            let now: DateTime<Utc> = clock.now();
            let node_id = handoff.node_id();
            let written = async {
                let next = queue.record(node_id, &attempts, now, handoff.lease(now).until).await?;
                if !released.is_empty() {
                    queue.release(node_id, &released, now).await?;
                }
                Ok::<_, signhook_store::StoreError>(next)
            }
            .await;
            match written {
                Ok(next) => {
                    // Once the dispatcher has stopped, their leases end and
                    // they go out again (after a restart, at once).
                    let _ = handoff.send(next);
                    break;
                }
                Err(e) if shutdown.is_cancelled() && failures >= SHUTDOWN_WRITE_RETRIES => {
                    tracing::error!(
                        error = %error_chain(&e),
                        batch = attempts.len(),
                        "giving up recording attempts at shutdown; these deliveries go out again when their leases end"
                    );
                    break;
                }
                Err(e) => {
                    failures += 1;
                    tracing::error!(error = %error_chain(&e), batch = attempts.len(), "recording attempts failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        attempts.clear();
        released.clear();
    }
}
