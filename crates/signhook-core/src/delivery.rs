//! A delivery's status and the kinds of failed attempts.

/// Where a delivery stands (DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or in flight).
    Pending,
    /// A 2xx was received.
    Succeeded,
    /// Dead-lettered: no further automatic attempt.
    Failed,
    /// Will not be sent (its subscription was disabled or deleted).
    Canceled,
}

impl DeliveryStatus {
    /// Every status.
    pub const ALL: [DeliveryStatus; 4] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Succeeded,
        DeliveryStatus::Failed,
        DeliveryStatus::Canceled,
    ];

    /// The status's name in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Canceled => "canceled",
        }
    }

    /// Parses a status name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Why an attempt got no usable answer (or a non-2xx one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No answer within the request timeout.
    Timeout,
    /// The TCP connection could not be made.
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// The host name did not resolve.
    Dns,
    /// The endpoint's address is not allowed (private, loopback, …).
    Blocked,
    /// The endpoint answered, but not with a 2xx, or broke the protocol.
    Http,
    /// A relay subscription's attempt found no `signhook listen` connected
    /// to this node, or the CLI went away before it answered.
    Relay,
}

impl ErrorKind {
    /// Every kind.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Timeout,
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Dns,
        ErrorKind::Blocked,
        ErrorKind::Http,
        ErrorKind::Relay,
    ];

    /// The kind's name in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Dns => "dns",
            ErrorKind::Blocked => "blocked",
            ErrorKind::Http => "http",
            ErrorKind::Relay => "relay",
        }
    }

    /// Parses a kind name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}
