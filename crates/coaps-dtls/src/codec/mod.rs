//! Wire codec: a bounds-checked [`Reader`], the [`Codec`] trait and the registry enums.
//!
//! Every decoder is total: it returns [`InvalidMessage`] instead of panicking, and never
//! allocates more than the input it was given.

pub(crate) mod blocks;
mod enums;
mod reader;
pub use enums::*;
pub use reader::*;
#[cfg(test)]
pub(crate) mod fuzzing;
