//! Prefixed identifiers. Each is a UUIDv7 (time-ordered) written as 32
//! lower-case hex digits behind a type prefix, so ids sort by creation time as
//! plain strings and a stray id of the wrong kind is refused at the edge.

use std::fmt;

/// Why an id's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a valid {kind} id (expected `{prefix}` followed by 32 hex digits)")]
pub struct IdError {
    /// The text that was given (cut to 64 characters).
    pub text: String,
    /// What kind of id was expected.
    pub kind: &'static str,
    /// The expected prefix.
    pub prefix: &'static str,
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id, ordered after every id made earlier by this process.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            /// Parses an id, checking its prefix and body.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                let valid = text
                    .strip_prefix($prefix)
                    .is_some_and(|body| body.len() == 32 && body.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
                if valid {
                    Ok(Self(text.to_owned()))
                } else {
                    Err(IdError { text: text.chars().take(64).collect(), kind: $kind, prefix: $prefix })
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(text: String) -> Result<Self, IdError> {
                Self::parse(&text)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

prefixed_id!(
    /// A tenant (an account).
    TenantId, "tnt_", "tenant"
);
prefixed_id!(
    /// An API key's public id (not the key itself).
    ApiKeyId, "key_", "API key"
);
prefixed_id!(
    /// A dashboard user.
    UserId, "usr_", "user"
);
prefixed_id!(
    /// A workspace.
    WorkspaceId, "ws_", "workspace"
);
prefixed_id!(
    /// A webhook subscription.
    SubscriptionId, "wh_", "webhook"
);
prefixed_id!(
    /// An event; also the `webhook-id` of every delivery of it.
    EventId, "evt_", "event"
);
prefixed_id!(
    /// One event's delivery to one subscription.
    DeliveryId, "dlv_", "delivery"
);
prefixed_id!(
    /// A recovery job (resend what failed in a window).
    RecoveryId, "rcv_", "recovery"
);
prefixed_id!(
    /// One try of a delivery.
    AttemptId, "att_", "attempt"
);

prefixed_id!(
    /// A signature request (a document sent out for signature).
    SignatureRequestId, "sr_", "signature request"
);
prefixed_id!(
    /// A signer of a signature request.
    SignerId, "sg_", "signer"
);
prefixed_id!(
    /// An approver of a signature request.
    ApproverId, "ap_", "approver"
);
prefixed_id!(
    /// A document (an uploaded PDF) of a signature request.
    DocumentId, "doc_", "document"
);

/// The name of one Signhook process in the leases it takes and the attempts
/// it makes: 1 to 64 ASCII letters, digits, `_`, `-` or `.` (an operator's
/// `node-a`, a host name, or a generated `node_…`). Two processes alive at
/// the same time must never share one: a node gives back every lease held
/// under its id when it starts.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NodeId(String);

/// Why a node id's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a node id (expected 1 to 64 ASCII letters, digits, `_`, `-` or `.`)")]
pub struct NodeIdError(String);

impl NodeId {
    /// The most characters a node id has.
    pub const MAX_LEN: usize = 64;

    /// A fresh id, `node_` and 12 random hex digits, for a node that was
    /// given none and has none kept.
    pub fn generate() -> Self {
        let uuid = uuid::Uuid::now_v7().simple().to_string();
        // The last 12 digits of a UUIDv7 are random.
        Self(format!("node_{}", &uuid[20..]))
    }

    /// Parses a node id.
    pub fn parse(text: &str) -> Result<Self, NodeIdError> {
        let valid = (1..=Self::MAX_LEN).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(NodeIdError(text.chars().take(Self::MAX_LEN + 1).collect()))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for NodeId {
    type Err = NodeIdError;
    fn from_str(text: &str) -> Result<Self, NodeIdError> {
        Self::parse(text)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_sort_by_creation() {
        let a = EventId::generate();
        let b = EventId::generate();
        assert!(a < b, "{a} then {b}");
        assert_eq!(EventId::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn node_ids_are_short_plain_names() {
        for good in [
            "node_a",
            "node-b",
            "bench_0",
            "web-1.eu.example.com",
            &NodeId::generate().to_string(),
        ] {
            assert_eq!(NodeId::parse(good).unwrap().as_str(), good);
        }
        let too_long = "n".repeat(NodeId::MAX_LEN + 1);
        for bad in ["", " node_a", "node a", "node_a\n", "nöde", "node/a", too_long.as_str()] {
            assert!(NodeId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn wrong_prefix_or_body_is_refused() {
        let wh = SubscriptionId::generate();
        let err = EventId::parse(wh.as_str()).unwrap_err();
        assert_eq!(err.kind, "event");
        assert!(EventId::parse("evt_XYZ").is_err());
        assert!(EventId::parse("evt_0123456789abcdef0123456789ABCDEF").is_err());
    }
}
