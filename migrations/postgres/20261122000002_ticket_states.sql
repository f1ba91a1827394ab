-- The last state closegate saw per ticket, for helpdesks whose webhooks carry
-- only the new state (a follow-up on an already closed ticket is not a close).
-- `delivery` and `previous_closed` make a retried delivery see what it saw first.
CREATE TABLE ticket_states (
    source           TEXT NOT NULL,
    ticket           TEXT NOT NULL,
    state            TEXT NOT NULL,
    closed           BIGINT NOT NULL,
    delivery         TEXT NOT NULL,
    previous_closed  BIGINT,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (source, ticket)
);
