//! The outbox: an event and its deliveries, written in the transaction that
//! made the event happen (DESIGN §3.1).
//!
//! Everything that raises an event goes through here — publishing, the
//! signature-request lifecycle, the failure policy, recording a dead letter
//! — and so does everything that writes a delivery: resends of an event and
//! test events. This module owns:
//!
//! - the **candidates**: a tenant's subscriptions of one environment,
//!   loaded in the transaction and, on SQLite, cached between transactions
//!   until one writes `subscriptions` (see [`CandidateCache`]);
//! - **matching** an event against them;
//! - the **delivery rows**: pending and due when the subscription is
//!   enabled (or already claimed by the publishing node), kept as canceled
//!   for a later recovery when it is not;
//! - **operational events** (`delivery.failed`, `webhook.disabled`, …), and
//!   disabling a subscription, which raises one.

use crate::claims::Lease;
use crate::db::{DbRow, Sql, Tx};
use crate::events::{Event, Idempotency};
use crate::sealing::Keyring;
use crate::subscriptions::{cancel_pending, subscription_from_row, webhook_data, Subscription, SUBSCRIPTION_COLUMNS};
use crate::{Result, StoreError};
use chrono::{DateTime, Utc};
use signhook_core::event_types::Provenance;
use signhook_core::filter::{EventFacts, Scope};
use signhook_core::ids::{DeliveryId, EventId, SubscriptionId, TenantId, WorkspaceId};
use signhook_core::policy::DisabledReason;
use signhook_core::time::to_millis;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A tenant's subscriptions of one environment (live or sandbox), not
/// deleted, parsed and shared. Their configuration is current; their
/// failure streak, which every recorded outcome moves, is not kept here.
pub(crate) type Candidates = Arc<Vec<Arc<Subscription>>>;

/// Tenants and environments whose candidates are kept at most; beyond, the
/// cache starts over (a bound on memory, not a policy).
const MAX_CACHED: usize = 1_000;

/// Candidates kept between transactions, each with the count of writes to
/// `subscriptions` it was loaded after ([`Tx::subscriptions_generation`]):
/// an entry is used only while no transaction has written them since. Only
/// SQLite keeps any — its one writer sees every write; on PostgreSQL other
/// nodes write too, and candidates are read in each transaction.
#[derive(Debug, Default)]
pub(crate) struct CandidateCache {
    entries: Mutex<HashMap<(TenantId, bool), (u64, Candidates)>>,
}

impl CandidateCache {
    /// The subscriptions an event of `tenant` in this environment may go to.
    pub(crate) async fn load(
        &self,
        tx: &mut Tx<'_>,
        tenant: &TenantId,
        sandbox: bool,
        keys: &Keyring,
    ) -> Result<Candidates> {
        let key = (tenant.clone(), sandbox);
        let generation = tx.subscriptions_generation();
        if let Some(generation) = generation {
            let entries = self.entries.lock().expect("never poisoned: no code panics holding it");
            if let Some((at, cached)) = entries.get(&key) {
                if *at == generation {
                    return Ok(cached.clone());
                }
            }
        }
        let loaded: Candidates = Arc::new(
            load_candidates(tx, tenant, sandbox, keys)
                .await?
                .into_iter()
                .map(Arc::new)
                .collect(),
        );
        if let Some(generation) = generation {
            let mut entries = self.entries.lock().expect("never poisoned: no code panics holding it");
            if entries.len() >= MAX_CACHED {
                entries.clear();
            }
            entries.insert(key, (generation, loaded.clone()));
        }
        Ok(loaded)
    }
}

/// The tenant's live subscriptions of one environment, read in `tx`.
async fn load_candidates(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    sandbox: bool,
    keys: &Keyring,
) -> Result<Vec<Subscription>> {
    let sql = Sql::new(format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s JOIN subscription_health h ON h.subscription_id = s.id \
         WHERE s.tenant_id = $1 AND s.sandbox = $2 AND s.deleted_at IS NULL"
    ))
    .bind(tenant)
    .bind(sandbox);
    tx.fetch_parsed(sql, |row| subscription_from_row(row, keys)).await
}

/// Whether `event` goes to `sub` (enabled or not: a delivery to a
/// disabled subscription is kept as canceled).
pub(crate) fn matches(sub: &Subscription, event: &Event) -> bool {
    sub.filter.matches(&EventFacts {
        event_type: &event.event_type,
        sandbox: event.sandbox,
        scope: event.scope,
        workspace: &event.workspace_id,
    })
}

/// One delivery to write: `event` to `subscription`.
pub(crate) struct NewDelivery<'a> {
    pub id: DeliveryId,
    pub event: &'a Event,
    pub subscription_id: &'a SubscriptionId,
    /// Whether the subscription is enabled (otherwise the delivery is kept
    /// as canceled, for a later recovery).
    pub enabled: bool,
    /// The key it is ordered by, when its subscription orders them
    /// ([`ordering_key_of`]).
    pub ordering_key: Option<String>,
}

/// The key a delivery of `event` to `sub` is ordered by, under the
/// subscription's ordering. `request` keeps the event's signature request
/// id once read, so a fan-out reads the event's data at most once.
pub(crate) fn ordering_key_of(
    sub: &Subscription,
    event: &Event,
    request: &mut Option<Option<String>>,
) -> Option<String> {
    sub.ordering.key_of(event.ordering_key.as_deref(), || {
        request
            .get_or_insert_with(|| signhook_core::ordering::signature_request_id(&event.data))
            .clone()
    })
}

/// Rows per multi-row INSERT: well under both backends' limits on bound
/// parameters (12 per delivery row).
pub(crate) const ROWS_PER_INSERT: usize = 500;

/// Writes deliveries created at `now`, in statements of [`ROWS_PER_INSERT`]
/// rows. A delivery to an enabled subscription is pending: due now, or —
/// with a `lease` — already claimed by the publishing node, which sends it
/// at once (it falls due again only if that lease ends). One to a disabled
/// subscription is kept as canceled. An ordered one (with a key) is written
/// waiting: it becomes its key's head only if the key is free
/// ([`crate::ordering::release_next`]) — and then, with a `lease`, is
/// claimed for that node like the rest; without, it is due like any other.
/// Says when they fall due.
pub(crate) async fn write_deliveries(
    tx: &mut Tx<'_>,
    deliveries: &[NewDelivery<'_>],
    lease: Option<&Lease>,
    now: DateTime<Utc>,
) -> Result<Written> {
    let now_ms = to_millis(now);
    for chunk in deliveries.chunks(ROWS_PER_INSERT) {
        let sql = Sql::new(
            "INSERT INTO deliveries (id, tenant_id, event_id, subscription_id, status, next_attempt_at, \
             due_at, leased_by, leased_until, created_at, updated_at, ordering_key) ",
        )
        .push_values(chunk, |row, d| {
            let (status, next_attempt_at, due_at, leased_by, leased_until) = match (d.enabled, lease) {
                (true, _) if d.ordering_key.is_some() => ("pending", None, None, None, None),
                (true, Some(lease)) => {
                    let until = to_millis(lease.until);
                    (
                        "pending",
                        Some(until),
                        Some(now_ms),
                        Some(lease.node_id.as_str()),
                        Some(until),
                    )
                }
                (true, None) => ("pending", Some(now_ms), Some(now_ms), None, None),
                (false, _) => ("canceled", None, None, None, None),
            };
            row.bind(&d.id)
                .bind(&d.event.tenant_id)
                .bind(&d.event.id)
                .bind(d.subscription_id)
                .bind(status)
                .bind(next_attempt_at)
                .bind(due_at)
                .bind(leased_by)
                .bind(leased_until)
                .bind(now_ms)
                .bind(now_ms)
                .bind(d.ordering_key.as_deref());
        });
        tx.gather(sql).await?;
    }
    let pending = deliveries.iter().filter(|d| d.enabled).count();
    let unordered = deliveries
        .iter()
        .filter(|d| d.enabled && d.ordering_key.is_none())
        .count();
    if unordered > 0 && lease.is_none() {
        tx.work_due_at(now).await?;
    }
    let ordered: Vec<&str> = deliveries
        .iter()
        .filter(|d| d.enabled && d.ordering_key.is_some())
        .map(|d| d.id.as_str())
        .collect();
    let keys = crate::ordering::Keys::Of(&ordered);
    let claim_heads = match lease {
        _ if ordered.is_empty() => None,
        None => {
            crate::ordering::release_next(tx, keys, now).await?;
            None
        }
        Some(lease) => {
            crate::ordering::release_next_claimed(tx, keys, now, &lease.node_id, to_millis(lease.until)).await?
        }
    };
    Ok(Written { pending, claim_heads })
}

/// What [`write_deliveries`] wrote.
pub(crate) struct Written {
    /// How many deliveries are pending.
    pub pending: usize,
    /// With a lease: the statement that claims, for the lease's node, the
    /// ordered deliveries that become their key's head, for the caller to
    /// run with its commit ([`crate::Store::commit_claiming`]). Nearly
    /// always heads among those written; an earlier one of a key that
    /// nothing held (after an ordering change) may be among them.
    pub claim_heads: Option<Sql>,
}

/// Writes events, in statements of [`ROWS_PER_INSERT`] rows. An
/// `Idempotency-Key` another publish took meanwhile fails the statement
/// with [`StoreError::Conflict`] (on SQLite, when the transaction is sent).
pub(crate) async fn write_events(tx: &mut Tx<'_>, events: &[(&Event, Option<&Idempotency>)]) -> Result<()> {
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let sql = Sql::new(
            "INSERT INTO events (id, tenant_id, sandbox, type, scope, workspace_id, created_at, data, \
             idempotency_key, request_hash, origin, ordering_key) ",
        )
        .push_values(chunk, |row, (event, idempotency)| {
            row.bind(&event.id)
                .bind(&event.tenant_id)
                .bind(event.sandbox)
                .bind(&event.event_type)
                .bind(event.scope.as_str())
                .bind(&event.workspace_id)
                .bind(to_millis(event.created_at))
                .bind(&event.data)
                .bind(idempotency.map(|i| i.key.as_str()))
                .bind(idempotency.map(|i| i.request_hash.to_vec()))
                .bind(event.origin.as_str())
                .bind(event.ordering_key.as_deref());
        });
        tx.gather(sql).await?;
    }
    Ok(())
}

/// Another publish (or node) took the same `Idempotency-Key` meanwhile —
/// the only unique value not generated here: the loser is told so.
pub(crate) fn key_taken(e: StoreError) -> StoreError {
    StoreError::conflict_on("Idempotency-Key")(e)
}

/// What raising events needs from the store: the candidates' cache and
/// the keys that open the subscriptions' secrets.
#[derive(Clone, Copy)]
pub(crate) struct Outbox<'a> {
    pub cache: &'a CandidateCache,
    pub keys: &'a Keyring,
}

impl Outbox<'_> {
    /// Writes `event` and a delivery for every subscription of its tenant
    /// and environment that it matches. Returns the number of pending
    /// deliveries.
    pub(crate) async fn publish_one(
        self,
        tx: &mut Tx<'_>,
        event: &Event,
        idempotency: Option<&Idempotency>,
    ) -> Result<usize> {
        let candidates = self.cache.load(tx, &event.tenant_id, event.sandbox, self.keys).await?;
        write_events(tx, &[(event, idempotency)]).await?;
        let mut request = None;
        let deliveries: Vec<NewDelivery<'_>> = candidates
            .iter()
            .filter(|sub| matches(sub, event))
            .map(|sub| NewDelivery {
                id: DeliveryId::generate(),
                event,
                subscription_id: &sub.id,
                enabled: sub.enabled,
                ordering_key: ordering_key_of(sub, event, &mut request),
            })
            .collect();
        Ok(write_deliveries(tx, &deliveries, None, event.created_at).await?.pending)
    }

    /// Publishes an operational event (about the webhook system itself) of
    /// `event_type` with JSON `data` to the tenant's subscriptions of this
    /// environment that subscribe to it. Returns the number of pending
    /// deliveries.
    pub(crate) async fn emit_operational(
        self,
        tx: &mut Tx<'_>,
        (tenant, sandbox): (&TenantId, bool),
        event_type: &str,
        data: String,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let workspace = tx
            .fetch_one(Sql::new("SELECT id FROM workspaces WHERE tenant_id = $1 AND is_default = TRUE").bind(tenant))
            .await?
            .text("id")?;
        let event = Event {
            id: EventId::generate(),
            tenant_id: tenant.clone(),
            sandbox,
            event_type: event_type.to_owned(),
            scope: Scope::PublicApi,
            workspace_id: WorkspaceId::parse(&workspace).map_err(StoreError::corrupt)?,
            created_at: now,
            data,
            origin: Provenance::System,
            ordering_key: None,
        };
        self.publish_one(tx, &event, None).await
    }

    /// Disables `sub` with `reason` unless it already is, cancels its
    /// pending deliveries (kept for a recovery), and tells the tenant with
    /// `webhook.disabled`. Returns whether it was this call that disabled it.
    pub(crate) async fn disable_subscription(
        self,
        tx: &mut Tx<'_>,
        sub: &Subscription,
        reason: DisabledReason,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let disabled = Sql::new(
            "UPDATE subscriptions SET enabled = FALSE, disabled_reason = $1, updated_at = $2 \
             WHERE id = $3 AND enabled = TRUE",
        )
        .bind(reason.as_str())
        .bind(to_millis(now))
        .bind(&sub.id);
        if tx.execute(disabled).await? != 1 {
            return Ok(false);
        }
        cancel_pending(tx, &sub.id, now).await?;
        let data = webhook_data(sub, false, Some(reason));
        let owner = (&sub.tenant_id, sub.filter.sandbox);
        self.emit_operational(tx, owner, "webhook.disabled", data, now).await?;
        tracing::warn!(webhook = %sub.id, reason = reason.as_str(), "subscription disabled");
        Ok(true)
    }
}
