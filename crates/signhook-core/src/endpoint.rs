//! A subscription's endpoint: where it is ([`WebhookUrl`]), which extra
//! headers go with each request ([`CustomHeaders`]), and how requests are
//! signed ([`SignatureScheme`]).

use std::collections::BTreeMap;
use std::fmt;

/// The longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// The most custom headers a subscription may set.
pub const MAX_CUSTOM_HEADERS: usize = 20;
/// The longest custom header value.
pub const MAX_HEADER_VALUE_LEN: usize = 1024;

/// A parsed endpoint URL: `https://` (or `http://` on a development server),
/// with a host and no embedded credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not a URL at all.
    #[error("is not a valid URL ({0}); write an absolute URL such as https://example.com/webhooks")]
    Malformed(String),
    /// Longer than [`MAX_URL_LEN`].
    #[error("is longer than {MAX_URL_LEN} characters")]
    TooLong,
    /// `http://` on a server that only allows `https://`.
    #[error("must use https:// (http:// is allowed only when the server runs with --dev)")]
    NotHttps,
    /// Neither http nor https.
    #[error("must be an https:// URL, not `{0}:`")]
    BadScheme(String),
    /// Has a user name or password in it.
    #[error("must not contain a user name or password; send credentials in `headers` instead")]
    Credentials,
}

impl WebhookUrl {
    /// Parses an endpoint URL. `allow_http` is the server's `--dev` switch.
    pub fn parse(text: &str, allow_http: bool) -> Result<Self, UrlError> {
        if text.len() > MAX_URL_LEN {
            return Err(UrlError::TooLong);
        }
        let url = url::Url::parse(text).map_err(|e| UrlError::Malformed(e.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if allow_http => {}
            "http" => return Err(UrlError::NotHttps),
            other => return Err(UrlError::BadScheme(other.chars().take(20).collect())),
        }
        if url.host().is_none() {
            return Err(UrlError::Malformed("it has no host".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Credentials);
        }
        Ok(Self(url))
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The parsed URL.
    pub fn url(&self) -> &url::Url {
        &self.0
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// Headers that a subscription may not set, because Signhook owns them.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "x-signature",
    "x-client-id",
    "connection",
    "transfer-encoding",
    "te",
    "upgrade",
    "trailer",
    "keep-alive",
    "proxy-connection",
];

/// Extra request headers a subscription sends with every delivery (an API
/// key of the receiver's, a routing hint). Names are stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CustomHeaders(BTreeMap<String, String>);

/// Why a custom header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// More than [`MAX_CUSTOM_HEADERS`].
    #[error("at most {MAX_CUSTOM_HEADERS} custom headers are allowed")]
    TooMany,
    /// Not an HTTP token.
    #[error("`{0}` is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)")]
    BadName(String),
    /// A header Signhook sets itself.
    #[error("`{0}` is set by Signhook and cannot be overridden (webhook-*, content-type, content-length, host, user-agent, x-signature, x-client-id and hop-by-hop headers are reserved)")]
    Reserved(String),
    /// A value with control characters or too long.
    #[error("the value of `{0}` must be printable ASCII of at most {MAX_HEADER_VALUE_LEN} characters")]
    BadValue(String),
    /// The same name twice, differing only in case.
    #[error("`{0}` is given twice")]
    Duplicate(String),
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

impl CustomHeaders {
    /// Validates a header map as given by the API.
    pub fn parse(given: &BTreeMap<String, String>) -> Result<Self, HeaderError> {
        if given.len() > MAX_CUSTOM_HEADERS {
            return Err(HeaderError::TooMany);
        }
        let mut headers = BTreeMap::new();
        for (name, value) in given {
            let shown: String = name.chars().take(100).collect();
            if name.is_empty() || !name.chars().all(is_token_char) {
                return Err(HeaderError::BadName(shown));
            }
            let lower = name.to_ascii_lowercase();
            if lower.starts_with("webhook-") || RESERVED_HEADERS.contains(&lower.as_str()) {
                return Err(HeaderError::Reserved(shown));
            }
            let printable = value.chars().all(|c| c == '\t' || (' '..='~').contains(&c));
            if !printable || value.len() > MAX_HEADER_VALUE_LEN {
                return Err(HeaderError::BadValue(shown));
            }
            if headers.insert(lower, value.clone()).is_some() {
                return Err(HeaderError::Duplicate(shown));
            }
        }
        Ok(Self(headers))
    }

    /// The headers, names lower-case.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The headers as a map.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

/// How deliveries to a subscription are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum SignatureScheme {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    #[default]
    #[serde(rename = "standard")]
    Standard,
    /// `X-Signature` (hex HMAC-SHA256 of the raw body) and `X-Client-Id`,
    /// alongside the `webhook-id` and `webhook-timestamp` headers.
    #[serde(rename = "hmac-sha256-hex")]
    HmacSha256Hex,
}

impl SignatureScheme {
    /// The scheme's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureScheme::Standard => "standard",
            SignatureScheme::HmacSha256Hex => "hmac-sha256-hex",
        }
    }

    /// Parses a scheme name.
    pub fn parse(text: &str) -> Option<Self> {
        [SignatureScheme::Standard, SignatureScheme::HmacSha256Hex]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_unless_dev() {
        assert!(WebhookUrl::parse("https://crm.example.com/hooks", false).is_ok());
        assert_eq!(
            WebhookUrl::parse("http://crm.example.com/hooks", false),
            Err(UrlError::NotHttps)
        );
        assert!(WebhookUrl::parse("http://127.0.0.1:9000/hooks", true).is_ok());
        assert!(matches!(
            WebhookUrl::parse("ftp://x.example.com", true),
            Err(UrlError::BadScheme(_))
        ));
        assert!(matches!(
            WebhookUrl::parse("not a url", true),
            Err(UrlError::Malformed(_))
        ));
        assert_eq!(
            WebhookUrl::parse("https://u:p@example.com/", false),
            Err(UrlError::Credentials)
        );
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(WebhookUrl::parse(&long, false), Err(UrlError::TooLong));
    }

    fn headers(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn custom_headers_cannot_take_over_ours() {
        for name in [
            "webhook-id",
            "Webhook-Signature",
            "Content-Type",
            "host",
            "User-Agent",
            "x-signature",
        ] {
            assert!(
                matches!(
                    CustomHeaders::parse(&headers(&[(name, "x")])),
                    Err(HeaderError::Reserved(_))
                ),
                "{name}"
            );
        }
        assert!(matches!(
            CustomHeaders::parse(&headers(&[("bad name", "x")])),
            Err(HeaderError::BadName(_))
        ));
        assert!(matches!(
            CustomHeaders::parse(&headers(&[("x-a", "line\nbreak")])),
            Err(HeaderError::BadValue(_))
        ));
        assert!(matches!(
            CustomHeaders::parse(&headers(&[("X-Key", "1"), ("x-key", "2")])),
            Err(HeaderError::Duplicate(_))
        ));
        let ok = CustomHeaders::parse(&headers(&[("X-Api-Key", "abc")])).unwrap();
        assert_eq!(ok.iter().collect::<Vec<_>>(), vec![("x-api-key", "abc")]);
    }
}
