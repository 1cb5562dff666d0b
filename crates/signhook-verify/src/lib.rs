//! Standard Webhooks signing and verification for Signhook deliveries.
//!
//! This crate is the receiver SDK: an integrator who gets Signhook's webhooks
//! checks them with [`Webhook::verify`] and gets the typed [`Event`] back. The
//! server signs with the same code ([`sign`]), so both sides agree by
//! construction; the test suite also checks both against an independent
//! implementation and the specification's known-answer vectors.
//!
//! # Layout
//!
//! - [`WebhookSecret`]: the `whsec_…` secret, parsed once, redacted in `Debug`.
//! - [`sign`] / [`Webhook`]: the Standard Webhooks scheme
//!   (<https://www.standardwebhooks.com/>): `webhook-signature` is
//!   `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).
//! - [`hex_body_signature`]: the simpler `X-Signature` scheme (hex
//!   HMAC-SHA256 of the raw body keyed with the secret string) that some
//!   receivers already implement.
//! - [`Event`]: the envelope every delivery carries.
//!
//! The crate does no I/O and pulls in no runtime.
//!
//! ```
//! use signhook_verify::{sign, Webhook, WebhookSecret};
//!
//! let secret = WebhookSecret::from_bytes(b"an example key of 24 bytes");
//! let body = br#"{"id":"evt_1","type":"webhook.test","created_at":"2026-11-22T10:00:00Z","data":{}}"#;
//! let now = 1_790_000_000;
//! let mut headers = http::HeaderMap::new();
//! headers.insert("webhook-id", "evt_1".parse().unwrap());
//! headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
//! headers.insert("webhook-signature", sign(&secret, "evt_1", now, body).parse().unwrap());
//!
//! let webhook = Webhook::new(&secret.expose()).unwrap();
//! let event = webhook.verify_at(&headers, body, now).unwrap();
//! assert_eq!(event.event_type, "webhook.test");
//! ```
#![deny(missing_docs)]

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The prefix of every Signhook (and Standard Webhooks) secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// How far a `webhook-timestamp` may be from the receiver's clock, either way.
pub const DEFAULT_TOLERANCE_SECONDS: i64 = 5 * 60;
/// The shortest key Signhook generates or accepts, in bytes.
pub const MIN_SECRET_BYTES: usize = 24;
/// The longest key accepted, in bytes (the Standard Webhooks limit).
pub const MAX_SECRET_BYTES: usize = 64;

/// Header carrying the message id (the event id: the same on every retry).
pub const HEADER_WEBHOOK_ID: &str = "webhook-id";
/// Header carrying the unix time, in seconds, at which the attempt was signed.
pub const HEADER_WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying one or more space-separated `v1,<base64>` signatures.
pub const HEADER_WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// Header of the simple scheme: hex HMAC-SHA256 of the raw body.
pub const HEADER_X_SIGNATURE: &str = "x-signature";
/// Header of the simple scheme during a secret rotation's overlap: the
/// hex HMAC-SHA256 of the raw body with the *new* secret, while
/// [`HEADER_X_SIGNATURE`] keeps the old one's until the overlap ends.
pub const HEADER_X_SIGNATURE_NEXT: &str = "x-signature-next";
/// Header of the simple scheme naming the sending account.
pub const HEADER_X_CLIENT_ID: &str = "x-client-id";

/// A webhook signing secret.
///
/// Its text form is `whsec_` followed by the base64 of the key bytes. The key
/// never appears in `Debug` output; [`WebhookSecret::expose`] is the one way
/// to get the text back, so every place that reveals a secret is greppable.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl WebhookSecret {
    /// Parses a `whsec_…` secret. The prefix may be left out, as Standard
    /// Webhooks libraries allow.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let key = BASE64.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        if key.len() < MIN_SECRET_BYTES || key.len() > MAX_SECRET_BYTES {
            return Err(SecretError::Length(key.len()));
        }
        Ok(Self { key })
    }

    /// Wraps raw key bytes (for example fresh random bytes from the server).
    pub fn from_bytes(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    /// The secret in its `whsec_…` text form. Call only to store it or to
    /// show it to its owner.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", BASE64.encode(&self.key))
    }

    /// The raw HMAC key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// Why a secret's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The part after `whsec_` is not standard base64.
    #[error("the secret must be `whsec_` followed by base64")]
    NotBase64,
    /// The decoded key is too short or too long.
    #[error("the secret's key must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, not {0}")]
    Length(usize),
}

/// Computes the Standard Webhooks signature of one attempt: `v1,` followed by
/// base64(HMAC-SHA256(key, "{msg_id}.{timestamp}.{body}")).
pub fn sign(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut out = String::with_capacity(3 + 44);
    out.push_str("v1,");
    BASE64.encode_string(signature_bytes(secret, msg_id, timestamp, body), &mut out);
    out
}

fn signature_bytes(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret.key()).expect("HMAC accepts keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// The simple scheme's `X-Signature`: lower-case hex of HMAC-SHA256 over the
/// raw body, keyed with the secret's full text (`whsec_…`) exactly as the
/// receiver stores it.
pub fn hex_body_signature(secret_text: &str, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret_text.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(char::from_digit(u32::from(byte >> 4), 16).expect("nibble < 16"));
        out.push(char::from_digit(u32::from(byte & 0xf), 16).expect("nibble < 16"));
    }
    out
}

/// Checks a simple-scheme `X-Signature` in constant time.
pub fn verify_hex_body_signature(secret_text: &str, body: &[u8], x_signature: &str) -> bool {
    let expected = hex_body_signature(secret_text, body);
    expected.as_bytes().ct_eq(x_signature.trim().as_bytes()).into()
}

/// A receiver's verifier: one or more accepted secrets (several while the
/// sender rotates) and a timestamp tolerance.
#[derive(Debug, Clone)]
pub struct Webhook {
    secrets: Vec<WebhookSecret>,
    tolerance_seconds: i64,
}

impl Webhook {
    /// A verifier for one `whsec_…` secret with the default 5-minute tolerance.
    pub fn new(secret: &str) -> Result<Self, SecretError> {
        Ok(Self {
            secrets: vec![WebhookSecret::parse(secret)?],
            tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
        })
    }

    /// Also accepts deliveries signed with `secret` (for example the new one
    /// during a rotation).
    pub fn with_secret(mut self, secret: &str) -> Result<Self, SecretError> {
        self.secrets.push(WebhookSecret::parse(secret)?);
        Ok(self)
    }

    /// Changes the timestamp tolerance.
    pub fn with_tolerance_seconds(mut self, seconds: i64) -> Self {
        self.tolerance_seconds = seconds;
        self
    }

    /// Verifies a delivery against the current time and parses its envelope.
    pub fn verify(&self, headers: &http::HeaderMap, body: &[u8]) -> Result<Event, VerifyError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.verify_at(headers, body, now)
    }

    /// Verifies a delivery as of `now` (unix seconds) and parses its envelope.
    pub fn verify_at(&self, headers: &http::HeaderMap, body: &[u8], now: i64) -> Result<Event, VerifyError> {
        self.verify_signature_at(headers, body, now)?;
        serde_json::from_slice(body).map_err(|e| VerifyError::Payload(e.to_string()))
    }

    /// Verifies only the webhook signature and timestamp, leaving the body
    /// unparsed (for a gateway that forwards the bytes as they came).
    pub fn verify_signature_at(&self, headers: &http::HeaderMap, body: &[u8], now: i64) -> Result<(), VerifyError> {
        let msg_id = header(headers, HEADER_WEBHOOK_ID)?;
        let timestamp_text = header(headers, HEADER_WEBHOOK_TIMESTAMP)?;
        let signatures = header(headers, HEADER_WEBHOOK_SIGNATURE)?;
        let timestamp: i64 = timestamp_text
            .trim()
            .parse()
            .map_err(|_| VerifyError::InvalidTimestamp)?;
        if now - timestamp > self.tolerance_seconds {
            return Err(VerifyError::TimestampTooOld);
        }
        if timestamp - now > self.tolerance_seconds {
            return Err(VerifyError::TimestampInFuture);
        }
        let candidates: Vec<[u8; 32]> = self
            .secrets
            .iter()
            .map(|secret| signature_bytes(secret, msg_id, timestamp, body))
            .collect();
        for entry in signatures.split(' ') {
            let Some(("v1", encoded)) = entry.split_once(',') else {
                continue; // other versions may come; a receiver skips them
            };
            let Ok(given) = BASE64.decode(encoded) else {
                continue;
            };
            if candidates
                .iter()
                .any(|expected| bool::from(expected.as_slice().ct_eq(&given)))
            {
                return Ok(());
            }
        }
        Err(VerifyError::NoMatchingSignature)
    }
}

fn header<'h>(headers: &'h http::HeaderMap, name: &'static str) -> Result<&'h str, VerifyError> {
    headers
        .get(name)
        .ok_or(VerifyError::MissingHeader(name))?
        .to_str()
        .map_err(|_| VerifyError::MissingHeader(name))
}

/// Why a delivery failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A required header is absent or not visible ASCII.
    #[error("the `{0}` header is missing or unreadable")]
    MissingHeader(&'static str),
    /// `webhook-timestamp` is not an integer.
    #[error("`webhook-timestamp` is not a unix time in seconds")]
    InvalidTimestamp,
    /// The timestamp is older than the tolerance: possibly a replay.
    #[error("`webhook-timestamp` is too old")]
    TimestampTooOld,
    /// The timestamp is further ahead than the tolerance.
    #[error("`webhook-timestamp` is too far in the future")]
    TimestampInFuture,
    /// No `v1` signature matched any accepted secret.
    #[error("no webhook signature matched")]
    NoMatchingSignature,
    /// The signature matched but the body is not a Signhook event.
    #[error("the body is not a Signhook event: {0}")]
    Payload(String),
}

/// The envelope every Signhook delivery carries (DESIGN §3.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `evt_…`: the same value as the `webhook-id` header; deduplicate on it.
    pub id: String,
    /// The event type, such as `signer.done`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the fact happened (RFC 3339, UTC, milliseconds).
    pub created_at: String,
    /// Whether the event happened in the sandbox.
    #[serde(default)]
    pub sandbox: bool,
    /// Where the resource began: `public_api` or `app`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The workspace the resource belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    /// The subscription this copy was sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<SubscriptionRef>,
    /// The event's own data.
    pub data: serde_json::Value,
}

/// The subscription a delivery was sent for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRef {
    /// `wh_…`
    pub id: String,
    /// The subscription's description, as its owner wrote it.
    #[serde(default)]
    pub description: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known-answer vector from the Standard Webhooks specification's test
    // suite (the reference libraries share it).
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers(id: &str, ts: i64, sig: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(HEADER_WEBHOOK_ID, id.parse().unwrap());
        h.insert(HEADER_WEBHOOK_TIMESTAMP, ts.to_string().parse().unwrap());
        h.insert(HEADER_WEBHOOK_SIGNATURE, sig.parse().unwrap());
        h
    }

    #[test]
    fn spec_known_answer_signs_and_verifies() {
        // The spec's 24-byte key: shorter minimums would refuse it, so parse
        // checks the same bound the spec vector uses.
        let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
        assert_eq!(sign(&secret, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY), SPEC_SIGNATURE);
        let wh = Webhook::new(SPEC_SECRET).unwrap();
        wh.verify_signature_at(
            &headers(SPEC_ID, SPEC_TIMESTAMP, SPEC_SIGNATURE),
            SPEC_BODY,
            SPEC_TIMESTAMP,
        )
        .unwrap();
    }

    #[test]
    fn secret_without_prefix_is_the_same_secret() {
        let bare = SPEC_SECRET.strip_prefix(SECRET_PREFIX).unwrap();
        assert_eq!(
            WebhookSecret::parse(bare).unwrap(),
            WebhookSecret::parse(SPEC_SECRET).unwrap()
        );
        assert_eq!(WebhookSecret::parse(bare).unwrap().expose(), SPEC_SECRET);
    }

    #[test]
    fn bad_secrets_are_refused_with_a_reason() {
        assert_eq!(WebhookSecret::parse("whsec_not base64!"), Err(SecretError::NotBase64));
        assert_eq!(WebhookSecret::parse("whsec_c2hvcnQ="), Err(SecretError::Length(5)));
    }

    #[test]
    fn debug_never_prints_the_key() {
        let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
        assert_eq!(format!("{secret:?}"), "WebhookSecret(<redacted>)");
    }

    #[test]
    fn tampering_and_stale_timestamps_are_refused() {
        let wh = Webhook::new(SPEC_SECRET).unwrap();
        let ok = headers(SPEC_ID, SPEC_TIMESTAMP, SPEC_SIGNATURE);
        let body2 = br#"{"test": 2432232315}"#;
        assert_eq!(
            wh.verify_signature_at(&ok, body2, SPEC_TIMESTAMP),
            Err(VerifyError::NoMatchingSignature)
        );
        assert_eq!(
            wh.verify_signature_at(
                &headers("msg_other", SPEC_TIMESTAMP, SPEC_SIGNATURE),
                SPEC_BODY,
                SPEC_TIMESTAMP
            ),
            Err(VerifyError::NoMatchingSignature)
        );
        assert_eq!(
            wh.verify_signature_at(&ok, SPEC_BODY, SPEC_TIMESTAMP + DEFAULT_TOLERANCE_SECONDS + 1),
            Err(VerifyError::TimestampTooOld)
        );
        assert_eq!(
            wh.verify_signature_at(&ok, SPEC_BODY, SPEC_TIMESTAMP - DEFAULT_TOLERANCE_SECONDS - 1),
            Err(VerifyError::TimestampInFuture)
        );
        let mut missing = ok.clone();
        missing.remove(HEADER_WEBHOOK_ID);
        assert_eq!(
            wh.verify_signature_at(&missing, SPEC_BODY, SPEC_TIMESTAMP),
            Err(VerifyError::MissingHeader(HEADER_WEBHOOK_ID))
        );
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let wh = Webhook::new(SPEC_SECRET).unwrap();
        let sig = format!("v2,abc v1,Zm9vYmFy {SPEC_SIGNATURE}");
        wh.verify_signature_at(&headers(SPEC_ID, SPEC_TIMESTAMP, &sig), SPEC_BODY, SPEC_TIMESTAMP)
            .unwrap();
    }

    #[test]
    fn a_rotated_secret_is_accepted_alongside() {
        let new = WebhookSecret::from_bytes(&[7u8; 32]);
        let wh = Webhook::new(&new.expose()).unwrap().with_secret(SPEC_SECRET).unwrap();
        wh.verify_signature_at(
            &headers(SPEC_ID, SPEC_TIMESTAMP, SPEC_SIGNATURE),
            SPEC_BODY,
            SPEC_TIMESTAMP,
        )
        .unwrap();
    }

    #[test]
    fn standardwebhooks_crate_verifies_what_we_sign() {
        let secret = WebhookSecret::from_bytes(&[42u8; 32]);
        let now = 1_790_000_000;
        let body = br#"{"id":"evt_x","type":"webhook.test","created_at":"2026-01-01T00:00:00.000Z","data":{}}"#;
        let ours = sign(&secret, "evt_x", now, body);
        let theirs = standardwebhooks::Webhook::new(&secret.expose()).unwrap();
        assert_eq!(theirs.sign("evt_x", now, body).unwrap(), ours);
    }

    #[test]
    fn hex_scheme_matches_a_known_answer() {
        // HMAC-SHA256 of "hello" keyed with "key" (checked with openssl:
        // `printf hello | openssl dgst -sha256 -hmac key`).
        assert_eq!(
            hex_body_signature("key", b"hello"),
            "9307b3b915efb5171ff14d8cb55fbcc798c6c0ef1456d66ded1a6aa723a58b7b"
        );
        assert!(verify_hex_body_signature(
            "key",
            b"hello",
            "9307b3b915efb5171ff14d8cb55fbcc798c6c0ef1456d66ded1a6aa723a58b7b"
        ));
        assert!(!verify_hex_body_signature(
            "key",
            b"hellp",
            "9307b3b915efb5171ff14d8cb55fbcc798c6c0ef1456d66ded1a6aa723a58b7b"
        ));
    }
}
