//! The tenant's own event types (DESIGN §10): their names, the JSON Schemas
//! published `data` must satisfy, and where an event came from.
//!
//! A tenant registers `invoice.paid` with a JSON Schema (draft 2020-12) and
//! an example; `POST /v1/events` then checks every `data` against it. The
//! built-in catalog types have schemas too ([`crate::catalog`]), checked the
//! same way when a tenant publishes one of them.
//!
//! Schemas are compiled with every network and file resolver left out: a
//! `$ref` to anything outside the schema itself fails to compile, so a
//! registration never makes Signhook fetch a URL.

use crate::catalog;
use serde_json::Value;
use std::fmt;

/// The longest type name accepted.
pub const MAX_NAME_LEN: usize = 100;

/// The longest description accepted.
pub const MAX_DESCRIPTION_LEN: usize = 500;

/// The largest schema or example accepted, in bytes of JSON.
pub const MAX_DOCUMENT_LEN: usize = 64 * 1024;

/// The `$schema` of draft 2020-12, the only draft accepted.
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// The name of a type a tenant registers: lower-case dotted segments
/// (`invoice.paid`, `billing.invoice.paid`), each a letter followed by
/// letters, digits or `_`; at least two segments, at most
/// [`MAX_NAME_LEN`] characters, and its first segment (its namespace) not
/// one of the catalog's reserved [`catalog::NAMESPACES`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantTypeName(String);

/// Why a name cannot be a tenant's type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TypeNameError {
    /// Not of the `namespace.action` form.
    #[error(
        "`{0}` is not a valid event type name: use lower-case dotted segments such as `invoice.paid` \
         (at least two segments, each a letter followed by letters, digits or `_`, at most 100 characters)"
    )]
    Malformed(String),
    /// The namespace is the catalog's.
    #[error(
        "`{name}` is in the reserved namespace `{namespace}.`; the namespaces signature_request., signer., \
         approver., webhook. and delivery. belong to Signhook's built-in types"
    )]
    Reserved {
        /// The refused name.
        name: String,
        /// Its reserved namespace.
        namespace: String,
    },
}

/// Whether `text` has the grammar of a type name or namespace: dotted
/// segments, each `[a-z][a-z0-9_]*`, with at least `segments` of them.
fn well_formed(text: &str, segments: usize) -> bool {
    text.len() <= MAX_NAME_LEN
        && text.split('.').count() >= segments
        && text.split('.').all(|segment| {
            let mut chars = segment.chars();
            chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

impl TenantTypeName {
    /// Parses a name a tenant wants to register or use.
    pub fn parse(text: &str) -> Result<Self, TypeNameError> {
        if !well_formed(text, 2) {
            return Err(TypeNameError::Malformed(text.chars().take(MAX_NAME_LEN).collect()));
        }
        let namespace = namespace_of(text);
        if catalog::NAMESPACES.contains(&namespace) {
            return Err(TypeNameError::Reserved {
                name: text.to_owned(),
                namespace: namespace.to_owned(),
            });
        }
        Ok(Self(text.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its namespace (the first segment), what `namespace.*` matches.
    pub fn namespace(&self) -> &str {
        namespace_of(&self.0)
    }
}

impl fmt::Display for TenantTypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The first segment of a dotted name.
pub fn namespace_of(name: &str) -> &str {
    name.split_once('.').map_or(name, |(namespace, _)| namespace)
}

/// Whether `namespace` could be a tenant's namespace (the grammar of one
/// segment, not reserved): what a stored `namespace.*` must be.
pub fn is_tenant_namespace(namespace: &str) -> bool {
    well_formed(namespace, 1) && !namespace.contains('.') && !catalog::NAMESPACES.contains(&namespace)
}

/// A JSON Schema (draft 2020-12) that is itself valid, compiled, with the
/// JSON it was given.
#[derive(Debug)]
pub struct EventSchema {
    document: Value,
    validator: jsonschema::Validator,
}

/// Why a schema was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schema{}: {message}", if path.is_empty() { String::new() } else { format!(" at `{path}`") })]
pub struct SchemaError {
    /// Where in the schema (a JSON pointer, empty for the whole).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl EventSchema {
    /// Checks `document` against the draft 2020-12 meta-schema and compiles
    /// it. Refuses a schema that is not an object, names another draft, or
    /// has a `$ref` outside itself (nothing is ever fetched).
    pub fn parse(document: Value) -> Result<Self, SchemaError> {
        let refuse = |path: &str, message: String| SchemaError {
            path: path.to_owned(),
            message,
        };
        if !document.is_object() {
            return Err(refuse(
                "",
                "must be a JSON object (a JSON Schema, draft 2020-12)".into(),
            ));
        }
        match document.get("$schema") {
            None => {}
            Some(Value::String(uri)) if uri.trim_end_matches('#') == DRAFT_2020_12 => {}
            Some(_) => {
                return Err(refuse(
                    "/$schema",
                    format!("only draft 2020-12 is supported: leave `$schema` out or set it to \"{DRAFT_2020_12}\""),
                ))
            }
        }
        if let Err(e) = jsonschema::draft202012::meta::validate(&document) {
            return Err(refuse(
                &e.instance_path().to_string(),
                format!("is not a valid JSON Schema (draft 2020-12): {}", e.masked()),
            ));
        }
        let validator = jsonschema::draft202012::options()
            .build(&document)
            .map_err(|e| {
                refuse(
                    &e.instance_path().to_string(),
                    format!(
                        "cannot be compiled: {e} (a `$ref` may only point inside the schema; remote references are never fetched)"
                    ),
                )
            })?;
        Ok(Self { document, validator })
    }

    /// The schema as given.
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// Checks `data`; the first failure, with where and which rule.
    pub fn check(&self, data: &Value) -> Result<(), Violation> {
        match self.validator.iter_errors(data).next() {
            None => Ok(()),
            Some(error) => Err(Violation::from_error(&error)),
        }
    }
}

/// Where `data` breaks its schema, and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The failing value's path from `data`, `/`-separated and starting
    /// with `data` (`data/amount`, `data/lines/2/sku`): for a missing
    /// property, the path the property should be at.
    pub path: String,
    /// The rule, in words (`must be an integer`, `is required`).
    pub rule: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.path, self.rule)
    }
}

fn type_words(t: jsonschema::JsonType) -> &'static str {
    use jsonschema::JsonType as T;
    match t {
        T::Null => "null",
        T::Boolean => "a boolean",
        T::Integer => "an integer",
        T::Number => "a number",
        T::String => "a string",
        T::Array => "an array",
        T::Object => "an object",
    }
}

impl Violation {
    fn from_error(error: &jsonschema::ValidationError<'_>) -> Self {
        use jsonschema::error::{TypeKind, ValidationErrorKind as Kind};
        let mut path = String::from("data");
        for segment in error.instance_path().iter() {
            path.push('/');
            path.push_str(&segment.to_string());
        }
        let rule = match error.kind() {
            Kind::Required { property } => {
                path.push('/');
                path.push_str(property.as_str().unwrap_or_default());
                "is required".to_owned()
            }
            Kind::Type {
                kind: TypeKind::Single(t),
            } => format!("must be {}", type_words(*t)),
            Kind::Type {
                kind: TypeKind::Multiple(types),
            } => format!(
                "must be {}",
                types.iter().map(type_words).collect::<Vec<_>>().join(" or ")
            ),
            // The library's own words, with the offending value left out
            // (it may be large, or something the client should not see
            // echoed in logs).
            _ => error.masked().to_string(),
        };
        Self { path, rule }
    }
}

/// Where an event came from, as every envelope says in `origin`. Not to be
/// confused with [`catalog::EventOrigin`], which says who may produce
/// events of a *type*: this is about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    /// A step of one of Signhook's own signature requests.
    Lifecycle,
    /// Published by the tenant with `POST /v1/events` (a built-in type or
    /// one of its own).
    Api,
    /// Raised by the webhook system itself: `webhook.test` and the
    /// operational events (`webhook.disabling_soon`, `webhook.disabled`,
    /// `delivery.failed`).
    System,
}

impl Provenance {
    /// The value of `origin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provenance::Lifecycle => "lifecycle",
            Provenance::Api => "api",
            Provenance::System => "system",
        }
    }

    /// Parses a stored value.
    pub fn parse(text: &str) -> Option<Self> {
        [Provenance::Lifecycle, Provenance::Api, Provenance::System]
            .into_iter()
            .find(|p| p.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_follow_the_grammar_outside_reserved_namespaces() {
        for good in ["invoice.paid", "billing.invoice.paid", "contract.renewed_v2", "a1.b"] {
            assert_eq!(TenantTypeName::parse(good).unwrap().as_str(), good);
        }
        assert_eq!(
            TenantTypeName::parse("billing.invoice.paid").unwrap().namespace(),
            "billing"
        );
        for bad in [
            "invoice",
            "Invoice.paid",
            "invoice.",
            ".paid",
            "invoice..paid",
            "invoice.paid!",
            "1nvoice.paid",
            "invoice.*",
            "",
        ] {
            assert!(
                matches!(TenantTypeName::parse(bad), Err(TypeNameError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(TenantTypeName::parse(&format!("a.{}", "b".repeat(MAX_NAME_LEN))).is_err());
        for reserved in [
            "signer.paid",
            "signature_request.x",
            "webhook.custom",
            "delivery.late",
            "approver.x",
        ] {
            assert!(
                matches!(TenantTypeName::parse(reserved), Err(TypeNameError::Reserved { .. })),
                "{reserved}"
            );
        }
        assert!(is_tenant_namespace("invoice"));
        assert!(!is_tenant_namespace("signer"));
        assert!(!is_tenant_namespace("in.voice"));
    }

    #[test]
    fn schemas_must_be_valid_draft_2020_12() {
        assert!(EventSchema::parse(json!({"type": "object"})).is_ok());
        assert!(EventSchema::parse(json!({"$schema": DRAFT_2020_12, "type": "object"})).is_ok());
        let err = EventSchema::parse(json!({"type": "objekt"})).unwrap_err();
        assert!(err.message.contains("not a valid JSON Schema"), "{err}");
        let err = EventSchema::parse(json!({"properties": {"n": {"minimum": "five"}}})).unwrap_err();
        assert!(err.to_string().contains("/properties/n/minimum"), "{err}");
        assert!(EventSchema::parse(json!(true)).is_err());
        assert!(EventSchema::parse(json!({"$schema": "http://json-schema.org/draft-07/schema#"})).is_err());
    }

    #[test]
    fn remote_references_are_refused_not_fetched() {
        let err = EventSchema::parse(json!({"$ref": "https://example.com/schema.json"})).unwrap_err();
        assert!(err.message.contains("remote references are never fetched"), "{err}");
        let local = json!({"$defs": {"n": {"type": "integer"}}, "properties": {"n": {"$ref": "#/$defs/n"}}});
        let schema = EventSchema::parse(local).unwrap();
        assert!(schema.check(&json!({"n": 1})).is_ok());
        assert!(schema.check(&json!({"n": "x"})).is_err());
    }

    #[test]
    fn violations_name_the_path_and_the_rule() {
        let schema = EventSchema::parse(json!({
            "type": "object",
            "required": ["amount", "customer"],
            "properties": {
                "amount": {"type": "integer"},
                "customer": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
                "lines": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}},
                "currency": {"enum": ["EUR", "USD"]}
            }
        }))
        .unwrap();
        let ok = json!({"amount": 1, "customer": {"id": "c"}, "lines": [{"sku": "a"}]});
        assert_eq!(schema.check(&ok), Ok(()));
        let violation = |data: Value| schema.check(&data).unwrap_err();
        let v = violation(json!({"amount": "1", "customer": {"id": "c"}}));
        assert_eq!(
            (v.path.as_str(), v.rule.as_str()),
            ("data/amount", "must be an integer")
        );
        let v = violation(json!({"amount": 1, "customer": {}}));
        assert_eq!((v.path.as_str(), v.rule.as_str()), ("data/customer/id", "is required"));
        let v = violation(json!({"amount": 1, "customer": {"id": 5}}));
        assert_eq!(v.path, "data/customer/id");
        let v = violation(json!({"amount": 1, "customer": {"id": "c"}, "lines": [{"sku": "a"}, {"sku": 2}]}));
        assert_eq!(
            (v.path.as_str(), v.rule.as_str()),
            ("data/lines/1/sku", "must be a string")
        );
        let v = violation(json!({"customer": {"id": "c"}}));
        assert_eq!(v.to_string(), "data/amount is required");
        let v = violation(json!({"amount": 1, "customer": {"id": "c"}, "currency": "GBP"}));
        assert_eq!(v.path, "data/currency");
        assert!(!v.rule.contains("GBP"), "{}", v.rule);
    }

    #[test]
    fn provenance_round_trips() {
        for p in [Provenance::Lifecycle, Provenance::Api, Provenance::System] {
            assert_eq!(Provenance::parse(p.as_str()), Some(p));
        }
        assert_eq!(Provenance::parse("other"), None);
    }
}
