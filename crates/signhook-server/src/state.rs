//! What every handler shares.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use signhook_core::ids::{TenantId, WorkspaceId};
use signhook_core::netguard::AddressPolicy;
use signhook_core::time::Clock;
use signhook_delivery::DeliveryMetrics;
use signhook_store::tenants::Principal;
use signhook_store::{Store, StoreError};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The API's shared state. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Persistence.
    pub store: Store,
    /// The injected clock.
    pub clock: Arc<dyn Clock>,
    /// Wakes the schedulers (a recovery job was created).
    pub jobs: Arc<Notify>,
    /// Settings the handlers need.
    pub api: Arc<ApiSettings>,
    /// The Prometheus registry and the gauges read at scrape time.
    pub metrics: Arc<Metrics>,
    /// Publishes events with group commit.
    pub publisher: signhook_delivery::Publisher,
    /// Lookups every request makes, kept in memory.
    pub caches: Arc<Caches>,
    /// The e-signature lifecycle: signature requests, links, files.
    pub lifecycle: Arc<crate::lifecycle::Lifecycle>,
    /// `--api-rate-limit`: requests per second per API key, on this node.
    pub rate_limit: Option<Arc<ApiRateLimit>>,
    /// Whether the database takes this node's writes (readiness).
    pub storage: Arc<StorageWatch>,
    /// The `signhook listen` sockets this node holds.
    pub relays: Arc<crate::routes::listen::Relays>,
}

/// Whether the database takes this node's writes, as its requests find out.
/// A write refused for want of space or permission (answered 503
/// `storage_unavailable`) makes the node unready (`/readyz`) for at least
/// [`StorageWatch::HOLD`], until a probe write succeeds; meanwhile reads and
/// liveness go on. It warns once per [`StorageWatch::WARN_EVERY`], not once
/// per request, and counts refusals in `signhook_storage_refusals_total`.
#[derive(Debug)]
pub struct StorageWatch {
    node_id: String,
    /// The last refusal, while the node is unready.
    refused_at: std::sync::Mutex<Option<std::time::Instant>>,
    warned_at: std::sync::Mutex<Option<std::time::Instant>>,
    refusals: Counter,
    ready: Gauge,
}

impl StorageWatch {
    /// How long a node stays unready after a refused write, at least.
    pub const HOLD: Duration = Duration::from_secs(5);
    /// How often, at most, a refusal is logged.
    pub const WARN_EVERY: Duration = Duration::from_secs(30);

    /// A watch for `node_id`'s writes, counted in `metrics`.
    pub fn new(node_id: String, metrics: &Metrics) -> Self {
        metrics.storage_ready.set(1);
        Self {
            node_id,
            refused_at: std::sync::Mutex::default(),
            warned_at: std::sync::Mutex::default(),
            refusals: metrics.storage_refusals.clone(),
            ready: metrics.storage_ready.clone(),
        }
    }

    /// A write was refused.
    pub fn refused(&self) {
        let now = std::time::Instant::now();
        *self.refused_at.lock().expect("the watch's lock is never poisoned") = Some(now);
        self.refusals.inc();
        self.ready.set(0);
        let mut warned = self.warned_at.lock().expect("the watch's lock is never poisoned");
        if warned.is_none_or(|at| now.duration_since(at) >= Self::WARN_EVERY) {
            *warned = Some(now);
            tracing::warn!(
                "the database refuses writes (disk full, read-only or over quota): answering 503 and not ready until it takes them again"
            );
        }
    }

    /// `Ok` when the node can take writes: nothing was refused, or the hold
    /// is over and a probe write just succeeded.
    pub async fn ready(&self, store: &Store, now: chrono::DateTime<chrono::Utc>) -> Result<(), crate::error::ApiError> {
        let refused_at = *self.refused_at.lock().expect("the watch's lock is never poisoned");
        let Some(at) = refused_at else { return Ok(()) };
        if at.elapsed() < Self::HOLD {
            return Err(crate::error::ApiError::StorageNotReady);
        }
        match store.probe_write(&self.node_id, now).await {
            Ok(()) => {
                let mut refused = self.refused_at.lock().expect("the watch's lock is never poisoned");
                // Unless another refusal came meanwhile.
                if *refused == Some(at) {
                    *refused = None;
                    self.ready.set(1);
                    tracing::info!("the database takes writes again: ready");
                }
                Ok(())
            }
            Err(StoreError::StorageRefused(_)) => {
                self.refused();
                Err(crate::error::ApiError::StorageNotReady)
            }
            Err(other) => Err(other.into()),
        }
    }
}

/// The API's rate limit per key, on this node: one tenant's script cannot
/// take the capacity every other tenant shares. A key that sends faster
/// than its rate, beyond a burst of one second's worth, is answered 429
/// until its rate allows again.
pub struct ApiRateLimit {
    per_second: u32,
    limiter: governor::RateLimiter<
        Principal,
        governor::state::keyed::HashMapStateStore<Principal>,
        governor::clock::DefaultClock,
    >,
}

impl ApiRateLimit {
    /// `per_second` requests per second for each key.
    pub fn new(per_second: std::num::NonZeroU32) -> Self {
        Self {
            per_second: per_second.get(),
            limiter: governor::RateLimiter::hashmap(governor::Quota::per_second(per_second)),
        }
    }

    /// Counts a request of `key`: `Ok`, or the 429 that says when it may
    /// send again.
    pub fn admit(&self, key: &Principal) -> Result<(), crate::error::ApiError> {
        use governor::clock::Clock as _;
        self.limiter
            .check_key(key)
            .map_err(|not_until| crate::error::ApiError::RateLimited {
                per_second: self.per_second,
                retry_after: not_until.wait_time_from(governor::clock::DefaultClock::default().now()),
            })
    }
}

/// The settings that change how the API behaves.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// `--dev`: allow `http://` endpoints.
    pub dev: bool,
    /// How long a rotated-out secret keeps signing.
    pub secret_overlap: Duration,
    /// Which endpoint addresses may be used (checked at creation for IP
    /// literals; at send time for everything).
    pub addresses: Arc<AddressPolicy>,
    /// The dashboard's sessions end after this long unused.
    pub session_idle: Duration,
    /// Cookies carry `Secure` (the public URL is https).
    pub secure_cookies: bool,
    /// Who may frame the embeddable portal (CSP `frame-ancestors`
    /// sources); nobody when `None`.
    pub portal_frame_ancestors: Option<String>,
    /// The public URL: the base of the links the dashboard hands out.
    pub public_url: url::Url,
}

/// Everything `/metrics` shows.
#[derive(Debug)]
pub struct Metrics {
    /// The registry that is encoded.
    pub registry: Registry,
    /// Pending deliveries that are due and unclaimed.
    pub due: Gauge,
    /// How long the oldest of them has been due, in seconds.
    pub oldest_due_seconds: Gauge<f64, AtomicU64>,
    /// Subscriptions disabled (by their owner or by policy).
    pub disabled: Gauge,
    /// Writes the database refused (disk full, read-only, over quota).
    pub storage_refusals: Counter,
    /// 1 while the database takes this node's writes, 0 while not.
    pub storage_ready: Gauge,
    /// Times this node forgot the API keys it trusts from memory because
    /// another node revoked one.
    pub key_cache_resets: Counter,
}

impl Metrics {
    /// The registry with the engine's metrics and the gauges.
    pub fn new(delivery: &DeliveryMetrics) -> Self {
        let mut registry = Registry::default();
        delivery.register(&mut registry);
        let metrics = Self {
            due: Gauge::default(),
            oldest_due_seconds: Gauge::default(),
            disabled: Gauge::default(),
            storage_refusals: Counter::default(),
            storage_ready: Gauge::default(),
            key_cache_resets: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "signhook_api_key_cache_resets",
            "Times this node forgot the API keys it trusted from memory because another node revoked one",
            metrics.key_cache_resets.clone(),
        );
        registry.register(
            "signhook_storage_refusals",
            "Writes the database refused: disk full, read-only or over quota",
            metrics.storage_refusals.clone(),
        );
        registry.register(
            "signhook_storage_ready",
            "1 while the database takes this node's writes, 0 while it refuses them",
            metrics.storage_ready.clone(),
        );
        registry.register(
            "signhook_deliveries_due",
            "Pending deliveries that are due and not yet claimed",
            metrics.due.clone(),
        );
        registry.register(
            "signhook_oldest_due_delivery_age_seconds",
            "How long the oldest due, unclaimed delivery has been waiting",
            metrics.oldest_due_seconds.clone(),
        );
        registry.register(
            "signhook_subscriptions_disabled",
            "Subscriptions that are disabled",
            metrics.disabled.clone(),
        );
        Self { registry, ..metrics }
    }
}

/// How long an authenticated API key is trusted without asking the
/// database again: a revoked key stops working within this time.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(10);
/// The most keys remembered; past it the cache starts over.
const KEY_CACHE_SIZE: usize = 10_000;
/// How often, at most, this node writes down that a key was used
/// (`last_used_at`): the API keys page shows the last use to about this,
/// and a busy key costs one write a minute instead of one per request.
pub const KEY_USE_EVERY: Duration = Duration::from_secs(60);

/// What nearly every API request looks up, kept in memory: on SQLite each
/// lookup is a round trip to a database thread, and under load those hops
/// cost more than the work. Both are safe to keep: a tenant's default
/// workspace never changes, and a key is re-checked every
/// [`KEY_CACHE_TTL`]. It also remembers when this node last wrote each
/// key's last use, to write it at most every [`KEY_USE_EVERY`].
#[derive(Debug, Default)]
pub struct Caches {
    keys: std::sync::Mutex<std::collections::HashMap<[u8; 32], (Principal, std::time::Instant)>>,
    key_uses: KeyUses,
    default_workspaces: std::sync::RwLock<std::collections::HashMap<TenantId, WorkspaceId>>,
    schemas: SchemaCache,
    publish_rules: PublishRulesCache,
}

/// What publishing a tenant's type needs (its setting, its own type of
/// that name), by tenant and type, with when it was read: trusted for
/// [`KEY_CACHE_TTL`], as a key is, so a publish reads nothing from the
/// database. This node forgets a tenant's at once when it changes them;
/// another node's change holds here within that time.
type PublishRulesCache = std::sync::Mutex<PublishRulesByType>;
type PublishRulesByType =
    std::collections::HashMap<(TenantId, String), (signhook_store::event_types::PublishRules, std::time::Instant)>;

/// The tenants' event-type schemas, compiled: by tenant and type, with the
/// revision they were compiled from (a changed type has a higher one, so a
/// stale copy is never used, on any node).
type SchemaCache = std::sync::RwLock<
    std::collections::HashMap<(TenantId, String), (i64, Arc<signhook_core::event_types::EventSchema>)>,
>;

/// How many compiled schemas a node keeps before it starts over.
const SCHEMA_CACHE_SIZE: usize = 10_000;

impl Caches {
    /// The principal of `key`, authenticated against `store` at most every
    /// [`KEY_CACHE_TTL`]. Unknown keys are never remembered. A key that
    /// opens the request at `now` has its last use written down when this
    /// node has not done so for [`KEY_USE_EVERY`].
    pub async fn authenticate(
        &self,
        store: &Store,
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Principal>, StoreError> {
        let found = self.principal_of(store, key).await?;
        if found.is_some() && self.key_uses.due(key, now) {
            // Written in the request rather than in a task of its own, so
            // nothing outlives the server's shutdown; once a minute per key
            // it costs one small write. A failure only costs accuracy.
            if let Err(e) = store.record_key_use(key, now).await {
                tracing::warn!(error = %crate::error::error_chain(&e), "could not record an API key's last use");
            }
        }
        Ok(found)
    }

    async fn principal_of(&self, store: &Store, key: &str) -> Result<Option<Principal>, StoreError> {
        let hash = key_digest(key);
        let now = std::time::Instant::now();
        if let Some((principal, at)) = self.lock_keys().get(&hash) {
            if now.duration_since(*at) < KEY_CACHE_TTL {
                return Ok(Some(principal.clone()));
            }
        }
        let found = store.authenticate(key).await?;
        let mut keys = self.lock_keys();
        match &found {
            Some(principal) => {
                if keys.len() >= KEY_CACHE_SIZE {
                    keys.clear();
                }
                keys.insert(hash, (principal.clone(), now));
            }
            None => {
                keys.remove(&hash);
            }
        }
        Ok(found)
    }

    /// Forgets every key trusted from memory: the next request of each is
    /// checked against the database (after a revocation).
    pub fn forget_keys(&self) {
        self.lock_keys().clear();
    }

    fn lock_keys(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<[u8; 32], (Principal, std::time::Instant)>> {
        // Only plain inserts and removes happen under this lock.
        self.keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What publishing the tenant's `event_type` needs, read from `store`
    /// at most every [`KEY_CACHE_TTL`].
    pub async fn publish_rules(
        &self,
        store: &Store,
        tenant: &TenantId,
        event_type: &str,
    ) -> Result<signhook_store::event_types::PublishRules, StoreError> {
        let key = (tenant.clone(), event_type.to_owned());
        let now = std::time::Instant::now();
        if let Some((rules, at)) = self.lock_publish_rules().get(&key) {
            if now.duration_since(*at) < KEY_CACHE_TTL {
                return Ok(rules.clone());
            }
        }
        let rules = store.publish_rules(tenant, event_type).await?;
        let mut cached = self.lock_publish_rules();
        if cached.len() >= SCHEMA_CACHE_SIZE {
            cached.clear();
        }
        cached.insert(key, (rules.clone(), now));
        Ok(rules)
    }

    /// Forgets what publishing the tenant's types needs (this node changed
    /// its setting or one of its types): the next publish reads it again.
    pub fn forget_publish_rules(&self, tenant: &TenantId) {
        self.lock_publish_rules().retain(|(of, _), _| of != tenant);
    }

    fn lock_publish_rules(&self) -> std::sync::MutexGuard<'_, PublishRulesByType> {
        // Only plain inserts and removes happen under this lock.
        self.publish_rules
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The compiled schema of the tenant's type `t`, compiled once per
    /// revision. `Err` when the stored schema no longer compiles (a bug or
    /// a hand-edited database).
    pub fn tenant_schema(
        &self,
        tenant: &TenantId,
        t: &signhook_store::event_types::TenantEventType,
    ) -> Result<Arc<signhook_core::event_types::EventSchema>, String> {
        let key = (tenant.clone(), t.name.to_string());
        if let Some((revision, schema)) = self.schemas.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
            if *revision == t.revision {
                return Ok(schema.clone());
            }
        }
        let document = serde_json::from_str(&t.schema).map_err(|e| format!("event type {}: {e}", t.name))?;
        let schema = Arc::new(
            signhook_core::event_types::EventSchema::parse(document)
                .map_err(|e| format!("event type {}: {e}", t.name))?,
        );
        let mut schemas = self.schemas.write().unwrap_or_else(|p| p.into_inner());
        if schemas.len() >= SCHEMA_CACHE_SIZE {
            schemas.clear();
        }
        schemas.insert(key, (t.revision, schema.clone()));
        Ok(schema)
    }

    /// The tenant's default workspace.
    pub async fn default_workspace(&self, store: &Store, tenant: &TenantId) -> Result<WorkspaceId, StoreError> {
        if let Some(id) = self
            .default_workspaces
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(tenant)
        {
            return Ok(id.clone());
        }
        let id = store.default_workspace(tenant).await?;
        self.default_workspaces
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(tenant.clone(), id.clone());
        Ok(id)
    }
}

/// A key's SHA-256, what the caches know it by.
fn key_digest(key: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).into()
}

/// When this node last wrote down each key's use.
#[derive(Debug, Default)]
struct KeyUses(std::sync::Mutex<std::collections::HashMap<[u8; 32], chrono::DateTime<chrono::Utc>>>);

impl KeyUses {
    /// Whether `key`'s use at `now` is to be written: never written by this
    /// node, or last [`KEY_USE_EVERY`] ago or more. When it is, `now` is
    /// remembered at once, so requests arriving together write once.
    fn due(&self, key: &str, now: chrono::DateTime<chrono::Utc>) -> bool {
        let every = chrono::Duration::from_std(KEY_USE_EVERY).unwrap_or_default();
        // Only plain inserts and lookups happen under this lock.
        let mut uses = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let hash = key_digest(key);
        if uses.get(&hash).is_some_and(|at| now - *at < every) {
            return false;
        }
        if uses.len() >= KEY_CACHE_SIZE {
            uses.clear();
        }
        uses.insert(hash, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_use_is_written_at_most_once_a_minute_per_key() {
        let uses = KeyUses::default();
        let t0 = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let at = |secs: i64| t0 + chrono::Duration::seconds(secs);
        assert!(uses.due("sk_live_a", at(0)), "the first use is written");
        assert!(!uses.due("sk_live_a", at(1)));
        assert!(!uses.due("sk_live_a", at(59)));
        assert!(uses.due("sk_live_b", at(59)), "each key has its own minute");
        assert!(uses.due("sk_live_a", at(60)), "a minute later it is written again");
        assert!(!uses.due("sk_live_a", at(61)));
        // A clock that went back does not write again either.
        assert!(!uses.due("sk_live_a", at(30)));
    }
}
