-- Fencing: each claim of an outbox message gets a new token; renewing the lease
-- and recording the result require it, so a replica that lost the lease can
-- neither extend it nor complete the message.
ALTER TABLE outbox ADD COLUMN lease_token TEXT;
