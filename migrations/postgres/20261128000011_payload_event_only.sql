-- A delivery keeps the event it was parsed into, which is what every decision
-- reads, and its content key (a SHA-256 over its raw body, and its delivery id
-- where the helpdesk signs it), which is what deduplicates it. The raw bytes
-- were written at every ack and never read: without the signature that came
-- with them they prove nothing, and they were most of each ack's write.
-- Replicas of the previous release still write the column during a rolling
-- upgrade, so it stays, no longer required; a later release drops it.
ALTER TABLE delivery_payloads ALTER COLUMN body DROP NOT NULL;
