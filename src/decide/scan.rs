//! `drift scan`: every active claim matching a filter re-verified now, page by
//! page (memory stays bounded however many claims there are), one round trip
//! per system per page.

use super::{DecideError, RecheckSummary, recheck};
use crate::{
    context::Context,
    domain::{Trigger, TriggerKind},
    store::ClaimFilter,
};

/// Re-verifies the claims `filter` selects; `progress` is told how many were
/// checked after each page. With `dry_run` nothing is recorded.
pub async fn drift_scan(
    ctx: &Context,
    filter: &ClaimFilter,
    dry_run: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<RecheckSummary, DecideError> {
    let mut after = String::new();
    let mut summary = RecheckSummary::default();
    loop {
        let page = ctx
            .store
            .list_claims(filter, &after, ctx.settings.sweep_batch)
            .await
            .map_err(DecideError::Store)?;
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        let n = page.len() as u64;
        let trigger = Trigger::new(TriggerKind::Sweep, format!("scan-{}", uuid::Uuid::now_v7()));
        summary += recheck(ctx, trigger, page, dry_run).await?;
        progress(n);
    }
    Ok(summary)
}
