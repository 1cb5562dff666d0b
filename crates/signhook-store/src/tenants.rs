//! Tenants and their API keys. A key is shown once at creation; only its
//! SHA-256 is stored, and a presented key is found by that hash and then
//! compared in constant time.

use crate::{with_pool, DbRow, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use signhook_core::auth::{generate_api_key, Environment};
use signhook_core::ids::{ApiKeyId, TenantId, WorkspaceId};
use signhook_core::time::to_millis;
use subtle::ConstantTimeEq;

/// The name of the workspace every tenant starts with.
pub const DEFAULT_WORKSPACE_NAME: &str = "Default";

/// A tenant just created, with its keys in clear text (the only time they
/// exist outside their owner's hands).
#[derive(Debug, Clone)]
pub struct CreatedTenant {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Its `sk_live_…` key.
    pub live_key: String,
    /// Its `sk_test_…` key.
    pub test_key: String,
    /// Its default workspace.
    pub default_workspace_id: WorkspaceId,
}

/// Who an API key speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Live or sandbox.
    pub environment: Environment,
}

fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Store {
    /// Creates a tenant with a live key, a test key and a default workspace.
    pub async fn create_tenant(&self, name: &str, now: DateTime<Utc>) -> Result<CreatedTenant> {
        self.create_tenant_with_admin(name, None, now).await
    }

    /// Creates a tenant whose warnings (`webhook.disabling_soon`) are also
    /// e-mailed to `admin_email` when SMTP is configured.
    pub async fn create_tenant_with_admin(
        &self,
        name: &str,
        admin_email: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<CreatedTenant> {
        let tenant_id = TenantId::generate();
        let default_workspace_id = WorkspaceId::generate();
        // Keys come from the operating system's CSPRNG.
        let mut rng = rand::rngs::OsRng;
        let live_key = generate_api_key(Environment::Live, &mut rng);
        let test_key = generate_api_key(Environment::Test, &mut rng);
        let now = to_millis(now);
        with_pool!(self, writer, |pool, dialect| {
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO tenants (id, name, created_at, admin_email) VALUES ($1, $2, $3, $4)")
                .bind(tenant_id.as_str())
                .bind(name)
                .bind(now)
                .bind(admin_email)
                .execute(&mut *tx)
                .await?;
            for (env, key) in [(Environment::Live, &live_key), (Environment::Test, &test_key)] {
                sqlx::query(
                    "INSERT INTO api_keys (id, tenant_id, environment, key_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(ApiKeyId::generate().as_str())
                .bind(tenant_id.as_str())
                .bind(env.as_str())
                .bind(key_hash(key).as_slice())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO workspaces (id, tenant_id, name, is_default, created_at) VALUES ($1, $2, $3, TRUE, $4)",
            )
            .bind(default_workspace_id.as_str())
            .bind(tenant_id.as_str())
            .bind(DEFAULT_WORKSPACE_NAME)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(CreatedTenant {
            tenant_id,
            live_key,
            test_key,
            default_workspace_id,
        })
    }

    /// Finds who a presented key speaks for; `None` for an unknown or revoked
    /// key.
    pub async fn authenticate(&self, key: &str) -> Result<Option<Principal>> {
        let Some(environment) = Environment::of_key(key) else {
            return Ok(None);
        };
        let hash = key_hash(key);
        let found = with_pool!(self, reader, |pool, dialect| {
            let row = sqlx::query(
                "SELECT tenant_id, environment, key_hash FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
            )
            .bind(hash.as_slice())
            .fetch_optional(pool)
            .await?;
            match row {
                Some(row) => Some((
                    row.text("tenant_id")?,
                    row.text("environment")?,
                    row.opt_bytes("key_hash")?,
                )),
                None => None,
            }
        });
        let Some((tenant_id, stored_env, stored_hash)) = found else {
            return Ok(None);
        };
        // The index lookup already matched; compare again in constant time so
        // that the decision itself never depends on where bytes differ.
        if !bool::from(stored_hash.unwrap_or_default().as_slice().ct_eq(hash.as_slice())) {
            return Ok(None);
        }
        if Environment::parse(&stored_env) != Some(environment) {
            return Ok(None);
        }
        let tenant_id = TenantId::parse(&tenant_id).map_err(StoreError::corrupt)?;
        Ok(Some(Principal { tenant_id, environment }))
    }
}
