//! Identity: the CA, access tokens, passwords, TOTP and sealed secrets.

pub mod ca;
pub mod device;
pub mod failures;
pub mod oidc;
pub mod password;
pub mod sealed;
pub mod signin;
pub mod tokens;
pub mod totp;
