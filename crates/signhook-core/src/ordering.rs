//! Ordered delivery per key (DESIGN §10): which key a delivery is ordered
//! by, and which deliveries hold back the later ones of their key.
//!
//! A subscription with an [`Ordering`] other than `none` sends the
//! deliveries of one key one at a time, in the order of their events'
//! ids (time-ordered, so creation order): the next leaves only once the
//! one before it no longer [holds the key](holds_key). The store applies
//! the rule when it decides which deliveries are claimable; this module
//! only says what the rule is.

/// How a subscription orders its deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Ordering {
    /// No order: deliveries leave as soon as they are due (the default).
    #[default]
    None,
    /// Per signature request: events whose `data.signature_request.id` is
    /// the same are sent one at a time, in order. Events without one (test
    /// and operational events) are not ordered.
    SignatureRequest,
    /// Per the `ordering_key` a published event carries; events without
    /// one are not ordered.
    Key,
}

impl Ordering {
    /// Every ordering.
    pub const ALL: [Ordering; 3] = [Ordering::None, Ordering::SignatureRequest, Ordering::Key];

    /// The name in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Ordering::None => "none",
            Ordering::SignatureRequest => "signature_request",
            Ordering::Key => "key",
        }
    }

    /// Parses a name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == text)
    }

    /// The key a delivery of an event is ordered by under this ordering:
    /// `request_id` gives the event's signature request id (looked up only
    /// when needed, since it means reading the event's data), `ordering_key`
    /// is the key the event was published with. `None`: not ordered.
    pub fn key_of(self, ordering_key: Option<&str>, request_id: impl FnOnce() -> Option<String>) -> Option<String> {
        match self {
            Ordering::None => None,
            Ordering::SignatureRequest => request_id(),
            Ordering::Key => ordering_key.map(str::to_owned),
        }
    }
}

/// What an ordered key does when one of its deliveries is dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OnFailure {
    /// The next delivery leaves once the previous one is dead-lettered or
    /// canceled (the default).
    #[default]
    Skip,
    /// The next leaves only once the previous one succeeded — after a
    /// resend, when it was dead-lettered — or was skipped on purpose.
    Block,
}

impl OnFailure {
    /// Both behaviours.
    pub const ALL: [OnFailure; 2] = [OnFailure::Skip, OnFailure::Block];

    /// The name in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Skip => "skip",
            OnFailure::Block => "block",
        }
    }

    /// Parses a name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == text)
    }
}

/// Whether a delivery in `status` holds back the later deliveries of its
/// key: a pending one always (it is in flight, or waits for its retry, or
/// for its own turn), a dead letter only under [`OnFailure::Block`], a
/// success or a cancellation never. The store's SQL (`signhook-store`,
/// `ordering`) states the same rule.
pub fn holds_key(status: crate::delivery::DeliveryStatus, on_failure: OnFailure) -> bool {
    use crate::delivery::DeliveryStatus::*;
    match status {
        Pending => true,
        Failed => on_failure == OnFailure::Block,
        Succeeded | Canceled => false,
    }
}

/// The signature request id of an event's `data` (`data.signature_request.id`),
/// the key of [`Ordering::SignatureRequest`].
pub fn signature_request_id(data: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Data {
        signature_request: Option<Request>,
    }
    #[derive(serde::Deserialize)]
    struct Request {
        id: Option<serde_json::Value>,
    }
    // Only the one field is read; the rest of the data is skipped unparsed.
    let data: Data = serde_json::from_str(data).ok()?;
    match data.signature_request?.id? {
        serde_json::Value::String(id) if !id.is_empty() => Some(id),
        _ => None,
    }
}

/// A published event's `ordering_key`: 1 to [`OrderingKey::MAX_LEN`]
/// characters, none of them a control character.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderingKey(String);

/// Why an `ordering_key` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderingKeyError {
    /// Empty (or only spaces).
    #[error("must not be empty")]
    Empty,
    /// Longer than [`OrderingKey::MAX_LEN`] characters.
    #[error("must be at most {} characters", OrderingKey::MAX_LEN)]
    TooLong,
    /// Holds a control character.
    #[error("must not contain control characters")]
    Control,
}

impl OrderingKey {
    /// The longest key, in characters.
    pub const MAX_LEN: usize = 200;

    /// Parses a key.
    pub fn parse(text: &str) -> Result<Self, OrderingKeyError> {
        if text.trim().is_empty() {
            return Err(OrderingKeyError::Empty);
        }
        if text.chars().count() > Self::MAX_LEN {
            return Err(OrderingKeyError::TooLong);
        }
        if text.chars().any(char::is_control) {
            return Err(OrderingKeyError::Control);
        }
        Ok(Self(text.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::DeliveryStatus;

    #[test]
    fn names_round_trip() {
        for o in Ordering::ALL {
            assert_eq!(Ordering::parse(o.as_str()), Some(o));
        }
        for f in OnFailure::ALL {
            assert_eq!(OnFailure::parse(f.as_str()), Some(f));
        }
        assert_eq!(Ordering::parse("request"), None);
        assert_eq!(OnFailure::parse("retry"), None);
        assert_eq!(Ordering::default(), Ordering::None);
        assert_eq!(OnFailure::default(), OnFailure::Skip);
    }

    #[test]
    fn which_statuses_hold_the_key() {
        let table = [
            (DeliveryStatus::Pending, OnFailure::Skip, true),
            (DeliveryStatus::Pending, OnFailure::Block, true),
            (DeliveryStatus::Failed, OnFailure::Skip, false),
            (DeliveryStatus::Failed, OnFailure::Block, true),
            (DeliveryStatus::Succeeded, OnFailure::Skip, false),
            (DeliveryStatus::Succeeded, OnFailure::Block, false),
            (DeliveryStatus::Canceled, OnFailure::Skip, false),
            (DeliveryStatus::Canceled, OnFailure::Block, false),
        ];
        for (status, on_failure, holds) in table {
            assert_eq!(holds_key(status, on_failure), holds, "{status:?} under {on_failure:?}");
        }
    }

    #[test]
    fn the_key_of_each_ordering() {
        let request = || Some("sr_1".to_owned());
        assert_eq!(Ordering::None.key_of(Some("k"), request), None);
        assert_eq!(Ordering::Key.key_of(Some("k"), request), Some("k".into()));
        assert_eq!(Ordering::Key.key_of(None, request), None);
        assert_eq!(
            Ordering::SignatureRequest.key_of(Some("k"), request),
            Some("sr_1".into())
        );
        assert_eq!(Ordering::SignatureRequest.key_of(None, || None), None);
    }

    #[test]
    fn the_signature_request_id_is_read_from_data() {
        assert_eq!(
            signature_request_id(r#"{"signature_request": {"id": "sr_9", "sequence": 3}, "signer": {}}"#),
            Some("sr_9".into())
        );
        assert_eq!(signature_request_id(r#"{"webhook": {"id": "wh_1"}}"#), None);
        assert_eq!(signature_request_id(r#"{"signature_request": {"id": 7}}"#), None);
        assert_eq!(signature_request_id(r#"{"signature_request": {"id": ""}}"#), None);
        assert_eq!(signature_request_id("[1, 2]"), None);
    }

    #[test]
    fn ordering_keys_are_bounded() {
        assert_eq!(OrderingKey::parse("order-42").unwrap().as_str(), "order-42");
        assert_eq!(OrderingKey::parse(""), Err(OrderingKeyError::Empty));
        assert_eq!(OrderingKey::parse("   "), Err(OrderingKeyError::Empty));
        assert_eq!(OrderingKey::parse("a\nb"), Err(OrderingKeyError::Control));
        assert!(OrderingKey::parse(&"é".repeat(OrderingKey::MAX_LEN)).is_ok());
        assert_eq!(
            OrderingKey::parse(&"x".repeat(OrderingKey::MAX_LEN + 1)),
            Err(OrderingKeyError::TooLong)
        );
    }
}
