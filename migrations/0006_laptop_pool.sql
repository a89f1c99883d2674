-- A pool laptop (contact-centre hot-desking) may be used by any active
-- member of its group, whoever holds it.
ALTER TABLE laptops ADD COLUMN pool_group TEXT REFERENCES access_groups (name);
