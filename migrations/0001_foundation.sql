-- Lanyard foundation: people, groups, apps, laptops, enrolment codes,
-- API tokens, refresh tokens and the hash-chained audit log.
--
-- Portable SQL: the same file runs on SQLite and PostgreSQL. Identifiers are
-- TEXT, times are BIGINT milliseconds since the Unix epoch, flags are BIGINT
-- 0/1. An applied migration is never edited: add a new file instead.

CREATE TABLE access_groups (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL
);

CREATE TABLE staff (
    username      TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    email         TEXT NOT NULL DEFAULT '',
    department    TEXT NOT NULL DEFAULT '',
    priority      BIGINT NOT NULL CHECK (priority BETWEEN 1 AND 3),
    is_admin      BIGINT NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    active        BIGINT NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    password_hash TEXT,
    totp_secret   TEXT,
    totp_last_step BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX staff_department ON staff (department);

CREATE TABLE staff_groups (
    username   TEXT NOT NULL REFERENCES staff (username) ON DELETE CASCADE,
    group_name TEXT NOT NULL REFERENCES access_groups (name),
    PRIMARY KEY (username, group_name)
);
CREATE INDEX staff_groups_group ON staff_groups (group_name);

CREATE TABLE apps (
    name        TEXT PRIMARY KEY,
    target      TEXT NOT NULL,
    device_kind TEXT NOT NULL CHECK (device_kind IN ('managed', 'personal', 'any')),
    created_at  BIGINT NOT NULL
);

CREATE TABLE app_groups (
    app_name   TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
    group_name TEXT NOT NULL REFERENCES access_groups (name),
    PRIMARY KEY (app_name, group_name)
);
CREATE INDEX app_groups_group ON app_groups (group_name);

CREATE TABLE laptops (
    asset_tag     TEXT PRIMARY KEY,
    serial        TEXT NOT NULL UNIQUE,
    model         TEXT NOT NULL,
    status        TEXT NOT NULL
                  CHECK (status IN ('in-stock', 'allocated', 'in-repair', 'lost', 'retired')),
    notes         TEXT NOT NULL DEFAULT '',
    purchase_date TEXT,
    warranty_end  TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX laptops_status ON laptops (status);

CREATE TABLE enrolment_codes (
    id          TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL CHECK (kind IN ('managed', 'personal')),
    asset_tag   TEXT REFERENCES laptops (asset_tag),
    username    TEXT REFERENCES staff (username),
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    consumed_at BIGINT,
    CHECK ((kind = 'managed' AND asset_tag IS NOT NULL AND username IS NULL)
        OR (kind = 'personal' AND username IS NOT NULL AND asset_tag IS NULL))
);

CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    username   TEXT REFERENCES staff (username) ON DELETE CASCADE,
    label      TEXT NOT NULL,
    is_admin   BIGINT NOT NULL CHECK (is_admin IN (0, 1)),
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);

CREATE TABLE refresh_tokens (
    id                 TEXT PRIMARY KEY,
    token_hash         TEXT NOT NULL UNIQUE,
    family_id          TEXT NOT NULL,
    username           TEXT NOT NULL REFERENCES staff (username) ON DELETE CASCADE,
    device_fingerprint TEXT NOT NULL,
    issued_at          BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    used_at            BIGINT,
    revoked_at         BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Append-only. Each row's hash covers its own fields and the previous row's
-- hash; audit_head holds the last sequence number and hash so that a deleted
-- tail is detected too.
CREATE TABLE audit_log (
    seq       BIGINT PRIMARY KEY,
    at_ms     BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at_ms);
CREATE INDEX audit_log_actor ON audit_log (actor);

CREATE TABLE audit_head (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
