-- A delivery's bytes and parsed event are written once, at the ack, apart from
-- its small state: claiming and finishing a delivery rewrite a short row
-- instead of the whole payload.
CREATE TABLE delivery_payloads (
    id     TEXT PRIMARY KEY REFERENCES deliveries (id) ON DELETE CASCADE,
    event  TEXT NOT NULL,
    body   TEXT NOT NULL
);
INSERT INTO delivery_payloads (id, event, body) SELECT id, event, body FROM deliveries;
ALTER TABLE deliveries DROP COLUMN event;
ALTER TABLE deliveries DROP COLUMN body;
