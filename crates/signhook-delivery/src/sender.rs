//! One attempt: build the signed request, POST it, and turn whatever happens
//! into an [`AttemptOutcome`] with the details the delivery log shows.

use crate::payload::Envelope;
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use signhook_core::delivery::ErrorKind;
use signhook_core::endpoint::SignatureScheme;
use signhook_core::netguard::{AddressPolicy, Forbidden};
use signhook_core::retry::{parse_retry_after, AttemptOutcome};
use signhook_store::deliveries::{ClaimedDelivery, MAX_RESPONSE_BODY};
use signhook_verify as verify;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one attempt produced.
#[derive(Debug, Clone)]
pub struct SendResult {
    /// The `location` of a 3xx answer.
    pub location: Option<String>,
    /// When the request started.
    pub started_at: DateTime<Utc>,
    /// How long it took.
    pub duration: Duration,
    /// The classified outcome.
    pub outcome: AttemptOutcome,
    /// The status code, when an answer came.
    pub status_code: Option<u16>,
    /// The start of the answer's body.
    pub response_body: Option<String>,
    /// A readable description of a failure.
    pub error_message: Option<String>,
}

/// The `user-agent` of every delivery.
pub fn user_agent() -> String {
    format!("Signhook/{}", env!("CARGO_PKG_VERSION"))
}

/// Builds the HTTP client deliveries share: no redirects followed (a 3xx is
/// an answer, DESIGN §4), connections kept alive per endpoint, and every
/// host name resolved through the [`GuardedResolver`], so only vetted
/// addresses are ever connected to.
pub fn build_client(connect_timeout: Duration, addresses: Arc<AddressPolicy>) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .dns_resolver(Arc::new(GuardedResolver { addresses }))
        .build()
}

/// Resolves endpoint host names and keeps only the addresses the
/// [`AddressPolicy`] allows. The client connects to what this returns and
/// nothing else, so a name that re-resolves to a private address later (DNS
/// rebinding) is checked again, every time.
#[derive(Debug)]
pub struct GuardedResolver {
    addresses: Arc<AddressPolicy>,
}

/// A host whose every address is forbidden.
#[derive(Debug, thiserror::Error)]
#[error("blocked by the SSRF guard: {0}")]
pub struct BlockedAddress(#[from] Forbidden);

/// A host name that did not resolve.
#[derive(Debug, thiserror::Error)]
#[error("dns error: {0}")]
struct DnsFailure(String);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let addresses = self.addresses.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| Box::new(DnsFailure(format!("{host}: {e}"))) as Box<dyn std::error::Error + Send + Sync>)?
                .collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| match addresses.check(addr.ip()) {
                    Ok(()) => true,
                    Err(forbidden) => {
                        refused = Some(forbidden);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(forbidden)) => {
                    Err(Box::new(BlockedAddress(forbidden)) as Box<dyn std::error::Error + Send + Sync>)
                }
                (true, None) => Err(Box::new(DnsFailure(format!("{host}: no addresses"))) as _),
                (false, _) => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// The headers of one attempt, signed at `timestamp` (unix seconds).
pub fn signed_headers(claim: &ClaimedDelivery, body: &[u8], timestamp: i64, now: DateTime<Utc>) -> HeaderMap {
    let sub = &claim.subscription;
    let mut headers = HeaderMap::with_capacity(6 + sub.headers.as_map().len());
    // Custom headers first, so that ours win even if a stored name slipped
    // past validation.
    for (name, value) in sub.headers.iter() {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            headers.insert(name, value);
        }
    }
    let msg_id = claim.event.id.as_str();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(USER_AGENT, header_value(&user_agent()));
    headers.insert(verify::HEADER_WEBHOOK_ID, header_value(msg_id));
    headers.insert(verify::HEADER_WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
    match sub.signature_scheme {
        SignatureScheme::Standard => {
            let webhook_signature = sub
                .signing_secrets(now)
                .into_iter()
                .map(|secret| verify::sign(secret, msg_id, timestamp, body))
                .collect::<Vec<_>>()
                .join(" ");
            headers.insert(verify::HEADER_WEBHOOK_SIGNATURE, header_value(&webhook_signature));
        }
        SignatureScheme::HmacSha256Hex => {
            let x_signature = verify::hex_body_signature(&sub.secret.expose(), body);
            headers.insert(verify::HEADER_X_SIGNATURE, header_value(&x_signature));
            headers.insert(verify::HEADER_X_CLIENT_ID, header_value(sub.tenant_id.as_str()));
        }
    }
    headers
}

fn header_value(text: &str) -> HeaderValue {
    // Every value passed here is ASCII we produced (ids, base64, hex, the
    // version string), which is always a valid header value.
    HeaderValue::from_str(text).expect("ids, base64 and hex are valid header values")
}

/// Makes one attempt of `claim`, waiting at most `timeout` for the answer and
/// its first [`MAX_RESPONSE_BODY`] bytes. Can take up to `timeout`.
pub async fn send(
    client: &reqwest::Client,
    addresses: &AddressPolicy,
    claim: &ClaimedDelivery,
    timeout: Duration,
    now: DateTime<Utc>,
) -> SendResult {
    let started = Instant::now();
    // An IP literal is never resolved, so the resolver cannot vet it: do it here.
    if let Some(ip) = literal_ip(claim.subscription.url.url()) {
        if let Err(forbidden) = addresses.check(ip) {
            return SendResult {
                location: None,
                started_at: now,
                duration: started.elapsed(),
                outcome: AttemptOutcome::Error(ErrorKind::Blocked),
                status_code: None,
                response_body: None,
                error_message: Some(BlockedAddress(forbidden).to_string()),
            };
        }
    }
    let body = match Envelope::new(&claim.event, Some(&claim.subscription)) {
        Ok(envelope) => envelope.to_body(),
        Err(e) => {
            return SendResult {
                location: None,
                started_at: now,
                duration: Duration::ZERO,
                outcome: AttemptOutcome::Error(ErrorKind::Http),
                status_code: None,
                response_body: None,
                error_message: Some(e.to_string()),
            }
        }
    };
    let headers = signed_headers(claim, &body, now.timestamp(), now);
    let request = client
        .post(claim.subscription.url.url().clone())
        .headers(headers)
        .timeout(timeout)
        .body(body);
    let mut location = None;
    let (outcome, status_code, response_body, error_message) = match request.send().await {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let retry_after = header("retry-after").and_then(|v| parse_retry_after(&v, now));
            if (300..400).contains(&status) {
                location = header("location");
            }
            let (body, body_error) = read_start(&mut response).await;
            let mut message = body_error.map(|e| format!("reading the response body: {e}"));
            if (300..400).contains(&status) {
                let target = location.as_deref().unwrap_or("");
                message = Some(format!("redirect to `{target}` not followed"));
            }
            (
                AttemptOutcome::Response { status, retry_after },
                Some(status),
                Some(body),
                message,
            )
        }
        Err(e) => {
            let kind = error_kind(&e);
            (AttemptOutcome::Error(kind), None, None, Some(error_chain(&e)))
        }
    };
    SendResult {
        location,
        started_at: now,
        duration: started.elapsed(),
        outcome,
        status_code,
        response_body,
        error_message,
    }
}

fn literal_ip(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// Reads up to [`MAX_RESPONSE_BODY`] bytes of the body, as lossy UTF-8. A
/// body that breaks off midway keeps what came and says why.
async fn read_start(response: &mut reqwest::Response) -> (String, Option<String>) {
    let mut bytes = Vec::new();
    let mut error = None;
    while bytes.len() < MAX_RESPONSE_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                error = Some(error_chain(&e));
                break;
            }
        }
    }
    bytes.truncate(MAX_RESPONSE_BODY);
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if bytes.len() == MAX_RESPONSE_BODY {
        // A cut may have split a character; drop the replacement char it left.
        while text.ends_with('\u{FFFD}') {
            text.pop();
        }
    }
    (text, error)
}

/// Sorts a transport failure into the error kinds of DESIGN §3.
fn error_kind(e: &reqwest::Error) -> ErrorKind {
    if e.is_timeout() {
        return ErrorKind::Timeout;
    }
    let chain = error_chain(e).to_ascii_lowercase();
    if chain.contains("blocked by the ssrf guard") {
        ErrorKind::Blocked
    } else if chain.contains("dns error") || chain.contains("failed to lookup address") {
        ErrorKind::Dns
    } else if chain.contains("certificate") || chain.contains("tls") || chain.contains("handshake") {
        ErrorKind::Tls
    } else if e.is_connect() {
        ErrorKind::Connect
    } else {
        ErrorKind::Http
    }
}

pub(crate) use signhook_core::error_chain;
