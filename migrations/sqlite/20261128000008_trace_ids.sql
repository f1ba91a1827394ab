-- The trace a delivery arrived with (W3C trace-context trace id, or one made
-- at the ack), carried by the outbox messages its decision owes, so that a
-- webhook, its decision and the helpdesk calls it causes share one trace.
ALTER TABLE deliveries ADD COLUMN trace_id TEXT;
ALTER TABLE outbox ADD COLUMN trace_id TEXT;
