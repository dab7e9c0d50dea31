//! OSA: the engine scientific archives run their validation hooks on.
//!
//! This facade re-exports [`osa_core`] (domain model, hook contract, ports, policies)
//! and, behind features, the storage backends of [`osa_sqlx`].

pub use osa_core::*;
pub use osa_sqlx as sqlx_backends;

#[cfg(feature = "sqlite")]
pub mod local;

#[cfg(feature = "http")]
pub mod http;
