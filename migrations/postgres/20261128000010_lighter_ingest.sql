-- Every query on pending deliveries uses the partial index `deliveries_pending_only`;
-- the full (state, received_at) index only cost a write per ack and per state change.
DROP INDEX deliveries_pending;
