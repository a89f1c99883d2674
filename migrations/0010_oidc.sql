-- Sign-in with the organisation's OpenID provider.
--
-- group_idp_groups: which provider groups (as the provider sends them, a
-- name or an object id) make a person a member of a Lanyard group; at each
-- SSO sign-in and re-check, the person's membership of every mapped group
-- is set from the provider's groups claim.
--
-- oidc_sign_ins: an SSO sign-in (refresh-token family) and the provider's
-- refresh token for it, sealed with the data dir's seal key, so that a
-- refresh can ask the provider again whether the person may still sign in.
CREATE TABLE group_idp_groups (
    group_name TEXT NOT NULL REFERENCES access_groups (name) ON DELETE CASCADE,
    idp_group  TEXT NOT NULL,
    PRIMARY KEY (group_name, idp_group)
);
CREATE INDEX group_idp_groups_idp ON group_idp_groups (idp_group);

CREATE TABLE oidc_sign_ins (
    family_id      TEXT PRIMARY KEY,
    username       TEXT NOT NULL,
    subject        TEXT NOT NULL,
    refresh_sealed TEXT,
    checked_at     BIGINT NOT NULL
);
