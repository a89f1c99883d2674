-- Ending what a person holds for good: a password reset or a disable
-- stamps tokens_valid_after, and an API token, refresh token or sign-in
-- issued at or before it is refused even if it was made in a race with
-- the change, or after an enable. Sign-ins ended lately are read by
-- revoked_at, so that live sessions on every node close.
ALTER TABLE staff ADD COLUMN tokens_valid_after BIGINT;
CREATE INDEX refresh_tokens_revoked_at ON refresh_tokens (revoked_at);
