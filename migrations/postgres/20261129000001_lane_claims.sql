-- An outbox lane's claim walks only that lane's due messages, in order, and
-- stops at its batch. The index it replaces led with the due time alone, so
-- the planner read every due message of every lane (and, through a bitmap
-- scan, every index entry not yet vacuumed) and sorted them, once per claim:
-- the costlier the bigger the backlog. The new index is built before the old
-- one is dropped: while it is built the outbox can be read, not written, and
-- the drop, which shuts out readers too, comes last, just before the commit.
CREATE INDEX outbox_lane_due ON outbox (source, next_attempt_at, created_at) WHERE state = 'pending';
DROP INDEX outbox_pending_only;
-- Room on each page for a row's next version: a claim, which changes no
-- indexed column, then updates the row in place (a HOT update) and adds no
-- entry to any index. Rows written before this keep their full pages.
ALTER TABLE outbox SET (fillfactor = 80);
ALTER TABLE deliveries SET (fillfactor = 80);
