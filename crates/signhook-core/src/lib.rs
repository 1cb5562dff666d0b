//! Signhook's domain: the types every other crate speaks, and the rules that
//! need no I/O.
//!
//! # Layout
//!
//! - [`ids`]: prefixed, time-ordered identifiers (`evt_…`, `wh_…`, …).
//! - [`time`]: the injected [`Clock`](time::Clock) and timestamp helpers.
//! - [`catalog`]: the event catalog (DESIGN §3.2) as data.
//! - [`event_types`]: the tenant's own event types: names, JSON Schemas
//!   and the check of published `data`, and where an event came from.
//! - [`filter`]: what a subscription listens to (events, scopes, workspaces)
//!   and the one function that decides whether an event matches.
//! - [`endpoint`]: a subscription's URL, custom headers and signature scheme.
//! - [`retry`]: what an attempt's outcome means and how long to wait.
//! - [`delivery`]: delivery status and attempt error kinds.
//! - [`outcome`]: what follows an attempt's decision (status, failure
//!   streak, `delivery.failed`, disabling), for the store to apply.
//! - [`auth`]: API key formats and environments.
//! - [`netguard`]: which addresses endpoints may reach (the SSRF guard).
//! - [`policy`]: when a failing subscription is warned, then disabled.
//! - [`lifecycle`]: the signature-request state machine (DESIGN §3.1).
//! - [`duration`]: the `5s,30s,2m` duration syntax used by flags.
//! - [`ordering`]: ordered delivery per key — which key a delivery is
//!   ordered by, and which deliveries hold back the later ones of their key.
#![deny(missing_docs)]

pub mod auth;
pub mod catalog;
pub mod delivery;
pub mod duration;
pub mod endpoint;
pub mod event_types;
pub mod filter;
pub mod ids;
pub mod lifecycle;
pub mod netguard;
pub mod ordering;
pub mod outcome;
pub mod policy;
pub mod retry;
pub mod time;

/// An error and its causes as one line, `: `-separated, for logs and
/// attempt records.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
