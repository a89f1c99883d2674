-- A leaver's laptop is recalled: the open allocation records when the
-- recall was asked for (and by whom), until the laptop comes back.
ALTER TABLE allocations ADD COLUMN recall_at BIGINT;
ALTER TABLE allocations ADD COLUMN recall_by TEXT;
