//! What an inbox runs with: the TOML file (`--config inbox.toml`) or the
//! flags for one source, both read into [`RawConfig`] and resolved once
//! into [`Settings`] — durations parsed, secrets checked, URLs and JSON
//! pointers valid — so past this module every value is usable.

use serde::Deserialize;
use signhook_core::duration::{parse_duration, parse_duration_list};
use signhook_core::retry::{RetryPolicy, DEFAULT_JITTER};
use signhook_verify::WebhookSecret;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A setting that cannot be used: which one, and what is allowed.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingsError {
    /// The setting (`source[0].secrets`, `listen`, …).
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> SettingsError {
    SettingsError {
        field: field.into(),
        message: message.into(),
    }
}

/// The inbox's settings as written (TOML keys, or flags).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where senders reach the inbox (`127.0.0.1:8800` by default).
    pub listen: Option<String>,
    /// The admin listener (`/metrics`, `/healthz`, the admin routes);
    /// `127.0.0.1:8801` by default.
    pub admin_listen: Option<String>,
    /// Required when the admin listener is not on a loopback address.
    pub admin_token: Option<String>,
    /// Where the inbox's database lives (`./signhook-inbox` by default).
    pub data_dir: Option<PathBuf>,
    /// The waits between forward attempts, e.g. `5s,30s,2m,10m,30m,1h`.
    pub retry_schedule: Option<String>,
    /// How long one forward may take (`15s`).
    pub request_timeout: Option<String>,
    /// The most forwards in flight to one source's app (`10`).
    pub concurrency: Option<usize>,
    /// How long an event id is remembered for deduplication (`7d`).
    pub dedup_window: Option<String>,
    /// How long a forwarded request is kept (`7d`).
    pub retention: Option<String>,
    /// The sources.
    #[serde(default, rename = "source")]
    pub sources: Vec<RawSource>,
}

/// One source as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// Its name (the lane of its forwards, shown by `inbox list`);
    /// defaults to its path.
    pub name: Option<String>,
    /// The path on the inbox's listener, e.g. `/hooks/signhook`.
    pub path: String,
    /// `standard-webhooks`, `hex` or `prefixed`.
    pub scheme: String,
    /// The secrets that verify it (several while the sender rotates).
    #[serde(default)]
    pub secrets: Vec<String>,
    /// The app's URL.
    pub forward_to: String,
    /// A `whsec_…` secret to re-sign forwards with (Standard Webhooks).
    pub forward_secret: Option<String>,
    /// The most forwards per second to the app.
    pub rate_limit: Option<u32>,
    /// A JSON pointer to the ordering key, e.g. `/data/signature_request/id`.
    pub ordering_key: Option<String>,
    /// `hex`: the header holding the signature (`X-Signature`).
    pub signature_header: Option<String>,
    /// `hex`: a JSON pointer to the event id; else the body's SHA-256.
    pub event_id_pointer: Option<String>,
    /// `prefixed`: the headers' prefix (`X-Signbee`).
    pub header_prefix: Option<String>,
}

/// How a source's requests are verified.
#[derive(Debug, Clone)]
pub enum Scheme {
    /// Standard Webhooks: `webhook-id`/`-timestamp`/`-signature`, or the
    /// same under `svix-`.
    StandardWebhooks,
    /// Hex HMAC-SHA256 of the raw body, keyed with the secret's text, in
    /// `header` (lower case). No timestamp, no event id header.
    Hex {
        /// The signature's header.
        header: String,
        /// Where the event id is in the JSON body, if anywhere.
        event_id_pointer: Option<String>,
    },
    /// Standard Webhooks' signature under vendor headers:
    /// `{prefix}-Signature`, `{prefix}-Timestamp`, `{prefix}-Event-Id`.
    Prefixed {
        /// The prefix, lower case (`x-signbee`).
        prefix: String,
    },
}

/// One resolved source.
#[derive(Debug, Clone)]
pub struct Source {
    /// Its name.
    pub name: String,
    /// Its path.
    pub path: String,
    /// How it is verified.
    pub scheme: Scheme,
    /// The secrets' texts as configured (the hex scheme keys with them).
    pub secrets: Vec<String>,
    /// The app.
    pub forward_to: url::Url,
    /// The re-signing secret.
    pub forward_secret: Option<WebhookSecret>,
    /// Forwards per second at most.
    pub rate_limit: Option<u32>,
    /// The ordering key's JSON pointer.
    pub ordering_key: Option<String>,
}

/// Everything an inbox runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The senders' listener.
    pub listen: SocketAddr,
    /// The admin listener.
    pub admin_listen: SocketAddr,
    /// The admin routes' bearer token, if any.
    pub admin_token: Option<String>,
    /// The database's directory.
    pub data_dir: PathBuf,
    /// The forwards' retry schedule.
    pub retry_policy: RetryPolicy,
    /// One forward's timeout.
    pub request_timeout: Duration,
    /// Forwards in flight per source.
    pub concurrency: usize,
    /// How long event ids are remembered.
    pub dedup_window: Duration,
    /// How long forwarded requests are kept.
    pub retention: Duration,
    /// The sources.
    pub sources: Vec<Arc<Source>>,
}

/// The default retry schedule: DESIGN §4's.
pub const DEFAULT_SCHEDULE: &str = "5s,30s,2m,10m,30m,1h,3h,6h,12h,24h";

impl RawConfig {
    /// Reads a TOML file's text.
    pub fn from_toml(text: &str) -> Result<Self, SettingsError> {
        toml::from_str(text).map_err(|e| invalid("config", e.to_string()))
    }

    /// Checks and resolves every value.
    pub fn resolve(self) -> Result<Settings, SettingsError> {
        let address = |field: &str, value: Option<String>, default: &str| {
            value
                .as_deref()
                .unwrap_or(default)
                .parse::<SocketAddr>()
                .map_err(|e| invalid(field, format!("{e}; expected an address such as 127.0.0.1:8800")))
        };
        let listen = address("listen", self.listen, "127.0.0.1:8800")?;
        let admin_listen = address("admin_listen", self.admin_listen, "127.0.0.1:8801")?;
        let admin_token = self.admin_token.filter(|t| !t.is_empty());
        if !admin_listen.ip().is_loopback() && admin_token.is_none() {
            return Err(invalid(
                "admin_token",
                format!("the admin listener {admin_listen} is not on loopback: an admin token is required"),
            ));
        }
        let duration = |field: &str, value: Option<String>, default: &str| {
            parse_duration(value.as_deref().unwrap_or(default)).map_err(|e| invalid(field, e.to_string()))
        };
        let schedule = parse_duration_list(self.retry_schedule.as_deref().unwrap_or(DEFAULT_SCHEDULE))
            .map_err(|e| invalid("retry_schedule", e.to_string()))?;
        if self.sources.is_empty() {
            return Err(invalid(
                "source",
                "no source: give --source-path, --scheme, --secret and --forward-to, or [[source]] tables in --config",
            ));
        }
        let mut sources = Vec::new();
        let (mut names, mut paths) = (HashSet::new(), HashSet::new());
        for (i, raw) in self.sources.into_iter().enumerate() {
            let source = raw.resolve(&format!("source[{i}]"))?;
            if !names.insert(source.name.clone()) {
                return Err(invalid(format!("source[{i}].name"), "two sources have this name"));
            }
            if !paths.insert(source.path.clone()) {
                return Err(invalid(format!("source[{i}].path"), "two sources have this path"));
            }
            sources.push(Arc::new(source));
        }
        Ok(Settings {
            listen,
            admin_listen,
            admin_token,
            data_dir: self.data_dir.unwrap_or_else(|| PathBuf::from("./signhook-inbox")),
            retry_policy: RetryPolicy::new(schedule, DEFAULT_JITTER),
            request_timeout: duration("request_timeout", self.request_timeout, "15s")?,
            concurrency: self.concurrency.unwrap_or(10).max(1),
            dedup_window: duration("dedup_window", self.dedup_window, "7d")?,
            retention: duration("retention", self.retention, "7d")?,
            sources,
        })
    }
}

/// A JSON pointer (RFC 6901): empty, or starting with `/`.
fn pointer(field: &str, value: Option<String>) -> Result<Option<String>, SettingsError> {
    match value {
        Some(p) if !p.starts_with('/') => Err(invalid(
            field,
            format!("`{p}` is not a JSON pointer; expected one such as /data/signature_request/id"),
        )),
        other => Ok(other),
    }
}

impl RawSource {
    fn resolve(self, at: &str) -> Result<Source, SettingsError> {
        let field = |name: &str| format!("{at}.{name}");
        if !self.path.starts_with('/') || self.path.contains(['{', '}', '*', '?', '#']) {
            return Err(invalid(
                field("path"),
                "a path such as /hooks/signhook (no `{`, `}`, `*`, `?`, `#`)",
            ));
        }
        let scheme = match self.scheme.as_str() {
            "standard-webhooks" => Scheme::StandardWebhooks,
            "hex" => Scheme::Hex {
                header: self
                    .signature_header
                    .unwrap_or_else(|| "X-Signature".into())
                    .to_ascii_lowercase(),
                event_id_pointer: pointer(&field("event_id_pointer"), self.event_id_pointer)?,
            },
            "prefixed" => Scheme::Prefixed {
                prefix: self
                    .header_prefix
                    .unwrap_or_else(|| "X-Signbee".into())
                    .trim_end_matches('-')
                    .to_ascii_lowercase(),
            },
            other => {
                return Err(invalid(
                    field("scheme"),
                    format!("`{other}` is not a scheme; expected standard-webhooks, hex or prefixed"),
                ))
            }
        };
        if self.secrets.is_empty() {
            return Err(invalid(field("secrets"), "at least one secret is required"));
        }
        if !matches!(scheme, Scheme::Hex { .. }) {
            for (i, secret) in self.secrets.iter().enumerate() {
                WebhookSecret::parse(secret)
                    .map_err(|e| invalid(format!("{at}.secrets[{i}]"), format!("{e}; expected whsec_ and base64")))?;
            }
        }
        let forward_to = url::Url::parse(&self.forward_to)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| invalid(field("forward_to"), "an http:// or https:// URL"))?;
        let forward_secret = self
            .forward_secret
            .map(|s| WebhookSecret::parse(&s))
            .transpose()
            .map_err(|e| invalid(field("forward_secret"), format!("{e}; expected whsec_ and base64")))?;
        if self.rate_limit == Some(0) {
            return Err(invalid(field("rate_limit"), "at least 1 per second, or leave it out"));
        }
        Ok(Source {
            name: self.name.unwrap_or_else(|| self.path.clone()),
            path: self.path,
            scheme,
            secrets: self.secrets,
            forward_to,
            forward_secret,
            rate_limit: self.rate_limit,
            ordering_key: pointer(&field("ordering_key"), self.ordering_key)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn a_toml_file_resolves_with_its_defaults() {
        let text = format!(
            r#"
            data_dir = "/tmp/inbox"
            [[source]]
            name = "signhook"
            path = "/hooks/signhook"
            scheme = "standard-webhooks"
            secrets = ["{SECRET}"]
            forward_to = "http://127.0.0.1:3000/webhooks"
            ordering_key = "/data/signature_request/id"

            [[source]]
            path = "/hooks/krebit"
            scheme = "hex"
            secrets = ["krebit-secret"]
            forward_to = "http://127.0.0.1:3000/krebit"
            event_id_pointer = "/event_id"
            "#
        );
        let settings = RawConfig::from_toml(&text).unwrap().resolve().unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:8800");
        assert_eq!(settings.sources.len(), 2);
        assert_eq!(settings.sources[1].name, "/hooks/krebit");
        assert!(matches!(&settings.sources[1].scheme, Scheme::Hex { header, .. } if header == "x-signature"));
        assert_eq!(settings.retry_policy.max_attempts(), 11);
    }

    #[test]
    fn bad_settings_name_their_field() {
        let source = |f: &dyn Fn(&mut RawSource)| {
            let mut raw = RawSource {
                path: "/hooks".into(),
                scheme: "standard-webhooks".into(),
                secrets: vec![SECRET.into()],
                forward_to: "http://127.0.0.1:3000/".into(),
                ..RawSource::default()
            };
            f(&mut raw);
            RawConfig {
                sources: vec![raw],
                ..RawConfig::default()
            }
        };
        let cases: Vec<(RawConfig, &str)> = vec![
            (source(&|s| s.scheme = "rot13".into()), "source[0].scheme"),
            (
                source(&|s| s.secrets = vec!["not a secret".into()]),
                "source[0].secrets[0]",
            ),
            (source(&|s| s.secrets.clear()), "source[0].secrets"),
            (source(&|s| s.forward_to = "ftp://x/".into()), "source[0].forward_to"),
            (source(&|s| s.path = "hooks".into()), "source[0].path"),
            (
                source(&|s| s.ordering_key = Some("data.id".into())),
                "source[0].ordering_key",
            ),
            (
                RawConfig {
                    admin_listen: Some("0.0.0.0:8801".into()),
                    ..source(&|_| {})
                },
                "admin_token",
            ),
            (RawConfig::default(), "source"),
        ];
        for (raw, field) in cases {
            let error = raw.resolve().expect_err(field);
            assert_eq!(error.field, field, "{error}");
        }
    }
}
