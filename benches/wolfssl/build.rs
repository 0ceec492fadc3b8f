//! Links the wolfSSL 5.9.4 static library: `COAPS_WOLFSSL_BENCH_LIB` (a directory holding an
//! already built `libwolfssl.a`) if set, else builds it once with `scripts/build-wolfssl.sh
//! --bench` (the script that also builds the interop peers) into
//! `$CARGO_TARGET_DIR/wolfssl-5.9.4-bench` (or `target/` beside this file).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../../scripts/build-wolfssl.sh");
    for var in ["COAPS_WOLFSSL_BENCH_LIB", "COAPS_WOLFSSL_SRC", "COAPS_WOLFSSL_BENCH_CONFIGURE", "CARGO_TARGET_DIR"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let lib_dir = match std::env::var_os("COAPS_WOLFSSL_BENCH_LIB") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
            let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| manifest.join("target"), PathBuf::from);
            let dest = target.join("wolfssl-5.9.4-bench");
            let status = Command::new("bash")
                .arg(manifest.join("../../scripts/build-wolfssl.sh"))
                .arg("--bench")
                .arg(&dest)
                .status()
                .expect("running build-wolfssl.sh (needs bash)");
            assert!(status.success(), "build-wolfssl.sh failed: see {}/*.log", dest.display());
            dest.join("src").join(".libs")
        }
    };
    assert!(
        lib_dir.join("libwolfssl.a").is_file(),
        "no libwolfssl.a in {} (COAPS_WOLFSSL_BENCH_LIB)",
        lib_dir.display()
    );
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=static=wolfssl");
    println!("cargo:rustc-link-lib=m");
    println!("cargo:rustc-link-lib=pthread");
}
