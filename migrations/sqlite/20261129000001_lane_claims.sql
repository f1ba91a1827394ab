-- An outbox lane's claim walks only that lane's due messages, in order, and
-- stops at its batch, instead of reading the due messages of every lane.
CREATE INDEX outbox_lane_due ON outbox (source, next_attempt_at, created_at) WHERE state = 'pending';
DROP INDEX outbox_pending_only;
