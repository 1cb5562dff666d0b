//! The API and delivery suite: the real server (or binary), real SQLite
//! files in temp dirs, real HTTP receivers on 127.0.0.1. One test binary,
//! built once.

mod api_keys;
mod cli;
mod crash;
mod dashboard;
mod delivery;
mod errors;
mod esign;
mod event_types;
mod events;
mod failures;
mod helpers;
mod hostile;
mod inbox;
mod listen;
mod multinode;
mod ordering;
mod outbound;
mod pages_endpoint;
mod pages_esign;
mod pages_team;
mod portal;
mod punctuality;
mod schemathesis;
mod seal;
mod secrets;
mod signer_pages;
mod storage;
mod webhooks;
