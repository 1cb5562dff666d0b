//! What a subscription listens to, and the one rule that decides whether an
//! event goes to it: its type, scope, workspace and environment must all
//! match (DESIGN §3). Each list accepts `"*"` as its only element, meaning
//! "everything, now and later"; event lists also accept `namespace.*`.

use crate::catalog;
use crate::event_types::{self, TenantTypeName};
use crate::ids::WorkspaceId;

/// The wildcard that stands for every value, now and later.
pub const WILDCARD: &str = "*";

/// Where a resource began its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Created with an API key.
    PublicApi,
    /// Created from the dashboard.
    App,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 2] = [Scope::PublicApi, Scope::App];

    /// The scope's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::PublicApi => "public_api",
            Scope::App => "app",
        }
    }

    /// Parses a scope name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == text)
    }
}

/// One entry of `subscribed_events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventPattern {
    /// One type: of the catalog, or one the tenant registered.
    Exact(String),
    /// Every type of a namespace (`signer.*`, or a tenant's `invoice.*`),
    /// now and later.
    Namespace(String),
}

impl EventPattern {
    fn matches(&self, event_type: &str) -> bool {
        match self {
            EventPattern::Exact(t) => t == event_type,
            EventPattern::Namespace(ns) => event_type
                .strip_prefix(ns.as_str())
                .is_some_and(|rest| rest.starts_with('.')),
        }
    }

    fn text(&self) -> String {
        match self {
            EventPattern::Exact(t) => t.clone(),
            EventPattern::Namespace(ns) => format!("{ns}.*"),
        }
    }
}

/// The tenant's own registered type names, beside the catalog: what
/// `subscribed_events` may name besides the built-in types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantTypes(Vec<String>);

impl TenantTypes {
    /// The tenant's registered names (as the store keeps them).
    pub fn new(names: Vec<String>) -> Self {
        Self(names)
    }

    fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|n| n == name)
    }

    /// The namespaces of the tenant's types, sorted, without duplicates.
    pub fn namespaces(&self) -> Vec<&str> {
        let mut namespaces: Vec<&str> = self.0.iter().map(|n| event_types::namespace_of(n)).collect();
        namespaces.sort_unstable();
        namespaces.dedup();
        namespaces
    }
}

/// Either everything (`["*"]`) or an explicit list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection<T> {
    /// `["*"]`: every value, including ones added later.
    All,
    /// A non-empty list without duplicates.
    Only(Vec<T>),
}

impl<T: PartialEq> Selection<T> {
    /// Whether `pred` holds for the selection (always for `All`).
    fn any(&self, pred: impl Fn(&T) -> bool) -> bool {
        match self {
            Selection::All => true,
            Selection::Only(items) => items.iter().any(pred),
        }
    }
}

/// Why a filter list was refused. Each message names what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// The list is empty.
    #[error("must list at least one value, or be [\"*\"] for everything")]
    Empty,
    /// `"*"` appeared beside other values.
    #[error("\"*\" must be the only element when it is used")]
    WildcardNotAlone,
    /// An event name is not in the catalog.
    #[error(
        "`{given}` is not a known event type; valid types are: {valid}, a namespace wildcard ({namespaces}) or \"*\""
    )]
    UnknownEvent {
        /// What was given.
        given: String,
        /// The valid names, comma-separated.
        valid: String,
        /// The valid namespace wildcards, comma-separated.
        namespaces: String,
    },
    /// A scope name is unknown.
    #[error("`{0}` is not a scope; valid scopes are: public_api, app, or \"*\"")]
    UnknownScope(String),
    /// A workspace id is malformed.
    #[error("{0}")]
    BadWorkspace(String),
}

/// Parses a wildcard-able list with `item` for each element.
fn parse_selection<T: PartialEq>(
    texts: &[String],
    mut item: impl FnMut(&str) -> Result<T, FilterError>,
) -> Result<Selection<T>, FilterError> {
    match texts {
        [] => Err(FilterError::Empty),
        [only] if only == WILDCARD => Ok(Selection::All),
        _ if texts.iter().any(|t| t == WILDCARD) => Err(FilterError::WildcardNotAlone),
        _ => {
            let mut items = Vec::with_capacity(texts.len());
            for text in texts {
                let parsed = item(text)?;
                if !items.contains(&parsed) {
                    items.push(parsed);
                }
            }
            Ok(Selection::Only(items))
        }
    }
}

fn selection_texts<T>(selection: &Selection<T>, text: impl Fn(&T) -> String) -> Vec<String> {
    match selection {
        Selection::All => vec![WILDCARD.to_owned()],
        Selection::Only(items) => items.iter().map(text).collect(),
    }
}

/// The event types a subscription listens to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter(Selection<EventPattern>);

impl EventFilter {
    /// Every event type.
    pub fn all() -> Self {
        Self(Selection::All)
    }

    /// Parses `subscribed_events` naming built-in types only.
    pub fn parse(texts: &[String]) -> Result<Self, FilterError> {
        Self::parse_for(texts, &TenantTypes::default())
    }

    /// Parses `subscribed_events` for a tenant: built-in types and
    /// namespaces, and the tenant's own registered types and their
    /// namespaces (`invoice.*` once `invoice.paid` is registered). Anything
    /// else is refused with the list of what is valid for this tenant.
    pub fn parse_for(texts: &[String], tenant: &TenantTypes) -> Result<Self, FilterError> {
        parse_selection(texts, |text| {
            if let Some(ns) = text.strip_suffix(".*") {
                if catalog::NAMESPACES.contains(&ns) || tenant.namespaces().contains(&ns) {
                    return Ok(EventPattern::Namespace(ns.to_owned()));
                }
            }
            if catalog::lookup(text).is_some() || tenant.contains(text) {
                return Ok(EventPattern::Exact(text.to_owned()));
            }
            let mut valid = catalog::all_names().join(", ");
            for name in &tenant.0 {
                valid.push_str(", ");
                valid.push_str(name);
            }
            Err(FilterError::UnknownEvent {
                given: text.chars().take(100).collect(),
                valid,
                namespaces: catalog::NAMESPACES
                    .iter()
                    .copied()
                    .chain(tenant.namespaces())
                    .map(|n| format!("{n}.*"))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        })
        .map(Self)
    }

    /// Reads `subscribed_events` as the store kept them: checked against
    /// the tenant's types when written, so only their form is checked
    /// again (a built-in name, or a well-formed tenant name or namespace).
    pub fn from_stored(texts: &[String]) -> Result<Self, FilterError> {
        parse_selection(texts, |text| {
            if let Some(ns) = text.strip_suffix(".*") {
                if catalog::NAMESPACES.contains(&ns) || event_types::is_tenant_namespace(ns) {
                    return Ok(EventPattern::Namespace(ns.to_owned()));
                }
            }
            if catalog::lookup(text).is_some() || TenantTypeName::parse(text).is_ok() {
                return Ok(EventPattern::Exact(text.to_owned()));
            }
            Err(FilterError::UnknownEvent {
                given: text.chars().take(100).collect(),
                valid: catalog::all_names().join(", "),
                namespaces: String::new(),
            })
        })
        .map(Self)
    }

    /// Whether an event of type `event_type` passes.
    pub fn matches(&self, event_type: &str) -> bool {
        self.0.any(|pattern| pattern.matches(event_type))
    }

    /// The list as the API shows it.
    pub fn to_texts(&self) -> Vec<String> {
        selection_texts(&self.0, EventPattern::text)
    }
}

/// The scopes a subscription listens to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeFilter(Selection<Scope>);

impl ScopeFilter {
    /// Every scope.
    pub fn all() -> Self {
        Self(Selection::All)
    }

    /// Parses `scopes`.
    pub fn parse(texts: &[String]) -> Result<Self, FilterError> {
        parse_selection(texts, |text| {
            Scope::parse(text).ok_or_else(|| FilterError::UnknownScope(text.chars().take(100).collect()))
        })
        .map(Self)
    }

    /// Whether an event of `scope` passes.
    pub fn matches(&self, scope: Scope) -> bool {
        self.0.any(|s| *s == scope)
    }

    /// The list as the API shows it.
    pub fn to_texts(&self) -> Vec<String> {
        selection_texts(&self.0, |s| s.as_str().to_owned())
    }
}

/// The workspaces a subscription listens to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceFilter(Selection<WorkspaceId>);

impl WorkspaceFilter {
    /// Every workspace.
    pub fn all() -> Self {
        Self(Selection::All)
    }

    /// Parses `workspaces` (ids only; whether they exist is the store's
    /// question).
    pub fn parse(texts: &[String]) -> Result<Self, FilterError> {
        parse_selection(texts, |text| {
            WorkspaceId::parse(text).map_err(|e| FilterError::BadWorkspace(e.to_string()))
        })
        .map(Self)
    }

    /// The explicitly listed workspaces (none for `*`).
    pub fn listed(&self) -> &[WorkspaceId] {
        match &self.0 {
            Selection::All => &[],
            Selection::Only(ids) => ids,
        }
    }

    /// Whether an event in `workspace` passes.
    pub fn matches(&self, workspace: &WorkspaceId) -> bool {
        self.0.any(|w| w == workspace)
    }

    /// The list as the API shows it.
    pub fn to_texts(&self) -> Vec<String> {
        selection_texts(&self.0, |w| w.to_string())
    }
}

/// What a subscription listens to, as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionFilter {
    /// Receives sandbox events (`true`) or live ones (`false`).
    pub sandbox: bool,
    /// `subscribed_events`.
    pub events: EventFilter,
    /// `scopes`.
    pub scopes: ScopeFilter,
    /// `workspaces`.
    pub workspaces: WorkspaceFilter,
}

/// The facts about an event that subscriptions filter on.
#[derive(Debug, Clone, Copy)]
pub struct EventFacts<'a> {
    /// The event type's name.
    pub event_type: &'a str,
    /// Whether it happened in the sandbox.
    pub sandbox: bool,
    /// Where its resource began.
    pub scope: Scope,
    /// Its workspace.
    pub workspace: &'a WorkspaceId,
}

impl SubscriptionFilter {
    /// The rule: environment, type, scope and workspace must all match.
    /// Operational events (about the webhook system itself, not about a
    /// document) belong to no scope or workspace, so only the environment
    /// and the type decide for them.
    pub fn matches(&self, event: &EventFacts<'_>) -> bool {
        let operational =
            catalog::lookup(event.event_type).is_some_and(|info| info.origin == catalog::EventOrigin::Operational);
        self.sandbox == event.sandbox
            && self.events.matches(event.event_type)
            && (operational || (self.scopes.matches(event.scope) && self.workspaces.matches(event.workspace)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn event_filters_parse_exact_namespace_and_wildcard() {
        let f = EventFilter::parse(&texts(&["signer.*", "signature_request.done"])).unwrap();
        assert!(f.matches("signer.done"));
        assert!(f.matches("signer.link_opened"));
        assert!(f.matches("signature_request.done"));
        assert!(!f.matches("signature_request.activated"));
        assert!(!f.matches("signerx.done"));
        assert_eq!(f.to_texts(), texts(&["signer.*", "signature_request.done"]));
        assert!(EventFilter::parse(&texts(&["*"])).unwrap().matches("anything.at_all"));
    }

    #[test]
    fn event_filters_refuse_with_the_valid_list() {
        assert_eq!(EventFilter::parse(&[]), Err(FilterError::Empty));
        assert_eq!(
            EventFilter::parse(&texts(&["*", "signer.done"])),
            Err(FilterError::WildcardNotAlone)
        );
        let err = EventFilter::parse(&texts(&["signer.signed"])).unwrap_err().to_string();
        assert!(err.contains("`signer.signed`"), "{err}");
        assert!(err.contains("signature_request.done"), "{err}");
        assert!(err.contains("signer.*"), "{err}");
        assert!(EventFilter::parse(&texts(&["contract.*"])).is_err());
    }

    #[test]
    fn tenant_types_and_their_namespaces_are_accepted_for_their_tenant_only() {
        let tenant = TenantTypes::new(vec!["invoice.paid".into(), "contract.renewed".into()]);
        let f = EventFilter::parse_for(&texts(&["invoice.*", "contract.renewed", "signer.done"]), &tenant).unwrap();
        assert!(f.matches("invoice.paid"));
        assert!(f.matches("invoice.voided"));
        assert!(f.matches("contract.renewed"));
        assert!(!f.matches("contract.ended"));
        assert!(!f.matches("invoicex.paid"));
        let err = EventFilter::parse_for(&texts(&["invoice.pain"]), &tenant)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("invoice.paid") && err.contains("contract.*") && err.contains("signer.done"),
            "{err}"
        );
        assert!(EventFilter::parse_for(&texts(&["billing.*"]), &tenant).is_err());
        assert!(EventFilter::parse(&texts(&["invoice.paid"])).is_err());
        assert!(EventFilter::parse(&texts(&["invoice.*"])).is_err());
        let stored = EventFilter::from_stored(&f.to_texts()).unwrap();
        assert_eq!(stored, f);
        assert!(EventFilter::from_stored(&texts(&["signer.signed"])).is_err());
    }

    #[test]
    fn duplicates_collapse() {
        let f = EventFilter::parse(&texts(&["signer.done", "signer.done"])).unwrap();
        assert_eq!(f.to_texts(), texts(&["signer.done"]));
    }

    #[test]
    fn subscription_matches_only_when_everything_matches() {
        let ws = WorkspaceId::generate();
        let other_ws = WorkspaceId::generate();
        let filter = SubscriptionFilter {
            sandbox: false,
            events: EventFilter::parse(&texts(&["signer.*"])).unwrap(),
            scopes: ScopeFilter::parse(&texts(&["public_api"])).unwrap(),
            workspaces: WorkspaceFilter::parse(&[ws.to_string()]).unwrap(),
        };
        let event = EventFacts {
            event_type: "signer.done",
            sandbox: false,
            scope: Scope::PublicApi,
            workspace: &ws,
        };
        assert!(filter.matches(&event));
        assert!(!filter.matches(&EventFacts { sandbox: true, ..event }));
        assert!(!filter.matches(&EventFacts {
            event_type: "signature_request.done",
            ..event
        }));
        assert!(!filter.matches(&EventFacts {
            scope: Scope::App,
            ..event
        }));
        assert!(!filter.matches(&EventFacts {
            workspace: &other_ws,
            ..event
        }));
    }

    #[test]
    fn operational_events_ignore_scope_and_workspace() {
        let ws = WorkspaceId::generate();
        let filter = SubscriptionFilter {
            sandbox: false,
            events: EventFilter::parse(&texts(&["webhook.*", "signer.done"])).unwrap(),
            scopes: ScopeFilter::parse(&texts(&["app"])).unwrap(),
            workspaces: WorkspaceFilter::parse(&[WorkspaceId::generate().to_string()]).unwrap(),
        };
        let event = EventFacts {
            event_type: "webhook.disabled",
            sandbox: false,
            scope: Scope::PublicApi,
            workspace: &ws,
        };
        assert!(filter.matches(&event));
        assert!(!filter.matches(&EventFacts {
            event_type: "signer.done",
            ..event
        }));
        assert!(!filter.matches(&EventFacts { sandbox: true, ..event }));
    }

    #[test]
    fn scopes_and_workspaces_refuse_unknown_values() {
        assert!(matches!(
            ScopeFilter::parse(&texts(&["api"])),
            Err(FilterError::UnknownScope(_))
        ));
        assert!(matches!(
            WorkspaceFilter::parse(&texts(&["sales"])),
            Err(FilterError::BadWorkspace(_))
        ));
    }
}
