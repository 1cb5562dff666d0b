//! E-mail to tenants' admins (the `webhook.disabling_soon` warning), over
//! SMTP when the operator configured it.

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use signhook_store::policy::Warned;

/// Sends warnings by e-mail.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// Why the mailer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// `--smtp-url` is not usable.
    #[error("--smtp-url is not a valid SMTP URL (smtp://host:port or smtps://user:password@host)")]
    Url(#[source] lettre::transport::smtp::Error),
    /// `--smtp-from` is not an address.
    #[error("--smtp-from is not an e-mail address")]
    From(#[source] lettre::address::AddressError),
}

impl Mailer {
    /// A mailer for `smtp_url` (lettre's URL syntax: `smtp://host:25`,
    /// `smtp://host:587?tls=required`, `smtps://user:pass@host`) sending as
    /// `from`.
    pub fn new(smtp_url: &str, from: &str) -> Result<Self, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(MailError::Url)?
            .build();
        let from = from.parse().map_err(MailError::From)?;
        Ok(Self { transport, from })
    }

    /// E-mails a subscription's owner that it is failing and will be
    /// disabled. Can take as long as the SMTP exchange.
    pub async fn send_warning(&self, to: &str, warned: &Warned, grace: std::time::Duration) -> Result<(), String> {
        let sub = &warned.subscription;
        let to: Mailbox = to
            .parse()
            .map_err(|e| format!("the admin address `{to}` is not valid: {e}"))?;
        let body = format!(
            "Deliveries to your webhook endpoint have failed since {since}.\n\n\
             Endpoint: {url}\nDescription: {description}\nSubscription: {id}\n\n\
             If it keeps failing for {grace} more, Signhook will disable it. Fix the endpoint, \
             then resend what it missed (POST /v1/webhooks/{id}/recover).\n",
            since = signhook_core::time::rfc3339(warned.failing_since),
            url = sub.url.as_str(),
            description = sub.description,
            id = sub.id,
            grace = signhook_core::duration::format_duration(grace),
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!("Your webhook endpoint is failing: {}", sub.url.as_str()))
            .body(body)
            .map_err(|e| e.to_string())?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
