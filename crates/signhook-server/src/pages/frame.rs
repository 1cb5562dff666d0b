//! The frame around every signed-in dashboard page: the sections of the
//! navigation, who is signed in, the live/sandbox switch, log out — and the
//! one reader of the dashboard's form bodies.
//!
//! The environment shown is kept in a cookie
//! ([`ENVIRONMENT_COOKIE`](crate::pages::session::ENVIRONMENT_COOKIE)) that
//! `POST /environment` sets, so every page of every section shows the same
//! one and says which.

use crate::pages::see_other;
use crate::pages::session::{environment_cookie, CsrfForm, PageRefusal, SignedIn, Visitor};
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use axum::Form;
use serde::Deserialize;
use signhook_core::auth::Environment;

/// A section of the dashboard: its key, its link, its label, whether only
/// admins see it, and whether the embeddable portal shows it.
pub struct Section {
    /// What pages name it by (`Nav::section`).
    pub key: &'static str,
    /// Where its link leads.
    pub path: &'static str,
    /// Its label.
    pub label: &'static str,
    /// Shown to admins only.
    pub admins_only: bool,
    /// Shown in the portal too (the portal lets only these sections'
    /// paths through: see [`crate::pages::portal`]).
    pub in_portal: bool,
}

/// The dashboard's sections, in the navigation's order: one line each.
#[rustfmt::skip]
pub const SECTIONS: &[Section] = &[
    Section { key: "webhooks", path: "/webhooks", label: "Webhooks", admins_only: false, in_portal: true },
    Section { key: "events", path: "/events", label: "Events", admins_only: false, in_portal: true },
    Section { key: "event_types", path: "/event_types", label: "Event types", admins_only: false, in_portal: true },
    Section { key: "signature_requests", path: "/signature_requests", label: "Signature requests", admins_only: false, in_portal: false },
    Section { key: "api_keys", path: "/api_keys", label: "API keys", admins_only: true, in_portal: false },
    Section { key: "team", path: "/team", label: "Team", admins_only: true, in_portal: false },
    Section { key: "portal", path: "/portal_settings", label: "Portal", admins_only: true, in_portal: false },
];

/// What every dashboard page's frame shows.
pub struct Nav {
    /// The page's title.
    pub title: String,
    /// Which section of the navigation is current.
    pub section: &'static str,
    /// The sections this user sees.
    pub sections: Vec<&'static Section>,
    /// Who is signed in.
    pub email: String,
    /// Their role.
    pub role: &'static str,
    /// Their forms' token.
    pub csrf: String,
    /// The environment shown: `live` or `sandbox`.
    pub environment: &'static str,
    /// The other one, which the switch leads to.
    pub other_environment: &'static str,
    /// In the portal: the tenant's look (no switch, no account there).
    pub portal: Option<PortalLook>,
}

/// The portal's header: the platform's product and logo.
pub struct PortalLook {
    /// The product's name ("Webhooks" when the tenant set none).
    pub product_name: String,
    /// Its logo, if set.
    pub logo_url: Option<String>,
    /// Whether the tenant chose an accent colour (served as a stylesheet).
    pub themed: bool,
}

impl Nav {
    /// The frame of `section`'s page titled `title` for `signed_in`.
    pub fn new(signed_in: &SignedIn, section: &'static str, title: impl Into<String>) -> Self {
        let admin = signed_in.is_admin();
        let (environment, other_environment) = if signed_in.sandbox() {
            ("sandbox", "live")
        } else {
            ("live", "sandbox")
        };
        let (email, role, portal) = match &signed_in.visitor {
            Visitor::User(user) => (user.email.clone(), user.role.as_str(), None),
            Visitor::Portal { can_write, theme } => (
                String::new(),
                if *can_write { "read and write" } else { "read only" },
                Some(PortalLook {
                    product_name: theme.product_name.clone().unwrap_or_else(|| "Webhooks".to_owned()),
                    logo_url: theme.logo_url.clone(),
                    themed: theme.accent_color.is_some(),
                }),
            ),
        };
        let shown = |s: &&Section| {
            if portal.is_some() {
                s.in_portal
            } else {
                admin || !s.admins_only
            }
        };
        Nav {
            title: title.into(),
            section,
            sections: SECTIONS.iter().filter(shown).collect(),
            email,
            role,
            csrf: signed_in.csrf.clone(),
            environment,
            other_environment,
            portal,
        }
    }

    /// Whether the sandbox is shown.
    pub fn is_sandbox(&self) -> bool {
        self.environment == "sandbox"
    }
}

/// The switch's form.
#[derive(Debug, Deserialize)]
pub struct SwitchForm {
    csrf: String,
    /// `live` or `sandbox`.
    environment: String,
    /// The section to show after (a [`Section::key`]).
    section: Option<String>,
}

/// `POST /environment`: shows the other environment, from the list of the
/// section the user was in (an object of one environment has no twin in
/// the other).
pub async fn switch(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Form(form): Form<SwitchForm>,
) -> Result<Response, PageRefusal> {
    signed_in.check_csrf(&form.csrf)?;
    signed_in.require_user()?;
    let environment = match form.environment.as_str() {
        "live" => Environment::Live,
        "sandbox" => Environment::Test,
        _ => return Err(PageRefusal::Forbidden("environment must be `live` or `sandbox`")),
    };
    let back = SECTIONS
        .iter()
        .find(|s| Some(s.key) == form.section.as_deref())
        .map_or("/webhooks", |s| s.path);
    let mut response = see_other(back);
    response.headers_mut().insert(
        header::SET_COOKIE,
        environment_cookie(environment, state.api.secure_cookies),
    );
    Ok(response)
}

/// A form's fields as the browser sent them. A checkbox list repeats its
/// name, which serde's form reader does not take, so multi-valued forms
/// are read with this.
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// Reads an `application/x-www-form-urlencoded` body.
    pub fn parse(body: &[u8]) -> Self {
        Fields(url::form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of `name`, or empty.
    pub fn one(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The form's CSRF token, as a [`CsrfForm`].
    pub fn csrf(&self) -> CsrfForm {
        CsrfForm { csrf: self.one("csrf") }
    }
}

/// One option of a `<select>`: its value, its label, whether it is chosen.
pub struct Choice {
    /// The value sent.
    pub value: &'static str,
    /// What the option says.
    pub label: String,
    /// Whether it is selected.
    pub selected: bool,
}

impl Choice {
    /// The options `values` (each labelled as itself), with `chosen` selected.
    pub fn list(values: impl IntoIterator<Item = &'static str>, chosen: &str) -> Vec<Choice> {
        values
            .into_iter()
            .map(|value| Choice {
                value,
                label: value.to_owned(),
                selected: value == chosen,
            })
            .collect()
    }
}
