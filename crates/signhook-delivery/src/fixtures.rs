//! What the unit tests of the engine's parts hand it: a subscription to any
//! URL and a claimed delivery of a fresh event to it, as a claim would bring
//! them from the store.

use signhook_core::endpoint::{CustomHeaders, SignatureScheme, WebhookUrl};
use signhook_core::filter::{EventFilter, Scope, ScopeFilter, SubscriptionFilter, WorkspaceFilter};
use signhook_core::ids::{DeliveryId, EventId, SubscriptionId, TenantId, WorkspaceId};
use signhook_store::claims::ClaimedDelivery;
use signhook_store::events::Event;
use signhook_store::subscriptions::Subscription;
use signhook_verify::WebhookSecret;
use std::sync::Arc;

/// An enabled subscription of its own tenant to every event, sent to `url`
/// (http allowed, as under `--dev`), at most `rate_limit_per_second`.
pub(crate) fn subscription(url: &str, rate_limit_per_second: Option<u32>) -> Arc<Subscription> {
    let now = chrono::Utc::now();
    Arc::new(Subscription {
        id: SubscriptionId::generate(),
        tenant_id: TenantId::generate(),
        url: WebhookUrl::parse(url, true).expect("tests name valid endpoint URLs"),
        description: String::new(),
        enabled: true,
        disabled_reason: None,
        auto_retry: true,
        filter: SubscriptionFilter {
            sandbox: false,
            events: EventFilter::all(),
            scopes: ScopeFilter::all(),
            workspaces: WorkspaceFilter::all(),
        },
        headers: CustomHeaders::default(),
        signature_scheme: SignatureScheme::Standard,
        rate_limit_per_second,
        ordering: Default::default(),
        ordering_on_failure: Default::default(),
        secret: WebhookSecret::from_bytes(&[1; 32]),
        previous_secret: None,
        failing_since: None,
        failure_count: 0,
        created_at: now,
        updated_at: now,
        relay: None,
    })
}

/// The first attempt of a new `signer.done` event to `sub`, due now.
pub(crate) fn delivery(sub: &Arc<Subscription>) -> ClaimedDelivery {
    let now = chrono::Utc::now();
    ClaimedDelivery {
        delivery_id: DeliveryId::generate(),
        attempt_number: 1,
        schedule_attempt: 1,
        lease_until: 0,
        due_at: now,
        event: Arc::new(Event {
            id: EventId::generate(),
            tenant_id: sub.tenant_id.clone(),
            sandbox: false,
            event_type: "signer.done".into(),
            scope: Scope::PublicApi,
            workspace_id: WorkspaceId::generate(),
            created_at: now,
            data: "{}".into(),
            origin: signhook_core::event_types::Provenance::Api,
            ordering_key: None,
        }),
        subscription: sub.clone(),
        ordering_key: None,
    }
}
