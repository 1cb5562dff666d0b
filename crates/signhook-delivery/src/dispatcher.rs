//! The dispatcher: claims due deliveries in batches under a lease, sends them
//! concurrently, and hands results to a recorder that writes them back in
//! batches (one transaction per batch). Deliveries created by a publish on
//! this node arrive already claimed through the [`Handoff`] and are sent at
//! once; claims find the rest (retries, other nodes' work, resends).
//!
//! Shutdown (the token given to [`Dispatcher::run`]): claiming stops at once;
//! sends in flight get `shutdown_grace` to finish and be recorded; any still
//! running then are abandoned and their claims released, so they are due
//! again immediately after a restart (or on another node). A crash skips all
//! that and the leases simply expire.

use crate::lanes::Lanes;
use crate::metrics::DeliveryMetrics;
use crate::sender::{self, error_chain, SendResult};
use crate::DeliveryError;
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::SeedableRng;
use signhook_core::delivery::DeliveryStatus;
use signhook_core::ids::SubscriptionId;
use signhook_core::ids::{AttemptId, DeliveryId};
use signhook_core::netguard::AddressPolicy;
use signhook_core::retry::{decide, Decision, RetryPolicy};
use signhook_core::time::Clock;
use signhook_store::deliveries::{Attempt, AttemptRecord, ClaimedDelivery};
use signhook_store::events::Lease;
use signhook_store::Store;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinSet;
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
    /// The longest the dispatcher sleeps when nothing is due and nobody
    /// wakes it.
    pub idle_poll: Duration,
    /// How long in-flight sends may finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// The most sends in flight to one subscription on this node.
    pub per_subscription_in_flight: usize,
    /// Which endpoint addresses may be reached (the SSRF guard).
    pub addresses: Arc<AddressPolicy>,
    /// Where attempts are counted.
    pub metrics: DeliveryMetrics,
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
            metrics: DeliveryMetrics::default(),
        }
    }
}

/// Wakes an idle dispatcher when new deliveries exist. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    /// Tells the dispatcher that something may be due now.
    pub fn wake(&self) {
        // `notify_one` stores a permit when nobody waits, so a wake that
        // comes between a claim and the next wait is not lost.
        self.0.notify_one();
    }
}

/// The delivery loop of one node.
pub struct Dispatcher {
    store: Store,
    config: DispatcherConfig,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
    waker: Waker,
    handoff: Handoff,
    handoff_rx: Option<mpsc::UnboundedReceiver<Vec<ClaimedDelivery>>>,
}

/// The sends of a running dispatcher.
struct Sends {
    /// Sends in flight on this node, at most `max_in_flight`.
    slots: Arc<Semaphore>,
    lanes: Arc<Lanes>,
    /// Cancelled when the shutdown grace runs out.
    abandon: CancellationToken,
    /// Each send's task yields its subscription when it ends.
    in_flight: JoinSet<SubscriptionId>,
    results: mpsc::UnboundedSender<Finished>,
    /// Deliveries handed over at publish whose lane was full, oldest first
    /// per subscription: started as their lane frees up, instead of being
    /// released to the database and claimed back a moment later.
    backlog: HashMap<SubscriptionId, VecDeque<ClaimedDelivery>>,
    backlog_len: usize,
}

/// The most handed-over deliveries a node keeps waiting for their lanes;
/// beyond, they go back to the database, due at once.
const MAX_BACKLOG: usize = 10_000;

/// Hands deliveries that a publish on this node claimed for it straight to
/// its dispatcher, which sends them at once: no claim round trip between a
/// commit and the send. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Handoff {
    queue: mpsc::UnboundedSender<Vec<ClaimedDelivery>>,
    node_id: String,
    lease: Duration,
}

impl Handoff {
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
    pub fn send(&self, claims: Vec<ClaimedDelivery>) -> Result<(), Vec<ClaimedDelivery>> {
        if claims.is_empty() {
            return Ok(());
        }
        self.queue.send(claims).map_err(|e| e.0)
    }
}

/// A send's result, or the claim given back unsent.
enum Finished {
    Attempted(Box<AttemptRecord>),
    Abandoned(DeliveryId, i64),
}

impl Dispatcher {
    /// A dispatcher over `store`.
    pub fn new(store: Store, config: DispatcherConfig, clock: Arc<dyn Clock>) -> Result<Self, DeliveryError> {
        let client = sender::build_client(config.request_timeout, config.addresses.clone())?;
        let (queue, handoff_rx) = mpsc::unbounded_channel();
        let handoff = Handoff {
            queue,
            node_id: config.node_id.clone(),
            lease: config.lease,
        };
        Ok(Self {
            store,
            config,
            clock,
            client,
            waker: Waker::default(),
            handoff,
            handoff_rx: Some(handoff_rx),
        })
    }

    /// A handle that gives this dispatcher deliveries claimed at publish.
    pub fn handoff(&self) -> Handoff {
        self.handoff.clone()
    }

    /// A handle that wakes this dispatcher.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Runs until `shutdown` is cancelled, then drains as described in the
    /// module docs. Returns an error only if the store stays unusable.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), DeliveryError> {
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(record_results(
            self.store.clone(),
            self.config.node_id.clone(),
            self.clock.clone(),
            results_rx,
            shutdown.clone(),
        ));
        let listener = self.listen_for_other_nodes().await;
        let mut handed_over = self.handoff_rx.take().expect("run is called once");
        let mut sends = Sends {
            slots: Arc::new(Semaphore::new(self.config.max_in_flight)),
            lanes: Lanes::new(self.config.per_subscription_in_flight),
            abandon: CancellationToken::new(),
            in_flight: JoinSet::new(),
            results: results_tx,
            backlog: HashMap::new(),
            backlog_len: 0,
        };
        // Claim only when something may be due in the database: at start,
        // when woken (a publish without handoff, another node, a resend),
        // when the next retry falls due, and when a full lane frees up.
        // Deliveries handed over at publish need no claim.
        let mut claim_needed = true;
        let mut next_due: Option<tokio::time::Instant> = None;

        while !shutdown.is_cancelled() {
            while sends.in_flight.try_join_next().is_some() {}
            let mut overflow = self.start_backlog(&mut sends).await;
            while let Ok(claims) = handed_over.try_recv() {
                overflow.extend(self.start_sends(claims, &mut sends, true).await);
            }
            let free = sends.slots.available_permits().min(self.config.batch_size as usize);
            if free == 0 {
                tokio::select! {
                    _ = sends.in_flight.join_next() => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            let saturated = sends.lanes.saturated();
            let mut got = 0;
            if claim_needed {
                let now = self.clock.now();
                let claims = match self
                    .store
                    .claim_due_deliveries(
                        &self.config.node_id,
                        now,
                        now + self.config.lease,
                        free as u32,
                        sends.lanes.claim_per_subscription(),
                        &saturated,
                    )
                    .await
                {
                    Ok(claims) => claims,
                    Err(e) => {
                        tracing::error!(error = %error_chain(&e), "claiming due deliveries failed; retrying shortly");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                            _ = shutdown.cancelled() => {}
                        }
                        continue;
                    }
                };
                got = claims.len();
                overflow.extend(self.start_sends(claims, &mut sends, false).await);
            }
            let lanes_full = !saturated.is_empty() || !overflow.is_empty();
            // The lanes that are full now (overflow included): only a send of
            // one of them finishing can make claimable work of theirs.
            let waiting_for_lane: std::collections::HashSet<SubscriptionId> =
                sends.lanes.saturated().into_iter().collect();
            if !overflow.is_empty() {
                if let Err(e) = self
                    .store
                    .release_deliveries(&self.config.node_id, &overflow, self.clock.now())
                    .await
                {
                    // Not fatal: their leases end by themselves.
                    tracing::warn!(error = %error_chain(&e), "could not hand back claims of full lanes");
                }
            }
            if claim_needed {
                if got == free {
                    // A full batch: more may be due right away.
                    continue;
                }
                next_due = self.next_due(lanes_full).await;
                if next_due.is_some_and(|at| at <= tokio::time::Instant::now()) {
                    // Due already but not claimable in this batch: yield,
                    // then claim again.
                    tokio::task::yield_now().await;
                    continue;
                }
            }
            let deadline = next_due.unwrap_or_else(|| tokio::time::Instant::now() + self.config.idle_poll);
            claim_needed = tokio::select! {
                _ = self.waker.0.notified() => true,
                _ = tokio::time::sleep_until(deadline) => true,
                // A finished send frees a place in its lane; claim again only
                // if that lane was full, so due work may be waiting for it —
                // unless its own backlog is waiting, which goes first, or the
                // lane still has more members than a claim would add to (the
                // claim would leave it out and bring it nothing).
                Some(ended) = sends.in_flight.join_next(), if !sends.in_flight.is_empty() => {
                    ended.is_ok_and(|sub| {
                        waiting_for_lane.contains(&sub)
                            && !sends.backlog.contains_key(&sub)
                            && !sends.lanes.is_saturated(&sub)
                    })
                }
                Some(claims) = handed_over.recv() => {
                    let overflow = self.start_sends(claims, &mut sends, true).await;
                    if !overflow.is_empty() {
                        if let Err(e) = self.store.release_deliveries(&self.config.node_id, &overflow, self.clock.now()).await {
                            tracing::warn!(error = %error_chain(&e), "could not hand back claims of full lanes");
                        }
                    }
                    !overflow.is_empty()
                }
                _ = shutdown.cancelled() => false,
            };
        }

        if let Some(listener) = listener {
            listener.abort();
        }
        // Handed over but never started: give them back, due at once.
        handed_over.close();
        let mut unsent = Vec::new();
        while let Ok(claims) = handed_over.try_recv() {
            unsent.extend(claims.into_iter().map(|c| (c.delivery_id, c.lease_until)));
        }
        for (_, waiting) in sends.backlog.drain() {
            unsent.extend(waiting.into_iter().map(|c| (c.delivery_id, c.lease_until)));
        }
        if !unsent.is_empty() {
            if let Err(e) = self
                .store
                .release_deliveries(&self.config.node_id, &unsent, self.clock.now())
                .await
            {
                tracing::warn!(error = %error_chain(&e), "could not release handed-over deliveries; their leases will end");
            }
        }
        let Sends {
            abandon,
            mut in_flight,
            results,
            ..
        } = sends;
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
        recorder
            .await
            .map_err(|_| DeliveryError::Store(signhook_store::StoreError::Corrupt("recorder panicked".into())))?;
        Ok(())
    }

    /// Starts a send for each claim whose lane has room (waiting for a free
    /// slot on this node if need be). Returns the claims whose lane was
    /// full, to be handed back due at once — except, for claims `handed`
    /// over at publish, while the node's backlog has room: those wait there
    /// for their lane.
    async fn start_sends(
        &self,
        claims: Vec<ClaimedDelivery>,
        sends: &mut Sends,
        handed: bool,
    ) -> Vec<(DeliveryId, i64)> {
        let mut overflow = Vec::new();
        for claim in claims {
            let Some(ticket) = sends.lanes.enter(&claim.subscription) else {
                if handed && sends.backlog_len < MAX_BACKLOG {
                    sends.backlog_len += 1;
                    sends
                        .backlog
                        .entry(claim.subscription.id.clone())
                        .or_default()
                        .push_back(claim);
                } else {
                    // A lane can fill up within one batch; what does not fit
                    // goes back, due at once, for when the lane has room.
                    overflow.push((claim.delivery_id.clone(), claim.lease_until));
                }
                continue;
            };
            self.start_one(claim, ticket, sends).await;
        }
        overflow
    }

    /// Starts what waits in the backlog for lanes that have room again.
    /// Returns those whose lease is too close to its end to still be sent
    /// safely under it: they go back to the database.
    async fn start_backlog(&self, sends: &mut Sends) -> Vec<(DeliveryId, i64)> {
        let mut expiring = Vec::new();
        if sends.backlog_len == 0 {
            return expiring;
        }
        // Leave a full attempt, twice over, before the lease ends.
        let margin = i64::try_from(self.config.request_timeout.as_millis() * 2).unwrap_or(i64::MAX);
        let now = signhook_core::time::to_millis(self.clock.now());
        let subscriptions: Vec<SubscriptionId> = sends.backlog.keys().cloned().collect();
        for id in subscriptions {
            while let Some(front) = sends.backlog.get(&id).and_then(VecDeque::front) {
                let Some(ticket) = sends.lanes.enter(&front.subscription) else {
                    break;
                };
                let claim = sends
                    .backlog
                    .get_mut(&id)
                    .and_then(VecDeque::pop_front)
                    .expect("the front exists");
                sends.backlog_len -= 1;
                if claim.lease_until - now < margin {
                    expiring.push((claim.delivery_id, claim.lease_until));
                    continue;
                }
                self.start_one(claim, ticket, sends).await;
            }
            if sends.backlog.get(&id).is_some_and(VecDeque::is_empty) {
                sends.backlog.remove(&id);
            }
        }
        expiring
    }

    /// Starts one send in its lane (waiting for a free slot on this node).
    async fn start_one(&self, claim: ClaimedDelivery, mut ticket: crate::lanes::Ticket, sends: &mut Sends) {
        let permit = sends
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let ctx = SendContext {
            client: self.client.clone(),
            clock: self.clock.clone(),
            policy: self.config.retry_policy.clone(),
            timeout: self.config.request_timeout,
            node_id: self.config.node_id.clone(),
            addresses: self.config.addresses.clone(),
            metrics: self.config.metrics.clone(),
        };
        let results = sends.results.clone();
        let abandon = sends.abandon.clone();
        let subscription = claim.subscription.id.clone();
        sends.in_flight.spawn(async move {
            let finished = tokio::select! {
                record = async {
                    ticket.wait_turn().await;
                    ctx.attempt(&claim).await
                } => Finished::Attempted(Box::new(record)),
                _ = abandon.cancelled() => Finished::Abandoned(claim.delivery_id.clone(), claim.lease_until),
            };
            // The recorder outlives every send task; a closed channel
            // only happens when the process is already going down.
            let _ = results.send(finished);
            drop((permit, ticket));
            subscription
        });
    }

    /// When the next retry falls due, for the wait between claims (`None`:
    /// nothing scheduled, wait for the idle poll). With `lanes_full`, work
    /// that is due already waits for a lane, which only a finishing send
    /// frees: that does not count.
    async fn next_due(&self, lanes_full: bool) -> Option<tokio::time::Instant> {
        let next = self.store.next_due_at().await.ok()??;
        let until = (next - self.clock.now()).to_std().unwrap_or(Duration::ZERO);
        if lanes_full && until.is_zero() {
            return None;
        }
        Some(tokio::time::Instant::now() + until.min(self.config.idle_poll))
    }

    /// On a shared database, wakes this dispatcher whenever any node
    /// publishes (PostgreSQL `LISTEN`), so an idle node's latency does not
    /// depend on the poll interval. Without it, polling still finds the work.
    async fn listen_for_other_nodes(&self) -> Option<tokio::task::JoinHandle<()>> {
        let mut listener = match self.store.work_listener().await {
            Ok(listener) => listener?,
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "cannot listen for other nodes' publishes; polling only");
                return None;
            }
        };
        let waker = self.waker.clone();
        Some(tokio::spawn(async move {
            loop {
                if let Err(e) = listener.recv().await {
                    // The listener reconnects on its next call; work may have
                    // been announced meanwhile, so look for it.
                    tracing::warn!(error = %error_chain(&e), "lost the notification connection; reconnecting");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                waker.wake();
            }
        }))
    }
}

/// What a send task needs, owned.
struct SendContext {
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
    policy: RetryPolicy,
    timeout: Duration,
    node_id: String,
    addresses: Arc<AddressPolicy>,
    metrics: DeliveryMetrics,
}

impl SendContext {
    /// Makes one attempt and decides what follows. Can take up to the
    /// request timeout.
    async fn attempt(&self, claim: &ClaimedDelivery) -> AttemptRecord {
        let result: SendResult =
            sender::send(&self.client, &self.addresses, claim, self.timeout, self.clock.now()).await;
        let mut rng = StdRng::from_entropy();
        let decision = decide(
            result.outcome,
            claim.schedule_attempt,
            claim.subscription.auto_retry,
            &self.policy,
            &mut rng,
        );
        let finished_at = self.clock.now();
        let next_attempt_at = match decision {
            Decision::RetryAfter { delay, .. } => Some(finished_at + delay),
            _ => None,
        };
        log_decision(claim, &result, decision);
        self.metrics.observe(decision, result.duration);
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
            },
            status: DeliveryStatus::after(decision),
            next_attempt_at,
            subscription_id: claim.subscription.id.clone(),
            event_type: claim.event.event_type.clone(),
            disable_subscription: match decision {
                Decision::DisableSubscription { reason } => Some(reason),
                _ => None,
            },
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
                reason,
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
/// promised), rather than keeping the process from exiting.
async fn record_results(
    store: Store,
    node_id: String,
    clock: Arc<dyn Clock>,
    mut results: mpsc::UnboundedReceiver<Finished>,
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
                Finished::Abandoned(id, lease) => released.push((id, lease)),
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
            let written = async {
                store.record_attempts(&node_id, &attempts, now).await?;
                if !released.is_empty() {
                    store.release_deliveries(&node_id, &released, now).await?;
                }
                Ok::<_, signhook_store::StoreError>(())
            }
            .await;
            match written {
                Ok(()) => break,
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
