-- Roles beyond the admin bit: admin (everything), ict (laptops, requests,
-- enrolment codes, sessions; no access rules), viewer (read-only lists and
-- the dashboard), staff (only their own page). is_admin stays, kept equal
-- to role = 'admin' by every write, so that what reads it is unchanged.
ALTER TABLE staff ADD COLUMN role TEXT NOT NULL DEFAULT 'staff'
    CHECK (role IN ('admin', 'ict', 'viewer', 'staff'));
UPDATE staff SET role = 'admin' WHERE is_admin = 1;
