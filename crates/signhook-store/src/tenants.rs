//! Tenants and their API keys. A key is shown once at creation; only its
//! SHA-256 is stored, and a presented key is found by that hash and then
//! compared in constant time.

use crate::db::{DbRow, Dialects, Sql};
use crate::{Result, Store, StoreError};
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

pub(crate) fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// What recognizes a key without revealing it: its last four characters.
fn key_hint(key: &str) -> String {
    key.chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}

/// The channel on which a revocation tells every node to forget the keys it
/// trusts from memory (PostgreSQL `NOTIFY`).
pub const KEYS_CHANNEL: &str = "signhook_api_keys";

/// An API key as its tenant sees it: never the key itself.
#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    /// `key_…`.
    pub id: ApiKeyId,
    /// Live or sandbox.
    pub environment: Environment,
    /// The name its tenant gave it.
    pub name: String,
    /// The key's last four characters.
    pub hint: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; it opens nothing since.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it last opened a request, to within about a minute (see
    /// [`Store::record_key_use`]); `None` if never.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What revoking a key did.
#[derive(Debug, Clone)]
pub enum Revocation {
    /// Revoked now (or already before): the record.
    Revoked(ApiKeyRecord),
    /// No such key of this tenant and environment.
    NotFound,
    /// It is the environment's last key: revoking it would lock the tenant
    /// out. Nothing changed.
    LastKey,
}

const KEY_COLUMNS: &str = "id, environment, name, hint, created_at, revoked_at, last_used_at";

fn key_from_row(row: &impl DbRow) -> Result<ApiKeyRecord> {
    let environment = row.text("environment")?;
    Ok(ApiKeyRecord {
        id: ApiKeyId::parse(&row.text("id")?).map_err(StoreError::corrupt)?,
        environment: Environment::parse(&environment)
            .ok_or_else(|| StoreError::corrupt(format_args!("api_keys.environment `{environment}`")))?,
        name: row.text("name")?,
        hint: row.text("hint")?,
        created_at: signhook_core::time::from_millis(row.int("created_at")?),
        revoked_at: row.opt_int("revoked_at")?.map(signhook_core::time::from_millis),
        last_used_at: row.opt_int("last_used_at")?.map(signhook_core::time::from_millis),
    })
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
        let mut tx = self.begin().await?;
        tx.gather(
            Sql::new("INSERT INTO tenants (id, name, created_at, admin_email) VALUES ($1, $2, $3, $4)")
                .bind(&tenant_id)
                .bind(name)
                .bind(now)
                .bind(admin_email),
        )
        .await?;
        for (env, key) in [(Environment::Live, &live_key), (Environment::Test, &test_key)] {
            tx.gather(
                Sql::new(
                    "INSERT INTO api_keys (id, tenant_id, environment, key_hash, created_at, name, hint) \
                     VALUES ($1, $2, $3, $4, $5, 'default', $6)",
                )
                .bind(&ApiKeyId::generate())
                .bind(&tenant_id)
                .bind(env.as_str())
                .bind(key_hash(key).to_vec())
                .bind(now)
                .bind(key_hint(key)),
            )
            .await?;
        }
        tx.gather(
            Sql::new(
                "INSERT INTO workspaces (id, tenant_id, name, is_default, created_at) VALUES ($1, $2, $3, TRUE, $4)",
            )
            .bind(&default_workspace_id)
            .bind(&tenant_id)
            .bind(DEFAULT_WORKSPACE_NAME)
            .bind(now),
        )
        .await?;
        tx.commit().await?;
        Ok(CreatedTenant {
            tenant_id,
            live_key,
            test_key,
            default_workspace_id,
        })
    }

    /// The tenant's name, as the sender of its signature requests; `None`
    /// for an unknown tenant.
    pub async fn tenant_name(&self, tenant: &TenantId) -> Result<Option<String>> {
        let sql = Sql::new("SELECT name FROM tenants WHERE id = $1").bind(tenant);
        match self.reader().fetch_optional(sql).await? {
            Some(row) => Ok(Some(row.text("name")?)),
            None => Ok(None),
        }
    }

    /// Finds who a presented key speaks for; `None` for an unknown or revoked
    /// key.
    pub async fn authenticate(&self, key: &str) -> Result<Option<Principal>> {
        let Some(environment) = Environment::of_key(key) else {
            return Ok(None);
        };
        let hash = key_hash(key);
        let sql = Sql::new(
            "SELECT tenant_id, environment, key_hash FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash.to_vec());
        let Some(row) = self.reader().fetch_optional(sql).await? else {
            return Ok(None);
        };
        let (tenant_id, stored_env, stored_hash) = (
            row.text("tenant_id")?,
            row.text("environment")?,
            row.opt_bytes("key_hash")?,
        );
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

    /// Records that `key` opened a request at `now`: its `last_used_at`
    /// moves forward (never back, whichever node writes last). The server
    /// calls this at most once a minute per key, not per request. A
    /// relaxed write: losing one in a power cut costs a minute of accuracy.
    pub async fn record_key_use(&self, key: &str, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.begin_relaxed().await?;
        tx.gather(
            Sql::new(
                "UPDATE api_keys SET last_used_at = $1 \
                 WHERE key_hash = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(to_millis(now))
            .bind(key_hash(key).to_vec()),
        )
        .await?;
        tx.commit().await
    }

    /// Makes a new key for `tenant` in `environment`, named `name`; returns
    /// it with the key in clear text, the only time it exists outside its
    /// owner's hands.
    pub async fn create_api_key(
        &self,
        tenant: &TenantId,
        environment: Environment,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<(ApiKeyRecord, String)> {
        let key = generate_api_key(environment, &mut rand::rngs::OsRng);
        let record = ApiKeyRecord {
            id: ApiKeyId::generate(),
            environment,
            name: name.to_owned(),
            hint: key_hint(&key),
            created_at: now,
            revoked_at: None,
            last_used_at: None,
        };
        let mut tx = self.begin().await?;
        tx.gather(
            Sql::new(
                "INSERT INTO api_keys (id, tenant_id, environment, key_hash, created_at, name, hint) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&record.id)
            .bind(tenant)
            .bind(environment.as_str())
            .bind(key_hash(&key).to_vec())
            .bind(to_millis(now))
            .bind(&record.name)
            .bind(&record.hint),
        )
        .await?;
        tx.commit().await?;
        Ok((record, key))
    }

    /// The tenant's keys in `environment`, revoked ones too, oldest first.
    pub async fn list_api_keys(&self, tenant: &TenantId, environment: Environment) -> Result<Vec<ApiKeyRecord>> {
        let sql = Sql::new(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND environment = $2 ORDER BY created_at, id"
        ))
        .bind(tenant)
        .bind(environment.as_str());
        self.reader().fetch_parsed(sql, key_from_row).await
    }

    /// Revokes key `id` of `tenant` in `environment`, unless it is the last
    /// one there. On PostgreSQL every node is told at commit
    /// ([`KEYS_CHANNEL`]) to forget the keys it trusts from memory.
    pub async fn revoke_api_key(
        &self,
        tenant: &TenantId,
        environment: Environment,
        id: &ApiKeyId,
        now: DateTime<Utc>,
    ) -> Result<Revocation> {
        let mut tx = self.begin().await?;
        let keys = Sql::new(tx.pick(Dialects {
            sqlite: "SELECT id, environment, name, hint, created_at, revoked_at, last_used_at FROM api_keys \
                     WHERE tenant_id = $1 AND environment = $2 ORDER BY id",
            postgres: "SELECT id, environment, name, hint, created_at, revoked_at, last_used_at FROM api_keys \
                       WHERE tenant_id = $1 AND environment = $2 ORDER BY id FOR UPDATE",
        }))
        .bind(tenant)
        .bind(environment.as_str());
        let keys = tx.fetch_parsed(keys, key_from_row).await?;
        let Some(mut key) = keys.iter().find(|k| &k.id == id).cloned() else {
            return Ok(Revocation::NotFound);
        };
        if key.revoked_at.is_some() {
            return Ok(Revocation::Revoked(key));
        }
        if keys.iter().filter(|k| k.revoked_at.is_none()).count() == 1 {
            return Ok(Revocation::LastKey);
        }
        tx.gather(
            Sql::new("UPDATE api_keys SET revoked_at = $1 WHERE id = $2")
                .bind(to_millis(now))
                .bind(id),
        )
        .await?;
        tx.notify(KEYS_CHANNEL).await?;
        tx.commit().await?;
        key.revoked_at = Some(now);
        Ok(Revocation::Revoked(key))
    }
}
