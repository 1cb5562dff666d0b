//! The dispatcher: claims due deliveries in batches under a lease, sends them
//! concurrently, and hands results to a recorder that writes them back in
//! batches (one transaction per batch).
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
use signhook_core::ids::{AttemptId, DeliveryId};
use signhook_core::netguard::AddressPolicy;
use signhook_core::retry::{decide, Decision, RetryPolicy};
use signhook_core::time::Clock;
use signhook_store::deliveries::{Attempt, AttemptRecord, ClaimedDelivery};
use signhook_store::Store;
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
        Ok(Self {
            store,
            config,
            clock,
            client,
            waker: Waker::default(),
        })
    }

    /// A handle that wakes this dispatcher.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Runs until `shutdown` is cancelled, then drains as described in the
    /// module docs. Returns an error only if the store stays unusable.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), DeliveryError> {
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(record_results(
            self.store.clone(),
            self.config.node_id.clone(),
            self.clock.clone(),
            results_rx,
            shutdown.clone(),
        ));
        let listener = self.listen_for_other_nodes().await;
        let slots = Arc::new(Semaphore::new(self.config.max_in_flight));
        let lanes = Lanes::new(self.config.per_subscription_in_flight);
        let abandon = CancellationToken::new();
        let mut in_flight = JoinSet::new();

        while !shutdown.is_cancelled() {
            while in_flight.try_join_next().is_some() {}
            let free = slots.available_permits().min(self.config.batch_size as usize);
            if free == 0 {
                tokio::select! {
                    _ = in_flight.join_next() => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            let saturated = lanes.saturated();
            let now = self.clock.now();
            let lease_until = now + self.config.lease;
            let claims = match self
                .store
                .claim_due_deliveries(
                    &self.config.node_id,
                    now,
                    lease_until,
                    free as u32,
                    lanes.claim_per_subscription(),
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
            let got = claims.len();
            let mut overflow = Vec::new();
            for claim in claims {
                // A lane can fill up within one batch; what does not fit goes
                // straight back, due at once, for when the lane has room.
                let Some(mut ticket) = lanes.enter(&claim.subscription) else {
                    overflow.push((claim.delivery_id.clone(), claim.lease_until));
                    continue;
                };
                let permit = slots
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
                let results = results_tx.clone();
                let abandon = abandon.clone();
                in_flight.spawn(async move {
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
                });
            }
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
            if got < free {
                self.wait_for_work(&shutdown, &mut in_flight, !saturated.is_empty() || !overflow.is_empty())
                    .await;
            }
        }

        if let Some(listener) = listener {
            listener.abort();
        }
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
        drop(results_tx);
        recorder
            .await
            .map_err(|_| DeliveryError::Store(signhook_store::StoreError::Corrupt("recorder panicked".into())))?;
        Ok(())
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

    /// Sleeps until the next delivery falls due, a publish wakes us, a send
    /// finishes (freeing its lane), the idle poll passes, or shutdown begins
    /// — whichever comes first. `lanes_full` says some due work is waiting
    /// for a lane, which only a finishing send can free.
    async fn wait_for_work(&self, shutdown: &CancellationToken, in_flight: &mut JoinSet<()>, lanes_full: bool) {
        let mut wait = self.config.idle_poll;
        if let Ok(Some(next_due)) = self.store.next_due_at().await {
            let until_due = (next_due - self.clock.now()).to_std().unwrap_or(Duration::ZERO);
            if !(lanes_full && until_due.is_zero()) {
                wait = wait.min(until_due);
            }
        }
        if wait.is_zero() {
            // Something is due already but was not claimable in this batch:
            // yield, then claim again.
            tokio::task::yield_now().await;
            return;
        }
        tokio::select! {
            _ = self.waker.0.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            _ = shutdown.cancelled() => {}
        }
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
