//! E-mail over SMTP when the operator configured it: failure warnings to
//! tenants' admins (`webhook.disabling_soon`), and invitations and reminders
//! to signers and approvers.

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use signhook_core::error_chain;
use signhook_store::policy::Warned;

/// Sends warnings, invitations and reminders by e-mail.
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
            .message_id(None)
            .singlepart(SinglePart::plain(body))
            .map_err(|e| e.to_string())?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// An invitation (or reminder) to sign or approve.
#[derive(Debug, Clone)]
pub struct Invitation {
    /// The person's name.
    pub name: String,
    /// Their address.
    pub email: String,
    /// The signature request's name.
    pub request_name: String,
    /// Their signing or approval link.
    pub url: String,
    /// `true` for an approver, `false` for a signer.
    pub approver: bool,
    /// `true` for a reminder.
    pub reminder: bool,
    /// The request's deadline (RFC 3339).
    pub expires_at: String,
}

/// Why an invitation was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvitationFailure {
    /// The address was refused for good (bad syntax, or the SMTP server
    /// answered a permanent 5xx): the invitation cannot be delivered.
    Undeliverable(String),
    /// The SMTP server could not be used right now.
    Failed(String),
}

impl Mailer {
    /// Sends an invitation or a reminder. Can take as long as the SMTP
    /// exchange.
    pub async fn send_invitation(&self, invitation: &Invitation) -> Result<(), InvitationFailure> {
        let to: Mailbox = format!(
            "{} <{}>",
            invitation.name.replace(['<', '>', '"'], ""),
            invitation.email
        )
        .parse()
        .map_err(|e| InvitationFailure::Undeliverable(format!("`{}` is not an address: {e}", invitation.email)))?;
        let (verb, noun) = if invitation.approver {
            ("approve", "approval")
        } else {
            ("sign", "signature")
        };
        let subject = if invitation.reminder {
            format!("Reminder: please {verb} \"{}\"", invitation.request_name)
        } else {
            format!("Please {verb} \"{}\"", invitation.request_name)
        };
        let text = format!(
            "Hello {name},\n\n\"{request}\" is waiting for your {noun}.\n\nOpen it here:\n{url}\n\n\
             This link is personal: do not forward it. The request expires at {expires}.\n",
            name = invitation.name,
            request = invitation.request_name,
            url = invitation.url,
            expires = invitation.expires_at,
        );
        let html = format!(
            "<!DOCTYPE html><html><body style=\"font-family: sans-serif; line-height: 1.5\">\
             <p>Hello {name},</p><p>&ldquo;{request}&rdquo; is waiting for your {noun}.</p>\
             <p><a href=\"{url}\" style=\"display: inline-block; padding: 0.6em 1.2em; background: #1d4ed8; \
             color: #ffffff; text-decoration: none; border-radius: 4px\">Open it to {verb}</a></p>\
             <p style=\"font-size: 0.9em\">Or paste this link into your browser:<br>{url}</p>\
             <p style=\"font-size: 0.9em\">This link is personal: do not forward it. \
             The request expires at {expires}.</p></body></html>",
            name = html_escape(&invitation.name),
            request = html_escape(&invitation.request_name),
            url = html_escape(&invitation.url),
            expires = html_escape(&invitation.expires_at),
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(None)
            .multipart(alternative(text, html))
            .map_err(|e| InvitationFailure::Failed(e.to_string()))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(InvitationFailure::Undeliverable(error_chain(&e))),
            Err(e) => Err(InvitationFailure::Failed(error_chain(&e))),
        }
    }
}

/// The same message as plain text and as HTML, for the reader's client to
/// choose. Both parts are base64-encoded: quoted-printable would fold a
/// long line — a signing link — with soft breaks that some clients and
/// gateways pass on as they are, and the link would no longer open.
fn alternative(text: String, html: String) -> MultiPart {
    let part = |content_type: ContentType, body: String| {
        SinglePart::builder()
            .header(content_type)
            .header(ContentTransferEncoding::Base64)
            .body(body)
    };
    MultiPart::alternative()
        .singlepart(part(ContentType::TEXT_PLAIN, text))
        .singlepart(part(ContentType::TEXT_HTML, html))
}

/// `text` safe inside HTML text and attribute values.
fn html_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}
