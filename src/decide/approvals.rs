//! Reading a ticket's approvals for the gate: from the helpdesk's API with
//! closegate's own credentials (a signed payload for Standard Webhooks), and
//! when the request last changed from what closegate saw of the ticket.

use async_trait::async_trait;

use crate::{
    context::Context,
    domain::{ApprovalMarks, Observation, TicketEvent},
    gate::{ApprovalReader, ApprovalsRead, ApprovalsUnreadable},
};

pub(super) struct HelpdeskApprovals<'a> {
    pub ctx: &'a Context,
}

fn unreadable(message: impl std::fmt::Display) -> ApprovalsUnreadable {
    ApprovalsUnreadable {
        message: message.to_string(),
    }
}

#[async_trait]
impl ApprovalReader for HelpdeskApprovals<'_> {
    async fn read(&self, event: &TicketEvent, marks: &ApprovalMarks) -> Result<ApprovalsRead, ApprovalsUnreadable> {
        let approvals = self.adapter(event)?.approvals(event, marks).await.map_err(unreadable)?;
        Ok(ApprovalsRead {
            approvals,
            request_changed_at: self.request_changed_at(event).await?,
        })
    }

    async fn team_membership(
        &self,
        event: &TicketEvent,
        team: &str,
        login: &str,
    ) -> Result<Observation, ApprovalsUnreadable> {
        self.adapter(event)?
            .team_membership(team, login)
            .await
            .map_err(unreadable)
    }
}

impl HelpdeskApprovals<'_> {
    fn adapter(
        &self,
        event: &TicketEvent,
    ) -> Result<&std::sync::Arc<dyn crate::adapters::Adapter>, ApprovalsUnreadable> {
        self.ctx
            .sources
            .get(&event.ticket.source)
            .ok_or_else(|| unreadable(format!("source {} is not configured", event.ticket.source)))
    }

    /// When the request's fields last changed: as recorded from the ticket's
    /// edits, or now when the fields differ from the last ones seen (changed at
    /// a time closegate was not told, so no earlier approval counts).
    async fn request_changed_at(&self, event: &TicketEvent) -> Result<Option<String>, ApprovalsUnreadable> {
        let snapshot = self.ctx.store.snapshot_of(&event.ticket).await.map_err(unreadable)?;
        let Some((snapshot, changed_at)) = snapshot else {
            return Ok(None);
        };
        let seen: serde_json::Value = serde_json::from_str(&snapshot).unwrap_or_default();
        let fields = serde_json::to_value(&event.fields).unwrap_or_default();
        let at = if seen["fields"] != fields {
            Some(self.ctx.now_ms())
        } else {
            changed_at
        };
        Ok(at
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
    }
}
