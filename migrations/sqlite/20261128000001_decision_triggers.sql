-- Evidence records name the trigger that caused them (a webhook delivery, a
-- synchronous gate check, an expiry, a sweep, a break-glass deadline, a manual
-- re-check) instead of requiring a delivery. Existing records keep their
-- delivery as the trigger id. SQLite cannot drop a foreign key in place, so the
-- table is rebuilt; the outbox, which references it, is rebuilt beside it so
-- that no row ever points at a dropped table.
CREATE TABLE evidence_new (
    id            TEXT PRIMARY KEY,
    seq           BIGINT NOT NULL UNIQUE,
    trigger_kind  TEXT NOT NULL,
    trigger_id    TEXT NOT NULL,
    source        TEXT NOT NULL,
    ticket        TEXT NOT NULL,
    verdict       TEXT NOT NULL,
    policy        TEXT,
    mode          TEXT NOT NULL,
    record        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL
);
INSERT INTO evidence_new (id, seq, trigger_kind, trigger_id, source, ticket, verdict, policy, mode,
                          record, created_at, prev_hash, hash)
    SELECT id, seq, 'webhook', delivery, source, ticket, verdict, policy, mode,
           record, created_at, prev_hash, hash FROM evidence;
CREATE TABLE outbox_new (
    id               TEXT PRIMARY KEY,
    idempotency_key  TEXT NOT NULL UNIQUE,
    source           TEXT NOT NULL,
    ticket           TEXT NOT NULL,
    evidence_id      TEXT NOT NULL REFERENCES evidence_new (id),
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending',
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_until      BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    done_at          BIGINT
);
INSERT INTO outbox_new SELECT id, idempotency_key, source, ticket, evidence_id, payload, state, attempts,
    next_attempt_at, lease_until, last_error, created_at, done_at FROM outbox;
DROP TABLE outbox;
DROP TABLE evidence;
-- Renaming rewrites outbox_new's reference to the new name.
ALTER TABLE evidence_new RENAME TO evidence;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX evidence_ticket ON evidence (source, ticket, seq);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
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
