//! Link layout of the release binary (memory, issue 6 S7). Two linker options for release
//! builds on x86_64 Linux, each used only when a probe program links (and runs) with it, so
//! another linker, toolchain or C library gets a plain build:
//!
//! - `--symbol-ordering-file=build/text-order.txt` (LLD, rustc's default linker on x86_64 Linux
//!   since Rust 1.90): the functions a training run executed (startup, MISS/HIT/BYPASS,
//!   compression, static files, revalidation; `benches/run --text-order` regenerates the list)
//!   are laid out together at the start of `.text`. The kernel maps a binary's pages 64 KiB
//!   around each page fault ("fault-around"), so functions used scattered over 6 MB of code made
//!   most of it resident: 5.0 MiB of text after a 10,000-key fill. Symbols missing from the list
//!   (a changed build) only lose their place, never the build.
//! - `-z pack-relative-relocs`: the relative relocations of a position-independent binary in
//!   the compact RELR form instead of 400 KiB of `.rela.dyn` read at startup. The binary then
//!   needs glibc 2.36 or later, hence the probe runs the program it linked.
//!
//! `OUTRIGGER_PLAIN_LINK=1` turns both off.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build/text-order.txt");
    for k in [
        "OUTRIGGER_PLAIN_LINK",
        "RUSTC_LINKER",
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER",
    ] {
        println!("cargo:rerun-if-env-changed={k}");
    }
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    if env("PROFILE") != "release"
        || env("TARGET") != "x86_64-unknown-linux-gnu"
        || env("OUTRIGGER_PLAIN_LINK") == "1"
    {
        return;
    }
    let probe = Probe::new();
    let order = Path::new(&env("CARGO_MANIFEST_DIR")).join("build/text-order.txt");
    let order = order.display().to_string();
    // `-Wl,` splits its argument at commas
    if Path::new(&order).is_file() && !order.contains(',') {
        let args = [
            format!("-Wl,--symbol-ordering-file={order}"),
            "-Wl,--no-warn-symbol-ordering".to_string(),
        ];
        if probe.links(&args, false) {
            for a in args {
                println!("cargo:rustc-link-arg-bins={a}");
            }
        }
    }
    let relr = ["-Wl,-z,pack-relative-relocs".to_string()];
    // the host must be the target to run the probe: the C library decides
    if env("HOST") == env("TARGET") && probe.links(&relr, true) {
        println!("cargo:rustc-link-arg-bins={}", relr[0]);
    }
}

/// Links an empty program the way this build links its binary (same rustc, linker and flags).
struct Probe {
    dir: PathBuf,
    rustc: String,
}

impl Probe {
    fn new() -> Probe {
        let dir = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into()));
        let _ = std::fs::write(dir.join("probe.rs"), "fn main() {}\n");
        Probe {
            dir,
            rustc: std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()),
        }
    }

    /// Whether the program links with `link_args` (and, if `run`, starts).
    fn links(&self, link_args: &[String], run: bool) -> bool {
        let out = self.dir.join("probe");
        let mut cmd = Command::new(&self.rustc);
        cmd.arg("--edition=2021")
            .arg("--crate-type=bin")
            .arg("--target=x86_64-unknown-linux-gnu")
            .arg("-o")
            .arg(&out)
            .arg(self.dir.join("probe.rs"));
        let linker = [
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER",
            "RUSTC_LINKER",
        ]
        .iter()
        .find_map(|k| std::env::var(k).ok());
        if let Some(l) = linker {
            cmd.arg(format!("-Clinker={l}"));
        }
        if let Ok(flags) = std::env::var("CARGO_ENCODED_RUSTFLAGS") {
            cmd.args(flags.split('\u{1f}').filter(|f| !f.is_empty()));
        }
        for a in link_args {
            cmd.arg(format!("-Clink-arg={a}"));
        }
        let linked = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        linked && (!run || Command::new(&out).status().is_ok_and(|s| s.success()))
    }
}
