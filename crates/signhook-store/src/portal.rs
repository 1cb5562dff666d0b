//! The embeddable portal's links and sessions, and the tenant's theme for
//! it (DESIGN §9).
//!
//! A link is made by an API key for its tenant and environment, with the
//! capabilities its holder gets; it opens once, before it expires, and
//! becomes a session whose token the portal's pages carry. Tokens are
//! kept only as their SHA-256. Opening is one conditional `UPDATE`, so two
//! nodes (or two clicks) cannot both open the same link.

use crate::db::{DbRow, Sql};
use crate::{Result, Store, StoreError};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use signhook_core::auth::generate_token;
use signhook_core::ids::TenantId;
use signhook_core::time::to_millis;

/// A portal session: whose pages, which environment, what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalSession {
    /// The tenant whose webhook pages it shows.
    pub tenant_id: TenantId,
    /// The environment it is bound to.
    pub sandbox: bool,
    /// Whether it may change endpoints and see secrets (`write`).
    pub can_write: bool,
    /// The token every form of the session carries.
    pub csrf: String,
}

/// A link just opened: the session's token, in clear text.
#[derive(Debug, Clone)]
pub struct OpenedPortal {
    /// Goes into the portal pages' path.
    pub token: String,
}

/// How the portal looks to a tenant's customers; every part optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortalTheme {
    /// The name shown in the portal's header instead of "Signhook".
    pub product_name: Option<String>,
    /// An image shown beside it.
    pub logo_url: Option<String>,
    /// `#rrggbb`, for buttons and links.
    pub accent_color: Option<String>,
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A portal session's last use is written at most this often.
const TOUCH_EVERY_MS: i64 = 60_000;

impl Store {
    /// Makes a one-time portal link for `tenant`'s environment, valid until
    /// `expires_at`; returns its token (the only time it exists in clear).
    pub async fn create_portal_link(
        &self,
        tenant: &TenantId,
        sandbox: bool,
        can_write: bool,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<String> {
        let token = generate_token(&mut rand::thread_rng());
        let mut tx = self.begin().await?;
        tx.gather(
            Sql::new(
                "INSERT INTO portal_sessions (link_hash, tenant_id, sandbox, can_write, link_expires_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(token_hash(&token))
            .bind(tenant)
            .bind(sandbox)
            .bind(can_write)
            .bind(to_millis(expires_at))
            .bind(to_millis(now)),
        )
        .await?;
        tx.commit().await?;
        Ok(token)
    }

    /// Opens the link of `token` if it was never opened and has not expired:
    /// the session that it becomes. `None` for a used, expired or unknown
    /// link.
    pub async fn open_portal_link(&self, token: &str, now: DateTime<Utc>) -> Result<Option<OpenedPortal>> {
        let (session, csrf) = {
            let mut rng = rand::thread_rng();
            (generate_token(&mut rng), generate_token(&mut rng))
        };
        let now_ms = to_millis(now);
        let mut tx = self.begin().await?;
        let opened = tx
            .execute(
                Sql::new(
                    "UPDATE portal_sessions SET session_hash = $1, csrf = $2, opened_at = $3, last_seen_at = $3 \
                     WHERE link_hash = $4 AND opened_at IS NULL AND link_expires_at > $3",
                )
                .bind(token_hash(&session))
                .bind(csrf)
                .bind(now_ms)
                .bind(token_hash(token)),
            )
            .await?;
        tx.commit().await?;
        Ok((opened == 1).then_some(OpenedPortal { token: session }))
    }

    /// The live portal session of `token`: opened, and used within `idle`.
    pub async fn portal_session(
        &self,
        token: &str,
        now: DateTime<Utc>,
        idle: std::time::Duration,
    ) -> Result<Option<PortalSession>> {
        let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        let now_ms = to_millis(now);
        let sql = Sql::new(
            "SELECT tenant_id, sandbox, can_write, csrf, last_seen_at FROM portal_sessions \
             WHERE session_hash = $1 AND last_seen_at > $2",
        )
        .bind(token_hash(token))
        .bind(now_ms.saturating_sub(idle_ms));
        let Some(row) = self.reader().fetch_optional(sql).await? else {
            return Ok(None);
        };
        let session = PortalSession {
            tenant_id: TenantId::parse(&row.text("tenant_id")?).map_err(StoreError::corrupt)?,
            sandbox: row.flag("sandbox")?,
            can_write: row.flag("can_write")?,
            csrf: row.text("csrf")?,
        };
        if now_ms - row.int("last_seen_at")? > TOUCH_EVERY_MS {
            let mut tx = self.begin().await?;
            tx.gather(
                Sql::new("UPDATE portal_sessions SET last_seen_at = $1 WHERE session_hash = $2")
                    .bind(now_ms)
                    .bind(token_hash(token)),
            )
            .await?;
            tx.commit().await?;
        }
        Ok(Some(session))
    }

    /// The tenant's portal theme (every part `None` until set).
    pub async fn portal_theme(&self, tenant: &TenantId) -> Result<PortalTheme> {
        let sql = Sql::new("SELECT product_name, logo_url, accent_color FROM portal_themes WHERE tenant_id = $1")
            .bind(tenant);
        let Some(row) = self.reader().fetch_optional(sql).await? else {
            return Ok(PortalTheme::default());
        };
        Ok(PortalTheme {
            product_name: row.opt_text("product_name")?,
            logo_url: row.opt_text("logo_url")?,
            accent_color: row.opt_text("accent_color")?,
        })
    }

    /// Replaces the tenant's portal theme (checked by the caller).
    pub async fn set_portal_theme(&self, tenant: &TenantId, theme: &PortalTheme, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.gather(
            Sql::new(
                "INSERT INTO portal_themes (tenant_id, product_name, logo_url, accent_color, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id) DO UPDATE SET \
                 product_name = excluded.product_name, logo_url = excluded.logo_url, \
                 accent_color = excluded.accent_color, updated_at = excluded.updated_at",
            )
            .bind(tenant)
            .bind(theme.product_name.as_deref())
            .bind(theme.logo_url.as_deref())
            .bind(theme.accent_color.as_deref())
            .bind(to_millis(now)),
        )
        .await?;
        tx.commit().await
    }
}
