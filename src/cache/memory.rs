//! SHIM until the cache split lands.
pub use super::storage::HotEntry as MemoryEntry;
