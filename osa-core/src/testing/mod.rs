//! Shared test material and conformance suites (feature `testing`).
//!
//! Storage backends and runners call the suites defined here from their own tests, so
//! every implementation is held to the same behaviour.

pub mod blobs;
mod fixtures;
#[cfg(unix)]
pub mod runner;
pub mod storage;

pub use fixtures::*;
