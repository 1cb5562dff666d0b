//! One attempt: build the signed request, POST it, and turn whatever happens
//! into an [`AttemptOutcome`] with the details the delivery log shows.

use crate::payload::Envelope;
use crate::relay::{RelayHub, RelayReply, RelayRequest};
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use signhook_core::delivery::ErrorKind;
use signhook_core::endpoint::SignatureScheme;
use signhook_core::netguard::{AddressPolicy, Forbidden};
use signhook_core::retry::{parse_retry_after, AttemptOutcome};
use signhook_store::claims::ClaimedDelivery;
use signhook_store::deliveries::MAX_RESPONSE_BODY;
use signhook_verify as verify;
use std::error::Error;
use std::io;
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
    /// The request's headers as sent, custom header values hidden (see
    /// [`recorded_headers`]); empty when no request was made.
    pub request_headers: Vec<(String, String)>,
}

/// The headers of a request as its attempt records them: every header in
/// order, the values of the subscription's custom headers replaced (they
/// may be credentials, kept only sealed).
pub fn recorded_headers(claim: &ClaimedDelivery, headers: &HeaderMap) -> Vec<(String, String)> {
    let custom = claim.subscription.headers.as_map();
    headers
        .iter()
        .map(|(name, value)| {
            let shown = if custom.keys().any(|c| c.eq_ignore_ascii_case(name.as_str()))
                && !name.as_str().starts_with("webhook-")
            {
                signhook_store::deliveries::HIDDEN_HEADER_VALUE.to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_owned(), shown)
        })
        .collect()
}

/// The `user-agent` of every delivery.
pub fn user_agent() -> String {
    format!("Signhook/{}", env!("CARGO_PKG_VERSION"))
}

/// The HTTP client deliveries share, and the rule it sends under: no
/// redirects followed (a 3xx is an answer, DESIGN §4), connections kept
/// alive per endpoint, and only vetted addresses ever connected to.
///
/// Proxy variables in the environment (`HTTPS_PROXY`, `ALL_PROXY`, …) are
/// ignored: a proxy resolves endpoint names itself, past the guard. An
/// operator who needs one names it (`--outbound-proxy`); then each
/// endpoint's name is resolved and vetted here before the proxy is asked.
/// The proxy resolves it again, so it should refuse private ranges too.
#[derive(Debug, Clone)]
pub struct Outbound {
    client: reqwest::Client,
    addresses: Arc<AddressPolicy>,
    proxied: bool,
    /// The `signhook listen` sockets this node holds: relay subscriptions'
    /// attempts go there instead.
    relays: RelayHub,
}

impl Outbound {
    /// A client that connects within `connect_timeout`, to addresses
    /// `addresses` allows, directly or through `proxy`.
    pub fn new(
        connect_timeout: Duration,
        addresses: Arc<AddressPolicy>,
        proxy: Option<&url::Url>,
    ) -> reqwest::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .no_proxy();
        // The operator's proxy is reached whatever its address: its name is
        // the only one the resolver passes unvetted.
        let proxy_host = proxy.and_then(|url| url.host_str()).map(str::to_owned);
        if let Some(proxy) = proxy {
            builder = builder.proxy(reqwest::Proxy::all(proxy.as_str())?);
        }
        let client = builder
            .dns_resolver(Arc::new(GuardedResolver {
                addresses: addresses.clone(),
                proxy_host,
            }))
            .build()?;
        Ok(Self {
            client,
            addresses,
            proxied: proxy.is_some(),
            relays: RelayHub::default(),
        })
    }

    /// Sends relay subscriptions' attempts over the sockets of `relays`.
    pub fn with_relays(mut self, relays: RelayHub) -> Self {
        self.relays = relays;
        self
    }

    /// Whether `url`'s host may be sent to, before any connection: an IP
    /// literal is never resolved, and through a proxy no name is, so both
    /// are vetted here. Other names are vetted by the resolver.
    async fn vet(&self, url: &url::Url) -> Result<(), (ErrorKind, String)> {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check(IpAddr::V6(ip)),
            Some(url::Host::Domain(host)) if self.proxied => match guarded_lookup(&self.addresses, host).await {
                Ok(_) => Ok(()),
                Err(Refused::Blocked(blocked)) => Err((ErrorKind::Blocked, blocked.to_string())),
                Err(Refused::Dns(failure)) => Err((ErrorKind::Dns, error_chain(&failure))),
            },
            _ => Ok(()),
        }
    }

    fn check(&self, ip: IpAddr) -> Result<(), (ErrorKind, String)> {
        self.addresses
            .check(ip)
            .map_err(|forbidden| (ErrorKind::Blocked, BlockedAddress(forbidden).to_string()))
    }
}

/// Resolves endpoint host names and keeps only the addresses the
/// [`AddressPolicy`] allows. The client connects to what this returns and
/// nothing else, so a name that re-resolves to a private address later (DNS
/// rebinding) is checked again, every time.
#[derive(Debug)]
struct GuardedResolver {
    addresses: Arc<AddressPolicy>,
    /// The operator's `--outbound-proxy`, resolved without the guard.
    proxy_host: Option<String>,
}

/// A host whose every address is forbidden.
#[derive(Debug, thiserror::Error)]
#[error("blocked by the SSRF guard: {0}")]
pub struct BlockedAddress(#[from] Forbidden);

/// A host name that gives no address: the lookup failed, or found nothing.
#[derive(Debug, thiserror::Error)]
enum DnsFailure {
    /// The resolver failed (no such name, no answer, …).
    #[error("dns error: {host}")]
    Lookup {
        host: String,
        #[source]
        cause: io::Error,
    },
    /// The name exists but has no address.
    #[error("dns error: {host}: no addresses")]
    NoAddresses { host: String },
}

/// Why a host name gives nothing to connect to.
enum Refused {
    Blocked(BlockedAddress),
    Dns(DnsFailure),
}

/// `host`'s addresses that `addresses` allows; an error if there are none.
async fn guarded_lookup(addresses: &AddressPolicy, host: &str) -> Result<Vec<SocketAddr>, Refused> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|cause| {
            Refused::Dns(DnsFailure::Lookup {
                host: host.to_owned(),
                cause,
            })
        })?
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
        (true, Some(forbidden)) => Err(Refused::Blocked(BlockedAddress(forbidden))),
        (true, None) => Err(Refused::Dns(DnsFailure::NoAddresses { host: host.to_owned() })),
        (false, _) => Ok(allowed),
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let addresses = if self.proxy_host.as_deref() == Some(name.as_str()) {
            Arc::new(AddressPolicy {
                allow_all: true,
                allowed: Vec::new(),
            })
        } else {
            self.addresses.clone()
        };
        Box::pin(async move {
            match guarded_lookup(&addresses, name.as_str()).await {
                Ok(allowed) => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
                Err(Refused::Blocked(blocked)) => Err(Box::new(blocked) as Box<dyn std::error::Error + Send + Sync>),
                Err(Refused::Dns(failure)) => Err(Box::new(failure) as _),
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
            // One signature per header: while a rotation overlaps, the
            // receiver's current code (and the old secret it holds) keeps
            // verifying `X-Signature`; the new secret's is beside it.
            let hex =
                |secret: &verify::WebhookSecret| header_value(&verify::hex_body_signature(&secret.expose(), body));
            match sub.signing_secrets(now)[..] {
                [new, old] => {
                    headers.insert(verify::HEADER_X_SIGNATURE, hex(old));
                    headers.insert(verify::HEADER_X_SIGNATURE_NEXT, hex(new));
                }
                _ => {
                    headers.insert(verify::HEADER_X_SIGNATURE, hex(&sub.secret));
                }
            }
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
/// A relay subscription's attempt goes over its `signhook listen` socket
/// instead (see [`crate::relay`]).
pub async fn send(outbound: &Outbound, claim: &ClaimedDelivery, timeout: Duration, now: DateTime<Utc>) -> SendResult {
    if claim.subscription.is_relay() {
        return relay(outbound, claim, timeout, now).await;
    }
    let started = Instant::now();
    if let Err((kind, message)) = outbound.vet(claim.subscription.url.url()).await {
        return SendResult {
            location: None,
            started_at: now,
            duration: started.elapsed(),
            outcome: AttemptOutcome::Error(kind),
            status_code: None,
            response_body: None,
            error_message: Some(message),
            request_headers: Vec::new(),
        };
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
                request_headers: Vec::new(),
            }
        }
    };
    let headers = signed_headers(claim, &body, now.timestamp(), now);
    let request_headers = recorded_headers(claim, &headers);
    let request = outbound
        .client
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
        request_headers,
    }
}

/// Makes one attempt of a relay subscription's delivery: the exact body
/// and signed headers the POST would carry, over the CLI's socket; the
/// CLI's report of the developer's app is the answer. Can take up to
/// `timeout`.
async fn relay(outbound: &Outbound, claim: &ClaimedDelivery, timeout: Duration, now: DateTime<Utc>) -> SendResult {
    let started = Instant::now();
    let failed = |kind: ErrorKind, message: String, duration: Duration, request_headers| SendResult {
        location: None,
        started_at: now,
        duration,
        outcome: AttemptOutcome::Error(kind),
        status_code: None,
        response_body: None,
        error_message: Some(message),
        request_headers,
    };
    let body = match Envelope::new(&claim.event, Some(&claim.subscription)) {
        Ok(envelope) => envelope.to_body(),
        Err(e) => return failed(ErrorKind::Http, e.to_string(), Duration::ZERO, Vec::new()),
    };
    let headers = signed_headers(claim, &body, now.timestamp(), now);
    let request_headers = recorded_headers(claim, &headers);
    let (reply, answer) = tokio::sync::oneshot::channel();
    let request = RelayRequest {
        delivery_id: claim.delivery_id.clone(),
        event_id: claim.event.id.clone(),
        event_type: claim.event.event_type.clone(),
        attempt_number: claim.attempt_number,
        headers: headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        // The envelope is serde_json's output: always UTF-8.
        body: String::from_utf8_lossy(&body).into_owned(),
        reply,
    };
    if let Err(unavailable) = outbound.relays.submit(&claim.subscription.id, request) {
        return failed(
            ErrorKind::Relay,
            unavailable.to_string(),
            started.elapsed(),
            request_headers,
        );
    }
    match tokio::time::timeout(timeout, answer).await {
        Err(_) => failed(
            ErrorKind::Timeout,
            format!("signhook listen did not answer within {} ms", timeout.as_millis()),
            started.elapsed(),
            request_headers,
        ),
        Ok(Err(_)) => failed(
            ErrorKind::Relay,
            "the signhook listen connection closed before it answered".into(),
            started.elapsed(),
            request_headers,
        ),
        Ok(Ok(RelayReply::Failed {
            kind,
            message,
            duration,
        })) => failed(kind, format!("signhook listen: {message}"), duration, request_headers),
        Ok(Ok(RelayReply::Answered {
            status,
            headers,
            mut body,
            duration,
        })) => {
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            let retry_after = header("retry-after").and_then(|v| parse_retry_after(&v, now));
            let redirect = (300..400).contains(&status);
            let location = if redirect { header("location") } else { None };
            // The CLI promises 4 KiB at most; hold it to that.
            if body.len() > MAX_RESPONSE_BODY {
                let mut cut = MAX_RESPONSE_BODY;
                while !body.is_char_boundary(cut) {
                    cut -= 1;
                }
                body.truncate(cut);
            }
            SendResult {
                error_message: redirect
                    .then(|| format!("redirect to `{}` not followed", location.as_deref().unwrap_or(""))),
                location,
                started_at: now,
                duration,
                outcome: AttemptOutcome::Response { status, retry_after },
                status_code: Some(status),
                response_body: Some(body),
                request_headers,
            }
        }
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

/// Sorts a transport failure into the error kinds of DESIGN §3 by the
/// types of its causes. Never by their text: reqwest's message carries the
/// URL, and `https://…/certificates/hook` says nothing about what failed.
///
/// A timeout is a timeout wherever it happened. Otherwise the first cause
/// that names a kind decides; failing that, where the attempt broke off:
/// while connecting it is `connect` (refused, reset, unreachable, …), after
/// it — the endpoint said something that is not HTTP, or hung up without an
/// answer — it is `http`.
fn error_kind(e: &reqwest::Error) -> ErrorKind {
    if e.is_timeout() {
        return ErrorKind::Timeout;
    }
    // reqwest finds hyper-util's `Error::is_connect` in the chain.
    let connecting = e.is_connect();
    let fallback = if connecting {
        ErrorKind::Connect
    } else {
        ErrorKind::Http
    };
    causes(e)
        .find_map(|cause| kind_of_cause(cause, connecting))
        .unwrap_or(fallback)
}

/// The kind `cause` names, if any. `connecting`: whether the attempt broke
/// off before the connection was made.
fn kind_of_cause(cause: &(dyn Error + 'static), connecting: bool) -> Option<ErrorKind> {
    if cause.is::<BlockedAddress>() {
        Some(ErrorKind::Blocked)
    } else if cause.is::<DnsFailure>() {
        Some(ErrorKind::Dns)
    } else if cause.is::<rustls::Error>() {
        // A certificate refused, a protocol broken, an alert from the peer.
        Some(ErrorKind::Tls)
    } else if let Some(io) = cause.downcast_ref::<io::Error>() {
        match io.kind() {
            // The OS gave up (a SYN or a read unanswered); reqwest's
            // `is_timeout` misses one wrapped inside another `io::Error`.
            io::ErrorKind::TimedOut => Some(ErrorKind::Timeout),
            // Of connecting, only the TLS handshake reads from the peer and
            // fails this way (a proxy's answer to CONNECT cut short is
            // hyper-util's `TunnelError`), so a peer that hangs up then
            // hung up mid-handshake: a plain TCP server on an https URL,
            // or one that refuses our TLS.
            io::ErrorKind::UnexpectedEof if connecting => Some(ErrorKind::Tls),
            _ => None,
        }
    } else {
        None
    }
}

/// `e` and its causes, outermost first. An `io::Error` reports the source of
/// the error it wraps, not that error, so the wrapped error is visited
/// explicitly: rustls's errors travel inside `io::Error`s (inside another
/// one, as hyper-rustls hands them on).
fn causes<'a>(e: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(e), |&cause| {
        match cause.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            Some(wrapped) => Some(wrapped as &(dyn Error + 'static)),
            None => cause.source(),
        }
    })
}

pub(crate) use signhook_core::error_chain;

#[cfg(test)]
mod tests {
    //! Each kind from a real failure against a real socket on 127.0.0.1 (or
    //! a name that cannot resolve). Paths name other kinds on purpose: the
    //! URL is part of an error's text, and must not sway its kind.

    use super::*;
    use crate::fixtures::{delivery, subscription};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpSocket};

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// The guard as `--allow-endpoint-cidr 127.0.0.0/8` leaves it: loopback
    /// allowed, every other private range still refused.
    fn loopback_allowed() -> AddressPolicy {
        AddressPolicy {
            allow_all: false,
            allowed: vec!["127.0.0.0/8".parse().expect("a valid range")],
        }
    }

    /// One attempt at `url` under `policy`, waiting at most `timeout`: the
    /// kind it failed with, and its message (to show when a test fails).
    async fn failure(url: &str, policy: AddressPolicy, timeout: Duration) -> (ErrorKind, String) {
        let outbound =
            Outbound::new(Duration::from_secs(5), Arc::new(policy), None).expect("a client without a proxy builds");
        let result = send(&outbound, &delivery(&subscription(url, None)), timeout, Utc::now()).await;
        match result.outcome {
            AttemptOutcome::Error(kind) => (kind, result.error_message.unwrap_or_default()),
            other => panic!("{url}: expected a failure, got {other:?}"),
        }
    }

    /// A port on 127.0.0.1 that refuses connections: bound, so nobody else
    /// takes it while the socket lives, but not listening.
    fn refusing() -> (TcpSocket, SocketAddr) {
        let socket = TcpSocket::new_v4().expect("a socket");
        socket
            .bind("127.0.0.1:0".parse().expect("a valid address"))
            .expect("port 0 binds");
        let addr = socket.local_addr().expect("a bound socket has an address");
        (socket, addr)
    }

    /// A server on 127.0.0.1 that reads what a client sends first, then
    /// writes `reply` (perhaps nothing) and hangs up.
    async fn replying(reply: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("port 0 binds");
        let addr = listener.local_addr().expect("a bound listener has an address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut first = [0; 1024];
                let _ = stream.read(&mut first).await;
                let _ = stream.write_all(reply).await;
            }
        });
        addr
    }

    /// A server on 127.0.0.1 that accepts connections and never answers.
    async fn silent() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("port 0 binds");
        let addr = listener.local_addr().expect("a bound listener has an address");
        tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                open.push(stream);
            }
        });
        addr
    }

    #[test]
    fn causes_wrapped_in_io_errors_are_found() {
        // How hyper-rustls hands on a failed handshake: rustls's error (or
        // the OS's) inside tokio-rustls's `io::Error`, inside another.
        let wrapped = |inner: io::Error| io::Error::other(inner);
        let cases = [
            (
                wrapped(io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError)),
                true,
                Some(ErrorKind::Tls),
            ),
            (wrapped(io::ErrorKind::TimedOut.into()), true, Some(ErrorKind::Timeout)),
            (wrapped(io::ErrorKind::TimedOut.into()), false, Some(ErrorKind::Timeout)),
            (wrapped(io::ErrorKind::UnexpectedEof.into()), true, Some(ErrorKind::Tls)),
            // After connecting, a hang-up is the endpoint's answer missing.
            (wrapped(io::ErrorKind::UnexpectedEof.into()), false, None),
            // Refused or reset: where it happened decides, not the kind.
            (io::ErrorKind::ConnectionRefused.into(), true, None),
            (wrapped(io::ErrorKind::ConnectionReset.into()), false, None),
        ];
        for (error, connecting, expected) in cases {
            let found = causes(&error).find_map(|cause| kind_of_cause(cause, connecting));
            assert_eq!(found, expected, "{error:?}, connecting: {connecting}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_connect_whatever_its_url_says() {
        let (_socket, addr) = refusing();
        let url = format!("http://{addr}/certificates/tls/handshake");
        let (kind, message) = failure(&url, loopback_allowed(), TIMEOUT).await;
        assert_eq!(kind, ErrorKind::Connect, "{message}");
    }

    #[tokio::test]
    async fn https_to_a_server_that_answers_in_plain_http_is_tls() {
        let addr = replying(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
        let (kind, message) = failure(&format!("https://{addr}/hook"), loopback_allowed(), TIMEOUT).await;
        assert_eq!(kind, ErrorKind::Tls, "{message}");
    }

    #[tokio::test]
    async fn https_to_a_server_that_hangs_up_during_the_handshake_is_tls() {
        let addr = replying(b"").await;
        let (kind, message) = failure(&format!("https://{addr}/hook"), loopback_allowed(), TIMEOUT).await;
        assert_eq!(kind, ErrorKind::Tls, "{message}");
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_dns() {
        let (kind, message) = failure("https://nothing.invalid/tls/hook", AddressPolicy::default(), TIMEOUT).await;
        assert_eq!(kind, ErrorKind::Dns, "{message}");
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_a_forbidden_address_is_blocked() {
        // `localhost` is resolved, and its loopback addresses refused, by the
        // client's resolver: the refusal comes back inside reqwest's error.
        let (kind, message) = failure("http://localhost:9/certificates", AddressPolicy::default(), TIMEOUT).await;
        assert_eq!(kind, ErrorKind::Blocked, "{message}");
        assert!(message.contains("loopback"), "{message}");
    }

    #[tokio::test]
    async fn a_forbidden_address_is_blocked_before_any_connection() {
        for url in [
            "http://10.0.0.1/hook",
            "http://169.254.169.254/latest/meta-data",
            "https://[::1]/tls",
        ] {
            let (kind, message) = failure(url, AddressPolicy::default(), TIMEOUT).await;
            assert_eq!(kind, ErrorKind::Blocked, "{url}: {message}");
        }
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_timeout() {
        let addr = silent().await;
        let url = format!("http://{addr}/certificates/tls");
        let (kind, message) = failure(&url, loopback_allowed(), Duration::from_millis(200)).await;
        assert_eq!(kind, ErrorKind::Timeout, "{message}");
    }

    #[tokio::test]
    async fn a_server_that_answers_garbage_is_http() {
        let addr = replying(b"certainly not HTTP\r\n\r\n").await;
        let (kind, message) = failure(&format!("http://{addr}/tls/hook"), loopback_allowed(), TIMEOUT).await;
        assert_eq!(kind, ErrorKind::Http, "{message}");
    }

    #[tokio::test]
    async fn a_server_that_hangs_up_after_the_request_is_http() {
        // Connected, then no answer at all: the connection was made, so not
        // `connect`.
        let addr = replying(b"").await;
        let (kind, message) = failure(&format!("http://{addr}/certificates"), loopback_allowed(), TIMEOUT).await;
        assert_eq!(kind, ErrorKind::Http, "{message}");
    }
}
