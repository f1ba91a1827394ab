-- The last state closegate saw per ticket, for helpdesks whose webhooks carry
-- only the new state (a follow-up on an already closed ticket is not a close).
CREATE TABLE ticket_states (
    source      TEXT NOT NULL,
    ticket      TEXT NOT NULL,
    state       TEXT NOT NULL,
    closed      BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (source, ticket)
);
