pub mod query;
pub mod text;
