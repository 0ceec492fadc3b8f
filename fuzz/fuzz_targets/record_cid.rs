//! Fuzz target `record_cid`: see `coaps_fuzz::targets::record_cid`.
//!
//! Under cargo-fuzz (`--cfg fuzzing`) this is a libFuzzer target; otherwise it is a plain
//! binary that runs the same function over files, directories or stdin (corpus replay).
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| coaps_fuzz::targets::record_cid(data));

#[cfg(not(fuzzing))]
fn main() {
    coaps_fuzz::replay_main(coaps_fuzz::targets::record_cid);
}
