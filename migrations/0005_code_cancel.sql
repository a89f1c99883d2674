-- Enrolment codes can be cancelled: marking a laptop lost or retired,
-- revoking it, or disabling a person voids the codes not yet used.
ALTER TABLE enrolment_codes ADD COLUMN cancelled_at BIGINT;
