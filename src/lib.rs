pub mod document;
pub mod engine;
pub mod query;
pub mod searches;
pub mod text;
