//! Link layout of the release binary (memory, issue 6 S7). Two linker options, for release
//! builds linked by LLD (rustc's default linker on x86_64 Linux since Rust 1.90):
//!
//! - `--symbol-ordering-file=build/text-order.txt`: the functions a training run executed
//!   (startup, MISS/HIT/BYPASS, compression, static files, revalidation; `benches/text-order`
//!   regenerates the list) are laid out together at the start of `.text`. The kernel maps a
//!   binary's pages 64 KiB around each page fault ("fault-around"), so functions used scattered
//!   over 6 MB of code made most of it resident: 5.0 MiB of text after a 10,000-key fill.
//!   Symbols missing from the list (a changed build) only lose their place, never the build.
//! - `-z pack-relative-relocs`: the relative relocations of a position-independent binary in
//!   the compact RELR form (glibc 2.36+) instead of 400 KiB of `.rela.dyn` read at startup.
//!
//! `OUTRIGGER_PLAIN_LINK=1` turns both off.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build/text-order.txt");
    println!("cargo:rerun-if-env-changed=OUTRIGGER_PLAIN_LINK");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    if env("PROFILE") != "release"
        || env("TARGET") != "x86_64-unknown-linux-gnu"
        || env("OUTRIGGER_PLAIN_LINK") == "1"
        || !rustc_links_with_lld(&env("RUSTC"))
    {
        return;
    }
    let order = Path::new(&env("CARGO_MANIFEST_DIR")).join("build/text-order.txt");
    if order.is_file() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}

/// Whether rustc links x86_64 Linux binaries with its bundled LLD by default (1.90 and later)
/// and no other linker was configured.
fn rustc_links_with_lld(rustc: &str) -> bool {
    let configured = [
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER",
        "RUSTC_LINKER",
    ]
    .iter()
    .any(|k| std::env::var_os(k).is_some());
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if configured || flags.contains("linker") || flags.contains("fuse-ld") {
        return false;
    }
    let Ok(out) = Command::new(if rustc.is_empty() { "rustc" } else { rustc })
        .arg("-V")
        .output()
    else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
