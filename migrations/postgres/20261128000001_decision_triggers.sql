-- Evidence records name the trigger that caused them (a webhook delivery, a
-- synchronous gate check, an expiry, a sweep, a break-glass deadline, a manual
-- re-check) instead of requiring a delivery. Existing records keep their
-- delivery as the trigger id.
ALTER TABLE evidence DROP CONSTRAINT IF EXISTS evidence_delivery_fkey;
ALTER TABLE evidence RENAME COLUMN delivery TO trigger_id;
ALTER TABLE evidence ADD COLUMN trigger_kind TEXT NOT NULL DEFAULT 'webhook';
ALTER TABLE evidence ALTER COLUMN trigger_kind DROP DEFAULT;
CREATE INDEX evidence_trigger ON evidence (trigger_kind, trigger_id);

-- Synchronous gate checks: a request id lives in its caller's namespace and is
-- bound to the question it asked (a repeat with another question is refused).
CREATE TABLE gate_checks (
    caller           TEXT NOT NULL,
    request_id       TEXT NOT NULL,
    question_sha256  TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (caller, request_id)
);
