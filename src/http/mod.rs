//! The third layer: HTTP. Reading requests, building responses and pages, mapping every error to
//! a status code (in [`error`], and nowhere else), and the route table.

pub mod audit;
pub mod error;
pub mod pages;
pub mod request;
pub mod response;
pub mod routes;
