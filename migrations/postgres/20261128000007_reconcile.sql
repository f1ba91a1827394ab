-- The missed-delivery reconciler's watermark per source: the time up to which
-- the helpdesk's closes have been listed and judged. Shared by replicas; a
-- lease keeps two of them from listing the same source at once.
CREATE TABLE reconcile_watermarks (
    source       TEXT PRIMARY KEY,
    watermark    BIGINT NOT NULL,
    lease_until  BIGINT,
    updated_at   BIGINT NOT NULL
);
