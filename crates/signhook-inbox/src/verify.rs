//! Verifying a request of a source, by its scheme, before anything is
//! stored: the request's event id if genuine, else why not.
//!
//! - Standard Webhooks: `webhook-id`, `webhook-timestamp`,
//!   `webhook-signature` (or the `svix-` aliases), checked by
//!   `signhook-verify` (±5 minutes, several `v1,` signatures).
//! - `prefixed` (Signbee's style): the same signing string as Standard
//!   Webhooks, `{event id}.{timestamp}.{raw body}`, HMAC-SHA256 keyed with
//!   the base64-decoded part of the `whsec_…` secret, the value `v1,` +
//!   base64 (several space-separated) — under `{prefix}-Event-Id`,
//!   `{prefix}-Timestamp` and `{prefix}-Signature`. That is what Signbee's
//!   own receiver code does: it hands its headers to a Standard Webhooks
//!   library renamed.
//! - `hex`: lower-case hex HMAC-SHA256 of the raw body, keyed with the
//!   secret's text as configured, in the named header. It carries no
//!   timestamp (so no replay window) and no event id: the id is the string
//!   at the source's `event_id_pointer` in the JSON body, or else
//!   `sha256:` and the hex SHA-256 of the body — so byte-identical
//!   re-sends deduplicate.

use crate::settings::{Scheme, Source};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use signhook_verify::{verify_hex_body_signature, VerifyError, Webhook};

/// Why a request was refused (a 401, counted by `reason`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    /// The metric's label and the error's code.
    pub reason: &'static str,
    /// The header at fault.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// A source's verifier, built once.
#[derive(Debug)]
pub struct Verifier {
    scheme: Scheme,
    secrets: Vec<String>,
    webhook: Option<Webhook>,
}

impl Verifier {
    /// The verifier of `source` (its secrets were checked by the settings).
    pub fn new(source: &Source) -> Self {
        let webhook = match source.scheme {
            Scheme::Hex { .. } => None,
            _ => {
                let mut secrets = source.secrets.iter();
                let first = secrets.next().map(|s| Webhook::new(s));
                first.and_then(Result::ok).map(|webhook| {
                    secrets.fold(webhook, |webhook, secret| {
                        // Each was parsed once by the settings already.
                        webhook.clone().with_secret(secret).unwrap_or(webhook)
                    })
                })
            }
        };
        Self {
            scheme: source.scheme.clone(),
            secrets: source.secrets.clone(),
            webhook,
        }
    }

    /// The request's event id if it is genuine as of `now` (unix seconds).
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<String, Rejection> {
        match &self.scheme {
            Scheme::StandardWebhooks => {
                let prefix = if headers.contains_key("webhook-signature") || !headers.contains_key("svix-signature") {
                    "webhook"
                } else {
                    "svix"
                };
                let names = [
                    format!("{prefix}-id"),
                    format!("{prefix}-timestamp"),
                    format!("{prefix}-signature"),
                ];
                self.standard(headers, body, now, &names)
            }
            Scheme::Prefixed { prefix } => {
                let names = [
                    format!("{prefix}-event-id"),
                    format!("{prefix}-timestamp"),
                    format!("{prefix}-signature"),
                ];
                self.standard(headers, body, now, &names)
            }
            Scheme::Hex {
                header,
                event_id_pointer,
            } => {
                let given = headers
                    .get(header.as_str())
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| missing(header))?;
                if !self
                    .secrets
                    .iter()
                    .any(|secret| verify_hex_body_signature(secret, body, given))
                {
                    return Err(bad_signature(header));
                }
                Ok(derived_event_id(body, event_id_pointer.as_deref()))
            }
        }
    }

    /// Verifies under `names` (id, timestamp, signature) as Standard
    /// Webhooks would under its own.
    fn standard(&self, headers: &HeaderMap, body: &[u8], now: i64, names: &[String; 3]) -> Result<String, Rejection> {
        let mut renamed = HeaderMap::with_capacity(3);
        let targets = [
            signhook_verify::HEADER_WEBHOOK_ID,
            signhook_verify::HEADER_WEBHOOK_TIMESTAMP,
            signhook_verify::HEADER_WEBHOOK_SIGNATURE,
        ];
        for (name, target) in names.iter().zip(targets) {
            let value = headers.get(name.as_str()).ok_or_else(|| missing(name))?;
            renamed.insert(target, value.clone());
        }
        let webhook = self.webhook.as_ref().ok_or_else(|| bad_signature(&names[2]))?;
        match webhook.verify_signature_at(&renamed, body, now) {
            Ok(()) => {
                let id = renamed
                    .get(signhook_verify::HEADER_WEBHOOK_ID)
                    .and_then(|v| v.to_str().ok())
                    .filter(|id| !id.is_empty())
                    .ok_or_else(|| missing(&names[0]))?;
                Ok(id.to_owned())
            }
            Err(VerifyError::MissingHeader(_)) => Err(missing(&names[0])),
            Err(VerifyError::InvalidTimestamp) => Err(Rejection {
                reason: "invalid_timestamp",
                field: names[1].clone(),
                message: format!("`{}` is not a unix time in seconds", names[1]),
            }),
            Err(VerifyError::TimestampTooOld | VerifyError::TimestampInFuture) => Err(Rejection {
                reason: "stale_timestamp",
                field: names[1].clone(),
                message: format!("`{}` is more than 5 minutes from the inbox's clock", names[1]),
            }),
            Err(_) => Err(bad_signature(&names[2])),
        }
    }
}

fn missing(header: &str) -> Rejection {
    Rejection {
        reason: "missing_header",
        field: header.to_owned(),
        message: format!("the `{header}` header is missing or unreadable"),
    }
}

fn bad_signature(header: &str) -> Rejection {
    Rejection {
        reason: "bad_signature",
        field: header.to_owned(),
        message: format!("no signature in `{header}` matches this body with the source's secrets"),
    }
}

/// The hex scheme's event id: the string (or number) at `pointer` in the
/// JSON body, else `sha256:` + the body's hex SHA-256.
pub fn derived_event_id(body: &[u8], pointer: Option<&str>) -> String {
    let found = pointer.and_then(|p| {
        let json: serde_json::Value = serde_json::from_slice(body).ok()?;
        match json.pointer(p)? {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    });
    found.unwrap_or_else(|| {
        let digest = Sha256::digest(body);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    })
}

/// The ordering key at `pointer` in the JSON body, if there is one.
pub fn ordering_key(body: &[u8], pointer: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    match json.pointer(pointer)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::RawSource;
    use signhook_verify::{hex_body_signature, sign, WebhookSecret};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NOW: i64 = 1_800_000_000;

    fn verifier(scheme: &str, secret: &str) -> Verifier {
        let raw = RawSource {
            path: "/hooks".into(),
            scheme: scheme.into(),
            secrets: vec![secret.into()],
            forward_to: "http://127.0.0.1:1/".into(),
            event_id_pointer: Some("/id".into()),
            ..RawSource::default()
        };
        let settings = crate::settings::RawConfig {
            sources: vec![raw],
            ..Default::default()
        }
        .resolve()
        .unwrap();
        Verifier::new(&settings.sources[0])
    }

    fn headers(pairs: &[(&str, String)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn each_scheme_accepts_its_signature_and_names_what_is_wrong_otherwise() {
        let body = br#"{"id":"evt_1","type":"signer.done"}"#;
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let signed = sign(&secret, "evt_1", NOW, body);
        let standard = verifier("standard-webhooks", SECRET);
        let prefixed = verifier("prefixed", SECRET);
        let hex = verifier("hex", "krebit-secret");
        let ok = |prefix: &str, id: &str| {
            headers(&[
                (&format!("{prefix}-{id}"), "evt_1".into()),
                (&format!("{prefix}-timestamp"), NOW.to_string()),
                (&format!("{prefix}-signature"), signed.clone()),
            ])
        };
        assert_eq!(standard.verify(&ok("webhook", "id"), body, NOW).unwrap(), "evt_1");
        assert_eq!(standard.verify(&ok("svix", "id"), body, NOW).unwrap(), "evt_1");
        assert_eq!(
            prefixed.verify(&ok("x-signbee", "event-id"), body, NOW).unwrap(),
            "evt_1"
        );
        let x_signature = headers(&[("x-signature", hex_body_signature("krebit-secret", body))]);
        assert_eq!(hex.verify(&x_signature, body, NOW).unwrap(), "evt_1");

        let cases = [
            (
                &standard,
                ok("webhook", "id"),
                &b"{\"id\":\"evt_2\"}"[..],
                NOW,
                "bad_signature",
            ),
            (&standard, ok("webhook", "id"), &body[..], NOW + 301, "stale_timestamp"),
            (&standard, ok("webhook", "id"), &body[..], NOW - 301, "stale_timestamp"),
            (&standard, HeaderMap::new(), &body[..], NOW, "missing_header"),
            (&prefixed, ok("webhook", "id"), &body[..], NOW, "missing_header"),
            (
                &hex,
                x_signature.clone(),
                &b"{\"id\":\"evt_1\" }"[..],
                NOW,
                "bad_signature",
            ),
            (&hex, HeaderMap::new(), &body[..], NOW, "missing_header"),
        ];
        for (verifier, headers, body, now, reason) in cases {
            let rejected = verifier.verify(&headers, body, now).expect_err(reason);
            assert_eq!(rejected.reason, reason, "{rejected}");
        }
    }

    #[test]
    fn a_hex_event_id_is_the_pointer_or_the_body_digest() {
        assert_eq!(derived_event_id(br#"{"id":"evt_9"}"#, Some("/id")), "evt_9");
        assert_eq!(derived_event_id(br#"{"id":42}"#, Some("/id")), "42");
        let digest = derived_event_id(b"not json", Some("/id"));
        assert!(digest.starts_with("sha256:") && digest.len() == 7 + 64, "{digest}");
        assert_eq!(digest, derived_event_id(b"not json", None));
    }
}
