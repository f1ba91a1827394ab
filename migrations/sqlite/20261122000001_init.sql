-- Deliveries: every authenticated webhook, stored before it is acknowledged.
CREATE TABLE deliveries (
    id           TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    delivery_id  TEXT NOT NULL,
    body_sha256  TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    event        TEXT NOT NULL,
    body         TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',
    outcome      TEXT,
    attempts     BIGINT NOT NULL DEFAULT 0,
    lease_until  BIGINT,
    last_error   TEXT,
    evidence_id  TEXT,
    decided_at   BIGINT,
    UNIQUE (source, delivery_id),
    UNIQUE (source, body_sha256)
);
CREATE INDEX deliveries_pending ON deliveries (state, received_at);

-- Evidence: one record per decision, each hashed together with the previous one.
CREATE TABLE evidence (
    id           TEXT PRIMARY KEY,
    seq          BIGINT NOT NULL UNIQUE,
    delivery     TEXT NOT NULL REFERENCES deliveries (id),
    source       TEXT NOT NULL,
    ticket       TEXT NOT NULL,
    verdict      TEXT NOT NULL,
    policy       TEXT,
    mode         TEXT NOT NULL,
    record       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);
CREATE INDEX evidence_ticket ON evidence (source, ticket, seq);

-- The end of the evidence chain; updating it serialises appends across replicas.
CREATE TABLE chain_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO chain_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Outbox: helpdesk calls caused by decisions, written in the same transaction.
CREATE TABLE outbox (
    id               TEXT PRIMARY KEY,
    idempotency_key  TEXT NOT NULL UNIQUE,
    source           TEXT NOT NULL,
    ticket           TEXT NOT NULL,
    evidence_id      TEXT NOT NULL REFERENCES evidence (id),
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending',
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_until      BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    done_at          BIGINT
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
