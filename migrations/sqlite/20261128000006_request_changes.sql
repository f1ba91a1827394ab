-- When a governed ticket's request fields last changed, as closegate saw it:
-- an approval given before then does not count.
ALTER TABLE ticket_snapshots ADD COLUMN fields_changed_at BIGINT;
