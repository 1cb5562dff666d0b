//! Webhook subscriptions: where to send, what to send, how to sign.

use crate::db::{DbRow, Dialects, Sql, Tx};
use crate::sealing::{sealed_at, Keyring};
use crate::{from_json, Page, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use signhook_core::endpoint::{CustomHeaders, SignatureScheme, WebhookUrl};
use signhook_core::filter::{EventFilter, ScopeFilter, SubscriptionFilter, WorkspaceFilter};
use signhook_core::ids::{SubscriptionId, TenantId};
use signhook_core::ordering::{OnFailure, Ordering};
use signhook_core::policy::DisabledReason;
use signhook_core::time::{from_millis, to_millis};
use signhook_verify::WebhookSecret;
use std::collections::BTreeMap;

/// A subscription as stored.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// `wh_…`
    pub id: SubscriptionId,
    /// Its owner.
    pub tenant_id: TenantId,
    /// The endpoint.
    pub url: WebhookUrl,
    /// Its owner's description; also sent in every payload.
    pub description: String,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// Why it is disabled, when it is.
    pub disabled_reason: Option<DisabledReason>,
    /// Whether failed attempts are retried.
    pub auto_retry: bool,
    /// What it listens to (environment, types, scopes, workspaces).
    pub filter: SubscriptionFilter,
    /// Extra request headers.
    pub headers: CustomHeaders,
    /// How requests are signed.
    pub signature_scheme: SignatureScheme,
    /// The most deliveries per second, when capped.
    pub rate_limit_per_second: Option<u32>,
    /// How its deliveries are ordered ([`signhook_core::ordering`]).
    pub ordering: Ordering,
    /// What a dead letter does to the later deliveries of its key.
    pub ordering_on_failure: OnFailure,
    /// The current signing secret.
    pub secret: WebhookSecret,
    /// The secret before the last rotation, still signing until it expires.
    pub previous_secret: Option<(WebhookSecret, DateTime<Utc>)>,
    /// When its current run of failures began (read-only: kept by the
    /// delivery results).
    pub failing_since: Option<DateTime<Utc>>,
    /// Failed attempts since the last success (read-only, likewise).
    pub failure_count: u32,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Set on a relay subscription (`signhook listen`): its deliveries go
    /// over the CLI's socket, not to `url`.
    pub relay: Option<Relay>,
}

/// What makes a subscription a relay of `signhook listen` (see
/// [`crate::relays`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// The API key it belongs to (`key_…`).
    pub key_id: String,
    /// The node holding the CLI's socket, and until when it holds it
    /// unless it renews; `None` while no CLI is connected.
    pub held_by: Option<(String, DateTime<Utc>)>,
}

impl Subscription {
    /// Whether its deliveries go over a `signhook listen` socket.
    pub fn is_relay(&self) -> bool {
        self.relay.is_some()
    }

    /// Where its deliveries go, as pages show it: its URL, or for a relay
    /// the `signhook listen` connection (its stored URL is a placeholder).
    pub fn destination(&self) -> &str {
        if self.is_relay() {
            crate::relays::RELAY_DESTINATION
        } else {
            self.url.as_str()
        }
    }

    /// The secrets that sign a request made at `now`: the current one, and the
    /// previous one while its overlap lasts.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&WebhookSecret> {
        let mut secrets = vec![&self.secret];
        if let Some((previous, until)) = &self.previous_secret {
            if *until > now {
                secrets.push(previous);
            }
        }
        secrets
    }
}

/// What creating a subscription needs; every value already validated.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    /// The owner.
    pub tenant_id: TenantId,
    /// The endpoint.
    pub url: WebhookUrl,
    /// The description.
    pub description: String,
    /// Whether it starts enabled.
    pub enabled: bool,
    /// Whether failures are retried.
    pub auto_retry: bool,
    /// What it listens to.
    pub filter: SubscriptionFilter,
    /// Extra request headers.
    pub headers: CustomHeaders,
    /// How requests are signed.
    pub signature_scheme: SignatureScheme,
    /// The most deliveries per second, when capped.
    pub rate_limit_per_second: Option<u32>,
    /// How its deliveries are ordered.
    pub ordering: Ordering,
    /// What a dead letter does to the later deliveries of its key.
    pub ordering_on_failure: OnFailure,
    /// The signing secret.
    pub secret: WebhookSecret,
}

/// A partial update; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionChanges {
    /// New endpoint.
    pub url: Option<WebhookUrl>,
    /// New description.
    pub description: Option<String>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// Retry or not.
    pub auto_retry: Option<bool>,
    /// New `subscribed_events`.
    pub events: Option<EventFilter>,
    /// New `scopes`.
    pub scopes: Option<ScopeFilter>,
    /// New `workspaces`.
    pub workspaces: Option<WorkspaceFilter>,
    /// New headers (replacing the old ones).
    pub headers: Option<CustomHeaders>,
    /// New signature scheme.
    pub signature_scheme: Option<SignatureScheme>,
    /// New rate limit (`Some(None)` removes it).
    pub rate_limit_per_second: Option<Option<u32>>,
    /// New ordering.
    pub ordering: Option<Ordering>,
    /// New behaviour of an ordered key on a dead letter.
    pub ordering_on_failure: Option<OnFailure>,
}

impl SubscriptionChanges {
    fn apply(self, sub: &mut Subscription) {
        if let Some(url) = self.url {
            sub.url = url;
        }
        if let Some(description) = self.description {
            sub.description = description;
        }
        if let Some(enabled) = self.enabled {
            if enabled != sub.enabled {
                sub.enabled = enabled;
                sub.disabled_reason = (!enabled).then_some(DisabledReason::Manual);
            }
        }
        if let Some(auto_retry) = self.auto_retry {
            sub.auto_retry = auto_retry;
        }
        if let Some(events) = self.events {
            sub.filter.events = events;
        }
        if let Some(scopes) = self.scopes {
            sub.filter.scopes = scopes;
        }
        if let Some(workspaces) = self.workspaces {
            sub.filter.workspaces = workspaces;
        }
        if let Some(headers) = self.headers {
            sub.headers = headers;
        }
        if let Some(scheme) = self.signature_scheme {
            sub.signature_scheme = scheme;
        }
        if let Some(limit) = self.rate_limit_per_second {
            sub.rate_limit_per_second = limit;
        }
        if let Some(ordering) = self.ordering {
            sub.ordering = ordering;
        }
        if let Some(on_failure) = self.ordering_on_failure {
            sub.ordering_on_failure = on_failure;
        }
    }
}

/// Every column of a subscription, its health beside it; select them
/// `FROM subscriptions s JOIN subscription_health h ON h.subscription_id = s.id`.
pub(crate) const SUBSCRIPTION_COLUMNS: &str = "s.id, s.tenant_id, s.sandbox, s.url, s.description, s.enabled, \
    s.disabled_reason, s.auto_retry, s.subscribed_events, s.scopes, s.workspaces, s.headers, s.signature_scheme, \
    s.secret, s.previous_secret, s.previous_secret_expires_at, s.created_at, s.updated_at, s.rate_limit_per_second, \
    s.ordering, s.ordering_on_failure, h.failing_since, h.failure_count, s.kind, s.relay_key_id, s.relay_node, s.relay_until";

/// Clears a subscription's failure streak (after a success, or when its
/// owner enables it again). A streak already clear is left alone: no row is
/// rewritten.
pub(crate) fn reset_streak(id: &SubscriptionId) -> Sql {
    Sql::new(
        "UPDATE subscription_health SET failing_since = NULL, failure_count = 0, warned_at = NULL \
         WHERE subscription_id = $1 AND (failing_since IS NOT NULL OR failure_count <> 0 OR warned_at IS NOT NULL)",
    )
    .bind(id)
}

/// The subscription with id `id`, deleted or not, read in `tx`.
pub(crate) async fn load_subscription(tx: &mut Tx<'_>, id: &SubscriptionId, keys: &Keyring) -> Result<Subscription> {
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s JOIN subscription_health h ON h.subscription_id = s.id \
         WHERE s.id = $1"
    );
    let row = tx.fetch_one(Sql::new(sql).bind(id)).await?;
    subscription_from_row(&row, keys)
}

/// Cancels a subscription's pending deliveries: on deletion and whenever it
/// is disabled. Canceled deliveries can be resent or recovered once it is
/// enabled again.
pub(crate) async fn cancel_pending(tx: &mut Tx<'_>, subscription: &SubscriptionId, now: DateTime<Utc>) -> Result<()> {
    tx.gather(
        Sql::new(
            "UPDATE deliveries SET status = 'canceled', next_attempt_at = NULL, due_at = NULL, \
             leased_until = NULL, leased_by = NULL, updated_at = $1 \
             WHERE subscription_id = $2 AND status = 'pending'",
        )
        .bind(to_millis(now))
        .bind(subscription),
    )
    .await
}

/// The `data` of `webhook.*` operational events.
pub(crate) fn webhook_data(sub: &Subscription, enabled: bool, disabled_reason: Option<DisabledReason>) -> String {
    serde_json::json!({"webhook": {
        "id": sub.id.as_str(),
        "url": sub.url.as_str(),
        "description": sub.description,
        "enabled": enabled,
        "disabled_reason": disabled_reason.map(DisabledReason::as_str),
    }})
    .to_string()
}

/// The text forms of a subscription's structured columns.
pub(crate) struct StoredColumns {
    events: String,
    scopes: String,
    workspaces: String,
    headers: String,
    secret: String,
    previous_secret: Option<String>,
}

impl StoredColumns {
    /// The columns of `sub`, its secrets and custom headers sealed with
    /// `keys`.
    pub(crate) fn of(sub: &Subscription, keys: &Keyring) -> Result<Self> {
        let list = |texts: Vec<String>| serde_json::Value::from(texts).to_string();
        let headers = serde_json::to_string(sub.headers.as_map()).map_err(StoreError::corrupt)?;
        Ok(Self {
            events: list(sub.filter.events.to_texts()),
            scopes: list(sub.filter.scopes.to_texts()),
            workspaces: list(sub.filter.workspaces.to_texts()),
            headers: keys.seal(&sealed_at("headers", &sub.id), headers.as_bytes()),
            secret: keys.seal(&sealed_at("secret", &sub.id), sub.secret.expose().as_bytes()),
            previous_secret: sub
                .previous_secret
                .as_ref()
                .map(|(s, _)| keys.seal(&sealed_at("previous_secret", &sub.id), s.expose().as_bytes())),
        })
    }
}

/// A subscription from its row, its sealed columns opened with `keys`.
pub(crate) fn subscription_from_row(row: &impl DbRow, keys: &Keyring) -> Result<Subscription> {
    fn corrupt(column: &'static str) -> impl Fn(String) -> StoreError {
        move |e| StoreError::Corrupt(format!("{column}: {e}"))
    }
    let list = |column: &str| -> Result<Vec<String>> { from_json(column, &row.text(column)?) };
    let id = SubscriptionId::parse(&row.text("id")?).map_err(|e| corrupt("id")(e.to_string()))?;
    let opened = |column: &str, stored: &str| keys.open_text(&sealed_at(column, &id), stored);
    let previous_secret = match row.opt_text("previous_secret")? {
        Some(secret) => Some((
            WebhookSecret::parse(&opened("previous_secret", &secret)?)
                .map_err(|e| corrupt("previous_secret")(e.to_string()))?,
            from_millis(row.opt_int("previous_secret_expires_at")?.unwrap_or(0)),
        )),
        None => None,
    };
    let headers: BTreeMap<String, String> = from_json("headers", &opened("headers", &row.text("headers")?)?)?;
    let scheme = row.text("signature_scheme")?;
    let ordering = row.text("ordering")?;
    let on_failure = row.text("ordering_on_failure")?;
    Ok(Subscription {
        id: id.clone(),
        tenant_id: TenantId::parse(&row.text("tenant_id")?).map_err(|e| corrupt("tenant_id")(e.to_string()))?,
        // Stored URLs were checked when written; whether `--dev` is on now
        // is for the send-time rules to decide, not for parsing.
        url: WebhookUrl::parse(&row.text("url")?, true).map_err(|e| corrupt("url")(e.to_string()))?,
        description: row.text("description")?,
        enabled: row.flag("enabled")?,
        disabled_reason: match row.opt_text("disabled_reason")? {
            Some(reason) => Some(DisabledReason::parse(&reason).ok_or_else(|| corrupt("disabled_reason")(reason))?),
            None => None,
        },
        auto_retry: row.flag("auto_retry")?,
        filter: SubscriptionFilter {
            sandbox: row.flag("sandbox")?,
            events: EventFilter::from_stored(&list("subscribed_events")?)
                .map_err(|e| corrupt("subscribed_events")(e.to_string()))?,
            scopes: ScopeFilter::parse(&list("scopes")?).map_err(|e| corrupt("scopes")(e.to_string()))?,
            workspaces: WorkspaceFilter::parse(&list("workspaces")?)
                .map_err(|e| corrupt("workspaces")(e.to_string()))?,
        },
        headers: CustomHeaders::parse(&headers).map_err(|e| corrupt("headers")(e.to_string()))?,
        signature_scheme: SignatureScheme::parse(&scheme).ok_or_else(|| corrupt("signature_scheme")(scheme.clone()))?,
        rate_limit_per_second: row
            .opt_int("rate_limit_per_second")?
            .map(|n| n.clamp(1, i64::from(u32::MAX)) as u32),
        ordering: Ordering::parse(&ordering).ok_or_else(|| corrupt("ordering")(ordering.clone()))?,
        ordering_on_failure: OnFailure::parse(&on_failure)
            .ok_or_else(|| corrupt("ordering_on_failure")(on_failure.clone()))?,
        secret: WebhookSecret::parse(&opened("secret", &row.text("secret")?)?)
            .map_err(|e| corrupt("secret")(e.to_string()))?,
        previous_secret,
        failing_since: row.opt_int("failing_since")?.map(from_millis),
        failure_count: u32::try_from(row.int("failure_count")?).unwrap_or(u32::MAX),
        created_at: from_millis(row.int("created_at")?),
        updated_at: from_millis(row.int("updated_at")?),
        relay: match row.text("kind")?.as_str() {
            "relay" => Some(Relay {
                key_id: row
                    .opt_text("relay_key_id")?
                    .ok_or_else(|| corrupt("relay_key_id")("missing".into()))?,
                held_by: match (row.opt_text("relay_node")?, row.opt_int("relay_until")?) {
                    (Some(node), Some(until)) => Some((node, from_millis(until))),
                    _ => None,
                },
            }),
            _ => None,
        },
    })
}

/// Every column of a subscription, in the order both [`INSERT`] and
/// [`UPDATE`] number them.
pub(crate) const INSERT: &str = "INSERT INTO subscriptions (url, description, enabled, disabled_reason, auto_retry, \
    subscribed_events, scopes, workspaces, headers, signature_scheme, secret, previous_secret, \
    previous_secret_expires_at, updated_at, rate_limit_per_second, id, tenant_id, sandbox, created_at, \
    ordering, ordering_on_failure) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)";

/// The configuration its owner may change, written back (the key columns
/// only identify the row).
const UPDATE: &str = "UPDATE subscriptions SET url = $1, description = $2, enabled = $3, disabled_reason = $4, \
    auto_retry = $5, subscribed_events = $6, scopes = $7, workspaces = $8, headers = $9, signature_scheme = $10, \
    secret = $11, previous_secret = $12, previous_secret_expires_at = $13, updated_at = $14, \
    rate_limit_per_second = $15, ordering = $20, ordering_on_failure = $21 WHERE id = $16 AND tenant_id = $17 AND sandbox = $18 AND created_at = $19";

/// [`INSERT`] or [`UPDATE`] with every column of `sub` bound.
pub(crate) fn written(statement: &'static str, sub: &Subscription, columns: StoredColumns) -> Sql {
    Sql::new(statement)
        .bind(sub.url.as_str())
        .bind(&sub.description)
        .bind(sub.enabled)
        .bind(sub.disabled_reason.map(DisabledReason::as_str))
        .bind(sub.auto_retry)
        .bind(columns.events)
        .bind(columns.scopes)
        .bind(columns.workspaces)
        .bind(columns.headers)
        .bind(sub.signature_scheme.as_str())
        .bind(columns.secret)
        .bind(columns.previous_secret)
        .bind(sub.previous_secret.as_ref().map(|(_, until)| to_millis(*until)))
        .bind(to_millis(sub.updated_at))
        .bind(sub.rate_limit_per_second.map(i64::from))
        .bind(&sub.id)
        .bind(&sub.tenant_id)
        .bind(sub.filter.sandbox)
        .bind(to_millis(sub.created_at))
        .bind(sub.ordering.as_str())
        .bind(sub.ordering_on_failure.as_str())
}

impl Store {
    /// Loads a live (not deleted) subscription of the tenant's environment
    /// in a transaction, locking its row where the backend can, changes it
    /// with `change` (which may write more in the same transaction), and
    /// writes it back. `None` when it is not the tenant's.
    async fn modify_subscription(
        &self,
        tenant: &TenantId,
        sandbox: bool,
        id: &SubscriptionId,
        change: impl AsyncFnOnce(&mut Subscription, &mut Tx<'_>) -> Result<()>,
    ) -> Result<Option<Subscription>> {
        let mut tx = self.begin().await?;
        let sql = tx.pick(Dialects {
            sqlite: "SELECT s.id FROM subscriptions s \
                     WHERE s.id = $1 AND s.tenant_id = $2 AND s.sandbox = $3 AND s.deleted_at IS NULL",
            postgres: "SELECT s.id FROM subscriptions s \
                       WHERE s.id = $1 AND s.tenant_id = $2 AND s.sandbox = $3 AND s.deleted_at IS NULL FOR UPDATE",
        });
        let found = tx
            .fetch_optional(Sql::new(sql).bind(id).bind(tenant).bind(sandbox))
            .await?
            .is_some();
        if !found {
            return Ok(None);
        }
        let mut sub = load_subscription(&mut tx, id, &self.keys).await?;
        change(&mut sub, &mut tx).await?;
        let columns = StoredColumns::of(&sub, &self.keys)?;
        tx.gather(written(UPDATE, &sub, columns)).await?;
        tx.commit().await?;
        Ok(Some(sub))
    }

    /// Creates a subscription.
    pub async fn create_subscription(&self, new: NewSubscription, now: DateTime<Utc>) -> Result<Subscription> {
        let sub = Subscription {
            id: SubscriptionId::generate(),
            tenant_id: new.tenant_id,
            url: new.url,
            description: new.description,
            enabled: new.enabled,
            disabled_reason: (!new.enabled).then_some(DisabledReason::Manual),
            auto_retry: new.auto_retry,
            filter: new.filter,
            headers: new.headers,
            signature_scheme: new.signature_scheme,
            rate_limit_per_second: new.rate_limit_per_second,
            ordering: new.ordering,
            ordering_on_failure: new.ordering_on_failure,
            secret: new.secret,
            previous_secret: None,
            failing_since: None,
            failure_count: 0,
            created_at: now,
            updated_at: now,
            relay: None,
        };
        let mut tx = self.begin().await?;
        tx.gather(written(INSERT, &sub, StoredColumns::of(&sub, &self.keys)?))
            .await?;
        tx.gather(Sql::new("INSERT INTO subscription_health (subscription_id) VALUES ($1)").bind(&sub.id))
            .await?;
        tx.commit().await?;
        Ok(sub)
    }

    /// One subscription of the tenant's environment; `None` when it does not
    /// exist, is deleted, or belongs to someone else.
    pub async fn get_subscription(
        &self,
        tenant: &TenantId,
        sandbox: bool,
        id: &SubscriptionId,
    ) -> Result<Option<Subscription>> {
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s JOIN subscription_health h ON h.subscription_id = s.id \
             WHERE s.id = $1 AND s.tenant_id = $2 AND s.sandbox = $3 AND s.deleted_at IS NULL"
        );
        let row = self
            .reader()
            .fetch_optional(Sql::new(sql).bind(id).bind(tenant).bind(sandbox))
            .await?;
        row.as_ref()
            .map(|row| subscription_from_row(row, &self.keys))
            .transpose()
    }

    /// A page of the tenant's subscriptions, oldest first, after `after`.
    pub async fn list_subscriptions(
        &self,
        tenant: &TenantId,
        sandbox: bool,
        after: Option<&SubscriptionId>,
        limit: u32,
    ) -> Result<Page<Subscription>> {
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s JOIN subscription_health h ON h.subscription_id = s.id \
             WHERE s.tenant_id = $1 AND s.sandbox = $2 AND s.deleted_at IS NULL AND s.id > $3 ORDER BY s.id LIMIT $4"
        );
        let sql = Sql::new(sql)
            .bind(tenant)
            .bind(sandbox)
            .bind(after.map_or("", SubscriptionId::as_str))
            .bind(i64::from(limit) + 1);
        let items = self
            .reader()
            .fetch_parsed(sql, |row| subscription_from_row(row, &self.keys))
            .await?;
        Ok(Page::from_rows(items, limit))
    }

    /// Applies `changes`; `None` when the subscription is not the tenant's.
    pub async fn update_subscription(
        &self,
        tenant: &TenantId,
        sandbox: bool,
        id: &SubscriptionId,
        changes: SubscriptionChanges,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>> {
        self.modify_subscription(tenant, sandbox, id, async |sub, tx| {
            let was_enabled = sub.enabled;
            let was = (sub.ordering, sub.ordering_on_failure);
            changes.apply(sub);
            sub.updated_at = now;
            if was != (sub.ordering, sub.ordering_on_failure) {
                crate::ordering::ordering_changed(tx, sub, was.0, now).await?;
            }
            if was_enabled && !sub.enabled {
                // Paused: what is pending is kept as canceled, for `recover`.
                cancel_pending(tx, &sub.id, now).await?;
            }
            if !was_enabled && sub.enabled {
                // A fresh start: the disable policy forgets the old failures.
                tx.gather(reset_streak(&sub.id)).await?;
                sub.failing_since = None;
                sub.failure_count = 0;
            }
            Ok(())
        })
        .await
    }

    /// Replaces the secret; the old one keeps signing until `overlap_until`.
    pub async fn rotate_secret(
        &self,
        tenant: &TenantId,
        sandbox: bool,
        id: &SubscriptionId,
        new_secret: WebhookSecret,
        overlap_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>> {
        self.modify_subscription(tenant, sandbox, id, async |sub, _| {
            let old = std::mem::replace(&mut sub.secret, new_secret);
            sub.previous_secret = Some((old, overlap_until));
            sub.updated_at = now;
            Ok(())
        })
        .await
    }

    /// Ends a rotation's overlap now: the previous secret stops signing.
    pub async fn promote_secret(
        &self,
        tenant: &TenantId,
        sandbox: bool,
        id: &SubscriptionId,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>> {
        self.modify_subscription(tenant, sandbox, id, async |sub, _| {
            sub.previous_secret = None;
            sub.updated_at = now;
            Ok(())
        })
        .await
    }

    /// Deletes a subscription: it stops matching, its pending deliveries are
    /// canceled, its delivery log stays readable. `false` when it was not the
    /// tenant's.
    pub async fn delete_subscription(
        &self,
        tenant: &TenantId,
        sandbox: bool,
        id: &SubscriptionId,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let deleted = tx
            .execute(
                Sql::new(
                    "UPDATE subscriptions SET deleted_at = $1, enabled = FALSE, updated_at = $1 \
                     WHERE id = $2 AND tenant_id = $3 AND sandbox = $4 AND deleted_at IS NULL",
                )
                .bind(to_millis(now))
                .bind(id)
                .bind(tenant)
                .bind(sandbox),
            )
            .await?
            == 1;
        if deleted {
            cancel_pending(&mut tx, id, now).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }
}
