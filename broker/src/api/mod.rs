//! The admin API: JSON over HTTPS under `/api/v1`, bearer-token auth, one
//! module per resource; the routes in [`router`], what wraps every request
//! in [`middleware`], the extractors in [`extract`], the accept loop in
//! [`server`].

pub mod apps;
pub mod audit;
pub mod auth;
pub mod enrol;
pub mod error;
pub mod extract;
pub mod groups;
pub mod health;
pub mod laptops;
pub mod load;
pub mod metrics_http;
pub mod middleware;
pub mod openapi;
pub mod report;
pub mod requests;
pub mod router;
pub mod server;
pub mod sessions;
pub mod staff;
pub mod staff_removal;
pub mod tokens;

pub use extract::{JsonBody, QueryParams};
pub use router::router;
pub use server::serve;
