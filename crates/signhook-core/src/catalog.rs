//! The event catalog (DESIGN §3.2) as data: every event type Signhook emits,
//! what it means, an example of its `data` and the JSON Schema (draft
//! 2020-12) of that `data`. The API serves it at `GET /v1/event_types`,
//! subscriptions are checked against it, the lifecycle emits nothing that is
//! not in it, and `POST /v1/events` checks a published built-in type's
//! `data` against its schema.

use crate::event_types::EventSchema;
use crate::lifecycle::{ApproverStatus, RequestStatus, SignerStatus};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

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
    schema: fn() -> Value,
}

impl EventTypeInfo {
    /// An example of the `data` of an event of this type.
    pub fn example_data(&self) -> Value {
        (self.example)()
    }

    /// The JSON Schema (draft 2020-12) of the `data` of this type, as
    /// JSON: what the lifecycle emits, and what a published event of this
    /// type must satisfy.
    pub fn schema_document(&self) -> Value {
        (self.schema)()
    }

    /// The compiled schema, built once per process.
    pub fn schema(&self) -> &'static EventSchema {
        static COMPILED: OnceLock<HashMap<&'static str, EventSchema>> = OnceLock::new();
        let compiled = COMPILED.get_or_init(|| {
            CATALOG
                .iter()
                .map(|info| {
                    let schema = EventSchema::parse(info.schema_document())
                        .unwrap_or_else(|e| panic!("the built-in schema of {} is invalid: {e}", info.name));
                    (info.name, schema)
                })
                .collect()
        });
        &compiled[self.name]
    }
}

/// The namespaces of the catalog, for `namespace.*` wildcards.
pub const NAMESPACES: &[&str] = &["signature_request", "signer", "approver", "webhook", "delivery"];

macro_rules! catalog {
    ($($name:literal, $origin:ident, $example:expr, $schema:expr, $description:literal;)*) => {
        /// Every event type, in catalog order.
        pub const CATALOG: &[EventTypeInfo] = &[
            $(EventTypeInfo { name: $name, description: $description, origin: EventOrigin::$origin, example: $example, schema: $schema },)*
        ];
    };
}

catalog! {
    "signature_request.activated", Lifecycle, || request_data("ongoing", 1), || request_schema(&[]), "A signature request went from draft to ongoing: invitations were sent.";
    "signature_request.done", Lifecycle, done_data, || request_schema(&[LINKS]), "Every signer signed: the request is complete. Carries links to the signed PDF and the audit certificate, both sealed, with their SHA-256.";
    "signature_request.declined", Lifecycle, declined_request_data, || request_schema(&[SIGNER_OPTIONAL, APPROVER_OPTIONAL, REASON]), "A signer declined to sign; the reason is in the payload.";
    "signature_request.canceled", Lifecycle, canceled_data, || request_schema(&[REASON]), "The request was canceled by an operator or an automation.";
    "signature_request.expired", Lifecycle, || request_data("expired", 4), || request_schema(&[]), "The deadline passed before every signer signed.";
    "signature_request.reactivated", Lifecycle, || request_data("ongoing", 5), || request_schema(&[]), "An expired request was reopened with a new deadline.";
    "signature_request.reminder_executed", Lifecycle, reminder_data, || request_schema(&[SIGNERS]), "A reminder went out to the signers who have not signed yet (manual or scheduled).";
    "signature_request.approved", Lifecycle, || request_data("ongoing", 3), || request_schema(&[]), "Every approver approved the request.";
    "signature_request.deleted", Lifecycle, || request_data("deleted", 6), || request_schema(&[]), "The request was deleted (it can still be read until it is purged).";
    "signature_request.permanently_deleted", Lifecycle, || request_data("permanently_deleted", 7), || request_schema(&[]), "The request and its documents were purged for good.";
    "signer.notified", Lifecycle, || signer_data("notified"), || request_schema(&[SIGNER]), "A signer can now sign: the invitation was created.";
    "signer.invite_undelivered", Lifecycle, || signer_data("notified"), || request_schema(&[SIGNER]), "A signer's invitation could not be delivered.";
    "signer.link_opened", Lifecycle, || signer_data("link_opened"), || request_schema(&[SIGNER]), "A signer opened the signing link for the first time (viewed).";
    "signer.done", Lifecycle, || signer_data("done"), || request_schema(&[SIGNER]), "A signer signed; others may still have to (partially signed).";
    "signer.declined", Lifecycle, declined_signer_data, || request_schema(&[SIGNER, REASON]), "A signer declined to sign; the reason is in the payload.";
    "approver.notified", Lifecycle, || approver_data("notified"), || request_schema(&[APPROVER]), "An approver was asked to approve the request.";
    "approver.approved", Lifecycle, || approver_data("approved"), || request_schema(&[APPROVER]), "An approver approved the request.";
    "approver.rejected", Lifecycle, rejected_data, || request_schema(&[APPROVER, REASON]), "An approver rejected the request.";
    "webhook.test", Test, || json!({"message": "This is a test event sent from Signhook."}), test_schema, "A test event, sent on request to check an endpoint. Signed exactly like real ones.";
    "webhook.disabling_soon", Operational, || webhook_data(true, None), webhook_schema, "A subscription has been failing and will be disabled if it keeps failing.";
    "webhook.disabled", Operational, || webhook_data(false, Some("failing")), webhook_schema, "A subscription was disabled because its endpoint kept failing or answered 410 Gone.";
    "delivery.failed", Operational, delivery_failed_data, delivery_failed_schema, "A delivery exhausted its retries and was dead-lettered.";
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

fn canceled_data() -> Value {
    let mut data = request_data("canceled", 4);
    data["reason"] = json!("The deal fell through.");
    data
}

fn reminder_data() -> Value {
    let mut data = request_data("ongoing", 3);
    data["signers"] = json!([signer("notified")]);
    data
}

fn rejected_data() -> Value {
    let mut data = approver_data("rejected");
    data["reason"] = json!("The amount needs a second look.");
    data
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
        "status": status,
        "notified_at": "2026-11-22T09:00:00.000Z",
        "acted_at": if status == "notified" { Value::Null } else { json!("2026-11-22T09:30:00.000Z") }
    });
    data
}

fn webhook_data(enabled: bool, disabled_reason: Option<&str>) -> Value {
    json!({
        "webhook": {
            "id": "wh_01936f0e7c4a7b2e9d1f0a3b5c6d7e92",
            "url": "https://crm.example.com/hooks/signhook",
            "description": "CRM sync",
            "enabled": enabled,
            "disabled_reason": disabled_reason
        }
    })
}

fn delivery_failed_data() -> Value {
    json!({
        "delivery": {
            "id": "dlv_01936f0e7c4a7b2e9d1f0a3b5c6d7e93",
            "event_type": "signer.done",
            "webhook_id": "wh_01936f0e7c4a7b2e9d1f0a3b5c6d7e92",
            "attempts": 11,
            "last_status_code": 500,
            "last_error": "http"
        }
    })
}

// The schemas of the built-in types' `data`, as the lifecycle
// (`lifecycle::SignatureRequest::event_data`) and the store's operational
// events write it. Properties are required where Signhook always writes
// them; further properties are allowed, so a payload can grow without
// breaking a published schema.

/// A part of a payload beside `signature_request`: its property name, its
/// schema, and whether it is always there.
type Part = (&'static str, fn() -> Value, bool);

const SIGNER: Part = ("signer", person_schema_signer, true);
const SIGNER_OPTIONAL: Part = ("signer", person_schema_signer, false);
const SIGNERS: Part = ("signers", signers_schema, true);
const APPROVER: Part = ("approver", person_schema_approver, true);
const APPROVER_OPTIONAL: Part = ("approver", person_schema_approver, false);
const REASON: Part = ("reason", reason_schema, true);
const LINKS: Part = ("links", links_schema, true);

fn statuses(all: impl IntoIterator<Item = &'static str>) -> Value {
    json!({"type": "string", "enum": all.into_iter().collect::<Vec<_>>()})
}

/// An RFC 3339 instant, or `null` where it has not happened yet.
fn instant(nullable: bool) -> Value {
    if nullable {
        json!({"type": ["string", "null"], "format": "date-time"})
    } else {
        json!({"type": "string", "format": "date-time"})
    }
}

fn id(prefix: &str) -> Value {
    json!({"type": "string", "pattern": format!("^{prefix}_")})
}

fn request_schema(parts: &[Part]) -> Value {
    let mut properties = serde_json::Map::new();
    properties.insert(
        "signature_request".into(),
        json!({
            "type": "object",
            "required": ["id", "name", "status", "sequence", "expires_at", "ordered_signers", "metadata"],
            "properties": {
                "id": id("sr"),
                "name": {"type": "string"},
                "status": statuses(RequestStatus::ALL.iter().map(|s| s.as_str())),
                "sequence": {"type": "integer", "minimum": 1},
                "expires_at": instant(false),
                "ordered_signers": {"type": "boolean"},
                "metadata": {"type": "object"}
            }
        }),
    );
    let mut required = vec!["signature_request"];
    for (name, schema, always) in parts {
        properties.insert((*name).into(), schema());
        if *always {
            required.push(name);
        }
    }
    json!({
        "$schema": crate::event_types::DRAFT_2020_12,
        "type": "object",
        "required": required,
        "properties": properties
    })
}

fn person_schema_signer() -> Value {
    json!({
        "type": "object",
        "required": ["id", "name", "email", "status", "notified_at", "link_opened_at", "signed_at", "declined_at", "typed_name"],
        "properties": {
            "id": id("sg"),
            "name": {"type": "string"},
            "email": {"type": "string"},
            "status": statuses(SignerStatus::ALL.iter().map(|s| s.as_str())),
            "notified_at": instant(true),
            "link_opened_at": instant(true),
            "signed_at": instant(true),
            "declined_at": instant(true),
            "typed_name": {"type": ["string", "null"]}
        }
    })
}

fn signers_schema() -> Value {
    json!({"type": "array", "items": person_schema_signer()})
}

fn person_schema_approver() -> Value {
    json!({
        "type": "object",
        "required": ["id", "name", "email", "status", "notified_at", "acted_at"],
        "properties": {
            "id": id("ap"),
            "name": {"type": "string"},
            "email": {"type": "string"},
            "status": statuses(ApproverStatus::ALL.iter().map(|s| s.as_str())),
            "notified_at": instant(true),
            "acted_at": instant(true)
        }
    })
}

fn reason_schema() -> Value {
    json!({"type": ["string", "null"]})
}

fn links_schema() -> Value {
    let link = json!({
        "type": "object",
        "required": ["url", "expires_at"],
        "properties": {
            "url": {"type": "string"},
            "expires_at": instant(false),
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}
        }
    });
    json!({
        "type": "object",
        "required": ["signed_pdf", "audit_certificate"],
        "properties": {"signed_pdf": link, "audit_certificate": link}
    })
}

fn test_schema() -> Value {
    json!({
        "$schema": crate::event_types::DRAFT_2020_12,
        "type": "object",
        "required": ["message"],
        "properties": {"message": {"type": "string"}}
    })
}

fn webhook_schema() -> Value {
    json!({
        "$schema": crate::event_types::DRAFT_2020_12,
        "type": "object",
        "required": ["webhook"],
        "properties": {"webhook": {
            "type": "object",
            "required": ["id", "url", "description", "enabled", "disabled_reason"],
            "properties": {
                "id": id("wh"),
                "url": {"type": "string"},
                "description": {"type": "string"},
                "enabled": {"type": "boolean"},
                "disabled_reason": {"enum": ["manual", "failing", "gone", null]}
            }
        }}
    })
}

fn delivery_failed_schema() -> Value {
    json!({
        "$schema": crate::event_types::DRAFT_2020_12,
        "type": "object",
        "required": ["delivery"],
        "properties": {"delivery": {
            "type": "object",
            "required": ["id", "event_type", "webhook_id", "attempts", "last_status_code", "last_error"],
            "properties": {
                "id": id("dlv"),
                "event_type": {"type": "string"},
                "webhook_id": id("wh"),
                "attempts": {"type": "integer", "minimum": 1},
                "last_status_code": {"type": ["integer", "null"]},
                "last_error": {"type": ["string", "null"]}
            }
        }}
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
    fn every_example_satisfies_its_own_schema() {
        for info in CATALOG {
            if let Err(v) = info.schema().check(&info.example_data()) {
                panic!("the example of {} breaks its schema: {v}", info.name);
            }
        }
    }

    #[test]
    fn built_in_schemas_refuse_what_the_lifecycle_never_writes() {
        let schema = lookup("signer.done").unwrap().schema();
        let v = schema.check(&json!({})).unwrap_err();
        assert_eq!(v.to_string(), "data/signature_request is required");
        let mut data = signer_data("done");
        data["signature_request"]["sequence"] = json!("7");
        let v = schema.check(&data).unwrap_err();
        assert_eq!(v.to_string(), "data/signature_request/sequence must be an integer");
        data = signer_data("done");
        data["signer"]["status"] = json!("signed");
        assert_eq!(schema.check(&data).unwrap_err().path, "data/signer/status");
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
