//! The audit trail in words: what each recorded action says on the
//! certificate ("Ada Lovelace <ada@example.com> signed"), in one table.
//!
//! The store records each step as an action (an event type of the catalog,
//! or `signature_request.created`, `document.added`, …), an actor (`Ada
//! Lovelace <ada@example.com>`, `API (live key)`, `scheduler`, `Signhook`)
//! and a detail whose person, when there is one, comes first: `signer Ada
//! Lovelace <ada@example.com>`, then `: ` and a reason for a decline (or
//! the consent and typed name of a signature). How each letter went is
//! `{signer|approver}.{invitation|reminder|signed_copy}_{outcome}`, with a
//! detail that finishes the sentence (`e-mailed to Ada Lovelace
//! <ada@example.com>; the SMTP server accepted it: 250 2.0.0 Ok`). An action
//! this table does not know is printed as it is, with its detail, so a new
//! kind of step is never lost from the record.

use crate::TrailEntry;

/// One trail entry as the certificate prints it (and the dashboard's
/// timeline of a request shows it): a sentence, and what the sentence left
/// out of the detail, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Told {
    /// What happened, in words: `Ada Lovelace <ada@example.com> signed`.
    pub sentence: String,
    /// The rest of the entry's detail, to print beneath it.
    pub rest: Option<String>,
}

/// What `entry` says, as a sentence.
pub fn tell(entry: &TrailEntry) -> Told {
    let about = About::of(entry);
    let person = about.person.as_deref().unwrap_or("A signer");
    let someone = about.person.as_deref().unwrap_or("a signer");
    let approver = about.person.as_deref().unwrap_or("An approver");
    let by = by(&entry.actor);
    let rest = about.rest.clone();
    let with_reason = |sentence: String| match &rest {
        Some(reason) => Told {
            sentence: format!("{sentence}: {reason}"),
            rest: None,
        },
        None => Told { sentence, rest: None },
    };
    let told = |sentence: String| Told {
        sentence,
        rest: rest.clone(),
    };
    match entry.action.as_str() {
        "signature_request.created" => told(format!("The request was created {by}")),
        "document.added" => with_reason(format!("A document was added {by}")),
        "signature_request.activated" => told(format!("The request was sent for signature {by}")),
        "signature_request.done" => told("Every signer has signed: the request is complete".into()),
        "signature_request.declined" => with_reason(format!("{person} declined, which ended the request")),
        "signature_request.canceled" => with_reason(format!("The request was canceled {by}")),
        "signature_request.expired" => told("The request expired: its deadline passed".into()),
        "signature_request.reactivated" => told(format!("The request was reopened with a new deadline {by}")),
        "signature_request.reminder_executed" => told(format!("Signers who had not signed yet were reminded {by}")),
        "signature_request.approved" => told("Every approver approved the request".into()),
        "signature_request.deleted" => told(format!("The request was deleted {by}")),
        "signature_request.permanently_deleted" => told("The request and its documents were purged".into()),
        "signer.notified" => told(format!("{person} can now sign")),
        "signer.invite_undelivered" => told(format!("The invitation to {someone} could not be delivered")),
        "signer.link_opened" => told(format!("{person} opened the signing link")),
        // Its detail names the signer by id: kept as it is.
        "signer.link_renewed" => Told {
            sentence: format!("A new signing link was made {by}"),
            rest: entry.detail.clone(),
        },
        "signer.done" => told(format!("{person} signed")),
        "signer.declined" => with_reason(format!("{person} declined to sign")),
        "approver.notified" => told(format!("{approver} was asked to approve the request")),
        "approver.approved" => told(format!("{approver} approved the request")),
        "approver.rejected" => with_reason(format!("{approver} rejected the request")),
        other => letter(other, entry.detail.as_deref()).unwrap_or_else(|| Told {
            sentence: format!("{other} {by}"),
            rest: entry.detail.clone(),
        }),
    }
}

/// How a letter went: `{role}.{letter}_{outcome}`, e.g.
/// `signer.invitation_emailed`, `approver.reminder_not_emailed`. `None` for
/// any other action.
fn letter(action: &str, detail: Option<&str>) -> Option<Told> {
    let (role, step) = action.split_once('.')?;
    let (kind, outcome) = ["invitation", "reminder", "signed_copy"]
        .into_iter()
        .find_map(|kind| Some((kind, step.strip_prefix(kind)?.strip_prefix('_')?)))?;
    let noun = match (role, kind) {
        ("signer", "invitation") => "The invitation to sign",
        ("approver", "invitation") => "The request for approval",
        ("signer" | "approver", "reminder") => "The reminder",
        ("signer" | "approver", "signed_copy") => "The signed copy",
        _ => return None,
    };
    let happened = match outcome {
        "emailed" => "was e-mailed",
        "handed_over" => "was not e-mailed: the link was handed to the API caller",
        "not_emailed" => "was not e-mailed",
        "undeliverable" => "was refused for good by the recipient's mail server",
        _ => return None,
    };
    // The mailer's detail finishes the sentence the letter starts; one in
    // another form is kept whole beneath it.
    let finishes = ["e-mailed ", "not e-mailed", "refused "];
    Some(match detail {
        Some(detail) if finishes.iter().any(|start| detail.starts_with(start)) => Told {
            sentence: format!("{noun} was {detail}"),
            rest: None,
        },
        Some(detail) if detail.starts_with("could not ") => Told {
            sentence: format!("{noun} {detail}"),
            rest: None,
        },
        detail => Told {
            sentence: format!("{noun} {happened}"),
            rest: detail.map(str::to_owned),
        },
    })
}

/// "by …" for an actor.
fn by(actor: &str) -> String {
    match actor {
        "scheduler" => "by Signhook, on schedule".to_owned(),
        "mailer" => "by Signhook's mailer".to_owned(),
        api if api.starts_with("API") => format!("through the {api}"),
        person => format!("by {person}"),
    }
}

/// Whom an entry is about, and what its detail says beyond that.
struct About {
    person: Option<String>,
    rest: Option<String>,
}

impl About {
    fn of(entry: &TrailEntry) -> Self {
        let detail = entry.detail.as_deref().map(str::trim).filter(|d| !d.is_empty());
        let named = detail.and_then(|d| d.strip_prefix("signer ").or_else(|| d.strip_prefix("approver ")));
        let Some(named) = named else {
            // No person in the detail: the actor is the person when it is
            // one, and the whole detail is the rest.
            return About {
                person: is_person(&entry.actor).then(|| entry.actor.clone()),
                rest: detail.map(str::to_owned),
            };
        };
        // `signer NAME <EMAIL>: REASON`. A name may hold any character, so
        // it is not parsed: when the actor is that person (they acted
        // themselves), the actor marks where the name ends.
        if is_person(&entry.actor) {
            if let Some(after) = named.strip_prefix(entry.actor.as_str()) {
                let reason = after.trim_start_matches(':').trim();
                return About {
                    person: Some(entry.actor.clone()),
                    rest: (!reason.is_empty()).then(|| reason.to_owned()),
                };
            }
        }
        About {
            person: Some(named.to_owned()),
            rest: None,
        }
    }
}

/// Whether an actor names a person (`Name <email>`) rather than Signhook or
/// the API.
fn is_person(actor: &str) -> bool {
    actor.ends_with('>') && actor.contains(" <")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADA: &str = "Ada Lovelace <ada@example.com>";

    fn entry(action: &str, actor: &str, detail: Option<&str>) -> TrailEntry {
        TrailEntry {
            at: "2026-12-01 10:04:05 UTC".into(),
            action: action.into(),
            actor: actor.into(),
            ip: None,
            user_agent: None,
            detail: detail.map(Into::into),
        }
    }

    fn said(action: &str, actor: &str, detail: Option<&str>) -> (String, Option<String>) {
        let told = tell(&entry(action, actor, detail));
        (told.sentence, told.rest)
    }

    #[test]
    fn each_step_reads_as_a_sentence() {
        let signer = format!("signer {ADA}");
        // (action, actor, detail, sentence): each says all of its detail.
        let cases: &[(&str, &str, Option<&str>, &str)] = &[
            (
                "signature_request.created",
                "API (live key)",
                None,
                "The request was created through the API (live key)",
            ),
            (
                "document.added",
                "API (live key)",
                Some("nda.pdf (2 pages, sha256 ab12)"),
                "A document was added through the API (live key): nda.pdf (2 pages, sha256 ab12)",
            ),
            (
                "signature_request.activated",
                "API (sandbox key)",
                None,
                "The request was sent for signature through the API (sandbox key)",
            ),
            (
                "signer.notified",
                "API (live key)",
                Some(&signer),
                "Ada Lovelace <ada@example.com> can now sign",
            ),
            (
                "signer.invitation_emailed",
                "Signhook",
                Some("e-mailed to Ada Lovelace <ada@example.com>; the SMTP server accepted it: 250 2.0.0 Ok"),
                "The invitation to sign was e-mailed to Ada Lovelace <ada@example.com>; \
                 the SMTP server accepted it: 250 2.0.0 Ok",
            ),
            (
                "signer.invitation_handed_over",
                "Signhook",
                Some(
                    "not e-mailed (no SMTP server is configured): \
                     the link for Ada Lovelace <ada@example.com> was handed to the API caller",
                ),
                "The invitation to sign was not e-mailed (no SMTP server is configured): \
                 the link for Ada Lovelace <ada@example.com> was handed to the API caller",
            ),
            (
                "signer.reminder_not_emailed",
                "Signhook",
                Some("could not be e-mailed to Ada Lovelace <ada@example.com>: connection refused"),
                "The reminder could not be e-mailed to Ada Lovelace <ada@example.com>: connection refused",
            ),
            (
                "approver.invitation_undeliverable",
                "Signhook",
                Some("refused for good when e-mailed to Bob <bob@example.com>: 550 no such user"),
                "The request for approval was refused for good when e-mailed to Bob <bob@example.com>: \
                 550 no such user",
            ),
            (
                "signer.signed_copy_emailed",
                "Signhook",
                None,
                "The signed copy was e-mailed",
            ),
            (
                "signer.link_opened",
                ADA,
                Some(&signer),
                "Ada Lovelace <ada@example.com> opened the signing link",
            ),
            (
                "signer.done",
                ADA,
                Some(&signer),
                "Ada Lovelace <ada@example.com> signed",
            ),
            (
                "signer.declined",
                ADA,
                Some("signer Ada Lovelace <ada@example.com>: the fee is wrong"),
                "Ada Lovelace <ada@example.com> declined to sign: the fee is wrong",
            ),
            (
                "signature_request.canceled",
                "API (live key)",
                Some("duplicate"),
                "The request was canceled through the API (live key): duplicate",
            ),
            (
                "signature_request.expired",
                "scheduler",
                None,
                "The request expired: its deadline passed",
            ),
            (
                "signature_request.done",
                ADA,
                Some(&signer),
                "Every signer has signed: the request is complete",
            ),
            (
                "approver.rejected",
                "Bob <bob@example.com>",
                Some("approver Bob <bob@example.com>: not approved by legal"),
                "Bob <bob@example.com> rejected the request: not approved by legal",
            ),
            (
                "signer.invite_undelivered",
                "mailer",
                Some(&signer),
                "The invitation to Ada Lovelace <ada@example.com> could not be delivered",
            ),
        ];
        for (action, actor, detail, sentence) in cases {
            assert_eq!(said(action, actor, *detail), ((*sentence).to_owned(), None), "{action}");
        }
    }

    #[test]
    fn names_in_any_script_and_with_odd_characters_are_kept_whole() {
        let actor = "محمد الأحمد <m@example.com>";
        let (sentence, rest) = said("signer.done", actor, Some(&format!("signer {actor}")));
        assert_eq!(sentence, "محمد الأحمد <m@example.com> signed");
        assert_eq!(rest, None);
        // A name holding ": " and "<" does not confuse the reason.
        let actor = "Zoë: <CFO> <zoe@example.com>";
        let (sentence, _) = said("signer.declined", actor, Some(&format!("signer {actor}: not now")));
        assert_eq!(sentence, "Zoë: <CFO> <zoe@example.com> declined to sign: not now");
    }

    #[test]
    fn an_unknown_action_is_printed_with_its_detail() {
        assert_eq!(
            said("signer.sent_by_pigeon", "API (live key)", Some("to the roof")),
            (
                "signer.sent_by_pigeon through the API (live key)".to_owned(),
                Some("to the roof".to_owned())
            )
        );
        // Even one named like a known step's family keeps everything.
        let (sentence, rest) = said("signer.new_thing", "scheduler", Some("signer Ada <a@x.org>: why"));
        assert_eq!(sentence, "signer.new_thing by Signhook, on schedule");
        assert_eq!(rest.as_deref(), Some("signer Ada <a@x.org>: why"));
    }

    #[test]
    fn a_detail_in_another_form_is_kept_whole() {
        // A letter whose detail does not finish its sentence keeps it below.
        assert_eq!(
            said(
                "signer.reminder_emailed",
                "Signhook",
                Some("the SMTP server answered: 250 Ok")
            ),
            (
                "The reminder was e-mailed".to_owned(),
                Some("the SMTP server answered: 250 Ok".to_owned())
            )
        );
        // The consent and typed name of a signature follow it.
        let (sentence, rest) = said(
            "signer.done",
            ADA,
            Some("signer Ada Lovelace <ada@example.com>: agreed to sign electronically and typed the name “Ada”"),
        );
        assert_eq!(sentence, "Ada Lovelace <ada@example.com> signed");
        assert_eq!(
            rest.as_deref(),
            Some("agreed to sign electronically and typed the name “Ada”")
        );
        // A renewal names the signer by id; the detail says so below.
        let (sentence, rest) = said(
            "signer.link_renewed",
            "API (live key)",
            Some("signer sig_01: earlier links no longer work"),
        );
        assert_eq!(sentence, "A new signing link was made through the API (live key)");
        assert_eq!(rest.as_deref(), Some("signer sig_01: earlier links no longer work"));
    }
}
