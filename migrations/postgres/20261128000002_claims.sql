-- Entitlement claims: what an allowed decision verified, and until when. The
-- expiry check and the drift sweep re-verify them; a later allowed decision on
-- the same ticket supersedes them; a person reopening the ticket suspends them.
CREATE TABLE claims (
    id              TEXT PRIMARY KEY,
    evidence_id     TEXT NOT NULL REFERENCES evidence (id),
    source          TEXT NOT NULL,
    ticket          TEXT NOT NULL,
    policy          TEXT NOT NULL,
    policy_hash     TEXT NOT NULL,
    system          TEXT NOT NULL,
    kind            TEXT NOT NULL,
    subject         TEXT NOT NULL,
    object          TEXT NOT NULL,
    expect          TEXT NOT NULL,
    requested       TEXT NOT NULL,
    spec            TEXT NOT NULL,
    observation     TEXT NOT NULL,
    verified_at     BIGINT NOT NULL,
    valid_until     BIGINT,
    -- active | superseded | suspended | ended
    state           TEXT NOT NULL DEFAULT 'active',
    -- what the last reported drift was (NULL: none reported, or resolved)
    drift           TEXT,
    last_checked_at BIGINT,
    next_sweep_at   BIGINT NOT NULL,
    -- when the expiry check is due (valid_until, then its retries); NULL once done
    next_expiry_at  BIGINT,
    expiry_attempts BIGINT NOT NULL DEFAULT 0,
    -- a break-glass close: not yet verified, due for verification by then
    unverified_until BIGINT,
    lease_until     BIGINT
);
CREATE INDEX claims_ticket ON claims (source, ticket);
CREATE INDEX claims_evidence ON claims (evidence_id);
CREATE INDEX claims_expiry_due ON claims (next_expiry_at) WHERE next_expiry_at IS NOT NULL;
CREATE INDEX claims_sweep_due ON claims (next_sweep_at) WHERE state = 'active';
