//! The durable outbox: readings that cannot reach EdgeX yet wait on disk,
//! in order, and are delivered once it is back. See [`journal`].

pub mod journal;

pub use journal::{verify, FullPolicy, Journal, JournalError};
