//! Deterministic network simulator. (STUB)
#![forbid(unsafe_code)]
