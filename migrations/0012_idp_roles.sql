-- A role from the organisation's identity provider.
--
-- access_groups.grants_role: a group mapped from provider groups may grant
-- a role (admin, ict or viewer) to the people the provider puts in it; at
-- each SSO sign-in and re-check a person's role becomes the highest role
-- their mapped groups grant, when that is higher than their own.
--
-- staff.role_from_idp, staff.role_before_idp: set when the person's role
-- came from the provider: the role it gave, and the role they had before
-- (set by hand, or staff), which they drop back to once the provider no
-- longer grants more. NULL: the role is their own, and a sign-in never
-- lowers it. A role changed by hand since (no longer the one the provider
-- gave) is their own again.
ALTER TABLE access_groups ADD COLUMN grants_role TEXT
    CHECK (grants_role IN ('admin', 'ict', 'viewer'));
ALTER TABLE staff ADD COLUMN role_from_idp TEXT
    CHECK (role_from_idp IN ('admin', 'ict', 'viewer'));
ALTER TABLE staff ADD COLUMN role_before_idp TEXT
    CHECK (role_before_idp IN ('admin', 'ict', 'viewer', 'staff'));
