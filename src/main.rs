//! Command line: `outrigger [-c FILE] [-t]`.

use clap::Parser;
use outrigger::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc instead of glibc malloc: cheaper per-request allocations (headers, buffers). Built
/// without transparent huge pages (`no_thp`), which would back its eagerly committed arena
/// with 2 MiB pages and more than double the idle RSS.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    /// mimalloc's `mi_option_set` (linked from the same static library as the allocator).
    fn mi_option_set(option: std::os::raw::c_int, value: std::os::raw::c_long);
}

/// `mi_option_purge_delay` in mimalloc 2 and 3 (libmimalloc-sys 0.1.49, pinned in Cargo.lock).
const MI_OPTION_PURGE_DELAY: std::os::raw::c_int = 15;

/// Memory freed by closed connections goes back to the system at once (mimalloc's default, a
/// 10 ms delay, only acts on a later allocation by the same thread: an idle process kept it).
/// Costs a few `madvise` calls per second under load (BENCHMARKS.md).
fn return_freed_memory() {
    // SAFETY: sets one integer option; mimalloc allows it at any time.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

#[derive(Parser)]
#[command(
    name = "outrigger",
    version,
    about = "Caching reverse-proxy and web-server sidecar"
)]
struct Cli {
    /// Configuration file (YAML). Relative paths inside it resolve against its directory.
    #[arg(short = 'c', long = "config", default_value = "conf/outrigger.yaml")]
    config: PathBuf,
    /// Test the configuration and exit (0 when valid, 1 with FILE:LINE:COLUMN otherwise).
    #[arg(short = 't', long = "test")]
    test: bool,
}

fn main() -> ExitCode {
    return_freed_memory();
    let cli = Cli::parse();
    // Before anything slow: a SIGTERM during start-up must not meet its default action.
    if !cli.test {
        if let Err(e) = outrigger::signals::install() {
            eprintln!("outrigger: {e}");
            return ExitCode::from(1);
        }
    }
    let cfg = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("outrigger: {e}");
            if cli.test {
                eprintln!(
                    "outrigger: configuration file {} test failed",
                    cli.config.display()
                );
            }
            return ExitCode::from(1);
        }
    };
    if cli.test {
        for w in &cfg.warnings {
            eprintln!("outrigger: [warn] {w}");
        }
        eprintln!(
            "outrigger: the configuration file {} syntax is ok\noutrigger: configuration file {} test is successful",
            cli.config.display(),
            cli.config.display()
        );
        return ExitCode::SUCCESS;
    }
    match outrigger::server::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outrigger: {e}");
            ExitCode::from(1)
        }
    }
}
