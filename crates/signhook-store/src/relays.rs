//! Relay subscriptions: `signhook listen`'s subscription of an API key,
//! whose attempts the node holding the CLI's WebSocket makes over it.
//!
//! A relay subscription is a subscription like any other — it matches
//! events, gets deliveries, retries and keeps a delivery log — with three
//! differences, all kept here and in [`crate::claims`]:
//!
//! - there is one per API key, made the first time the key listens and
//!   resumed after ([`Store::open_relay`]), so its secret stays the same;
//! - only the node that holds its socket claims its deliveries: the holder
//!   names itself in `relay_node` and keeps `relay_until` ahead
//!   ([`Store::renew_relay_hold`]); a claim leaves the deliveries of any
//!   relay this node does not hold, and a node that dies stops renewing,
//!   so its hold lapses by itself;
//! - while nobody holds it, its deliveries wait pending: unclaimed, so
//!   untried, burning no retry. At most a backlog of the newest ones is
//!   kept: when a CLI connects, older pending ones are canceled (they stay
//!   in the log and can be resent).

use crate::db::{DbRow, Dialects, Sql};
use crate::subscriptions::{load_subscription, reset_streak, written, StoredColumns, Subscription, INSERT};
use crate::tenants::key_hash;
use crate::{Result, Store, StoreError};
use chrono::{DateTime, Utc};
use signhook_core::endpoint::{CustomHeaders, SignatureScheme, WebhookUrl};
use signhook_core::filter::{EventFilter, ScopeFilter, SubscriptionFilter, WorkspaceFilter};
use signhook_core::ids::{SubscriptionId, TenantId};
use signhook_core::ordering::{OnFailure, Ordering};
use signhook_core::time::to_millis;
use signhook_verify::WebhookSecret;

/// The `url` a relay subscription is stored with. Never sent to: its
/// deliveries go over the socket. A name under `.invalid` (RFC 2606)
/// resolves nowhere, so even a bug that posted there would reach no one.
pub const RELAY_URL: &str = "https://signhook-listen.invalid/";

/// Where a relay subscription's deliveries go, as pages show it in place
/// of its placeholder URL.
pub const RELAY_DESTINATION: &str = "signhook listen (relay to a developer's machine)";

/// The description a relay subscription is made with.
pub const RELAY_DESCRIPTION: &str = "signhook listen (local development relay)";

/// A CLI connecting: what its relay subscription must become.
#[derive(Debug)]
pub struct OpenRelay {
    /// The key's tenant.
    pub tenant_id: TenantId,
    /// The key's environment.
    pub sandbox: bool,
    /// The key (`key_…`).
    pub key_id: String,
    /// The CLI's `--events`.
    pub events: EventFilter,
    /// The secret, if the relay is made now; a resumed one keeps its own.
    pub new_secret: WebhookSecret,
    /// The node that holds the socket.
    pub node: String,
    /// Until when it holds it unless it renews.
    pub hold_until: DateTime<Utc>,
    /// The most pending deliveries kept; older ones are canceled.
    pub backlog: u32,
}

/// What [`Store::open_relay`] did.
#[derive(Debug)]
pub struct OpenedRelay {
    /// The relay subscription, held by the node.
    pub subscription: Subscription,
    /// Whether it was made now (the key's first `listen`).
    pub created: bool,
    /// Pending deliveries canceled beyond the backlog.
    pub canceled: u64,
    /// Pending deliveries that wait for the CLI, now due.
    pub waiting: u64,
}

/// Cancels a relay's pending deliveries beyond the newest `$3` (ids are
/// time-ordered).
const TRIM_BACKLOG: &str = "UPDATE deliveries SET status = 'canceled', next_attempt_at = NULL, due_at = NULL, \
     leased_until = NULL, leased_by = NULL, updated_at = $1 \
     WHERE subscription_id = $2 AND status = 'pending' AND id NOT IN ( \
         SELECT id FROM deliveries WHERE subscription_id = $2 AND status = 'pending' ORDER BY id DESC LIMIT $3)";

impl Store {
    /// The id (`key_…`) of the live API key `key`, if it is one.
    pub async fn api_key_id(&self, key: &str) -> Result<Option<String>> {
        let sql =
            Sql::new("SELECT id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL").bind(key_hash(key).to_vec());
        self.reader()
            .fetch_optional(sql)
            .await?
            .map(|row| row.text("id"))
            .transpose()
    }

    /// The relay subscription of key `key_id`, if it has listened before.
    pub async fn relay_of_key(&self, tenant: &TenantId, sandbox: bool, key_id: &str) -> Result<Option<Subscription>> {
        let row = self
            .reader()
            .fetch_optional(
                Sql::new(
                    "SELECT id FROM subscriptions WHERE relay_key_id = $1 AND tenant_id = $2 AND sandbox = $3 \
                     AND deleted_at IS NULL",
                )
                .bind(key_id)
                .bind(tenant)
                .bind(sandbox),
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let id = SubscriptionId::parse(&row.text("id")?).map_err(StoreError::corrupt)?;
        self.get_subscription(tenant, sandbox, &id).await
    }

    /// Makes or resumes the relay subscription of `open.key_id` and gives
    /// its socket to `open.node`, taking it from any node that held it (a
    /// CLI that reconnected elsewhere; the old node finds out when it
    /// renews). Its filter becomes the CLI's; it is enabled (a developer's
    /// `listen` is a fresh start, its old failure streak forgotten); its
    /// pending deliveries beyond the backlog are canceled and the rest
    /// are due now.
    pub async fn open_relay(&self, open: OpenRelay, now: DateTime<Utc>) -> Result<OpenedRelay> {
        let now_ms = to_millis(now);
        let mut tx = self.begin().await?;
        let existing = tx
            .fetch_optional(
                Sql::new(tx.pick(Dialects {
                    sqlite: "SELECT id FROM subscriptions WHERE relay_key_id = $1 AND deleted_at IS NULL",
                    postgres: "SELECT id FROM subscriptions WHERE relay_key_id = $1 AND deleted_at IS NULL FOR UPDATE",
                }))
                .bind(&open.key_id),
            )
            .await?;
        let events = serde_json::Value::from(open.events.to_texts()).to_string();
        let (id, created) = match existing {
            Some(row) => {
                let id = SubscriptionId::parse(&row.text("id")?).map_err(StoreError::corrupt)?;
                tx.gather(
                    Sql::new(
                        "UPDATE subscriptions SET subscribed_events = $1, enabled = TRUE, disabled_reason = NULL, \
                         updated_at = $2 WHERE id = $3",
                    )
                    .bind(events)
                    .bind(now_ms)
                    .bind(&id),
                )
                .await?;
                tx.gather(reset_streak(&id)).await?;
                (id, false)
            }
            None => {
                let sub = Subscription {
                    id: SubscriptionId::generate(),
                    tenant_id: open.tenant_id.clone(),
                    url: WebhookUrl::parse(RELAY_URL, false).expect("the relay URL is a valid https URL"),
                    description: RELAY_DESCRIPTION.to_owned(),
                    enabled: true,
                    disabled_reason: None,
                    auto_retry: true,
                    filter: SubscriptionFilter {
                        sandbox: open.sandbox,
                        events: open.events.clone(),
                        scopes: ScopeFilter::parse(&[signhook_core::filter::WILDCARD.to_owned()])
                            .expect("the wildcard is a valid scope filter"),
                        workspaces: WorkspaceFilter::parse(&[signhook_core::filter::WILDCARD.to_owned()])
                            .expect("the wildcard is a valid workspace filter"),
                    },
                    headers: CustomHeaders::default(),
                    signature_scheme: SignatureScheme::Standard,
                    rate_limit_per_second: None,
                    ordering: Ordering::None,
                    ordering_on_failure: OnFailure::Skip,
                    secret: open.new_secret,
                    previous_secret: None,
                    failing_since: None,
                    failure_count: 0,
                    created_at: now,
                    updated_at: now,
                    relay: None,
                };
                tx.gather(written(INSERT, &sub, StoredColumns::of(&sub, &self.keys)?))
                    .await?;
                tx.gather(Sql::new("INSERT INTO subscription_health (subscription_id) VALUES ($1)").bind(&sub.id))
                    .await?;
                tx.gather(
                    Sql::new("UPDATE subscriptions SET kind = 'relay', relay_key_id = $1 WHERE id = $2")
                        .bind(&open.key_id)
                        .bind(&sub.id),
                )
                .await?;
                (sub.id, true)
            }
        };
        tx.gather(
            Sql::new("UPDATE subscriptions SET relay_node = $1, relay_until = $2 WHERE id = $3")
                .bind(&open.node)
                .bind(to_millis(open.hold_until))
                .bind(&id),
        )
        .await?;
        let canceled = tx
            .execute(
                Sql::new(TRIM_BACKLOG)
                    .bind(now_ms)
                    .bind(&id)
                    .bind(i64::from(open.backlog)),
            )
            .await?;
        // What waited is due for the holder now (or at its retry's time):
        // tell its dispatcher, and on PostgreSQL the other nodes, which
        // leave it.
        let waiting = tx
            .fetch_one(
                Sql::new("SELECT COUNT(*) AS n FROM deliveries WHERE subscription_id = $1 AND status = 'pending'")
                    .bind(&id),
            )
            .await?
            .int("n")?
            .max(0) as u64;
        tx.work_due_at(now).await?;
        let subscription = load_subscription(&mut tx, &id, &self.keys).await?;
        // Two CLIs of one key making its relay at once: one wins, the
        // other is told to connect again.
        tx.commit().await.map_err(StoreError::conflict_on("api_key"))?;
        Ok(OpenedRelay {
            subscription,
            created,
            canceled,
            waiting,
        })
    }

    /// Keeps `node`'s hold on relay `id` until `until`. `false` when the
    /// node no longer holds it (the CLI reconnected to another node, or the
    /// relay was deleted): then it must close its socket.
    pub async fn renew_relay_hold(&self, id: &SubscriptionId, node: &str, until: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.begin().await?;
        let renewed = tx
            .execute(
                Sql::new(
                    "UPDATE subscriptions SET relay_until = $1 WHERE id = $2 AND relay_node = $3 \
                     AND deleted_at IS NULL",
                )
                .bind(to_millis(until))
                .bind(id)
                .bind(node),
            )
            .await?;
        tx.commit().await?;
        Ok(renewed == 1)
    }

    /// `node` lets go of relay `id` (its socket closed): its deliveries
    /// wait for the next CLI. A hold another node took meanwhile is left.
    pub async fn end_relay_hold(&self, id: &SubscriptionId, node: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.gather(
            Sql::new(
                "UPDATE subscriptions SET relay_node = NULL, relay_until = NULL WHERE id = $1 AND relay_node = $2",
            )
            .bind(id)
            .bind(node),
        )
        .await?;
        tx.commit().await
    }
}
