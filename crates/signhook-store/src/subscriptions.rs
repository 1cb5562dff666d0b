//! Webhook subscriptions: where to send, what to send, how to sign.

use crate::{from_json, Page, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use signhook_core::endpoint::{CustomHeaders, SignatureScheme, WebhookUrl};
use signhook_core::filter::{EventFilter, ScopeFilter, SubscriptionFilter, WorkspaceFilter};
use signhook_core::ids::{SubscriptionId, TenantId};
use signhook_core::time::{from_millis, to_millis};
use signhook_verify::WebhookSecret;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use std::collections::BTreeMap;

/// Why a subscription was disabled by its owner (as opposed to by policy).
pub const DISABLED_MANUALLY: &str = "manual";

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
    pub disabled_reason: Option<String>,
    /// Whether failed attempts are retried.
    pub auto_retry: bool,
    /// What it listens to (environment, types, scopes, workspaces).
    pub filter: SubscriptionFilter,
    /// Extra request headers.
    pub headers: CustomHeaders,
    /// How requests are signed.
    pub signature_scheme: SignatureScheme,
    /// The current signing secret.
    pub secret: WebhookSecret,
    /// The secret before the last rotation, still signing until it expires.
    pub previous_secret: Option<(WebhookSecret, DateTime<Utc>)>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl Subscription {
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
}

pub(crate) const COLUMNS: &str = "id, tenant_id, sandbox, url, description, enabled, disabled_reason, auto_retry, \
    subscribed_events, scopes, workspaces, headers, signature_scheme, secret, previous_secret, \
    previous_secret_expires_at, created_at, updated_at";

pub(crate) fn subscription_from_row(row: &SqliteRow) -> Result<Subscription> {
    let text = |column: &str| -> Result<String> { Ok(row.try_get::<String, _>(column)?) };
    let list = |column: &str| -> Result<Vec<String>> { from_json(column, &text(column)?) };
    let corrupt = |column: &'static str| move |e: String| StoreError::Corrupt(format!("{column}: {e}"));
    let previous_secret = match row.try_get::<Option<String>, _>("previous_secret")? {
        Some(secret) => Some((
            WebhookSecret::parse(&secret).map_err(|e| corrupt("previous_secret")(e.to_string()))?,
            from_millis(
                row.try_get::<Option<i64>, _>("previous_secret_expires_at")?
                    .unwrap_or(0),
            ),
        )),
        None => None,
    };
    let headers: BTreeMap<String, String> = from_json("headers", &text("headers")?)?;
    let scheme = text("signature_scheme")?;
    Ok(Subscription {
        id: SubscriptionId::parse(&text("id")?).map_err(|e| corrupt("id")(e.to_string()))?,
        tenant_id: TenantId::parse(&text("tenant_id")?).map_err(|e| corrupt("tenant_id")(e.to_string()))?,
        // Stored URLs were checked when written; `--dev` may since be off, but
        // the send-time rules (not parsing) decide what may be reached.
        url: WebhookUrl::parse(&text("url")?, true).map_err(|e| corrupt("url")(e.to_string()))?,
        description: text("description")?,
        enabled: row.try_get("enabled")?,
        disabled_reason: row.try_get("disabled_reason")?,
        auto_retry: row.try_get("auto_retry")?,
        filter: SubscriptionFilter {
            sandbox: row.try_get("sandbox")?,
            events: EventFilter::parse(&list("subscribed_events")?)
                .map_err(|e| corrupt("subscribed_events")(e.to_string()))?,
            scopes: ScopeFilter::parse(&list("scopes")?).map_err(|e| corrupt("scopes")(e.to_string()))?,
            workspaces: WorkspaceFilter::parse(&list("workspaces")?)
                .map_err(|e| corrupt("workspaces")(e.to_string()))?,
        },
        headers: CustomHeaders::parse(&headers).map_err(|e| corrupt("headers")(e.to_string()))?,
        signature_scheme: SignatureScheme::parse(&scheme).ok_or_else(|| corrupt("signature_scheme")(scheme.clone()))?,
        secret: WebhookSecret::parse(&text("secret")?).map_err(|e| corrupt("secret")(e.to_string()))?,
        previous_secret,
        created_at: from_millis(row.try_get("created_at")?),
        updated_at: from_millis(row.try_get("updated_at")?),
    })
}

fn json_list(texts: Vec<String>) -> String {
    serde_json::Value::from(texts).to_string()
}

/// Writes every mutable column of `sub` (used by create and update alike).
async fn write_subscription(conn: &mut SqliteConnection, sub: &Subscription, insert: bool) -> Result<()> {
    let sql = if insert {
        "INSERT INTO subscriptions (url, description, enabled, disabled_reason, auto_retry, subscribed_events, \
         scopes, workspaces, headers, signature_scheme, secret, previous_secret, previous_secret_expires_at, \
         updated_at, id, tenant_id, sandbox, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    } else {
        "UPDATE subscriptions SET url = ?, description = ?, enabled = ?, disabled_reason = ?, auto_retry = ?, \
         subscribed_events = ?, scopes = ?, workspaces = ?, headers = ?, signature_scheme = ?, secret = ?, \
         previous_secret = ?, previous_secret_expires_at = ?, updated_at = ? \
         WHERE id = ? AND tenant_id = ? AND sandbox = ? AND created_at = ?"
    };
    let headers = serde_json::to_string(sub.headers.as_map()).map_err(StoreError::corrupt)?;
    sqlx::query(sql)
        .bind(sub.url.as_str())
        .bind(&sub.description)
        .bind(sub.enabled)
        .bind(&sub.disabled_reason)
        .bind(sub.auto_retry)
        .bind(json_list(sub.filter.events.to_texts()))
        .bind(json_list(sub.filter.scopes.to_texts()))
        .bind(json_list(sub.filter.workspaces.to_texts()))
        .bind(headers)
        .bind(sub.signature_scheme.as_str())
        .bind(sub.secret.expose())
        .bind(sub.previous_secret.as_ref().map(|(s, _)| s.expose()))
        .bind(sub.previous_secret.as_ref().map(|(_, until)| to_millis(*until)))
        .bind(to_millis(sub.updated_at))
        .bind(sub.id.as_str())
        .bind(sub.tenant_id.as_str())
        .bind(sub.filter.sandbox)
        .bind(to_millis(sub.created_at))
        .execute(conn)
        .await?;
    Ok(())
}

async fn fetch_live(
    conn: &mut SqliteConnection,
    tenant: &TenantId,
    sandbox: bool,
    id: &SubscriptionId,
) -> Result<Option<Subscription>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE id = ? AND tenant_id = ? AND sandbox = ? AND deleted_at IS NULL"
    );
    let row = sqlx::query(&sql)
        .bind(id.as_str())
        .bind(tenant.as_str())
        .bind(sandbox)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(subscription_from_row).transpose()
}

/// Every subscription of a tenant's environment that is not deleted, for
/// matching inside the publishing transaction.
pub(crate) async fn live_subscriptions(
    conn: &mut SqliteConnection,
    tenant: &TenantId,
    sandbox: bool,
) -> Result<Vec<Subscription>> {
    let sql = format!("SELECT {COLUMNS} FROM subscriptions WHERE tenant_id = ? AND sandbox = ? AND deleted_at IS NULL");
    let rows = sqlx::query(&sql)
        .bind(tenant.as_str())
        .bind(sandbox)
        .fetch_all(conn)
        .await?;
    rows.iter().map(subscription_from_row).collect()
}

impl Store {
    /// Creates a subscription.
    pub async fn create_subscription(&self, new: NewSubscription, now: DateTime<Utc>) -> Result<Subscription> {
        let sub = Subscription {
            id: SubscriptionId::generate(),
            tenant_id: new.tenant_id,
            url: new.url,
            description: new.description,
            enabled: new.enabled,
            disabled_reason: (!new.enabled).then(|| DISABLED_MANUALLY.to_owned()),
            auto_retry: new.auto_retry,
            filter: new.filter,
            headers: new.headers,
            signature_scheme: new.signature_scheme,
            secret: new.secret,
            previous_secret: None,
            created_at: now,
            updated_at: now,
        };
        let mut conn = self.writer.acquire().await?;
        write_subscription(&mut conn, &sub, true).await?;
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
        let mut conn = self.reader.acquire().await?;
        fetch_live(&mut conn, tenant, sandbox, id).await
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
            "SELECT {COLUMNS} FROM subscriptions WHERE tenant_id = ? AND sandbox = ? AND deleted_at IS NULL \
             AND id > ? ORDER BY id LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(sandbox)
            .bind(after.map_or("", SubscriptionId::as_str))
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.reader)
            .await?;
        let items = rows.iter().map(subscription_from_row).collect::<Result<Vec<_>>>()?;
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
        let mut tx = self.writer.begin().await?;
        let Some(mut sub) = fetch_live(&mut tx, tenant, sandbox, id).await? else {
            return Ok(None);
        };
        if let Some(url) = changes.url {
            sub.url = url;
        }
        if let Some(description) = changes.description {
            sub.description = description;
        }
        if let Some(enabled) = changes.enabled {
            if enabled != sub.enabled {
                sub.enabled = enabled;
                sub.disabled_reason = (!enabled).then(|| DISABLED_MANUALLY.to_owned());
            }
        }
        if let Some(auto_retry) = changes.auto_retry {
            sub.auto_retry = auto_retry;
        }
        if let Some(events) = changes.events {
            sub.filter.events = events;
        }
        if let Some(scopes) = changes.scopes {
            sub.filter.scopes = scopes;
        }
        if let Some(workspaces) = changes.workspaces {
            sub.filter.workspaces = workspaces;
        }
        if let Some(headers) = changes.headers {
            sub.headers = headers;
        }
        if let Some(scheme) = changes.signature_scheme {
            sub.signature_scheme = scheme;
        }
        sub.updated_at = now;
        write_subscription(&mut tx, &sub, false).await?;
        tx.commit().await?;
        Ok(Some(sub))
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
        let mut tx = self.writer.begin().await?;
        let Some(mut sub) = fetch_live(&mut tx, tenant, sandbox, id).await? else {
            return Ok(None);
        };
        let old = std::mem::replace(&mut sub.secret, new_secret);
        sub.previous_secret = Some((old, overlap_until));
        sub.updated_at = now;
        write_subscription(&mut tx, &sub, false).await?;
        tx.commit().await?;
        Ok(Some(sub))
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
        let now = to_millis(now);
        let mut tx = self.writer.begin().await?;
        let deleted = sqlx::query(
            "UPDATE subscriptions SET deleted_at = ?, enabled = 0, updated_at = ? \
             WHERE id = ? AND tenant_id = ? AND sandbox = ? AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(now)
        .bind(id.as_str())
        .bind(tenant.as_str())
        .bind(sandbox)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if deleted {
            sqlx::query(
                "UPDATE deliveries SET status = 'canceled', next_attempt_at = NULL, leased_until = NULL, \
                 leased_by = NULL, updated_at = ? WHERE subscription_id = ? AND status = 'pending'",
            )
            .bind(now)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }
}
