//! E-mail over SMTP when the operator configured it: failure warnings to
//! tenants' admins (`webhook.disabling_soon`), invitations and reminders
//! to signers and approvers, and invitations to a tenant's dashboard.

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

/// What a letter to a signer or approver is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Letter {
    /// Their turn came: please sign (or approve).
    Invitation,
    /// They have not acted yet.
    Reminder,
    /// Everyone signed: here is the signed PDF (signers only).
    SignedCopy,
}

impl Letter {
    /// Its name in the audit trail: `signer.invitation_emailed`, …
    pub fn trail_name(self) -> &'static str {
        match self {
            Letter::Invitation => "invitation",
            Letter::Reminder => "reminder",
            Letter::SignedCopy => "signed_copy",
        }
    }
}

/// A letter to one signer or approver about one request.
#[derive(Debug, Clone)]
pub struct Invitation {
    /// What it is.
    pub letter: Letter,
    /// Who sends the request: the tenant's name.
    pub sender: String,
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
    /// The request's deadline.
    pub expires_at: chrono::DateTime<chrono::Utc>,
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

/// A letter's subject, plain text and HTML.
fn compose(invitation: &Invitation) -> (String, String, String) {
    let (verb, noun) = if invitation.approver {
        ("approve", "approval")
    } else {
        ("sign", "signature")
    };
    let request = &invitation.request_name;
    let sender = &invitation.sender;
    let deadline = signhook_core::time::readable(invitation.expires_at);
    let (subject, lead, button, link) = match invitation.letter {
        Letter::Invitation => (
            format!("{sender} asks you to {verb} \u{201c}{request}\u{201d}"),
            format!("{sender} sent you \u{201c}{request}\u{201d} for your {noun}. Please {verb} it by {deadline}."),
            format!("Review and {verb}"),
            invitation.url.clone(),
        ),
        Letter::Reminder => (
            format!("Reminder: {sender} asks you to {verb} \u{201c}{request}\u{201d}"),
            format!("\u{201c}{request}\u{201d} from {sender} is still waiting for your {noun}. Please {verb} it by {deadline}."),
            format!("Review and {verb}"),
            invitation.url.clone(),
        ),
        Letter::SignedCopy => (
            format!("Signed: \u{201c}{request}\u{201d}"),
            format!("Everyone has signed \u{201c}{request}\u{201d} from {sender}. Here is your copy of the signed PDF."),
            "Download the signed PDF".to_owned(),
            format!("{}/signed.pdf", invitation.url),
        ),
    };
    let footer = match invitation.letter {
        Letter::SignedCopy => "The link is personal: do not forward it. Your signing page keeps the signed PDF too.",
        _ => "The link is personal: do not forward it.",
    };
    let text = format!(
        "Hello {name},\n\n{lead}\n\n{button}:\n{link}\n\n{footer}\n",
        name = invitation.name,
    );
    let html = format!(
        "<!DOCTYPE html><html><body style=\"font-family: sans-serif; line-height: 1.5\">\
         <p>Hello {name},</p><p>{lead}</p>\
         <p><a href=\"{link}\" style=\"display: inline-block; padding: 0.6em 1.2em; background: #1d4ed8; \
         color: #ffffff; text-decoration: none; border-radius: 4px\">{button}</a></p>\
         <p style=\"font-size: 0.9em\">Or paste this link into your browser:<br>{link}</p>\
         <p style=\"font-size: 0.9em\">{footer}</p></body></html>",
        name = html_escape(&invitation.name),
        lead = html_escape(&lead),
        link = html_escape(&link),
        button = html_escape(&button),
    );
    (subject, text, html)
}

impl Mailer {
    /// Sends an invitation, a reminder or a signed copy; answers what the
    /// SMTP server said when it accepted it (`250 2.0.0 Ok: queued as …`).
    /// Can take as long as the SMTP exchange.
    pub async fn send_invitation(&self, invitation: &Invitation) -> Result<String, InvitationFailure> {
        let to: Mailbox = format!(
            "{} <{}>",
            invitation.name.replace(['<', '>', '"'], ""),
            invitation.email
        )
        .parse()
        .map_err(|e| InvitationFailure::Undeliverable(format!("`{}` is not an address: {e}", invitation.email)))?;
        // "Acme via Signhook <no-reply@…>": the reader sees who asks.
        let via = self.from.name.as_deref().unwrap_or("Signhook");
        let from = Mailbox::new(
            Some(format!("{} via {via}", invitation.sender)),
            self.from.email.clone(),
        );
        let (subject, text, html) = compose(invitation);
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(subject)
            .message_id(None)
            .multipart(alternative(text, html))
            .map_err(|e| InvitationFailure::Failed(e.to_string()))?;
        self.send_letter(message).await
    }
}

/// An invitation to join a tenant's dashboard, from the Team page.
#[derive(Debug, Clone)]
pub struct TeamInvitation {
    /// The invited address.
    pub email: String,
    /// The tenant's name.
    pub team: String,
    /// Who invites: the admin's address.
    pub invited_by: String,
    /// `admin` or `viewer`.
    pub role: &'static str,
    /// The one-time link that sets their password.
    pub url: String,
    /// When the link stops working.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// A team invitation's subject, plain text and HTML.
fn compose_team_invitation(invitation: &TeamInvitation) -> (String, String, String) {
    let team = &invitation.team;
    let subject = format!("You are invited to {team}'s Signhook dashboard");
    let lead = format!(
        "{by} invited you to {team}'s Signhook dashboard as {article} {role}. Choose a password to log in; the link works once, until {until}.",
        by = invitation.invited_by,
        article = if invitation.role == "admin" { "an" } else { "a" },
        role = invitation.role,
        until = signhook_core::time::readable(invitation.expires_at),
    );
    let footer = "The link is personal: do not forward it. If you did not expect this, ignore this e-mail.";
    let text = format!(
        "Hello,\n\n{lead}\n\nChoose your password:\n{link}\n\n{footer}\n",
        link = invitation.url
    );
    let html = format!(
        "<!DOCTYPE html><html><body style=\"font-family: sans-serif; line-height: 1.5\">\
         <p>Hello,</p><p>{lead}</p>\
         <p><a href=\"{link}\" style=\"display: inline-block; padding: 0.6em 1.2em; background: #1d4ed8; \
         color: #ffffff; text-decoration: none; border-radius: 4px\">Choose your password</a></p>\
         <p style=\"font-size: 0.9em\">Or paste this link into your browser:<br>{link}</p>\
         <p style=\"font-size: 0.9em\">{footer}</p></body></html>",
        lead = html_escape(&lead),
        link = html_escape(&invitation.url),
    );
    (subject, text, html)
}

impl Mailer {
    /// Sends an invitation to a tenant's dashboard; answers what the SMTP
    /// server said when it accepted it. Can take as long as the SMTP
    /// exchange.
    pub async fn send_team_invitation(&self, invitation: &TeamInvitation) -> Result<String, InvitationFailure> {
        let to: Mailbox = invitation
            .email
            .parse()
            .map_err(|e| InvitationFailure::Undeliverable(format!("`{}` is not an address: {e}", invitation.email)))?;
        let (subject, text, html) = compose_team_invitation(invitation);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(None)
            .multipart(alternative(text, html))
            .map_err(|e| InvitationFailure::Failed(e.to_string()))?;
        self.send_letter(message).await
    }
}

impl Mailer {
    /// Sends a letter to a person; answers what the SMTP server said when
    /// it accepted it (`250 2.0.0 Ok: queued as …`), or whether the refusal
    /// was for good.
    async fn send_letter(&self, message: Message) -> Result<String, InvitationFailure> {
        match self.transport.send(message).await {
            Ok(response) => {
                let said: Vec<&str> = response.message().collect();
                Ok(format!("{} {}", response.code(), said.join(" ")).trim().to_owned())
            }
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
