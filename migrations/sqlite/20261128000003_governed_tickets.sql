-- Once gated, always gated: every ticket a policy governed at any time, so a
-- close after its label or fields were edited away is still judged.
CREATE TABLE governed_tickets (
    source  TEXT NOT NULL,
    ticket  TEXT NOT NULL,
    policy  TEXT NOT NULL,
    since   BIGINT NOT NULL,
    PRIMARY KEY (source, ticket, policy)
);

-- The labels and fields last seen per ticket, so that edits of a governed
-- ticket's request can be recorded as evidence.
CREATE TABLE ticket_snapshots (
    source      TEXT NOT NULL,
    ticket      TEXT NOT NULL,
    snapshot    TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (source, ticket)
);
