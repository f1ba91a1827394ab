//! Approvals read from the helpdesk's own API (GitHub faked from its
//! documented shapes), approver authority observed in the real OpenLDAP,
//! separation of duties, and owners of non-human requesters.

use serde_json::{Value, json};
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path, path_regex},
};

use crate::{directory::*, helpers::*};

const ISSUE: &str = "/repos/acme/access-requests/issues/42";
/// The requester in the GitHub fixture (a bot) and the person who closes.
const REQUESTER: &str = "reporting-bot";
const CLOSER: &str = "dba-alice";

/// A policy on `access-request` tickets whose one check holds for any active
/// LDAP person, followed by `rules` (its approval or requester block).
fn policy(rules: &str) -> String {
    format!(
        r#"
match: {{ labels: [access-request] }}
require_fields: [user]
checks:
  - name: account active
    system: corp-ldap
    kind: entry
    params: {{ user: "{{{{ fields.user }}}}" }}
    requested: ACTIVE
    expect: present
{rules}"#
    )
}

fn approval_by(group: &str) -> String {
    policy(&format!(
        "approval:\n  approvers: {{ system: corp-ldap, group: {group} }}\n  separate: [requester, approver, closer]\n  label: access-approved\n"
    ))
}

async fn app_with_policy(policy: &str) -> (TestApp, tempfile::TempDir) {
    let dir = policy_dir(&[("approved-access", policy)]);
    let app = spawn_app_with(Options {
        policies: Some(dir.path().to_path_buf()),
        systems: Some(ldap_system("corp-ldap")),
        intake_notes: true,
        ..Default::default()
    })
    .await;
    (app, dir)
}

fn comment(id: u64, login: &str, body: &str, created: &str, updated: &str) -> Value {
    json!({ "id": id, "user": { "login": login, "type": "User" }, "body": body,
            "created_at": created, "updated_at": updated, "author_association": "MEMBER" })
}

fn label_event(event: &str, login: &str, at: &str) -> Value {
    json!({ "id": 1, "event": event, "actor": { "login": login }, "created_at": at,
            "label": { "name": "access-approved", "color": "0e8a16" } })
}

/// The fake GitHub: these comments and label events, the issue still in
/// the close judged; posts and reopens answered.
async fn mount_github(app: &TestApp, comments: Vec<Value>, events: Vec<Value>) {
    app.helpdesk.reset().await;
    Mock::given(method("GET"))
        .and(path(format!("{ISSUE}/comments")))
        .respond_with(ResponseTemplate::new(200).set_body_json(comments))
        .mount(&app.helpdesk)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{ISSUE}/events")))
        .respond_with(ResponseTemplate::new(200).set_body_json(events))
        .mount(&app.helpdesk)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{ISSUE}/comments")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": 1 })))
        .mount(&app.helpdesk)
        .await;
    Mock::given(method("GET"))
        .and(path(ISSUE))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "state": "closed", "closed_at": CLOSED_AT })))
        .mount(&app.helpdesk)
        .await;
    Mock::given(method("PATCH"))
        .and(path_regex(r"^/repos/acme/access-requests/issues/42$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "state": "open" })))
        .mount(&app.helpdesk)
        .await;
}

/// Closes issue 42 for `user`, decides, delivers; the record and the comment posted.
async fn close(app: &TestApp, user: &str, extra_fields: &[(&str, &str)]) -> (String, Vec<String>, String) {
    let mut fields = vec![("user", user)];
    fields.extend_from_slice(extra_fields);
    let mut event = github_issue_event("closed", &fields, &["access-request"]);
    let delivery = uuid::Uuid::new_v4().to_string();
    // A new body each time: the same body again would be a redelivery.
    event["issue"]["title"] = json!(format!("Access request {delivery}"));
    // Closed after every approval the tests give (they are at most an hour ahead).
    let closed_at =
        (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    event["issue"]["closed_at"] = json!(closed_at);
    app.close_on_github(&delivery, &serde_json::to_vec(&event).unwrap())
        .await;
    let record = app.last_record("github", "acme/access-requests#42").await;
    let reasons = record.content().unwrap().decision.reasons;
    let comment = posted_comments(app).await.pop().unwrap_or_default();
    (record.verdict.to_string(), reasons, comment)
}

const AT: &str = "2026-11-22T09:00:00Z";

#[tokio::test]
async fn an_approval_counts_only_from_an_active_group_member_who_neither_asked_nor_closed() {
    let mut dir = Directory::open().await;
    let approver = dir.person("cg_approver").await;
    let outsider = dir.person("cg_outsider").await;
    let subject = dir.person("cg_subject").await;
    let locked = dir.person("cg_locked").await;
    let group = dir.group("cg_db_owners", &[&approver, &locked]).await;
    dir.lock(&locked).await;
    let (app, _policies) = app_with_policy(&approval_by(&group)).await;

    // A member's /approve: allowed, and the comment names approver and rule.
    mount_github(&app, vec![comment(1, &approver, "/approve", AT, AT)], vec![]).await;
    let (verdict, reasons, posted) = close(&app, &subject, &[]).await;
    assert_eq!(verdict, "allowed", "{reasons:?}");
    assert!(
        posted.contains("**Approval:**") && posted.contains(&approver),
        "{posted}"
    );
    assert!(
        posted.contains(&format!("active member of {group} on corp-ldap")),
        "{posted}"
    );
    assert!(
        posted.contains("**Duration:**") && posted.contains("**Removal:**"),
        "{posted}"
    );
    assert!(
        posted.contains("re-verified by the periodic drift sweep, next at 20"),
        "{posted}"
    );

    // Someone outside the group, a locked member, an edited comment, a
    // comment that only mentions the command, an approval given after the
    // close: none counts.
    let after = (chrono::Utc::now() + chrono::Duration::hours(3)).to_rfc3339();
    let cases = [
        (
            comment(8, &approver, "/approve", &after, &after),
            "after the close".to_string(),
        ),
        (comment(2, &outsider, "/approve", AT, AT), format!("{outsider}: ")),
        (comment(3, &locked, "/approve", AT, AT), format!("{locked}: ")),
        (
            comment(4, &approver, "/approve", AT, "2026-11-22T09:30:00Z"),
            "0 of 1".to_string(),
        ),
        (
            comment(5, &approver, "I will /approve later", AT, AT),
            "0 of 1".to_string(),
        ),
    ];
    for (c, expected) in cases {
        mount_github(&app, vec![c], vec![]).await;
        let (verdict, reasons, posted) = close(&app, &subject, &[]).await;
        assert_eq!(verdict, "blocked");
        assert!(reasons.iter().any(|r| r.contains(&expected)), "{expected}: {reasons:?}");
        assert!(posted.contains("approval: 0 of 1 needed"), "{posted}");
    }

    // Separation of duties: the requester approving their own request, or
    // the approver closing the ticket.
    mount_github(&app, vec![comment(6, REQUESTER, "/approve", AT, AT)], vec![]).await;
    let (verdict, reasons, _) = close(&app, &subject, &[]).await;
    assert_eq!(verdict, "blocked");
    assert!(
        reasons.iter().any(|r| r.contains("separation of duties")),
        "{reasons:?}"
    );
    mount_github(&app, vec![comment(7, CLOSER, "/approve", AT, AT)], vec![]).await;
    let (verdict, reasons, _) = close(&app, &subject, &[]).await;
    assert_eq!(verdict, "blocked");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains(&format!("{CLOSER}: {CLOSER} approved the request and closed it"))),
        "{reasons:?}"
    );

    // The approval label counts when a member added it, not an outsider, and
    // not once it was removed.
    let by = |who: &str| vec![label_event("labeled", who, AT)];
    mount_github(&app, vec![], by(&outsider)).await;
    assert_eq!(close(&app, &subject, &[]).await.0, "blocked");
    mount_github(&app, vec![], by(&approver)).await;
    assert_eq!(close(&app, &subject, &[]).await.0, "allowed");
    let removed = vec![
        label_event("labeled", &approver, AT),
        label_event("unlabeled", &outsider, "2026-11-22T09:10:00Z"),
    ];
    mount_github(&app, vec![], removed).await;
    assert_eq!(close(&app, &subject, &[]).await.0, "blocked");

    // The approvals API failing is "could not verify", never "no approvals needed".
    app.helpdesk.reset().await;
    Mock::given(method("GET"))
        .and(path(format!("{ISSUE}/comments")))
        .respond_with(ResponseTemplate::new(502))
        .mount(&app.helpdesk)
        .await;
    let event = github_issue_event("closed", &[("user", &subject)], &["access-request"]);
    app.post_github("issues", "api-down", &serde_json::to_vec(&event).unwrap())
        .await;
    app.decide_all().await;
    let record = app.last_record("github", "acme/access-requests#42").await;
    assert_eq!(record.verdict.as_str(), "blocked");
    let reasons = record.content().unwrap().decision.reasons;
    assert!(
        reasons.iter().any(|r| r.contains("approval: could not verify")),
        "{reasons:?}"
    );
    dir.clean().await;
}

#[tokio::test]
async fn an_approval_given_before_the_request_was_edited_does_not_count() {
    let mut dir = Directory::open().await;
    let approver = dir.person("cg_approver").await;
    let subject = dir.person("cg_subject").await;
    let other = dir.person("cg_other").await;
    let group = dir.group("cg_db_owners", &[&approver]).await;
    let (app, _policies) = app_with_policy(&approval_by(&group)).await;
    mount_github(&app, vec![comment(1, &approver, "/approve", AT, AT)], vec![]).await;

    // Opened, approved (AT, in the past), then the user asked for is changed.
    for (action, user) in [("opened", &subject), ("edited", &other)] {
        let event = github_issue_event(action, &[("user", user)], &["access-request"]);
        let delivery = uuid::Uuid::new_v4().to_string();
        app.post_github("issues", &delivery, &serde_json::to_vec(&event).unwrap())
            .await;
        app.settle_all().await;
    }
    let (verdict, reasons, _) = close(&app, &other, &[]).await;
    assert_eq!(verdict, "blocked");
    assert!(
        reasons.iter().any(|r| r.contains("before the request last changed")),
        "{reasons:?}"
    );
    // An approval after the change counts.
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    mount_github(&app, vec![comment(2, &approver, "/approve", &later, &later)], vec![]).await;
    assert_eq!(close(&app, &other, &[]).await.0, "allowed");
    dir.clean().await;
}

#[tokio::test]
async fn a_service_account_requester_needs_an_active_human_owner() {
    let mut dir = Directory::open().await;
    let owner = dir.person("cg_owner").await;
    let gone = dir.person("cg_gone").await;
    let subject = dir.person("cg_subject").await;
    dir.lock(&gone).await;
    let policy = policy("requester:\n  non_human: [\"svc-*\"]\n  owner_field: owner\n  owner_system: corp-ldap\n");
    let (app, _policies) = app_with_policy(&policy).await;
    mount_github(&app, vec![], vec![]).await;

    let (verdict, reasons, _) = close(&app, &subject, &[]).await;
    assert_eq!(verdict, "blocked");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("reporting-bot is a service account; field owner")),
        "{reasons:?}"
    );
    let (verdict, reasons, _) = close(&app, &subject, &[("owner", &gone)]).await;
    assert_eq!(verdict, "blocked");
    assert!(
        reasons.iter().any(|r| r.contains(&format!("owner {gone}"))),
        "{reasons:?}"
    );
    let (verdict, reasons, posted) = close(&app, &subject, &[("owner", &owner)]).await;
    assert_eq!(verdict, "allowed", "{reasons:?}");
    assert!(
        posted.contains(&format!("reporting-bot (service account), owner {owner}")),
        "{posted}"
    );
    dir.clean().await;
}

/// Bodies of the comments edited in place on the fake GitHub, by comment id path.
async fn edited_comments(app: &TestApp) -> Vec<(String, String)> {
    app.helpdesk
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "PATCH" && r.url.path().contains("/issues/comments/"))
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            (
                r.url.path().to_string(),
                body["body"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_governed_request_gets_one_intake_note_that_is_updated_in_place_as_it_is_fixed() {
    let mut dir = Directory::open().await;
    let approver = dir.person("cg_approver").await;
    let owner = dir.person("cg_owner").await;
    let subject = dir.person("cg_subject").await;
    let group = dir.group("cg_db_owners", &[&approver]).await;
    let rules = format!(
        "expires: \"{{{{ fields.expires }}}}\"\nrequire_expiry: true\nmax_duration: 30d\n\
         approval:\n  approvers: {{ system: corp-ldap, group: {group} }}\n  separate: [requester, approver, closer]\n\
         requester:\n  owner_field: owner\n  owner_system: corp-ldap\n"
    );
    let (app, _policies) = app_with_policy(&policy(&rules)).await;
    mount_github(&app, vec![], vec![]).await;
    Mock::given(method("PATCH"))
        .and(path_regex(r"^/repos/acme/access-requests/issues/comments/\d+$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": 501 })))
        .mount(&app.helpdesk)
        .await;
    let send = |action: &'static str, fields: Vec<(&'static str, String)>, labels: &'static [&'static str]| {
        let app = &app;
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let event = github_issue_event(action, &fields, labels);
            let delivery = uuid::Uuid::new_v4().to_string();
            let response = app
                .post_github("issues", &delivery, &serde_json::to_vec(&event).unwrap())
                .await;
            assert_eq!(response.status().as_u16(), 202);
            app.settle_all().await;
        }
    };

    // Opened without expiry and owner: one note naming both and the group.
    send("opened", vec![("user", subject.clone())], &["access-request"]).await;
    let posted = posted_comments(&app).await;
    assert_eq!(posted.len(), 1, "{posted:?}");
    let note = &posted[0];
    assert!(note.contains("governed by policy approved-access"), "{note}");
    assert!(
        note.contains("no expiry (field `expires`)") && note.contains("field owner must name"),
        "{note}"
    );
    assert!(note.contains(&format!("active members of the group {group}")), "{note}");
    assert!(note.contains("at most 30days"), "{note}");

    // The fix: the same note is edited in place, not a second one posted.
    mount_github(&app, vec![comment(501, "closegate-bot", note, AT, AT)], vec![]).await;
    Mock::given(method("PATCH"))
        .and(path_regex(r"^/repos/acme/access-requests/issues/comments/\d+$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": 501 })))
        .mount(&app.helpdesk)
        .await;
    let fixed = vec![
        ("user", subject.clone()),
        ("expires", "7d".to_string()),
        ("owner", owner.clone()),
    ];
    send("edited", fixed.clone(), &["access-request"]).await;
    assert!(posted_comments(&app).await.is_empty(), "no second note");
    let edited = edited_comments(&app).await;
    assert_eq!(edited.len(), 1, "{edited:?}");
    assert_eq!(edited[0].0, "/repos/acme/access-requests/issues/comments/501");
    assert!(edited[0].1.contains("Nothing is missing so far"), "{}", edited[0].1);
    assert!(edited[0].1.contains(&format!("Owner: {owner}")), "{}", edited[0].1);

    // An edit that changes nothing the note says: no write at all.
    send("edited", fixed, &["access-request", "team-data"]).await;
    assert_eq!(edited_comments(&app).await.len(), 1);
    assert!(posted_comments(&app).await.is_empty());
    let intakes = app
        .store
        .evidence_for_ticket("github", "acme/access-requests#42")
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.content().unwrap().finding == closegate::evidence::Finding::Intake)
        .count();
    assert_eq!(intakes, 2);
    dir.clean().await;
}

#[tokio::test]
async fn tickets_no_policy_governs_get_no_intake_note() {
    let (app, _policies) = app_with_policy(&policy("")).await;
    mount_github(&app, vec![], vec![]).await;
    let event = github_issue_event("opened", &[("user", "someone")], &["question"]);
    app.post_github("issues", "q-1", &serde_json::to_vec(&event).unwrap())
        .await;
    app.settle_all().await;
    assert!(posted_comments(&app).await.is_empty());
    assert!(
        app.store
            .evidence_for_ticket("github", "acme/access-requests#42")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_github_team_approver_counts_only_as_an_active_member_observed_through_the_api() {
    let team_policy =
        policy("approval:\n  approvers: { team: acme/db-owners }\n  separate: [requester, approver, closer]\n");
    let (app, _policies) = app_with_policy(&team_policy).await;
    let mut dir = Directory::open().await;
    let subject = dir.person("cg_subject").await;
    let membership = |login: &str, status: u16, body: Value| {
        Mock::given(method("GET"))
            .and(path(format!("/orgs/acme/teams/db-owners/memberships/{login}")))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
    };
    let mut judged = Vec::new();
    // An active member, an invited one, a stranger (404), and the API failing.
    for (login, status, body) in [
        ("tess", 200, json!({ "state": "active", "role": "member" })),
        ("pete", 200, json!({ "state": "pending", "role": "member" })),
        ("stan", 404, json!({ "message": "Not Found" })),
        ("vera", 502, json!({})),
    ] {
        mount_github(&app, vec![comment(1, login, "/approve", AT, AT)], vec![]).await;
        membership(login, status, body).mount(&app.helpdesk).await;
        let (verdict, reasons, _) = close(&app, &subject, &[]).await;
        judged.push((login, verdict, reasons.join(" | ")));
    }
    dir.clean().await;

    assert_eq!((judged[0].1.as_str(), judged[0].2.as_str()), ("allowed", ""));
    for (login, verdict, reasons) in &judged[1..3] {
        assert_eq!(verdict, "blocked");
        assert!(
            reasons.contains(&format!(
                "{login}: {login} on team acme/db-owners: missing acme/db-owners"
            )),
            "{reasons}"
        );
    }
    assert_eq!(judged[3].1, "blocked");
    assert!(
        judged[3].2.contains("vera: could not verify on github"),
        "{}",
        judged[3].2
    );
}

#[tokio::test]
async fn a_machine_requesters_approval_must_come_from_the_owners_team_when_the_policy_says_so() {
    let mut dir = Directory::open().await;
    let owner = dir.person("cg_owner").await;
    let teammate = dir.person("cg_teammate").await;
    let stranger = dir.person("cg_stranger").await;
    let subject = dir.person("cg_subject").await;
    let approvers = dir.group("cg_db_owners", &[&teammate, &stranger]).await;
    dir.group("cg_payments_team", &[&owner, &teammate]).await;
    let rules = format!(
        "approval:\n  approvers: {{ system: corp-ldap, group: {approvers} }}\n  separate: [requester, approver, closer]\n\
         requester:\n  owner_field: owner\n  owner_system: corp-ldap\n  approver_in_owner_group: true\n"
    );
    let (app, _policies) = app_with_policy(&policy(&rules)).await;

    mount_github(&app, vec![comment(1, &teammate, "/approve", AT, AT)], vec![]).await;
    let (on_team, on_team_reasons, _) = close(&app, &subject, &[("owner", &owner)]).await;
    mount_github(&app, vec![comment(2, &stranger, "/approve", AT, AT)], vec![]).await;
    let (off_team, off_team_reasons, _) = close(&app, &subject, &[("owner", &owner)]).await;
    dir.clean().await;

    assert_eq!(on_team, "allowed", "{on_team_reasons:?}");
    assert_eq!(off_team, "blocked");
    assert!(
        off_team_reasons.iter().any(|r| r.contains(&format!(
            "no counted approver shares a directory group with the owner {owner}"
        ))),
        "{off_team_reasons:?}"
    );
}
