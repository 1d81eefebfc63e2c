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
