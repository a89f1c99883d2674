-- Apps by their usual names, and UDP apps.
--
-- protocol: how the app is reached, 'tcp' (streams) or 'udp' (datagrams).
-- flow_idle_secs: a UDP app's flow (one local peer's datagrams) ends after
-- this long without a datagram either way.
-- app_hosts: the names an app is known by (lowercased DNS names, at most
-- 16 an app), which the agent's local proxy and PAC file answer for. A
-- name belongs to one app only, so a request names one app.
ALTER TABLE apps ADD COLUMN protocol TEXT NOT NULL DEFAULT 'tcp' CHECK (protocol IN ('tcp', 'udp'));
ALTER TABLE apps ADD COLUMN flow_idle_secs BIGINT NOT NULL DEFAULT 300;

CREATE TABLE app_hosts (
    host      TEXT PRIMARY KEY,
    app_name  TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE
);
CREATE INDEX app_hosts_app ON app_hosts (app_name);
