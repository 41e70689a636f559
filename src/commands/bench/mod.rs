//! `bench`: the throughput and latency measurements of docs/operations.md
//! §4.3, one module per variant.
//!
//! | variant | flags | module |
//! |---|---|---|
//! | engine (offline) | *(none)*, `--searches-file`, `--input`, `--long-form` | [`engine`] |
//! | end to end through a broker | `--brokers` | [`kafka`] |
//! | catch-up by priority class | `--brokers --catch-up` | [`catchup`] |
//! | searches change | `--reload` | [`reload`] |
//! | hostile documents | `--adversarial` | [`adversarial`] |
//!
//! The broker variants share [`broker`]: topic creation, the bare-consumer
//! baselines every ratio is taken against, and the service timing.

pub mod adversarial;
mod broker;
pub mod catchup;
pub mod engine;
pub mod kafka;
pub mod reload;
