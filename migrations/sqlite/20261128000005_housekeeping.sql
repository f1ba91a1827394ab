-- Claims look only at pending rows: partial indexes keep finished rows, however
-- many, out of their way. Finished rows are deleted after a retention period.
CREATE INDEX deliveries_pending_only ON deliveries (received_at) WHERE state = 'pending';
CREATE INDEX outbox_pending_only ON outbox (next_attempt_at, created_at) WHERE state = 'pending';
CREATE INDEX deliveries_done ON deliveries (decided_at) WHERE state = 'done';
CREATE INDEX outbox_done ON outbox (done_at) WHERE state = 'done';
