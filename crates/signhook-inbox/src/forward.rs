//! Forwarding through the delivery engine: the inbox's database as a
//! [`WorkQueue`] of [`Forward`]s, each in its source's lane, and one
//! attempt ([`ForwardAttempts`]): the original body and headers to the
//! app, hop-by-hop headers dropped, `x-signhook-inbox-received-at` and
//! `x-signhook-inbox-attempt` added, re-signed when the source has a
//! `forward_secret`. The retry decision is the engine's
//! ([`signhook_core::retry::decide`]): backoff with jitter, `Retry-After`,
//! dead letter once the schedule is spent.

use crate::metrics::InboxMetrics;
use crate::settings::Source;
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::SeedableRng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use signhook_core::delivery::ErrorKind;
use signhook_core::retry::{decide, parse_retry_after, AttemptOutcome, Decision, RetryPolicy};
use signhook_core::time::Clock;
use signhook_delivery::{Attempter, Claim, WorkQueue};
use signhook_store::inbox::{
    ClaimedRequest, ForwardAttempt, ForwardOutcome, ForwardRecord, HeldRequest, InboxStore, MAX_RESPONSE_EXCERPT,
};
use signhook_store::work::WorkSignal;
use signhook_store::{StoreError, WorkListener};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The header telling the app when the inbox received the request.
pub const HEADER_RECEIVED_AT: &str = "x-signhook-inbox-received-at";
/// The header telling the app which attempt this is (1 for the first).
pub const HEADER_ATTEMPT: &str = "x-signhook-inbox-attempt";

/// Headers of one connection, not of the message (RFC 9110 §7.6.1), and
/// those the client sets again for the forward's own connection.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// A request claimed for forwarding, with its source.
#[derive(Debug)]
pub struct Forward {
    /// The stored request.
    pub request: ClaimedRequest,
    /// Its source.
    pub source: Arc<Source>,
}

impl Claim for Forward {
    type Lane = String;
    type Held = HeldRequest;

    fn lane(&self) -> &String {
        &self.source.name
    }

    fn rate_limit_per_second(&self) -> Option<u32> {
        self.source.rate_limit
    }

    fn lease_until(&self) -> i64 {
        self.request.lease_until
    }

    fn held(&self) -> HeldRequest {
        self.request.held()
    }
}

/// The inbox's database as the engine's queue.
#[derive(Debug, Clone)]
pub struct ForwardQueue {
    store: InboxStore,
    sources: Arc<HashMap<String, Arc<Source>>>,
}

impl ForwardQueue {
    /// The queue of `store`'s requests, forwarded to `sources`' apps.
    pub fn new(store: InboxStore, sources: &[Arc<Source>]) -> Self {
        let sources = sources.iter().map(|s| (s.name.clone(), s.clone())).collect();
        Self {
            store,
            sources: Arc::new(sources),
        }
    }

    /// The claim with its source; the claim back for a source no longer
    /// configured.
    pub fn attach(&self, request: ClaimedRequest) -> Result<Forward, Box<ClaimedRequest>> {
        match self.sources.get(&request.source) {
            Some(source) => Ok(Forward {
                source: source.clone(),
                request,
            }),
            None => Err(Box::new(request)),
        }
    }
}

impl WorkQueue for ForwardQueue {
    type Item = Forward;
    type Record = ForwardRecord;

    async fn claim(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_lane: u32,
        skip: &[String],
    ) -> Result<Vec<Forward>, StoreError> {
        let claimed = self
            .store
            .claim_due(node, now, lease_until, limit, per_lane, skip)
            .await?;
        let mut forwards = Vec::with_capacity(claimed.len());
        let mut orphans = Vec::new();
        for request in claimed {
            match self.attach(request) {
                Ok(forward) => forwards.push(forward),
                Err(orphan) => orphans.push(*orphan),
            }
        }
        if !orphans.is_empty() {
            // Received under a source since removed from the settings:
            // nowhere to send them. Dead letters, replayable once the
            // source is back.
            let records: Vec<_> = orphans
                .iter()
                .map(|request| ForwardRecord {
                    held: request.held(),
                    attempt: ForwardAttempt {
                        attempt_number: request.attempt_number,
                        started_at: now,
                        duration_ms: 0,
                        status_code: None,
                        error: Some(format!("the source `{}` is not configured", request.source)),
                        response_body: None,
                    },
                    outcome: ForwardOutcome::Dead,
                })
                .collect();
            self.store.record_forwards(node, &records, now).await?;
        }
        Ok(forwards)
    }

    async fn next_due_at(&self, _node: &str, skip: &[String]) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.store.next_due_at(skip).await
    }

    /// The inbox's ordered keys are released for the next claim, not
    /// claimed by the record (its claims are cheap: one process, one file).
    async fn record(
        &self,
        node: &str,
        records: &[ForwardRecord],
        now: DateTime<Utc>,
        _next_lease: DateTime<Utc>,
    ) -> Result<Vec<Forward>, StoreError> {
        self.store.record_forwards(node, records, now).await?;
        Ok(Vec::new())
    }

    async fn release(&self, node: &str, held: &[HeldRequest], now: DateTime<Utc>) -> Result<(), StoreError> {
        self.store.release(node, held, now).await
    }

    fn announcements(&self) -> Arc<WorkSignal> {
        self.store.work_signal()
    }

    async fn other_nodes(&self) -> Result<Option<WorkListener>, StoreError> {
        // One inbox per database file: no other nodes.
        Ok(None)
    }
}

/// How one forward is made.
pub struct ForwardAttempts {
    client: reqwest::Client,
    policy: RetryPolicy,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    metrics: InboxMetrics,
}

impl ForwardAttempts {
    /// Forwards with `policy`'s schedule, each waiting at most `timeout`.
    pub fn new(
        policy: RetryPolicy,
        timeout: Duration,
        clock: Arc<dyn Clock>,
        metrics: InboxMetrics,
    ) -> reqwest::Result<Self> {
        // The app is the operator's own (often on loopback): no SSRF guard,
        // but no redirects followed and no proxy from the environment.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .no_proxy()
            .build()?;
        Ok(Self {
            client,
            policy,
            timeout,
            clock,
            metrics,
        })
    }
}

/// The forward's headers: the original ones minus hop-by-hop, the inbox's
/// own, and a fresh Standard Webhooks signature if the source re-signs.
pub fn forward_headers(forward: &Forward, now: DateTime<Utc>) -> HeaderMap {
    let request = &forward.request;
    let resigning = forward.source.forward_secret.is_some();
    let mut headers = HeaderMap::with_capacity(request.headers.len() + 4);
    for (name, value) in request.headers.iter() {
        let lower = name.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&lower.as_str())
            || lower == "content-length"
            || lower.starts_with("x-signhook-inbox-")
            || (resigning && lower.starts_with("webhook-"))
        {
            continue;
        }
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            headers.append(name, value);
        }
    }
    let stamp = |text: String| HeaderValue::from_str(&text).expect("a timestamp and a number are header values");
    headers.insert(
        HEADER_RECEIVED_AT,
        stamp(request.received_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    );
    headers.insert(HEADER_ATTEMPT, stamp(request.attempt_number.to_string()));
    if let Some(secret) = &forward.source.forward_secret {
        let timestamp = now.timestamp();
        let signature = signhook_verify::sign(secret, &request.event_id, timestamp, &request.body);
        if let Ok(id) = HeaderValue::from_str(&request.event_id) {
            headers.insert(signhook_verify::HEADER_WEBHOOK_ID, id);
        }
        headers.insert(signhook_verify::HEADER_WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
        headers.insert(signhook_verify::HEADER_WEBHOOK_SIGNATURE, stamp(signature));
    }
    headers
}

impl Attempter<ForwardQueue> for ForwardAttempts {
    async fn attempt(&self, forward: &Forward) -> ForwardRecord {
        let request = &forward.request;
        let now = self.clock.now();
        let started = Instant::now();
        let sent = self
            .client
            .post(forward.source.forward_to.clone())
            .headers(forward_headers(forward, now))
            .timeout(self.timeout)
            .body(request.body.to_vec())
            .send()
            .await;
        let (outcome, status_code, response_body, error) = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, now));
                let body = read_excerpt(response).await;
                (
                    AttemptOutcome::Response { status, retry_after },
                    Some(status),
                    Some(body),
                    None,
                )
            }
            Err(e) => {
                let kind = if e.is_timeout() {
                    ErrorKind::Timeout
                } else if e.is_connect() {
                    ErrorKind::Connect
                } else {
                    ErrorKind::Http
                };
                (
                    AttemptOutcome::Error(kind),
                    None,
                    None,
                    Some(signhook_core::error_chain(&e)),
                )
            }
        };
        let duration = started.elapsed();
        let mut rng = StdRng::from_entropy();
        let decision = decide(outcome, request.schedule_attempt, true, &self.policy, &mut rng);
        let decided_at = self.clock.now();
        let outcome = match decision {
            Decision::Succeeded => ForwardOutcome::Forwarded,
            Decision::RetryAfter { delay, .. } => {
                ForwardOutcome::RetryAt(decided_at + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX))
            }
            // An app that answers 410 Gone will not take it later either:
            // a dead letter at once, for a person to look at and replay.
            Decision::DeadLetter { .. } | Decision::DisableSubscription { .. } => ForwardOutcome::Dead,
        };
        log_outcome(forward, status_code, decision);
        self.metrics.forward_outcome(&forward.source.name, outcome);
        ForwardRecord {
            held: request.held(),
            attempt: ForwardAttempt {
                attempt_number: request.attempt_number,
                started_at: now,
                duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                status_code,
                error,
                response_body,
            },
            outcome,
        }
    }
}

fn log_outcome(forward: &Forward, status: Option<u16>, decision: Decision) {
    let event_id = forward.request.event_id.as_str();
    let source = forward.source.name.as_str();
    let attempt = forward.request.attempt_number;
    match decision {
        Decision::Succeeded => tracing::debug!(source, event_id, attempt, status, "forwarded"),
        Decision::RetryAfter { delay, reason } => tracing::info!(
            source,
            event_id,
            attempt,
            status,
            reason,
            retry_in_ms = delay.as_millis() as u64,
            "forward failed; will retry"
        ),
        Decision::DeadLetter { reason } => {
            tracing::warn!(source, event_id, attempt, status, reason, "forward failed; dead letter")
        }
        Decision::DisableSubscription { reason } => tracing::warn!(
            source,
            event_id,
            attempt,
            status,
            reason = reason.as_str(),
            "the app answered 410 Gone; dead letter"
        ),
    }
}

/// The first [`MAX_RESPONSE_EXCERPT`] bytes of the app's answer.
async fn read_excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_RESPONSE_EXCERPT {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(MAX_RESPONSE_EXCERPT);
    String::from_utf8_lossy(&bytes).into_owned()
}
