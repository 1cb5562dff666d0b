//! Events, and publishing: the event and one delivery per matching
//! subscription are written in one transaction (the transactional outbox), so
//! a publish that was acknowledged always produces its webhooks and one that
//! failed produces none.

use crate::deliveries::ClaimedDelivery;
use crate::subscriptions::Subscription;
use crate::writer::Candidates;
use crate::{announce_work, with_pool, DbRow, Page, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use signhook_core::filter::Scope;
use signhook_core::ids::{DeliveryId, EventId, TenantId, WorkspaceId};
use signhook_core::time::{from_millis, to_millis};
use std::collections::HashMap;
use std::sync::Arc;

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `evt_…`
    pub id: EventId,
    /// Its owner.
    pub tenant_id: TenantId,
    /// Whether it happened in the sandbox.
    pub sandbox: bool,
    /// Its type's name.
    pub event_type: String,
    /// Where its resource began.
    pub scope: Scope,
    /// Its workspace.
    pub workspace_id: WorkspaceId,
    /// When it happened.
    pub created_at: DateTime<Utc>,
    /// Its `data`, as JSON text (kept as written, never re-serialized).
    pub data: String,
}

/// A client's idempotency key and the fingerprint of its request.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// The `Idempotency-Key` header.
    pub key: String,
    /// A hash of the request, to refuse a different request under the same key.
    pub request_hash: [u8; 32],
}

/// An event to publish; every value already validated.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Its owner.
    pub tenant_id: TenantId,
    /// Sandbox or live.
    pub sandbox: bool,
    /// Its type's name.
    pub event_type: String,
    /// Where its resource began.
    pub scope: Scope,
    /// Its workspace.
    pub workspace_id: WorkspaceId,
    /// Its `data` as JSON text.
    pub data: String,
    /// Makes retried publishes safe.
    pub idempotency: Option<Idempotency>,
}

/// A claim taken by the publishing node on the deliveries it creates.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The node that will send them.
    pub node_id: String,
    /// When its claim ends if it has not recorded a result by then.
    pub until: DateTime<Utc>,
}

/// What a batch publish did.
#[derive(Debug)]
pub struct PublishedBatch {
    /// Each event's result, in the order given.
    pub results: Vec<Result<Published>>,
    /// With a [`Lease`]: the new pending deliveries, claimed by that node
    /// and ready to send.
    pub claimed: Vec<ClaimedDelivery>,
}

/// The result of a publish.
#[derive(Debug, Clone)]
pub struct Published {
    /// The event.
    pub event: Event,
    /// How many deliveries were created and are pending.
    pub deliveries: usize,
    /// `true` when an earlier publish with the same idempotency key is
    /// returned instead of a new event.
    pub replayed: bool,
}

/// Rows per multi-row INSERT: well under both backends' limits on bound
/// parameters (10 per event row).
const ROWS_PER_INSERT: usize = 500;

pub(crate) const COLUMNS: &str = "id, tenant_id, sandbox, type, scope, workspace_id, created_at, data";

pub(crate) const INSERT_EVENT: &str =
    "INSERT INTO events (id, tenant_id, sandbox, type, scope, workspace_id, created_at, data, \
    idempotency_key, request_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// A delivery is pending and due now when its subscription is enabled, and
/// kept as canceled (for a later recovery) when it is not.
pub(crate) const INSERT_DELIVERY: &str = "INSERT INTO deliveries (id, tenant_id, event_id, subscription_id, status, \
    next_attempt_at, due_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $7)";

pub(crate) fn event_from_row(row: &impl DbRow) -> Result<Event> {
    let scope = row.text("scope")?;
    Ok(Event {
        id: EventId::parse(&row.text("id")?).map_err(StoreError::corrupt)?,
        tenant_id: TenantId::parse(&row.text("tenant_id")?).map_err(StoreError::corrupt)?,
        sandbox: row.flag("sandbox")?,
        event_type: row.text("type")?,
        scope: Scope::parse(&scope).ok_or_else(|| StoreError::corrupt(format_args!("scope {scope}")))?,
        workspace_id: WorkspaceId::parse(&row.text("workspace_id")?).map_err(StoreError::corrupt)?,
        created_at: from_millis(row.int("created_at")?),
        data: row.text("data")?,
    })
}

/// Binds an event in the order of [`INSERT_EVENT`].
macro_rules! bind_event {
    ($event:expr, $idempotency:expr) => {{
        let event: &$crate::events::Event = $event;
        let idempotency: Option<&$crate::events::Idempotency> = $idempotency;
        sqlx::query($crate::events::INSERT_EVENT)
            .bind(event.id.as_str())
            .bind(event.tenant_id.as_str())
            .bind(event.sandbox)
            .bind(&event.event_type)
            .bind(event.scope.as_str())
            .bind(event.workspace_id.as_str())
            .bind(to_millis(event.created_at))
            .bind(&event.data)
            .bind(idempotency.map(|i| i.key.as_str()))
            .bind(idempotency.map(|i| i.request_hash.as_slice()))
    }};
}

pub(crate) use bind_event;

/// Binds a delivery of `event` to subscription `sub_id` in the order of
/// [`INSERT_DELIVERY`].
macro_rules! bind_delivery {
    ($id:expr, $event:expr, $sub_id:expr, $enabled:expr, $now:expr) => {{
        let (status, next_attempt_at) = if $enabled {
            ("pending", Some($now))
        } else {
            ("canceled", None)
        };
        sqlx::query($crate::events::INSERT_DELIVERY)
            .bind($id.as_str())
            .bind($event.tenant_id.as_str())
            .bind($event.id.as_str())
            .bind($sub_id.as_str())
            .bind(status)
            .bind(next_attempt_at)
            .bind($now)
    }};
}
pub(crate) use bind_delivery;

/// Read on `$conn`, inside a write transaction or on the held SQLite
/// writer: the tenant's subscriptions of one environment (live or sandbox),
/// parsed — the candidates of a fan-out.
/// Evaluates to `Vec<Subscription>`.
macro_rules! load_candidates {
    ($conn:expr, $tenant:expr, $sandbox:expr, $keys:expr) => {{
        let sql = format!(
            "SELECT {} FROM subscriptions WHERE tenant_id = $1 AND sandbox = $2 AND deleted_at IS NULL",
            $crate::subscriptions::COLUMNS
        );
        sqlx::query(&sql)
            .bind($tenant.as_str())
            .bind($sandbox)
            .fetch_all($conn)
            .await?
            .iter()
            .map(|row| $crate::subscriptions::subscription_from_row(row, $keys))
            .collect::<$crate::Result<Vec<$crate::subscriptions::Subscription>>>()?
    }};
}
pub(crate) use load_candidates;

/// Inside a write transaction `$tx`: writes `$event` and a delivery for
/// every subscription of `$candidates` (from [`load_candidates!`] for its
/// tenant and environment) that it matches — pending when the subscription
/// is enabled, canceled when not. Evaluates to the number of pending
/// deliveries; announcing them is the caller's.
macro_rules! fan_out {
    ($tx:ident, $event:expr, $idempotency:expr, $now_ms:expr, $candidates:expr) => {{
        let event: &$crate::events::Event = $event;
        let now_ms: i64 = $now_ms;
        $crate::events::bind_event!(event, $idempotency)
            .execute(&mut *$tx)
            .await
            .map_err(|e| {
                // Two concurrent publishes with one key: the loser is told so.
                if $crate::is_unique_violation(&e) {
                    $crate::StoreError::Conflict {
                        field: "Idempotency-Key",
                    }
                } else {
                    $crate::StoreError::from(e)
                }
            })?;
        let facts = signhook_core::filter::EventFacts {
            event_type: &event.event_type,
            sandbox: event.sandbox,
            scope: event.scope,
            workspace: &event.workspace_id,
        };
        let mut pending = 0usize;
        for sub in $candidates.iter() {
            if sub.filter.matches(&facts) {
                let id = signhook_core::ids::DeliveryId::generate();
                $crate::events::bind_delivery!(id, event, sub.id, sub.enabled, now_ms)
                    .execute(&mut *$tx)
                    .await?;
                pending += usize::from(sub.enabled);
            }
        }
        pending
    }};
}
pub(crate) use fan_out;

/// Inside a write transaction `$tx`: writes `$event` and a delivery for
/// every matching subscription of its tenant and environment (pending when
/// the subscription is enabled, canceled when not), and announces them to
/// other nodes on commit. Evaluates to the number of pending deliveries.
macro_rules! insert_event_and_fan_out {
    ($tx:ident, $dialect:ident, $event:expr, $idempotency:expr, $now_ms:expr, $keys:expr) => {{
        let event: &$crate::events::Event = $event;
        let candidates = $crate::events::load_candidates!(&mut *$tx, event.tenant_id, event.sandbox, $keys);
        let pending = $crate::events::fan_out!($tx, event, $idempotency, $now_ms, candidates);
        if pending > 0 {
            $crate::announce_work!($tx, $dialect);
        }
        pending
    }};
}
pub(crate) use insert_event_and_fan_out;

/// The result for an event whose `Idempotency-Key` an earlier event of the
/// same batch carries: a replay of it, or a mismatch.
fn earlier_in_batch(
    batch: &[NewEvent],
    results: &[Result<Published>],
    new: &NewEvent,
    idempotency: &Idempotency,
) -> Option<Result<Published>> {
    batch[..results.len()].iter().zip(results).find_map(|(other, result)| {
        let same_key = other.tenant_id == new.tenant_id
            && other.sandbox == new.sandbox
            && other.idempotency.as_ref().is_some_and(|i| i.key == idempotency.key);
        if !same_key {
            return None;
        }
        let same_request = other.idempotency.as_ref().map(|i| i.request_hash) == Some(idempotency.request_hash);
        Some(match result {
            Ok(published) if same_request => Ok(Published {
                replayed: true,
                ..published.clone()
            }),
            _ => Err(StoreError::IdempotencyMismatch),
        })
    })
}

/// Inside a write transaction `$tx`: publishes an operational event (about
/// the webhook system itself) of type `$type` with JSON `$data` to the
/// tenant's subscriptions of environment `$sandbox` that subscribe to it.
macro_rules! emit_operational {
    ($tx:ident, $dialect:ident, $tenant:expr, $sandbox:expr, $type:expr, $data:expr, $now_ms:expr, $keys:expr) => {{
        let tenant: &signhook_core::ids::TenantId = $tenant;
        let workspace = sqlx::query("SELECT id FROM workspaces WHERE tenant_id = $1 AND is_default = TRUE")
            .bind(tenant.as_str())
            .fetch_one(&mut *$tx)
            .await?
            .text("id")?;
        let event = $crate::events::Event {
            id: signhook_core::ids::EventId::generate(),
            tenant_id: tenant.clone(),
            sandbox: $sandbox,
            event_type: String::from($type),
            scope: signhook_core::filter::Scope::PublicApi,
            workspace_id: signhook_core::ids::WorkspaceId::parse(&workspace).map_err($crate::StoreError::corrupt)?,
            created_at: signhook_core::time::from_millis($now_ms),
            data: $data,
        };
        $crate::events::insert_event_and_fan_out!($tx, $dialect, &event, None, $now_ms, $keys)
    }};
}
pub(crate) use emit_operational;

impl Store {
    /// Publishes an event: writes it and a delivery for every matching
    /// subscription, in one transaction.
    pub async fn publish_event(&self, new: NewEvent, now: DateTime<Utc>) -> Result<Published> {
        let mut batch = self.publish_events(vec![new], now, None).await;
        batch.results.pop().expect("one result per event")
    }

    /// Publishes several events in one transaction — one durable commit
    /// for all (group commit) — and returns each one's result, in order.
    /// An `Idempotency-Key` already used (in the database, or earlier in the
    /// batch) replays that event or is refused as for a single publish. If
    /// the shared transaction fails, each event is retried alone, so one
    /// event's failure (a key raced by another node) is its own.
    ///
    /// With a `lease`, the new pending deliveries are written already
    /// claimed by that node, as a claim would leave them, and returned
    /// ready to send: the publishing node sends them at once, without a
    /// claim round trip. Should it die first, the lease ends and any node
    /// claims them.
    pub async fn publish_events(
        &self,
        batch: Vec<NewEvent>,
        now: DateTime<Utc>,
        lease: Option<&Lease>,
    ) -> PublishedBatch {
        if batch.len() > 1 {
            match self.publish_together(&batch, now, lease).await {
                Ok(published) => return published,
                Err(e) => {
                    tracing::debug!(error = %e, events = batch.len(), "group commit failed; publishing one by one")
                }
            }
        }
        let mut all = PublishedBatch {
            results: Vec::with_capacity(batch.len()),
            claimed: Vec::new(),
        };
        for new in batch {
            let one = std::slice::from_ref(&new);
            match self.publish_together(one, now, lease).await {
                Ok(mut published) => {
                    all.results.push(published.results.pop().expect("one result per event"));
                    all.claimed.append(&mut published.claimed);
                }
                Err(e) => all.results.push(Err(e)),
            }
        }
        all
    }

    /// One transaction for the whole batch. `Err` when the transaction
    /// failed (nothing was written); otherwise one result per event, where
    /// an idempotency mismatch is that event's error alone.
    async fn publish_together(
        &self,
        batch: &[NewEvent],
        now: DateTime<Utc>,
        lease: Option<&Lease>,
    ) -> Result<PublishedBatch> {
        let now_ms = to_millis(now);
        let lease_until = lease.map(|l| to_millis(l.until));
        with_pool!(self, writer, |pool, dialect| {
            let mut writes = pool.writes().await?;
            let mut results: Vec<Result<Published>> = Vec::with_capacity(batch.len());
            // Subscriptions are looked up once per tenant and environment in
            // the batch, not once per event (and on SQLite the writer keeps
            // them between batches).
            let mut candidates: Vec<((TenantId, bool), Candidates)> = Vec::new();
            let mut pending_total = 0;
            // Indexes into `results` of the events to insert, and the
            // deliveries to insert: (id, event index, subscription, enabled).
            let mut new_events: Vec<usize> = Vec::new();
            // (delivery id, event index, candidate group, subscription index)
            let mut fan_out: Vec<(DeliveryId, usize, usize, usize)> = Vec::new();
            for new in batch {
                if let Some(idempotency) = &new.idempotency {
                    if let Some(earlier) = earlier_in_batch(batch, &results, new, idempotency) {
                        results.push(earlier);
                        continue;
                    }
                    let sql = format!(
                        "SELECT {COLUMNS}, request_hash FROM events \
                         WHERE tenant_id = $1 AND sandbox = $2 AND idempotency_key = $3"
                    );
                    let existing = sqlx::query(&sql)
                        .bind(new.tenant_id.as_str())
                        .bind(new.sandbox)
                        .bind(&idempotency.key)
                        .fetch_optional(writes.reads())
                        .await?;
                    if let Some(row) = existing {
                        if row.opt_bytes("request_hash")?.as_deref() != Some(idempotency.request_hash.as_slice()) {
                            results.push(Err(StoreError::IdempotencyMismatch));
                            continue;
                        }
                        let earlier = event_from_row(&row)?;
                        let deliveries = sqlx::query(
                            "SELECT COUNT(*) AS n FROM deliveries WHERE event_id = $1 AND status <> 'canceled'",
                        )
                        .bind(earlier.id.as_str())
                        .fetch_one(writes.reads())
                        .await?
                        .int("n")?;
                        results.push(Ok(Published {
                            event: earlier,
                            deliveries: deliveries as usize,
                            replayed: true,
                        }));
                        continue;
                    }
                }
                let event = Event {
                    id: EventId::generate(),
                    tenant_id: new.tenant_id.clone(),
                    sandbox: new.sandbox,
                    event_type: new.event_type.clone(),
                    scope: new.scope,
                    workspace_id: new.workspace_id.clone(),
                    created_at: now,
                    data: new.data.clone(),
                };
                let key = (new.tenant_id.clone(), new.sandbox);
                let index = match candidates.iter().position(|(k, _)| *k == key) {
                    Some(i) => i,
                    None => {
                        let loaded = writes.candidates(&new.tenant_id, new.sandbox, &self.keys).await?;
                        candidates.push((key, loaded));
                        candidates.len() - 1
                    }
                };
                let facts = signhook_core::filter::EventFacts {
                    event_type: &event.event_type,
                    sandbox: event.sandbox,
                    scope: event.scope,
                    workspace: &event.workspace_id,
                };
                let mut pending = 0;
                for (k, sub) in candidates[index].1.iter().enumerate() {
                    if sub.filter.matches(&facts) {
                        fan_out.push((DeliveryId::generate(), results.len(), index, k));
                        pending += usize::from(sub.enabled);
                    }
                }
                pending_total += pending;
                new_events.push(results.len());
                results.push(Ok(Published {
                    event,
                    deliveries: pending,
                    replayed: false,
                }));
            }
            // Another publish (or node) took the same key meanwhile: the
            // only unique value not generated here.
            let key_taken = |e: sqlx::Error| {
                if crate::is_unique_violation(&e) {
                    StoreError::Conflict {
                        field: "Idempotency-Key",
                    }
                } else {
                    StoreError::from(e)
                }
            };
            // Few statements for many rows, and on SQLite the whole
            // transaction sent at once: each statement is a round trip to the
            // database (a thread hop on SQLite), and the writer is shared by
            // every publish, claim and result.
            for chunk in new_events.chunks(ROWS_PER_INSERT) {
                let statements = writes.statement().await.map_err(key_taken)?;
                statements.push(
                    "INSERT INTO events (id, tenant_id, sandbox, type, scope, workspace_id, created_at, data, \
                     idempotency_key, request_hash) ",
                );
                statements.push_values(chunk, |mut row, &i| {
                    let event = &results[i].as_ref().expect("a new event").event;
                    let idempotency = batch[i].idempotency.as_ref();
                    row.push_bind(event.id.as_str())
                        .push_bind(event.tenant_id.as_str())
                        .push_bind(event.sandbox)
                        .push_bind(event.event_type.as_str())
                        .push_bind(event.scope.as_str())
                        .push_bind(event.workspace_id.as_str())
                        .push_bind(now_ms)
                        .push_bind(event.data.as_str())
                        .push_bind(idempotency.map(|i| i.key.as_str()))
                        .push_bind(idempotency.map(|i| i.request_hash.as_slice()));
                });
            }
            for chunk in fan_out.chunks(ROWS_PER_INSERT) {
                let statements = writes.statement().await.map_err(key_taken)?;
                statements.push(
                    "INSERT INTO deliveries (id, tenant_id, event_id, subscription_id, status, next_attempt_at, \
                     due_at, leased_by, leased_until, created_at, updated_at) ",
                );
                statements.push_values(chunk, |mut row, (id, i, group, k)| {
                    let event = &results[*i].as_ref().expect("a new event").event;
                    let sub = &candidates[*group].1[*k];
                    // Pending when the subscription is enabled: due now, or
                    // claimed already by the publishing node (due again
                    // only if its lease ends). Kept as canceled (for a later
                    // recovery) when it is disabled.
                    let (status, next_attempt_at, leased_by, leased_until) = match (sub.enabled, lease) {
                        (true, Some(lease)) => ("pending", lease_until, Some(lease.node_id.as_str()), lease_until),
                        (true, None) => ("pending", Some(now_ms), None, None),
                        (false, _) => ("canceled", None, None, None),
                    };
                    let due_at = sub.enabled.then_some(now_ms);
                    row.push_bind(id.as_str())
                        .push_bind(event.tenant_id.as_str())
                        .push_bind(event.id.as_str())
                        .push_bind(sub.id.as_str())
                        .push_bind(status)
                        .push_bind(next_attempt_at)
                        .push_bind(due_at)
                        .push_bind(leased_by)
                        .push_bind(leased_until)
                        .push_bind(now_ms)
                        .push_bind(now_ms);
                });
            }
            // Deliveries claimed at publish are handed to the dispatcher;
            // the others wait for a claim.
            let unclaimed = pending_total > 0 && lease.is_none();
            if unclaimed && !dialect.notify.is_empty() {
                writes.statement().await?.push(dialect.notify);
            }
            writes.commit().await.map_err(key_taken)?;
            if unclaimed {
                self.work.due_at(now);
            }
            let claimed = match lease_until {
                Some(lease_until) => {
                    // One shared copy of each event and subscription, however
                    // many deliveries a fan-out makes.
                    let mut events: HashMap<usize, Arc<Event>> = HashMap::new();
                    fan_out
                        .iter()
                        .filter(|(_, _, group, k)| candidates[*group].1[*k].enabled)
                        .map(|(id, i, group, k)| ClaimedDelivery {
                            delivery_id: id.clone(),
                            attempt_number: 1,
                            schedule_attempt: 1,
                            lease_until,
                            due_at: now,
                            event: events
                                .entry(*i)
                                .or_insert_with(|| Arc::new(results[*i].as_ref().expect("a new event").event.clone()))
                                .clone(),
                            subscription: candidates[*group].1[*k].clone(),
                        })
                        .collect()
                }
                None => Vec::new(),
            };
            Ok(PublishedBatch { results, claimed })
        })
    }

    /// Writes an event meant for one subscription only (a `webhook.test`),
    /// with its delivery, in one transaction. Returns the delivery's id.
    pub async fn publish_to_subscription(
        &self,
        subscription: &Subscription,
        event_type: &str,
        data: String,
        workspace_id: WorkspaceId,
        now: DateTime<Utc>,
    ) -> Result<(Event, DeliveryId)> {
        let event = Event {
            id: EventId::generate(),
            tenant_id: subscription.tenant_id.clone(),
            sandbox: subscription.filter.sandbox,
            event_type: event_type.to_owned(),
            scope: Scope::PublicApi,
            workspace_id,
            created_at: now,
            data,
        };
        let delivery = DeliveryId::generate();
        with_pool!(self, writer, |pool, dialect| {
            let mut tx = pool.begin().await?;
            bind_event!(&event, None).execute(&mut *tx).await?;
            bind_delivery!(delivery, event, subscription.id, true, to_millis(now))
                .execute(&mut *tx)
                .await?;
            announce_work!(tx, dialect);
            tx.commit().await?;
        });
        self.work.due_at(now);
        Ok((event, delivery))
    }

    /// One event of the tenant's environment.
    pub async fn get_event(&self, tenant: &TenantId, sandbox: bool, id: &EventId) -> Result<Option<Event>> {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE id = $1 AND tenant_id = $2 AND sandbox = $3");
        with_pool!(self, reader, |pool, dialect| {
            let row = sqlx::query(&sql)
                .bind(id.as_str())
                .bind(tenant.as_str())
                .bind(sandbox)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(event_from_row).transpose()
        })
    }

    /// A page of the tenant's events in id (= time) order after `after`,
    /// optionally of one type: the reconciliation feed.
    pub async fn list_events(
        &self,
        tenant: &TenantId,
        sandbox: bool,
        after: Option<&EventId>,
        event_type: Option<&str>,
        limit: u32,
    ) -> Result<Page<Event>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE tenant_id = $1 AND sandbox = $2 AND id > $3 \
             AND (CAST($4 AS TEXT) IS NULL OR type = $4) ORDER BY id LIMIT $5"
        );
        let items = with_pool!(self, reader, |pool, dialect| {
            sqlx::query(&sql)
                .bind(tenant.as_str())
                .bind(sandbox)
                .bind(after.map_or("", EventId::as_str))
                .bind(event_type)
                .bind(i64::from(limit) + 1)
                .fetch_all(pool)
                .await?
                .iter()
                .map(event_from_row)
                .collect::<Result<Vec<_>>>()?
        });
        Ok(Page::from_rows(items, limit))
    }
}
