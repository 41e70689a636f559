pub mod commands;
pub mod document;
pub mod engine;
pub mod query;
pub mod record;
pub mod searches;
pub mod text;
pub mod workload;
