//! The YAML shape of a policy file: the only place it is written down.

use std::collections::BTreeMap;

use marked_yaml::Spanned;
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Defaults to the file name without extension.
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub description: String,
    /// `enforce` (default), `warn` or `dry-run`.
    #[schemars(with = "Option<String>")]
    pub mode: Option<Spanned<String>>,
    #[serde(rename = "match")]
    pub selector: Selector,
    /// Ticket fields that must be present and non-empty (normalised names).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub require_fields: Vec<Spanned<String>>,
    pub checks: Vec<CheckDef>,
    /// When the access ends: a template giving an RFC 3339 time or a duration
    /// from the close (`2h`, `3d`).
    #[schemars(with = "Option<String>")]
    pub expires: Option<Spanned<String>>,
    /// A close without an expiry is blocked.
    #[serde(default)]
    pub require_expiry: bool,
    /// The longest access the policy allows (`72h`).
    #[schemars(with = "Option<String>")]
    pub max_duration: Option<Spanned<String>>,
    /// What a drift does to the ticket: `reopen` (default) or `comment`.
    #[schemars(with = "Option<String>")]
    pub on_drift: Option<Spanned<String>>,
    /// Re-verification of this policy's claims.
    pub drift: Option<DriftDef>,
    /// Closes carrying this label are allowed at once and verified by a deadline.
    pub break_glass: Option<BreakGlassDef>,
    /// Before blocking on a mismatch, re-check with backoff for this long (`60s`).
    #[schemars(with = "Option<String>")]
    pub settle: Option<Spanned<String>>,
    /// Who must approve the request before it may close.
    pub approval: Option<ApprovalDef>,
    /// Rules for requesters that are not people (service accounts, CI jobs, agents).
    pub requester: Option<RequesterDef>,
}

/// The approval a policy needs, read from the helpdesk at decision time.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDef {
    /// Distinct approvers needed (default 1).
    #[schemars(with = "Option<u32>")]
    pub required: Option<Spanned<u32>>,
    /// Who may approve.
    pub approvers: ApproversDef,
    /// How a helpdesk account maps to its directory entry: a template over
    /// `approver.id`, `approver.email`, `approver.name` (default `{{ approver.id }}`).
    #[schemars(with = "Option<String>")]
    pub identity: Option<Spanned<String>>,
    /// Roles that must be different people: `requester`, `approver`, `closer`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub separate: Vec<Spanned<String>>,
    /// The comment command that approves (default `/approve`).
    #[schemars(with = "Option<String>")]
    pub command: Option<Spanned<String>>,
    /// A label that approves when an approver adds it.
    #[schemars(with = "Option<String>")]
    pub label: Option<Spanned<String>>,
    /// A field that approves when an approver sets it (Zendesk).
    #[schemars(with = "Option<String>")]
    pub field: Option<Spanned<String>>,
}

/// Who may approve: members of a group observed live in a directory, or a list.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproversDef {
    /// A configured LDAP or SCIM system.
    #[schemars(with = "Option<String>")]
    pub system: Option<Spanned<String>>,
    /// The group in that system.
    #[schemars(with = "Option<String>")]
    pub group: Option<Spanned<String>>,
    /// Or a team in the ticket's own helpdesk, observed live: a GitHub team
    /// (`org/team-slug`) or a GitLab group (`group/subgroup`).
    #[schemars(with = "Option<String>")]
    pub team: Option<Spanned<String>>,
    /// Or a fixed list of identities.
    #[schemars(with = "Option<Vec<String>>")]
    pub users: Option<Vec<Spanned<String>>>,
}

/// What a non-human requester must have.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequesterDef {
    /// Requester ids that are machines whatever the helpdesk says (`svc-*`, `*[bot]`).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub non_human: Vec<Spanned<String>>,
    /// The ticket field naming the accountable human owner.
    #[schemars(with = "Option<String>")]
    pub owner_field: Option<Spanned<String>>,
    /// A configured LDAP or SCIM system where the owner must be an active entry.
    #[schemars(with = "Option<String>")]
    pub owner_system: Option<Spanned<String>>,
    /// The owner must be one of the counted approvers.
    #[serde(default)]
    pub owner_approves: bool,
    /// A counted approver must share a directory group with the owner (be on
    /// the owner's team), observed in `owner_system`.
    #[serde(default)]
    pub approver_in_owner_group: bool,
}

/// An emergency path: allowed now, verified after the fact.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassDef {
    #[schemars(with = "String")]
    pub label: Spanned<String>,
    /// A duration (`4h`): by then the access must match the ticket.
    #[schemars(with = "String")]
    pub verify_within: Spanned<String>,
}

/// How often a policy's claims are re-verified.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DriftDef {
    /// A duration (`1h`, `30m`); the configured `drift.interval` otherwise.
    #[schemars(with = "Option<String>")]
    pub interval: Option<Spanned<String>>,
}

/// Which tickets a policy governs. Every listed condition must hold.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Source names; empty means any source.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Labels the ticket must carry (case-insensitive).
    #[serde(default)]
    pub labels: Vec<String>,
    /// Field values the ticket must have (case-insensitive).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckDef {
    pub name: Option<String>,
    /// A system or system group name from the config.
    #[schemars(with = "Option<String>")]
    pub system: Option<Spanned<String>>,
    /// Several systems or groups: the check must hold in every one of them.
    #[schemars(with = "Option<Vec<String>>")]
    pub systems: Option<Vec<Spanned<String>>>,
    /// A check kind that system's verifier knows.
    #[schemars(with = "String")]
    pub kind: Spanned<String>,
    /// Template strings rendered from the ticket (`{{ fields.database_role }}`).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub params: BTreeMap<String, Spanned<String>>,
    /// Template for the comma-separated items asked for (privileges, groups...).
    #[schemars(with = "Option<String>")]
    pub requested: Option<Spanned<String>>,
    /// `present`, `absent` or `exact`.
    #[schemars(with = "String")]
    pub expect: Spanned<String>,
}
