//! The envelope every delivery carries (DESIGN §3.3). The event's `data` is
//! spliced in as the raw JSON it was stored as, never parsed again.

use serde::Serialize;
use serde_json::value::RawValue;
use signhook_core::time::serde_rfc3339;
use signhook_store::events::Event;
use signhook_store::subscriptions::Subscription;

/// The envelope, borrowing from the event.
#[derive(Debug, Serialize)]
pub struct Envelope<'a> {
    /// `evt_…`, equal to the `webhook-id` header.
    pub id: &'a str,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: &'a str,
    /// When it happened.
    #[serde(with = "serde_rfc3339")]
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Sandbox or live.
    pub sandbox: bool,
    /// Where the resource began.
    pub scope: &'static str,
    /// The workspace.
    pub workspace_id: &'a str,
    /// Where the event came from: `lifecycle`, `api` or `system`.
    pub origin: &'static str,
    /// The subscription this copy goes to (absent when an event is shown
    /// outside a delivery).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription: Option<SubscriptionRef<'a>>,
    /// The key the event was published with for ordered delivery, when
    /// it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<&'a str>,
    /// The event's data, as stored.
    pub data: &'a RawValue,
}

/// The subscription part of the envelope.
#[derive(Debug, Serialize)]
pub struct SubscriptionRef<'a> {
    /// `wh_…`
    pub id: &'a str,
    /// Its description.
    pub description: &'a str,
}

/// Why an event cannot be enveloped: its stored data is not JSON (a
/// corrupt row; the API only stores valid JSON).
#[derive(Debug, thiserror::Error)]
#[error("event {0} has data that is not valid JSON")]
pub struct CorruptEventData(pub String);

impl<'a> Envelope<'a> {
    /// The envelope of `event`, addressed to `subscription` when given.
    pub fn new(event: &'a Event, subscription: Option<&'a Subscription>) -> Result<Self, CorruptEventData> {
        let data: &RawValue = serde_json::from_str(&event.data).map_err(|_| CorruptEventData(event.id.to_string()))?;
        Ok(Envelope {
            id: event.id.as_str(),
            event_type: &event.event_type,
            created_at: event.created_at,
            sandbox: event.sandbox,
            scope: event.scope.as_str(),
            workspace_id: event.workspace_id.as_str(),
            origin: event.origin.as_str(),
            subscription: subscription.map(|s| SubscriptionRef {
                id: s.id.as_str(),
                description: &s.description,
            }),
            ordering_key: event.ordering_key.as_deref(),
            data,
        })
    }

    /// The envelope as the bytes of a request body.
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("serializing strings, bools and raw JSON cannot fail")
    }
}
