//! The event catalog (DESIGN §3.2) as data: every event type Signhook emits,
//! what it means, and an example of its `data`. The API serves it at
//! `GET /v1/event_types`, subscriptions are checked against it, and the
//! lifecycle emits nothing that is not in it.

use serde_json::{json, Value};
use std::fmt;

/// Who produces events of a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventOrigin {
    /// A step of the e-signature lifecycle; tenants may also publish these
    /// through `POST /v1/events`.
    Lifecycle,
    /// Sent by the "send test event" button or API only.
    Test,
    /// About the webhook system itself (warnings, disabling, dead letters);
    /// only Signhook emits them.
    Operational,
}

/// One entry of the catalog.
#[derive(Debug, Clone, Copy)]
pub struct EventTypeInfo {
    /// The type's name, such as `signer.done`.
    pub name: &'static str,
    /// What happened when an event of this type fires.
    pub description: &'static str,
    /// Who produces it.
    pub origin: EventOrigin,
    example: fn() -> Value,
}

impl EventTypeInfo {
    /// An example of the `data` of an event of this type.
    pub fn example_data(&self) -> Value {
        (self.example)()
    }
}

/// The namespaces of the catalog, for `namespace.*` wildcards.
pub const NAMESPACES: &[&str] = &["signature_request", "signer", "approver", "webhook", "delivery"];

macro_rules! catalog {
    ($($name:literal, $origin:ident, $example:expr, $description:literal;)*) => {
        /// Every event type, in catalog order.
        pub const CATALOG: &[EventTypeInfo] = &[
            $(EventTypeInfo { name: $name, description: $description, origin: EventOrigin::$origin, example: $example },)*
        ];
    };
}

catalog! {
    "signature_request.activated", Lifecycle, || request_data("ongoing", 1), "A signature request went from draft to ongoing: invitations were sent.";
    "signature_request.done", Lifecycle, done_data, "Every signer signed: the request is complete. Carries links to the signed PDF and the audit certificate, both sealed, with their SHA-256.";
    "signature_request.declined", Lifecycle, declined_request_data, "A signer declined to sign; the reason is in the payload.";
    "signature_request.canceled", Lifecycle, || request_data("canceled", 4), "The request was canceled by an operator or an automation.";
    "signature_request.expired", Lifecycle, || request_data("expired", 4), "The deadline passed before every signer signed.";
    "signature_request.reactivated", Lifecycle, || request_data("ongoing", 5), "An expired request was reopened with a new deadline.";
    "signature_request.reminder_executed", Lifecycle, || request_data("ongoing", 3), "A reminder went out to the signers who have not signed yet (manual or scheduled).";
    "signature_request.approved", Lifecycle, || request_data("ongoing", 3), "Every approver approved the request.";
    "signature_request.deleted", Lifecycle, || request_data("deleted", 6), "The request was deleted (it can still be read until it is purged).";
    "signature_request.permanently_deleted", Lifecycle, || request_data("permanently_deleted", 7), "The request and its documents were purged for good.";
    "signer.notified", Lifecycle, || signer_data("notified"), "A signer can now sign: the invitation was created.";
    "signer.invite_undelivered", Lifecycle, || signer_data("notified"), "A signer's invitation could not be delivered.";
    "signer.link_opened", Lifecycle, || signer_data("link_opened"), "A signer opened the signing link for the first time (viewed).";
    "signer.done", Lifecycle, || signer_data("done"), "A signer signed; others may still have to (partially signed).";
    "signer.declined", Lifecycle, declined_signer_data, "A signer declined to sign; the reason is in the payload.";
    "approver.notified", Lifecycle, || approver_data("notified"), "An approver was asked to approve the request.";
    "approver.approved", Lifecycle, || approver_data("approved"), "An approver approved the request.";
    "approver.rejected", Lifecycle, || approver_data("rejected"), "An approver rejected the request.";
    "webhook.test", Test, || json!({"message": "This is a test event sent from Signhook."}), "A test event, sent on request to check an endpoint. Signed exactly like real ones.";
    "webhook.disabling_soon", Operational, || webhook_data(true, None), "A subscription has been failing and will be disabled if it keeps failing.";
    "webhook.disabled", Operational, || webhook_data(false, Some("failing")), "A subscription was disabled because its endpoint kept failing or answered 410 Gone.";
    "delivery.failed", Operational, delivery_failed_data, "A delivery exhausted its retries and was dead-lettered.";
}

/// Looks a type up in the catalog.
pub fn lookup(name: &str) -> Option<&'static EventTypeInfo> {
    CATALOG.iter().find(|info| info.name == name)
}

/// An event type name that exists in the catalog.
#[derive(Clone, Copy)]
pub struct EventType(&'static EventTypeInfo);

impl PartialEq for EventType {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for EventType {}

impl EventType {
    /// Parses a catalog name, refusing anything not in the catalog.
    pub fn parse(name: &str) -> Result<Self, UnknownEventType> {
        lookup(name)
            .map(Self)
            .ok_or_else(|| UnknownEventType(name.chars().take(100).collect()))
    }

    /// The type's name.
    pub fn name(&self) -> &'static str {
        self.0.name
    }

    /// The catalog entry.
    pub fn info(&self) -> &'static EventTypeInfo {
        self.0
    }
}

impl fmt::Debug for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)
    }
}

/// A name that is not in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a known event type")]
pub struct UnknownEventType(pub String);

/// The names of every type, for error messages that list the valid ones.
pub fn all_names() -> Vec<&'static str> {
    CATALOG.iter().map(|info| info.name).collect()
}

/// The names tenants may publish through `POST /v1/events`.
pub fn publishable_names() -> Vec<&'static str> {
    CATALOG
        .iter()
        .filter(|info| info.origin == EventOrigin::Lifecycle)
        .map(|info| info.name)
        .collect()
}

fn request_data(status: &str, sequence: u64) -> Value {
    json!({
        "signature_request": {
            "id": "sr_01936f0e7c4a7b2e9d1f0a3b5c6d7e8f",
            "name": "Master services agreement",
            "status": status,
            "sequence": sequence,
            "expires_at": "2026-12-22T10:00:00.000Z",
            "ordered_signers": false,
            "metadata": {"crm_deal_id": "D-1042"}
        }
    })
}

fn signer(status: &str) -> Value {
    let (signed_at, typed_name) = if status == "done" {
        (json!("2026-11-22T10:04:05.123Z"), json!("Ada Lovelace"))
    } else {
        (Value::Null, Value::Null)
    };
    let link_opened_at = if matches!(status, "link_opened" | "done") {
        json!("2026-11-22T10:02:00.000Z")
    } else {
        Value::Null
    };
    json!({
        "id": "sg_01936f0e7c4a7b2e9d1f0a3b5c6d7e90",
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "status": status,
        "notified_at": "2026-11-22T10:00:00.000Z",
        "link_opened_at": link_opened_at,
        "signed_at": signed_at,
        "declined_at": null,
        "typed_name": typed_name
    })
}

fn signer_data(status: &str) -> Value {
    let mut data = request_data("ongoing", 2);
    data["signer"] = signer(status);
    data
}

fn declined_signer_data() -> Value {
    let mut data = request_data("declined", 3);
    data["signer"] = signer("declined");
    data["reason"] = json!("The payment terms are wrong.");
    data
}

fn declined_request_data() -> Value {
    declined_signer_data()
}

fn done_data() -> Value {
    let mut data = request_data("done", 4);
    data["links"] = json!({
        "signed_pdf": {"url": "https://signhook.example.com/files/sr_01936f0e7c4a7b2e9d1f0a3b5c6d7e8f/signed.pdf?expires=1795000000&sig=…", "expires_at": "2026-11-22T10:34:05.123Z", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
        "audit_certificate": {"url": "https://signhook.example.com/files/sr_01936f0e7c4a7b2e9d1f0a3b5c6d7e8f/audit.pdf?expires=1795000000&sig=…", "expires_at": "2026-11-22T10:34:05.123Z", "sha256": "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"}
    });
    data
}

fn approver_data(status: &str) -> Value {
    let mut data = request_data("approval", 1);
    data["approver"] = json!({
        "id": "ap_01936f0e7c4a7b2e9d1f0a3b5c6d7e91",
        "name": "Grace Hopper",
        "email": "grace@example.com",
        "status": status
    });
    data
}

fn webhook_data(enabled: bool, disabled_reason: Option<&str>) -> Value {
    json!({
        "webhook": {
            "id": "wh_01936f0e7c4a7b2e9d1f0a3b5c6d7e92",
            "url": "https://crm.example.com/hooks/signhook",
            "enabled": enabled,
            "disabled_reason": disabled_reason,
            "failing_since": "2026-11-21T10:00:00.000Z"
        }
    })
}

fn delivery_failed_data() -> Value {
    json!({
        "delivery": {
            "id": "dlv_01936f0e7c4a7b2e9d1f0a3b5c6d7e93",
            "event_id": "evt_01936f0e7c4a7b2e9d1f0a3b5c6d7e94",
            "webhook_id": "wh_01936f0e7c4a7b2e9d1f0a3b5c6d7e92",
            "attempts": 11
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_unique_and_in_a_known_namespace() {
        let mut names = all_names();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOG.len());
        for info in CATALOG {
            let (namespace, _) = info.name.split_once('.').unwrap();
            assert!(NAMESPACES.contains(&namespace), "{}", info.name);
            assert!(info.example_data().is_object());
        }
    }

    #[test]
    fn only_lifecycle_types_are_publishable() {
        let publishable = publishable_names();
        assert!(publishable.contains(&"signer.done"));
        assert!(!publishable.contains(&"webhook.test"));
        assert!(!publishable.contains(&"delivery.failed"));
    }

    #[test]
    fn unknown_types_are_refused() {
        assert_eq!(EventType::parse("signer.done").unwrap().name(), "signer.done");
        assert!(EventType::parse("signer.signed").is_err());
    }
}
