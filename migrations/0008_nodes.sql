-- Several broker nodes on one database.
--
-- nodes: one row per node name, refreshed by its heartbeat; a node whose
-- heartbeat is old is gone, and its sessions are ended by whichever node
-- notices first.
CREATE TABLE nodes (
    name          TEXT PRIMARY KEY,
    quic_addr     TEXT NOT NULL,
    api_addr      TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL,
    agents        BIGINT NOT NULL DEFAULT 0,
    streams       BIGINT NOT NULL DEFAULT 0
);

-- Agent sessions, on whichever node holds them. A row is written when a
-- session opens and closed (ended_at) when it ends; kill_requested_at asks
-- the holding node to end it.
CREATE TABLE agent_sessions (
    id                 TEXT PRIMARY KEY,
    node               TEXT NOT NULL,
    username           TEXT NOT NULL,
    device             TEXT NOT NULL,
    kind               TEXT NOT NULL,
    remote             TEXT NOT NULL,
    sign_in            TEXT,
    since              BIGINT NOT NULL,
    kill_requested_at  BIGINT,
    ended_at           BIGINT,
    end_reason         TEXT
);
CREATE INDEX agent_sessions_live ON agent_sessions (ended_at, node);
CREATE INDEX agent_sessions_since ON agent_sessions (since);

-- Moves on in every transaction that changes who may reach what, so that
-- every node can tell it has missed a change.
CREATE TABLE access_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    generation  BIGINT NOT NULL
);
INSERT INTO access_state (id, generation) VALUES (1, 0);
