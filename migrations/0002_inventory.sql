-- Laptop inventory: allocations, the priority request queue, enrolled agent
-- devices, and what search needs. Invariants live here as well as in code.

-- One row per hand-over. A laptop has at most one open allocation.
CREATE TABLE allocations (
    id               TEXT PRIMARY KEY,
    asset_tag        TEXT NOT NULL REFERENCES laptops (asset_tag),
    username         TEXT NOT NULL REFERENCES staff (username),
    allocated_at     BIGINT NOT NULL,
    allocated_by     TEXT NOT NULL,
    request_id       TEXT,
    returned_at      BIGINT,
    received_by      TEXT,
    return_condition TEXT CHECK (return_condition IN ('in-stock', 'in-repair', 'lost', 'retired')),
    return_note      TEXT
);
CREATE UNIQUE INDEX allocations_one_open_per_laptop ON allocations (asset_tag) WHERE returned_at IS NULL;
CREATE INDEX allocations_by_person ON allocations (username);

-- Requests for a laptop. A person has at most one open request.
CREATE TABLE laptop_requests (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL REFERENCES staff (username),
    reason        TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL CHECK (status IN ('open', 'fulfilled', 'cancelled')),
    created_at    BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    fulfilled_at  BIGINT,
    allocation_id TEXT REFERENCES allocations (id)
);
CREATE UNIQUE INDEX laptop_requests_one_open_per_person ON laptop_requests (username) WHERE status = 'open';
CREATE INDEX laptop_requests_status ON laptop_requests (status, created_at);

-- Devices that hold an agent certificate: council laptops (by asset tag)
-- and personal devices (by owner). The fingerprint is the SHA-256 of the
-- device certificate.
CREATE TABLE enrolled_devices (
    fingerprint     TEXT PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('managed', 'personal')),
    asset_tag       TEXT REFERENCES laptops (asset_tag),
    owner           TEXT REFERENCES staff (username),
    enrolled_at     BIGINT NOT NULL,
    cert_expires_at BIGINT NOT NULL,
    last_seen_at    BIGINT,
    agent_version   TEXT,
    os              TEXT,
    revoked_at      BIGINT,
    revoke_reason   TEXT,
    CHECK ((kind = 'managed' AND asset_tag IS NOT NULL) OR (kind = 'personal' AND owner IS NOT NULL))
);
CREATE INDEX enrolled_devices_asset_tag ON enrolled_devices (asset_tag);
CREATE INDEX enrolled_devices_owner ON enrolled_devices (owner);

-- Free-text search: a lowercase key written by the broker, so that LIKE
-- behaves the same on SQLite (ASCII-only case folding) and PostgreSQL.
ALTER TABLE laptops ADD COLUMN search_key TEXT NOT NULL DEFAULT '';
UPDATE laptops SET search_key = LOWER(asset_tag || ' ' || serial || ' ' || model);
CREATE INDEX laptops_model ON laptops (model);

-- A laptop's history is read from the audit log by target.
CREATE INDEX audit_log_target ON audit_log (target);
