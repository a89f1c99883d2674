-- Tunnels: what certificate renewal needs.
--
-- From here on enrolled_devices.fingerprint is the SHA-256 of the device's
-- public key (its SubjectPublicKeyInfo), which stays the same when the
-- short-lived certificate is renewed. public_key holds the raw key
-- (base64) that renewals are issued for.
ALTER TABLE enrolled_devices ADD COLUMN public_key TEXT NOT NULL DEFAULT '';
CREATE INDEX refresh_tokens_revoked ON refresh_tokens (family_id, revoked_at);
