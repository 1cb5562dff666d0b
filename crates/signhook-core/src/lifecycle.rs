//! The e-signature lifecycle (DESIGN §3.1) as a pure state machine.
//!
//! A [`SignatureRequest`] is the whole aggregate: the request, its signers
//! and its approvers. [`SignatureRequest::transition`] takes an [`Action`]
//! and returns the request as it is afterwards together with the events the
//! change emits — or a [`Refusal`] saying why the action is not allowed now.
//! Nothing else changes a request's state, so every state change has its
//! events, and the store writes both in one transaction.
//!
//! ```text
//! draft ──activate──► ongoing ──last signer signs──► done
//!   │  (approvers?)      │ ├──a signer declines──► declined
//!   └──► approval ───────┘ ├──cancel──► canceled
//!        (all approve)     └──deadline──► expired ──reactivate──► ongoing
//! any ──delete──► deleted ──purge──► permanently_deleted
//! ```
//!
//! `approval` is the one state DESIGN §3.1 does not name: a request whose
//! approvers have been asked but have not all approved yet. It keeps
//! "waiting for approval" visible instead of hiding it inside `draft`.
//!
//! Every emitted event takes the next value of the request's `sequence`, so
//! a receiver can drop a stale update by comparing numbers.

use crate::ids::{ApproverId, SignatureRequestId, SignerId};
use crate::time::rfc3339;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::fmt;

macro_rules! status_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// Every value, in lifecycle order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The status as the API and payloads spell it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// Parses the API spelling.
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|status| status.as_str() == text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_enum!(
    /// Where a signature request is in its life.
    RequestStatus {
        /// Being prepared: documents and people can still change.
        Draft => "draft",
        /// Waiting for its approvers before it goes out.
        Approval => "approval",
        /// Out for signature.
        Ongoing => "ongoing",
        /// Every signer signed.
        Done => "done",
        /// A signer declined or an approver rejected.
        Declined => "declined",
        /// Canceled by an operator or an automation.
        Canceled => "canceled",
        /// The deadline passed before every signer signed.
        Expired => "expired",
        /// Deleted; readable until purged.
        Deleted => "deleted",
        /// Purged: documents and people are gone, only the id remains.
        PermanentlyDeleted => "permanently_deleted",
    }
);

status_enum!(
    /// Where one signer is.
    SignerStatus {
        /// Not invited yet (ordered signing: someone before them has not signed).
        Pending => "pending",
        /// Invited: can sign now.
        Notified => "notified",
        /// Opened the signing link at least once.
        LinkOpened => "link_opened",
        /// Signed.
        Done => "done",
        /// Declined to sign.
        Declined => "declined",
    }
);

status_enum!(
    /// Where one approver is.
    ApproverStatus {
        /// The request has not been sent for approval yet.
        Pending => "pending",
        /// Asked to approve.
        Notified => "notified",
        /// Approved.
        Approved => "approved",
        /// Rejected.
        Rejected => "rejected",
    }
);

/// One signer of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Signer {
    /// The signer's id.
    pub id: SignerId,
    /// Full name.
    pub name: String,
    /// E-mail address the invitation goes to.
    pub email: String,
    /// Where the signer is.
    pub status: SignerStatus,
    /// When the signer was last invited or reminded.
    pub notified_at: Option<DateTime<Utc>>,
    /// When the signer first opened the link.
    pub link_opened_at: Option<DateTime<Utc>>,
    /// When the signer signed.
    pub signed_at: Option<DateTime<Utc>>,
    /// When the signer declined.
    pub declined_at: Option<DateTime<Utc>>,
    /// Why the signer declined.
    pub decline_reason: Option<String>,
    /// The name the signer typed as their signature.
    pub typed_name: Option<String>,
    /// Which version of the signing link opens this signer's page: renewing
    /// the link (a leaked or forwarded invitation) bumps it, and links made
    /// for an earlier version stop working.
    pub link_version: u32,
}

impl Signer {
    /// A signer who has not been invited yet.
    pub fn new(name: String, email: String) -> Self {
        Self {
            id: SignerId::generate(),
            name,
            email,
            status: SignerStatus::Pending,
            link_version: 0,
            notified_at: None,
            link_opened_at: None,
            signed_at: None,
            declined_at: None,
            decline_reason: None,
            typed_name: None,
        }
    }

    /// Whether the signer has been invited and has not acted yet.
    pub fn can_act(&self) -> bool {
        matches!(self.status, SignerStatus::Notified | SignerStatus::LinkOpened)
    }
}

/// One approver of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Approver {
    /// The approver's id.
    pub id: ApproverId,
    /// Full name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// Where the approver is.
    pub status: ApproverStatus,
    /// When the approver was asked.
    pub notified_at: Option<DateTime<Utc>>,
    /// When the approver approved or rejected.
    pub acted_at: Option<DateTime<Utc>>,
    /// Why the approver rejected.
    pub reject_reason: Option<String>,
}

impl Approver {
    /// An approver who has not been asked yet.
    pub fn new(name: String, email: String) -> Self {
        Self {
            id: ApproverId::generate(),
            name,
            email,
            status: ApproverStatus::Pending,
            notified_at: None,
            acted_at: None,
            reject_reason: None,
        }
    }
}

/// The aggregate: a signature request with its people.
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureRequest {
    /// The request's id.
    pub id: SignatureRequestId,
    /// Its name, shown to signers and in payloads.
    pub name: String,
    /// Where it is.
    pub status: RequestStatus,
    /// Grows by one with every emitted event.
    pub sequence: i64,
    /// Whether signers sign one after the other, in list order.
    pub ordered_signers: bool,
    /// How many documents are attached.
    pub document_count: usize,
    /// The signing deadline.
    pub expires_at: DateTime<Utc>,
    /// Signers in order.
    pub signers: Vec<Signer>,
    /// Approvers, all of whom must approve before the request goes out.
    pub approvers: Vec<Approver>,
    /// Why the request was declined or canceled, when it was.
    pub reason: Option<String>,
    /// The state the request was in when it was deleted.
    pub status_before_delete: Option<RequestStatus>,
}

/// Something that happens to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send it out (to approvers first when there are any).
    Activate,
    /// An approver approves.
    Approve(ApproverId),
    /// An approver rejects, with a reason.
    Reject(ApproverId, String),
    /// A signer opens the signing link.
    OpenLink(SignerId),
    /// A signer signs, having agreed to sign electronically and typed their
    /// name.
    Sign(SignerId, Signature),
    /// A signer declines, with a reason.
    Decline(SignerId, String),
    /// The signer's invitation could not be delivered.
    InviteUndelivered(SignerId),
    /// Remind every invited signer who has not acted.
    Remind,
    /// Cancel, with an optional reason.
    Cancel(Option<String>),
    /// The deadline passed.
    Expire,
    /// Reopen an expired request with a new deadline.
    Reactivate(DateTime<Utc>),
    /// Soft-delete.
    Delete,
    /// Purge for good.
    PurgePermanently,
}

impl Action {
    /// The action's name in refusals ("cannot sign a request that is done").
    pub fn name(&self) -> &'static str {
        match self {
            Action::Activate => "activate",
            Action::Approve(_) => "approve",
            Action::Reject(..) => "reject",
            Action::OpenLink(_) => "open",
            Action::Sign(..) => "sign",
            Action::Decline(..) => "decline",
            Action::InviteUndelivered(_) => "report an undelivered invitation for",
            Action::Remind => "remind",
            Action::Cancel(_) => "cancel",
            Action::Expire => "expire",
            Action::Reactivate(_) => "reactivate",
            Action::Delete => "delete",
            Action::PurgePermanently => "permanently delete",
        }
    }
}

/// A signer's intent to sign: they agreed to sign electronically and typed
/// their full name. Only [`Signature::new`] makes one, so an `Action::Sign`
/// always carries both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    typed_name: String,
}

/// The longest typed name kept, in characters.
pub const TYPED_NAME_MAX_CHARS: usize = 200;

impl Signature {
    /// The signature of someone who answered `consent` to "I agree to sign
    /// electronically" and typed `typed_name`; the refusal names the field.
    pub fn new(consent: Option<bool>, typed_name: Option<&str>) -> Result<Self, Refusal> {
        if consent != Some(true) {
            return Err(Refusal::Incomplete {
                field: "consent",
                message: "consent must be true: the signer agrees to sign electronically".into(),
            });
        }
        let typed_name = typed_name.map(str::trim).unwrap_or_default();
        let chars = typed_name.chars().count();
        if chars == 0 || chars > TYPED_NAME_MAX_CHARS || typed_name.chars().any(char::is_control) {
            return Err(Refusal::Incomplete {
                field: "typed_name",
                message: format!(
                    "typed_name must be the signer's full name as their signature, \
                     1 to {TYPED_NAME_MAX_CHARS} characters without control characters"
                ),
            });
        }
        Ok(Self {
            typed_name: typed_name.to_owned(),
        })
    }

    /// The name as typed, trimmed.
    pub fn typed_name(&self) -> &str {
        &self.typed_name
    }
}

/// Who an emitted event is about, besides the request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// The request as a whole.
    Request,
    /// The signer at this index.
    Signer(usize),
    /// The approver at this index.
    Approver(usize),
}

/// One event a transition emits.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    /// The catalog name (`signer.done`, …).
    pub event_type: &'static str,
    /// The request's sequence number for this event.
    pub sequence: i64,
    /// Who it is about.
    pub subject: Subject,
}

/// Why an action was refused. Each carries what the caller needs to say so.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The request is in a state where the action makes no sense.
    #[error("cannot {action} a signature request that is {current}")]
    RequestState {
        /// What was attempted.
        action: &'static str,
        /// The request's current status.
        current: RequestStatus,
    },
    /// The signer is in a state where the action makes no sense.
    #[error("cannot {action}: the signer is {current}")]
    SignerState {
        /// What was attempted.
        action: &'static str,
        /// The signer's current status.
        current: SignerStatus,
    },
    /// The approver is in a state where the action makes no sense.
    #[error("cannot {action}: the approver is {current}")]
    ApproverState {
        /// What was attempted.
        action: &'static str,
        /// The approver's current status.
        current: ApproverStatus,
    },
    /// Something the request needs first is missing or wrong.
    #[error("{message}")]
    Incomplete {
        /// The field at fault (`documents`, `signers`, `expires_at`).
        field: &'static str,
        /// What is wrong, in plain words.
        message: String,
    },
    /// The signer or approver id does not belong to this request.
    #[error("no such signer or approver on this signature request")]
    UnknownPerson,
}

/// The outcome of an allowed action.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The request afterwards.
    pub request: SignatureRequest,
    /// The events to emit, in order, with their sequence numbers. Empty when
    /// the action changed nothing (a link opened a second time).
    pub events: Vec<Emitted>,
    /// Signers to send an invitation or a reminder to, after commit.
    pub invite_signers: Vec<usize>,
    /// Approvers to ask, after commit.
    pub invite_approvers: Vec<usize>,
}

impl Transition {
    /// Whether anything changed.
    pub fn is_change(&self) -> bool {
        !self.events.is_empty()
    }

    fn emit(&mut self, event_type: &'static str, subject: Subject) {
        self.request.sequence += 1;
        self.events.push(Emitted {
            event_type,
            sequence: self.request.sequence,
            subject,
        });
    }

    /// Invites a signer: `signer.notified`.
    fn notify_signer(&mut self, index: usize, now: DateTime<Utc>) {
        let signer = &mut self.request.signers[index];
        signer.status = SignerStatus::Notified;
        signer.notified_at = Some(now);
        self.invite_signers.push(index);
        self.emit("signer.notified", Subject::Signer(index));
    }

    /// Draft or approval → ongoing: `signature_request.activated`, then the
    /// first signer (ordered) or every signer (parallel) is notified.
    fn go_out(&mut self, now: DateTime<Utc>) {
        self.request.status = RequestStatus::Ongoing;
        self.emit("signature_request.activated", Subject::Request);
        let count = if self.request.ordered_signers {
            1
        } else {
            self.request.signers.len()
        };
        for index in 0..count {
            self.notify_signer(index, now);
        }
    }
}

impl SignatureRequest {
    /// A new draft.
    pub fn draft(
        name: String,
        expires_at: DateTime<Utc>,
        ordered_signers: bool,
        signers: Vec<Signer>,
        approvers: Vec<Approver>,
    ) -> Self {
        Self {
            id: SignatureRequestId::generate(),
            name,
            status: RequestStatus::Draft,
            sequence: 0,
            ordered_signers,
            document_count: 0,
            expires_at,
            signers,
            approvers,
            reason: None,
            status_before_delete: None,
        }
    }

    /// The index of a signer of this request.
    pub fn signer_index(&self, id: &SignerId) -> Option<usize> {
        self.signers.iter().position(|s| &s.id == id)
    }

    /// The index of an approver of this request.
    pub fn approver_index(&self, id: &ApproverId) -> Option<usize> {
        self.approvers.iter().position(|a| &a.id == id)
    }

    /// Whether the request's deadline has passed while it is out for signature.
    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        self.status == RequestStatus::Ongoing && self.expires_at <= now
    }

    /// Applies `action` at `now`: the request afterwards and its events, or
    /// why the action is refused. Never changes `self`.
    pub fn transition(&self, action: Action, now: DateTime<Utc>) -> Result<Transition, Refusal> {
        use RequestStatus as R;
        let mut t = Transition {
            request: self.clone(),
            events: Vec::new(),
            invite_signers: Vec::new(),
            invite_approvers: Vec::new(),
        };
        let refuse = |action: &Action| Refusal::RequestState {
            action: action.name(),
            current: self.status,
        };
        match (&action, self.status) {
            (Action::Activate, R::Draft) => {
                self.check_ready(now)?;
                if self.approvers.is_empty() {
                    t.go_out(now);
                } else {
                    t.request.status = R::Approval;
                    for index in 0..self.approvers.len() {
                        let approver = &mut t.request.approvers[index];
                        approver.status = ApproverStatus::Notified;
                        approver.notified_at = Some(now);
                        t.invite_approvers.push(index);
                        t.emit("approver.notified", Subject::Approver(index));
                    }
                }
            }
            (Action::Approve(id), R::Approval) => {
                let index = self.approver_index(id).ok_or(Refusal::UnknownPerson)?;
                self.check_approver(index, &action)?;
                let approver = &mut t.request.approvers[index];
                approver.status = ApproverStatus::Approved;
                approver.acted_at = Some(now);
                t.emit("approver.approved", Subject::Approver(index));
                if t.request.approvers.iter().all(|a| a.status == ApproverStatus::Approved) {
                    t.emit("signature_request.approved", Subject::Request);
                    t.go_out(now);
                }
            }
            (Action::Reject(id, reason), R::Approval) => {
                let index = self.approver_index(id).ok_or(Refusal::UnknownPerson)?;
                self.check_approver(index, &action)?;
                let approver = &mut t.request.approvers[index];
                approver.status = ApproverStatus::Rejected;
                approver.acted_at = Some(now);
                approver.reject_reason = Some(reason.clone());
                t.emit("approver.rejected", Subject::Approver(index));
                t.request.status = R::Declined;
                t.request.reason = Some(reason.clone());
                t.emit("signature_request.declined", Subject::Approver(index));
            }
            (Action::OpenLink(id), R::Ongoing) => {
                let index = self.signer_index(id).ok_or(Refusal::UnknownPerson)?;
                // Only the first opening is news; later ones change nothing.
                if self.signers[index].status == SignerStatus::Notified {
                    let signer = &mut t.request.signers[index];
                    signer.status = SignerStatus::LinkOpened;
                    signer.link_opened_at = Some(now);
                    t.emit("signer.link_opened", Subject::Signer(index));
                }
            }
            (Action::OpenLink(id), _) => {
                // Opening the link of a request that is not out for signature
                // shows where it stands; it is not a step of the lifecycle.
                self.signer_index(id).ok_or(Refusal::UnknownPerson)?;
            }
            (Action::Sign(id, signature), R::Ongoing) => {
                let index = self.signer_index(id).ok_or(Refusal::UnknownPerson)?;
                self.check_signer(index, &action)?;
                let signer = &mut t.request.signers[index];
                // Whoever signs has the link open: a signer who signs
                // straight from the API without opening it is opened first,
                // so every trail reads opened → signed.
                let unopened = signer.status == SignerStatus::Notified;
                if unopened {
                    signer.link_opened_at = Some(now);
                }
                signer.status = SignerStatus::Done;
                signer.signed_at = Some(now);
                signer.typed_name = Some(signature.typed_name().to_owned());
                if unopened {
                    t.emit("signer.link_opened", Subject::Signer(index));
                }
                t.emit("signer.done", Subject::Signer(index));
                if t.request.signers.iter().all(|s| s.status == SignerStatus::Done) {
                    t.request.status = R::Done;
                    t.emit("signature_request.done", Subject::Request);
                } else if self.ordered_signers {
                    if let Some(next) = t.request.signers.iter().position(|s| s.status == SignerStatus::Pending) {
                        t.notify_signer(next, now);
                    }
                }
            }
            (Action::Decline(id, reason), R::Ongoing) => {
                let index = self.signer_index(id).ok_or(Refusal::UnknownPerson)?;
                self.check_signer(index, &action)?;
                let signer = &mut t.request.signers[index];
                signer.status = SignerStatus::Declined;
                signer.declined_at = Some(now);
                signer.decline_reason = Some(reason.clone());
                t.emit("signer.declined", Subject::Signer(index));
                t.request.status = R::Declined;
                t.request.reason = Some(reason.clone());
                t.emit("signature_request.declined", Subject::Signer(index));
            }
            (Action::InviteUndelivered(id), R::Ongoing) => {
                let index = self.signer_index(id).ok_or(Refusal::UnknownPerson)?;
                self.check_signer(index, &action)?;
                t.emit("signer.invite_undelivered", Subject::Signer(index));
            }
            (Action::Remind, R::Ongoing) => {
                for (index, signer) in t.request.signers.iter_mut().enumerate() {
                    if signer.can_act() {
                        signer.notified_at = Some(now);
                        t.invite_signers.push(index);
                    }
                }
                t.emit("signature_request.reminder_executed", Subject::Request);
            }
            (Action::Cancel(reason), R::Draft | R::Approval | R::Ongoing) => {
                t.request.status = R::Canceled;
                t.request.reason = reason.clone();
                t.emit("signature_request.canceled", Subject::Request);
            }
            (Action::Expire, R::Ongoing) => {
                if self.expires_at > now {
                    return Err(Refusal::Incomplete {
                        field: "expires_at",
                        message: format!("the request does not expire before {}", rfc3339(self.expires_at)),
                    });
                }
                t.request.status = R::Expired;
                t.emit("signature_request.expired", Subject::Request);
            }
            (Action::Reactivate(expires_at), R::Expired) => {
                check_deadline(*expires_at, now)?;
                t.request.expires_at = *expires_at;
                t.request.status = R::Ongoing;
                t.emit("signature_request.reactivated", Subject::Request);
            }
            (Action::Delete, current) if !matches!(current, R::Deleted | R::PermanentlyDeleted) => {
                t.request.status_before_delete = Some(current);
                t.request.status = R::Deleted;
                t.emit("signature_request.deleted", Subject::Request);
            }
            (Action::PurgePermanently, R::Deleted) => {
                t.request.status = R::PermanentlyDeleted;
                t.emit("signature_request.permanently_deleted", Subject::Request);
            }
            _ => return Err(refuse(&action)),
        }
        Ok(t)
    }

    fn check_ready(&self, now: DateTime<Utc>) -> Result<(), Refusal> {
        if self.document_count == 0 {
            return Err(Refusal::Incomplete {
                field: "documents",
                message: "a signature request needs at least one document before it can be activated".into(),
            });
        }
        if self.signers.is_empty() {
            return Err(Refusal::Incomplete {
                field: "signers",
                message: "a signature request needs at least one signer before it can be activated".into(),
            });
        }
        check_deadline(self.expires_at, now)
    }

    fn check_signer(&self, index: usize, action: &Action) -> Result<(), Refusal> {
        let signer = &self.signers[index];
        if signer.can_act() {
            Ok(())
        } else {
            Err(Refusal::SignerState {
                action: action.name(),
                current: signer.status,
            })
        }
    }

    fn check_approver(&self, index: usize, action: &Action) -> Result<(), Refusal> {
        let approver = &self.approvers[index];
        if approver.status == ApproverStatus::Notified {
            Ok(())
        } else {
            Err(Refusal::ApproverState {
                action: action.name(),
                current: approver.status,
            })
        }
    }

    /// The `data` of an emitted event (DESIGN §3.3): the request, the signer
    /// or approver it is about, the reason on declines, and `links` (passed
    /// in by the caller, on `done` only). Never a signing link or token.
    pub fn event_data(&self, emitted: &Emitted, metadata: &Value, links: Option<&Value>) -> Value {
        let mut data = Map::new();
        data.insert(
            "signature_request".into(),
            json!({
                "id": self.id,
                "name": self.name,
                "status": self.status.as_str(),
                "sequence": emitted.sequence,
                "expires_at": rfc3339(self.expires_at),
                "ordered_signers": self.ordered_signers,
                "metadata": metadata,
            }),
        );
        match emitted.subject {
            Subject::Request => {}
            Subject::Signer(index) => {
                data.insert("signer".into(), signer_json(&self.signers[index]));
            }
            Subject::Approver(index) => {
                data.insert("approver".into(), approver_json(&self.approvers[index]));
            }
        }
        let declines = matches!(
            emitted.event_type,
            "signer.declined" | "signature_request.declined" | "approver.rejected" | "signature_request.canceled"
        );
        if declines {
            let reason = match emitted.subject {
                Subject::Signer(index) => self.signers[index].decline_reason.clone(),
                Subject::Approver(index) => self.approvers[index].reject_reason.clone(),
                Subject::Request => self.reason.clone(),
            };
            data.insert("reason".into(), json!(reason));
        }
        if emitted.event_type == "signature_request.reminder_executed" {
            let reminded: Vec<Value> = self.signers.iter().filter(|s| s.can_act()).map(signer_json).collect();
            data.insert("signers".into(), Value::Array(reminded));
        }
        if let (Some(links), "signature_request.done") = (links, emitted.event_type) {
            data.insert("links".into(), links.clone());
        }
        Value::Object(data)
    }
}

/// A signer as payloads and the API show it (without their link).
pub fn signer_json(signer: &Signer) -> Value {
    json!({
        "id": signer.id,
        "name": signer.name,
        "email": signer.email,
        "status": signer.status.as_str(),
        "notified_at": signer.notified_at.map(rfc3339),
        "link_opened_at": signer.link_opened_at.map(rfc3339),
        "signed_at": signer.signed_at.map(rfc3339),
        "declined_at": signer.declined_at.map(rfc3339),
        "typed_name": signer.typed_name,
    })
}

/// An approver as payloads and the API show it (without their link).
pub fn approver_json(approver: &Approver) -> Value {
    json!({
        "id": approver.id,
        "name": approver.name,
        "email": approver.email,
        "status": approver.status.as_str(),
        "notified_at": approver.notified_at.map(rfc3339),
        "acted_at": approver.acted_at.map(rfc3339),
    })
}

fn check_deadline(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), Refusal> {
    if expires_at > now {
        Ok(())
    } else {
        Err(Refusal::Incomplete {
            field: "expires_at",
            message: format!("expires_at must be in the future (it is {})", rfc3339(expires_at)),
        })
    }
}

#[cfg(test)]
mod tests;
