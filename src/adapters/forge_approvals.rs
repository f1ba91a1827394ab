//! Approvals on GitHub, Gitea/Forgejo and GitLab issues: an approval command
//! in a comment that was never edited, or an approval label, with who added
//! it read from the issue's own label events (never from a webhook).

use serde_json::Value;

use super::{
    EffectError,
    forge::{Dialect, ForgeApi, same_instant},
    http, json_str,
};
use crate::domain::{Approval, ApprovalMarks, Observation, Person};

impl ForgeApi {
    /// Every item of a list under `path`: paged where the forge pages it.
    async fn list_all(&self, what: &str, path: &str, paged: bool) -> Result<Vec<Value>, EffectError> {
        let (size_param, size) = self.page_size();
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut all = Vec::new();
        for page in 1..=50 {
            let url = if paged {
                format!("{path}{sep}{size_param}={size}&page={page}")
            } else {
                path.to_string()
            };
            let response = http::send(what, self.request(reqwest::Method::GET, &url)).await?;
            let Value::Array(items) = http::json(what, response).await? else {
                return Err(EffectError::retryable(format!("{what}: the answer is not a list")));
            };
            let count = items.len();
            all.extend(items);
            if !paged || count < size {
                break;
            }
        }
        Ok(all)
    }

    /// The issue's approvals: unedited command comments, and approval labels
    /// still on the issue, each by whoever wrote or added it.
    pub async fn approvals(&self, key: &str, marks: &ApprovalMarks) -> Result<Vec<Approval>, EffectError> {
        let issue = self.issue_path(key)?;
        let (comments, author) = match self.dialect {
            Dialect::Gitlab => (
                format!("{issue}/notes?sort=asc&order_by=created_at"),
                "/author/username",
            ),
            _ => (format!("{issue}/comments"), "/user/login"),
        };
        let paged = self.dialect != Dialect::Gitea;
        let mut approvals = Vec::new();
        for c in self.list_all("list comments", &comments, paged).await? {
            let (Some(body), Some(who), Some(created), Some(updated)) = (
                json_str(&c, "/body"),
                json_str(&c, author),
                json_str(&c, "/created_at"),
                json_str(&c, "/updated_at"),
            ) else {
                continue;
            };
            let system_note = c.get("system").and_then(Value::as_bool).unwrap_or(false);
            if system_note || !marks.approves(body) || !same_instant(created, updated) {
                continue;
            }
            approvals.push(Approval {
                approver: Person {
                    id: who.to_string(),
                    email: json_str(&c, &author.replace("login", "email").replace("username", "email"))
                        .filter(|e| !e.is_empty())
                        .map(String::from),
                    name: None,
                },
                at: created.to_string(),
                via: format!(
                    "comment {} {:?}",
                    c.get("id").map(Value::to_string).unwrap_or_default(),
                    marks.command
                ),
            });
        }
        if let Some(label) = &marks.label {
            approvals.extend(self.label_approvals(&issue, label).await?);
        }
        Ok(approvals)
    }

    /// Who added `label` and when, from the label events; removing the label
    /// withdraws every approval it carried.
    async fn label_approvals(&self, issue: &str, label: &str) -> Result<Vec<Approval>, EffectError> {
        let (path, paged) = match self.dialect {
            Dialect::Github => (format!("{issue}/events"), true),
            Dialect::Gitea => (format!("{issue}/timeline"), true),
            Dialect::Gitlab => (format!("{issue}/resource_label_events"), true),
        };
        let mut events = self.list_all("list label events", &path, paged).await?;
        events.sort_by_key(|e| {
            json_str(e, "/created_at")
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis())
        });
        let mut approvals = Vec::new();
        for e in events {
            let (added, who) = match self.dialect {
                Dialect::Github => match json_str(&e, "/event") {
                    Some("labeled") => (true, json_str(&e, "/actor/login")),
                    Some("unlabeled") => (false, None),
                    _ => continue,
                },
                Dialect::Gitea => match json_str(&e, "/type") {
                    Some("label") => (json_str(&e, "/body") == Some("1"), json_str(&e, "/user/login")),
                    _ => continue,
                },
                Dialect::Gitlab => match json_str(&e, "/action") {
                    Some("add") => (true, json_str(&e, "/user/username")),
                    Some("remove") => (false, None),
                    _ => continue,
                },
            };
            if !json_str(&e, "/label/name").is_some_and(|n| n.eq_ignore_ascii_case(label)) {
                continue;
            }
            match (added, who, json_str(&e, "/created_at")) {
                (true, Some(who), Some(at)) => approvals.push(Approval {
                    approver: Person::id(who),
                    at: at.to_string(),
                    via: format!("label {label:?}"),
                }),
                (false, ..) => approvals.clear(),
                _ => {}
            }
        }
        Ok(approvals)
    }
}

impl ForgeApi {
    /// Whether `login` is an active member of `team`: a GitHub team
    /// (`org/team-slug`, membership `state: active`) or a GitLab group
    /// (`group/path`, including inherited members). A 404 means "not a
    /// member"; any other failure is an error, never "not a member".
    pub async fn team_membership(&self, team: &str, login: &str) -> Result<Observation, EffectError> {
        let (held, location) = match self.dialect {
            Dialect::Github => {
                let (org, slug) = team
                    .split_once('/')
                    .ok_or_else(|| EffectError::permanent(format!("team {team:?} is not org/team-slug")))?;
                let path = format!(
                    "/orgs/{}/teams/{}/memberships/{}",
                    http::segment(org),
                    http::segment(slug),
                    http::segment(login)
                );
                let membership = self.get_or_absent("read team membership", &path).await?;
                let active = membership.is_some_and(|m| json_str(&m, "/state") == Some("active"));
                (active, format!("{}/orgs/{org}/teams/{slug}", self.base))
            }
            Dialect::Gitlab => {
                let users = self
                    .get_or_absent("find user", &format!("/users?username={}", http::segment(login)))
                    .await?
                    .unwrap_or_default();
                let id = users
                    .as_array()
                    .and_then(|u| u.first())
                    .and_then(|u| u.get("id"))
                    .and_then(Value::as_u64);
                let active = match id {
                    None => false,
                    Some(id) => {
                        let path = format!("/groups/{}/members/all/{id}", http::segment(team));
                        let member = self.get_or_absent("read group membership", &path).await?;
                        member.is_some_and(|m| json_str(&m, "/state").is_none_or(|s| s == "active"))
                    }
                };
                (active, format!("{}/groups/{team}", self.base))
            }
            Dialect::Gitea => {
                return Err(EffectError::permanent("Gitea teams cannot be checked yet"));
            }
        };
        Ok(Observation {
            subject: login.to_string(),
            object: format!("team {team}"),
            exists: true,
            held: if held {
                [team.to_lowercase()].into()
            } else {
                Default::default()
            },
            location,
        })
    }

    /// A JSON answer, or `None` on 404.
    async fn get_or_absent(&self, what: &str, path: &str) -> Result<Option<Value>, EffectError> {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .map_err(|e| EffectError::retryable(format!("{what}: {}", e.without_url())))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = http::check(what, response)?;
        http::json(what, response).await.map(Some)
    }
}
