//! The state machine, exhaustively: every action in every request status,
//! and the stories of DESIGN §3.1 step by step.

use super::*;
use crate::catalog;
use chrono::Duration;

fn t0() -> DateTime<Utc> {
    "2026-11-22T10:00:00Z".parse().unwrap()
}

fn request(signers: usize, approvers: usize, ordered: bool) -> SignatureRequest {
    let signers = (0..signers)
        .map(|i| Signer::new(format!("Signer {i}"), format!("s{i}@example.com")))
        .collect();
    let approvers = (0..approvers)
        .map(|i| Approver::new(format!("Approver {i}"), format!("a{i}@example.com")))
        .collect();
    let mut request = SignatureRequest::draft("MSA".into(), t0() + Duration::days(30), ordered, signers, approvers);
    request.document_count = 1;
    request
}

fn signature() -> Signature {
    Signature::new(Some(true), Some("Signer")).unwrap()
}

fn types(t: &Transition) -> Vec<&'static str> {
    t.events.iter().map(|e| e.event_type).collect()
}

/// Applies an action that must be allowed, checking the sequence grows by one per event.
fn step(request: &SignatureRequest, action: Action) -> Transition {
    let t = request
        .transition(action.clone(), t0())
        .unwrap_or_else(|e| panic!("{action:?} refused in {}: {e}", request.status));
    for (i, e) in t.events.iter().enumerate() {
        assert_eq!(e.sequence, request.sequence + 1 + i as i64);
        let info = catalog::lookup(e.event_type).unwrap_or_else(|| panic!("{} not in catalog", e.event_type));
        // What the lifecycle really writes satisfies the schema the catalog
        // publishes for its type (with `links` as the server adds them on
        // `done`).
        let links = json!({
            "signed_pdf": {"url": "https://signhook.example.com/f/signed.pdf", "expires_at": "2026-11-22T10:30:00.000Z"},
            "audit_certificate": {"url": "https://signhook.example.com/f/audit.pdf", "expires_at": "2026-11-22T10:30:00.000Z"}
        });
        let data = t.request.event_data(e, &json!({"crm_deal_id": "D-1"}), Some(&links));
        if let Err(v) = info.schema().check(&data) {
            panic!(
                "{} as the lifecycle writes it breaks its schema: {v}\n{data:#}",
                e.event_type
            );
        }
    }
    assert_eq!(t.request.sequence, request.sequence + t.events.len() as i64);
    t
}

/// A request of the given status reached through real transitions, with
/// two parallel signers and no approvers (or one approver for `approval`).
fn in_status(status: RequestStatus) -> SignatureRequest {
    use RequestStatus as R;
    let draft = request(2, usize::from(status == R::Approval), false);
    let signer = |r: &SignatureRequest, i: usize| r.signers[i].id.clone();
    match status {
        R::Draft => draft,
        R::Approval | R::Ongoing => step(&draft, Action::Activate).request,
        R::Done => {
            let r = in_status(R::Ongoing);
            let r = step(&r, Action::Sign(signer(&r, 0), signature())).request;
            step(&r, Action::Sign(signer(&r, 1), signature())).request
        }
        R::Declined => {
            let r = in_status(R::Ongoing);
            step(&r, Action::Decline(signer(&r, 0), "no".into())).request
        }
        R::Canceled => step(&draft, Action::Cancel(None)).request,
        R::Expired => {
            let mut r = in_status(R::Ongoing);
            r.expires_at = t0();
            step(&r, Action::Expire).request
        }
        R::Deleted => step(&draft, Action::Delete).request,
        R::PermanentlyDeleted => step(&in_status(R::Deleted), Action::PurgePermanently).request,
    }
}

/// Every action in every status: allowed exactly where the table says.
#[test]
fn every_action_in_every_status() {
    use RequestStatus as R;
    for &status in R::ALL {
        let mut r = in_status(status);
        assert_eq!(r.status, status);
        if status == R::Ongoing {
            r.expires_at = t0(); // so that Expire is allowed
        }
        let signer = r.signers[1].id.clone();
        let approver = r
            .approvers
            .first()
            .map(|a| a.id.clone())
            .unwrap_or_else(ApproverId::generate);
        let actions = [
            (Action::Activate, vec![R::Draft]),
            (Action::Approve(approver.clone()), vec![R::Approval]),
            (Action::Reject(approver, "no".into()), vec![R::Approval]),
            (Action::Sign(signer.clone(), signature()), vec![R::Ongoing]),
            (Action::Decline(signer.clone(), "no".into()), vec![R::Ongoing]),
            (Action::InviteUndelivered(signer), vec![R::Ongoing]),
            (Action::Remind, vec![R::Ongoing]),
            (Action::Cancel(None), vec![R::Draft, R::Approval, R::Ongoing]),
            (Action::Expire, vec![R::Ongoing]),
            (Action::Reactivate(t0() + Duration::days(1)), vec![R::Expired]),
            (
                Action::Delete,
                vec![
                    R::Draft,
                    R::Approval,
                    R::Ongoing,
                    R::Done,
                    R::Declined,
                    R::Canceled,
                    R::Expired,
                ],
            ),
            (Action::PurgePermanently, vec![R::Deleted]),
        ];
        for (action, allowed_in) in actions {
            let result = r.transition(action.clone(), t0());
            if allowed_in.contains(&status) {
                let t = result.unwrap_or_else(|e| panic!("{action:?} in {status}: {e}"));
                assert!(t.is_change(), "{action:?} in {status} emitted nothing");
            } else {
                assert_eq!(
                    result.unwrap_err(),
                    Refusal::RequestState {
                        action: action.name(),
                        current: status
                    },
                    "{action:?} in {status}"
                );
            }
        }
    }
}

#[test]
fn refusals_name_the_current_state() {
    let done = in_status(RequestStatus::Done);
    let err = done.transition(Action::Cancel(None), t0()).unwrap_err();
    assert_eq!(err.to_string(), "cannot cancel a signature request that is done");
}

#[test]
fn parallel_signers_then_done() {
    let r = request(2, 0, false);
    let t = step(&r, Action::Activate);
    assert_eq!(
        types(&t),
        ["signature_request.activated", "signer.notified", "signer.notified"]
    );
    assert_eq!(t.invite_signers, [0, 1]);
    let r = t.request;
    assert_eq!(r.status, RequestStatus::Ongoing);

    let (a, b) = (r.signers[0].id.clone(), r.signers[1].id.clone());
    let t = step(&r, Action::OpenLink(b.clone()));
    assert_eq!(types(&t), ["signer.link_opened"]);
    // A second opening is not news.
    assert!(!step(&t.request, Action::OpenLink(b.clone())).is_change());
    let t = step(&t.request, Action::Sign(b.clone(), signature()));
    assert_eq!(types(&t), ["signer.done"]);
    assert_eq!(t.request.status, RequestStatus::Ongoing);
    // A never opened its link: signing opens it first.
    let t = step(&t.request, Action::Sign(a, signature()));
    assert_eq!(
        types(&t),
        ["signer.link_opened", "signer.done", "signature_request.done"]
    );
    assert_eq!(t.request.status, RequestStatus::Done);
    assert_eq!(t.request.sequence, 8);
    // Signing twice is refused, naming the signer's state.
    let err = t.request.transition(Action::Sign(b, signature()), t0()).unwrap_err();
    assert_eq!(err.to_string(), "cannot sign a signature request that is done");
}

#[test]
fn ordered_signers_are_notified_one_after_the_other() {
    let r = step(&request(3, 0, true), Action::Activate);
    assert_eq!(types(&r), ["signature_request.activated", "signer.notified"]);
    let r = r.request;
    let ids: Vec<_> = r.signers.iter().map(|s| s.id.clone()).collect();
    assert_eq!(r.signers[1].status, SignerStatus::Pending);
    // The second signer cannot sign before the first.
    let err = r
        .transition(Action::Sign(ids[1].clone(), signature()), t0())
        .unwrap_err();
    assert_eq!(
        err,
        Refusal::SignerState {
            action: "sign",
            current: SignerStatus::Pending
        }
    );
    let t = step(&r, Action::OpenLink(ids[0].clone()));
    let t = step(&t.request, Action::Sign(ids[0].clone(), signature()));
    assert_eq!(types(&t), ["signer.done", "signer.notified"]);
    assert_eq!(t.events[1].subject, Subject::Signer(1));
    assert_eq!(t.invite_signers, [1]);
    let t = step(&t.request, Action::OpenLink(ids[1].clone()));
    let t = step(&t.request, Action::Sign(ids[1].clone(), signature()));
    assert_eq!(types(&t), ["signer.done", "signer.notified"]);
    let t = step(&t.request, Action::OpenLink(ids[2].clone()));
    let t = step(&t.request, Action::Sign(ids[2].clone(), signature()));
    assert_eq!(types(&t), ["signer.done", "signature_request.done"]);
}

#[test]
fn a_decline_declines_the_request_with_its_reason() {
    let r = in_status(RequestStatus::Ongoing);
    let id = r.signers[0].id.clone();
    let t = step(&r, Action::Decline(id.clone(), "Wrong price".into()));
    assert_eq!(types(&t), ["signer.declined", "signature_request.declined"]);
    let data = t.request.event_data(&t.events[1], &json!({}), None);
    assert_eq!(data["reason"], "Wrong price");
    assert_eq!(data["signer"]["id"], id.as_str());
    assert_eq!(data["signature_request"]["status"], "declined");
    assert_eq!(data["signature_request"]["sequence"], t.events[1].sequence);
    // The other signer can no longer sign.
    let other = t.request.signers[1].id.clone();
    assert!(t.request.transition(Action::Sign(other, signature()), t0()).is_err());
}

#[test]
fn approvers_gate_activation() {
    let r = request(1, 2, false);
    let t = step(&r, Action::Activate);
    assert_eq!(types(&t), ["approver.notified", "approver.notified"]);
    assert_eq!(t.request.status, RequestStatus::Approval);
    assert_eq!(t.invite_approvers, [0, 1]);
    let signer = t.request.signers[0].id.clone();
    assert!(t.request.transition(Action::Sign(signer, signature()), t0()).is_err());

    let (a, b) = (t.request.approvers[0].id.clone(), t.request.approvers[1].id.clone());
    let t = step(&t.request, Action::Approve(a.clone()));
    assert_eq!(types(&t), ["approver.approved"]);
    assert!(matches!(
        t.request.transition(Action::Approve(a), t0()),
        Err(Refusal::ApproverState { .. })
    ));
    let t = step(&t.request, Action::Approve(b));
    assert_eq!(
        types(&t),
        [
            "approver.approved",
            "signature_request.approved",
            "signature_request.activated",
            "signer.notified"
        ]
    );
    assert_eq!(t.request.status, RequestStatus::Ongoing);
}

#[test]
fn an_approver_rejecting_declines_the_request() {
    let t = step(&request(1, 2, false), Action::Activate);
    let a = t.request.approvers[1].id.clone();
    let t = step(&t.request, Action::Reject(a, "Budget".into()));
    assert_eq!(types(&t), ["approver.rejected", "signature_request.declined"]);
    assert_eq!(t.request.status, RequestStatus::Declined);
    let data = t.request.event_data(&t.events[0], &json!(null), None);
    assert_eq!(data["approver"]["status"], "rejected");
    assert_eq!(data["reason"], "Budget");
}

#[test]
fn activation_needs_documents_signers_and_a_future_deadline() {
    let mut r = request(1, 0, false);
    r.document_count = 0;
    assert!(matches!(
        r.transition(Action::Activate, t0()),
        Err(Refusal::Incomplete { field: "documents", .. })
    ));
    let mut r = request(0, 0, false);
    assert!(matches!(
        r.transition(Action::Activate, t0()),
        Err(Refusal::Incomplete { field: "signers", .. })
    ));
    r = request(1, 0, false);
    r.expires_at = t0();
    assert!(matches!(
        r.transition(Action::Activate, t0()),
        Err(Refusal::Incomplete {
            field: "expires_at",
            ..
        })
    ));
}

#[test]
fn expiry_waits_for_the_deadline_and_reactivation_reopens() {
    let r = in_status(RequestStatus::Ongoing);
    assert!(r.transition(Action::Expire, t0()).is_err(), "not due yet");
    let later = r.expires_at;
    let t = r.transition(Action::Expire, later).unwrap();
    assert_eq!(types(&t), ["signature_request.expired"]);
    let expired = t.request;
    assert!(matches!(
        expired.transition(Action::Reactivate(later), later),
        Err(Refusal::Incomplete {
            field: "expires_at",
            ..
        })
    ));
    let t = expired
        .transition(Action::Reactivate(later + Duration::days(7)), later)
        .unwrap();
    assert_eq!(types(&t), ["signature_request.reactivated"]);
    assert_eq!(t.request.status, RequestStatus::Ongoing);
    assert_eq!(t.request.expires_at, later + Duration::days(7));
}

#[test]
fn reminders_go_to_invited_signers_who_have_not_acted() {
    let r = in_status(RequestStatus::Ongoing);
    let first = r.signers[0].id.clone();
    let r = step(&r, Action::Sign(first, signature())).request;
    let t = step(&r, Action::Remind);
    assert_eq!(types(&t), ["signature_request.reminder_executed"]);
    assert_eq!(t.invite_signers, [1]);
    let data = t.request.event_data(&t.events[0], &json!({}), None);
    assert_eq!(data["signers"].as_array().unwrap().len(), 1);
}

#[test]
fn delete_then_purge() {
    let t = step(&in_status(RequestStatus::Done), Action::Delete);
    assert_eq!(t.request.status_before_delete, Some(RequestStatus::Done));
    let t = step(&t.request, Action::PurgePermanently);
    assert_eq!(types(&t), ["signature_request.permanently_deleted"]);
}

#[test]
fn someone_else_s_signer_is_unknown() {
    let r = in_status(RequestStatus::Ongoing);
    let stranger = SignerId::generate();
    assert_eq!(
        r.transition(Action::Sign(stranger, signature()), t0()).unwrap_err(),
        Refusal::UnknownPerson
    );
}

#[test]
fn payloads_carry_links_on_done_only_and_never_a_token() {
    let r = in_status(RequestStatus::Done);
    let links = json!({"signed_pdf": {"url": "u", "expires_at": "e"}});
    let done = Emitted {
        event_type: "signature_request.done",
        sequence: r.sequence,
        subject: Subject::Request,
    };
    let data = r.event_data(&done, &json!({"crm_id": 7}), Some(&links));
    assert_eq!(data["links"], links);
    assert_eq!(data["signature_request"]["metadata"]["crm_id"], 7);
    let signer_done = Emitted {
        event_type: "signer.done",
        sequence: r.sequence - 1,
        subject: Subject::Signer(1),
    };
    let data = r.event_data(&signer_done, &json!({}), Some(&links));
    assert!(data.get("links").is_none());
    assert!(data["signer"]["signed_at"].is_string());
    assert!(!data.to_string().contains("signing"), "{data}");
}

#[test]
fn statuses_round_trip() {
    for &s in RequestStatus::ALL {
        assert_eq!(RequestStatus::parse(s.as_str()), Some(s));
    }
    for &s in SignerStatus::ALL {
        assert_eq!(SignerStatus::parse(s.as_str()), Some(s));
    }
    for &s in ApproverStatus::ALL {
        assert_eq!(ApproverStatus::parse(s.as_str()), Some(s));
    }
}

#[test]
fn signing_needs_consent_and_a_typed_name() {
    let refused = |consent, name| match Signature::new(consent, name) {
        Err(Refusal::Incomplete { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(refused(None, Some("Ada")), "consent");
    assert_eq!(refused(Some(false), Some("Ada")), "consent");
    assert_eq!(refused(Some(true), None), "typed_name");
    assert_eq!(refused(Some(true), Some("   ")), "typed_name");
    assert_eq!(refused(Some(true), Some("Ada\u{0}")), "typed_name");
    assert_eq!(
        refused(Some(true), Some(&"x".repeat(TYPED_NAME_MAX_CHARS + 1))),
        "typed_name"
    );
    let signature = Signature::new(Some(true), Some("  Łukasz Żółć ")).unwrap();
    assert_eq!(signature.typed_name(), "Łukasz Żółć");
}

#[test]
fn a_signer_who_never_opened_the_link_is_opened_before_signing() {
    let r = step(&request(1, 0, false), Action::Activate).request;
    let id = r.signers[0].id.clone();
    let typed = Signature::new(Some(true), Some("Signer Zero")).unwrap();
    let t = step(&r, Action::Sign(id, typed));
    assert_eq!(
        types(&t),
        ["signer.link_opened", "signer.done", "signature_request.done"]
    );
    let signer = &t.request.signers[0];
    assert_eq!((signer.link_opened_at, signer.signed_at), (Some(t0()), Some(t0())));
    assert_eq!(signer.typed_name.as_deref(), Some("Signer Zero"));
    let data = t.request.event_data(&t.events[1], &serde_json::json!({}), None);
    assert_eq!(data["signer"]["typed_name"], "Signer Zero");
}
