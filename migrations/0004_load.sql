-- Load history: one row per broker node every 10 seconds, kept 30 days by
-- default. Counts are deltas over interval_ms; rates are computed on read.
CREATE TABLE load_samples (
    node         TEXT NOT NULL,
    at_ms        BIGINT NOT NULL,
    interval_ms  BIGINT NOT NULL,
    agents       BIGINT NOT NULL,
    streams      BIGINT NOT NULL,
    capacity     BIGINT NOT NULL,
    handshakes   BIGINT NOT NULL,
    signins      BIGINT NOT NULL,
    bytes_up     BIGINT NOT NULL,
    bytes_down   BIGINT NOT NULL,
    denials      TEXT NOT NULL,
    apps         TEXT NOT NULL,
    PRIMARY KEY (node, at_ms)
);
CREATE INDEX load_samples_at ON load_samples (at_ms);
