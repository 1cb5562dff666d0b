//! The page behind a person's link: a signer's `signing_url` or an
//! approver's `approval_url` (DESIGN §9, "The signer's page").
//!
//! [`PersonPage`] is built from the stored request alone — who sent it, the
//! deadline, where the request and this person stand, the documents while
//! they are being decided — so the page a browser gets and the JSON an API
//! client gets describe the same state. A refused form comes back as the
//! same page with the message beside its field ([`PersonPage::refused`]).

use askama::Template;
use signhook_core::lifecycle::{ApproverStatus, RequestStatus, SignatureRequest, SignerStatus};
use signhook_core::time::{readable, rfc3339};
use signhook_store::signature_requests::SignatureRequestRecord;

/// The page of one signer or approver.
#[derive(Template)]
#[template(path = "person.html")]
pub struct PersonPage {
    /// What every address on the page starts with: relative to where the
    /// page is served, so that it works behind any public URL.
    base: String,
    sender: String,
    verb: &'static str,
    request_name: String,
    deadline: String,
    deadline_iso: String,
    notices: Vec<Notice>,
    signed_pdf: Option<String>,
    form: Option<ActForm>,
    refuse_label: &'static str,
    refuse_action: &'static str,
    documents: Vec<DocumentLine>,
    people_heading: &'static str,
    people: Vec<PersonLine>,
}

/// A sentence about where things stand.
struct Notice {
    /// `ok`, `warn`, `bad` or empty: the stylesheet's colours.
    tone: &'static str,
    text: String,
}

/// What the person can do now, with what a refused attempt sent back.
struct ActForm {
    /// Signing (consent and typed name) rather than approving.
    sign: bool,
    typed_name: String,
    consent_error: Option<String>,
    typed_name_error: Option<String>,
    reason_error: Option<String>,
}

struct DocumentLine {
    id: String,
    filename: String,
    pages: i64,
}

struct PersonLine {
    name: String,
    state: String,
    you: bool,
}

/// Which person the page is for.
#[derive(Debug, Clone, Copy)]
pub enum Person {
    /// The signer at this index.
    Signer(usize),
    /// The approver at this index.
    Approver(usize),
}

impl PersonPage {
    /// The page of `person` on `record`, sent by `sender`. Its addresses
    /// start with `base`: `TOKEN/` for the page at `/signing/TOKEN`, empty
    /// for one served in answer to a form posted to `/signing/TOKEN/sign`.
    /// `signed_pdf` is where the signed PDF is served once the request is
    /// done; `mailed` says whether signers get it by e-mail too.
    pub fn new(
        record: &SignatureRequestRecord,
        person: Person,
        sender: &str,
        base: &str,
        signed_pdf: Option<String>,
        mailed: bool,
    ) -> Self {
        let request = &record.request;
        let decided = matches!(request.status, RequestStatus::Approval | RequestStatus::Ongoing);
        let documents = if decided {
            record
                .documents
                .iter()
                .map(|d| DocumentLine {
                    id: d.id.to_string(),
                    filename: d.filename.clone(),
                    pages: d.pages,
                })
                .collect()
        } else {
            Vec::new()
        };
        let (verb, refuse_label, refuse_action, people_heading) = match person {
            Person::Signer(_) => ("sign", "Decline to sign", "decline", "Signers"),
            Person::Approver(_) => ("approve", "Reject", "reject", "Approvers"),
        };
        let (notices, can_act, people) = match person {
            Person::Signer(i) => (
                signer_notices(request, i, mailed),
                signer_can_act(request, i),
                signers(request, Some(i)),
            ),
            Person::Approver(i) => (
                approver_notices(request, i),
                request.status == RequestStatus::Approval && request.approvers[i].status == ApproverStatus::Notified,
                approvers(request, i),
            ),
        };
        let form = can_act.then(|| ActForm {
            sign: matches!(person, Person::Signer(_)),
            typed_name: match person {
                Person::Signer(i) => request.signers[i].name.clone(),
                Person::Approver(_) => String::new(),
            },
            consent_error: None,
            typed_name_error: None,
            reason_error: None,
        });
        PersonPage {
            base: base.to_owned(),
            sender: sender.to_owned(),
            verb,
            request_name: request.name.clone(),
            deadline: readable(request.expires_at),
            deadline_iso: rfc3339(request.expires_at),
            notices,
            signed_pdf: signed_pdf.filter(|_| request.status == RequestStatus::Done),
            form,
            refuse_label,
            refuse_action,
            documents,
            people_heading,
            people,
        }
    }

    /// The same page after a form was refused: `message` beside `field`
    /// (`consent`, `typed_name` or `reason`), the typed name kept; any other
    /// refusal (not their turn, already signed) as a notice on top.
    pub fn refused(mut self, field: Option<&str>, message: String, typed_name: Option<String>) -> Self {
        let form = self.form.as_mut();
        match (form, field) {
            (Some(form), Some("consent")) => form.consent_error = Some(message),
            (Some(form), Some("typed_name")) => form.typed_name_error = Some(message),
            (Some(form), Some("reason")) => form.reason_error = Some(message),
            _ => self.notices.insert(
                0,
                Notice {
                    tone: "bad",
                    text: message,
                },
            ),
        }
        if let (Some(form), Some(typed)) = (self.form.as_mut(), typed_name) {
            form.typed_name = typed;
        }
        self
    }
}

fn signer_can_act(request: &SignatureRequest, i: usize) -> bool {
    request.status == RequestStatus::Ongoing && request.signers[i].can_act()
}

/// "A", "A and B", "A, B and C".
fn names(mut names: Vec<&str>) -> String {
    match names.len() {
        0 => String::new(),
        1 => names[0].to_owned(),
        _ => {
            let last = names.pop().unwrap_or_default();
            format!("{} and {last}", names.join(", "))
        }
    }
}

fn notice(tone: &'static str, text: impl Into<String>) -> Notice {
    Notice {
        tone,
        text: text.into(),
    }
}

/// Who declined the request, and why.
fn declined_by(request: &SignatureRequest) -> String {
    let who = request
        .signers
        .iter()
        .find(|s| s.status == SignerStatus::Declined)
        .map(|s| s.name.as_str())
        .or_else(|| {
            request
                .approvers
                .iter()
                .find(|a| a.status == ApproverStatus::Rejected)
                .map(|a| a.name.as_str())
        });
    let reason = request
        .reason
        .as_deref()
        .map(|r| format!(": \u{201c}{r}\u{201d}"))
        .unwrap_or_default();
    match who {
        Some(who) => format!("This request was declined by {who}{reason}. Nothing more can be signed."),
        None => format!("This request was declined{reason}. Nothing more can be signed."),
    }
}

/// Where the request stands when this person can no longer act on it.
fn closed_notice(request: &SignatureRequest) -> Option<Notice> {
    match request.status {
        RequestStatus::Done => Some(notice("ok", "Everyone has signed: the signed PDF is ready.")),
        RequestStatus::Declined => Some(notice("bad", declined_by(request))),
        RequestStatus::Canceled => {
            let reason = request
                .reason
                .as_deref()
                .map(|r| format!(": \u{201c}{r}\u{201d}"))
                .unwrap_or_default();
            Some(notice(
                "bad",
                format!("The sender canceled this request{reason}. Nothing more can be signed."),
            ))
        }
        RequestStatus::Expired => Some(notice(
            "warn",
            format!(
                "This request expired on {} before everyone signed. Ask the sender to reactivate it.",
                readable(request.expires_at)
            ),
        )),
        RequestStatus::Draft => Some(notice("warn", "This request has not been sent out yet.")),
        _ => None,
    }
}

fn signer_notices(request: &SignatureRequest, i: usize, mailed: bool) -> Vec<Notice> {
    if let Some(closed) = closed_notice(request) {
        return vec![closed];
    }
    let me = &request.signers[i];
    if request.status == RequestStatus::Approval {
        return vec![notice(
            "warn",
            "This request is waiting for approval before it can be signed. You will be invited when it is approved.",
        )];
    }
    let waiting: Vec<&str> = request
        .signers
        .iter()
        .enumerate()
        .filter(|(j, s)| *j != i && !matches!(s.status, SignerStatus::Done | SignerStatus::Declined))
        .map(|(_, s)| s.name.as_str())
        .collect();
    let copy = if mailed {
        "you will receive the signed PDF by e-mail, and this page will offer it"
    } else {
        "this page will offer the signed PDF"
    };
    match me.status {
        SignerStatus::Done => {
            let when = me.signed_at.map(readable).unwrap_or_default();
            vec![notice(
                "ok",
                format!(
                    "You signed on {when}. Waiting for {} to sign; once everyone has signed, {copy}.",
                    names(waiting)
                ),
            )]
        }
        SignerStatus::Pending => {
            let turn: Vec<&str> = request
                .signers
                .iter()
                .filter(|s| s.can_act())
                .map(|s| s.name.as_str())
                .collect();
            vec![notice(
                "warn",
                format!(
                    "It is not your turn yet: waiting for {} to sign first. You will be invited when it is your turn.",
                    names(turn)
                ),
            )]
        }
        _ if request.ordered_signers => vec![notice("", "It is your turn to sign.")],
        _ => Vec::new(),
    }
}

fn approver_notices(request: &SignatureRequest, i: usize) -> Vec<Notice> {
    if let Some(closed) = closed_notice(request) {
        return vec![closed];
    }
    let me = &request.approvers[i];
    match (request.status, me.status) {
        (RequestStatus::Ongoing, _) => vec![notice("ok", "Approved: the request went out to its signers.")],
        (_, ApproverStatus::Approved) => {
            let waiting: Vec<&str> = request
                .approvers
                .iter()
                .filter(|a| a.status == ApproverStatus::Notified)
                .map(|a| a.name.as_str())
                .collect();
            vec![notice(
                "ok",
                format!(
                    "You approved on {}. Waiting for {} to approve.",
                    me.acted_at.map(readable).unwrap_or_default(),
                    names(waiting)
                ),
            )]
        }
        _ => Vec::new(),
    }
}

fn signers(request: &SignatureRequest, me: Option<usize>) -> Vec<PersonLine> {
    request
        .signers
        .iter()
        .enumerate()
        .map(|(i, s)| PersonLine {
            name: s.name.clone(),
            you: me == Some(i),
            state: match s.status {
                SignerStatus::Pending if request.ordered_signers => "waiting for their turn".into(),
                SignerStatus::Pending => "not invited yet".into(),
                SignerStatus::Notified => "invited".into(),
                SignerStatus::LinkOpened => "reading".into(),
                SignerStatus::Done => format!("signed {}", s.signed_at.map(readable).unwrap_or_default()),
                SignerStatus::Declined => "declined".into(),
            },
        })
        .collect()
}

fn approvers(request: &SignatureRequest, me: usize) -> Vec<PersonLine> {
    request
        .approvers
        .iter()
        .enumerate()
        .map(|(i, a)| PersonLine {
            name: a.name.clone(),
            you: i == me,
            state: match a.status {
                ApproverStatus::Pending => "not asked yet".into(),
                ApproverStatus::Notified => "asked to approve".into(),
                ApproverStatus::Approved => format!("approved {}", a.acted_at.map(readable).unwrap_or_default()),
                ApproverStatus::Rejected => "rejected".into(),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn names_read_as_a_list() {
        assert_eq!(names(vec![]), "");
        assert_eq!(names(vec!["Ada"]), "Ada");
        assert_eq!(names(vec!["Ada", "Bob"]), "Ada and Bob");
        assert_eq!(names(vec!["Ada", "Bob", "Cy"]), "Ada, Bob and Cy");
    }
}
