//! Spawning and controlling the `outrigger` binary under test.
#![allow(dead_code)]

use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// Path of the `outrigger` binary built by cargo for integration tests.
pub const OUTRIGGER_BIN: &str = env!("CARGO_BIN_EXE_outrigger");

/// How long `start_proxy*` waits for the listener to accept connections.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// A running `outrigger` process. Dropping it SIGKILLs and reaps the child
/// (the temp dir is removed afterwards).
pub struct Proxy {
    /// The port substituted for `{PORT}`.
    pub port: u16,
    /// A second free port substituted for `{PORT2}` (0 if unused).
    pub port2: u16,
    /// Temp dir holding the config, logs and any extra files.
    pub dir: tempfile::TempDir,
    /// `<dir>/outrigger.yaml`.
    pub config_path: PathBuf,
    /// The config text as written (after substitution).
    pub config: String,
    child: Child,
    exited: Option<ExitStatus>,
}

/// Extra options for [`start_proxy_opts`].
#[derive(Default)]
pub struct ProxyOpts<'a> {
    /// Files to write (relative to the temp dir) before starting.
    pub files: &'a [(&'a str, &'a [u8])],
    /// Extra environment variables for the child.
    pub env: &'a [(&'a str, &'a str)],
    /// Extra command-line arguments appended after `-c <config>`.
    pub args: &'a [&'a str],
    /// Do not wait for the port to accept connections (for tests that
    /// expect startup to fail); default false.
    pub no_wait: bool,
}

/// Write `contents` to `dir/rel`, creating parent directories.
pub fn write_file(dir: &Path, rel: &str, contents: &[u8]) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("create_dir_all {}: {e}", parent.display()));
    }
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Run the binary with `args` to completion (for `-t`, `--version`, ...).
pub fn run_outrigger(args: &[&str]) -> Output {
    Command::new(OUTRIGGER_BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {OUTRIGGER_BIN}: {e}"))
}

/// True once a TCP connect to `127.0.0.1:port` succeeds within `timeout`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
            .is_ok()
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start the proxy with `config_yaml` (`{PORT}`, `{PORT2}`, `{DIR}` are
/// substituted). Waits up to 15 s for `127.0.0.1:{PORT}` to accept.
pub fn start_proxy(config_yaml: &str) -> Proxy {
    start_proxy_opts(config_yaml, &ProxyOpts::default())
}

/// Like [`start_proxy`], but first writes `files` (relative to the temp
/// dir, e.g. a static root) .
pub fn start_proxy_with(config_yaml: &str, files: &[(&str, &[u8])]) -> Proxy {
    start_proxy_opts(
        config_yaml,
        &ProxyOpts {
            files,
            ..Default::default()
        },
    )
}

/// Fully configurable variant of [`start_proxy`].
pub fn start_proxy_opts(config_yaml: &str, opts: &ProxyOpts<'_>) -> Proxy {
    let dir = tempfile::Builder::new()
        .prefix("outrigger-test-")
        .tempdir()
        .expect("create temp dir");
    for (rel, contents) in opts.files {
        write_file(dir.path(), rel, contents);
    }
    let port = free_port();
    let port2 = if config_yaml.contains("{PORT2}") {
        let mut p = free_port();
        while p == port {
            p = free_port();
        }
        p
    } else {
        0
    };
    let dir_str = dir.path().to_str().expect("temp dir path is UTF-8");
    let config = config_yaml
        .replace("{PORT2}", &port2.to_string())
        .replace("{PORT}", &port.to_string())
        .replace("{DIR}", dir_str);
    let config_path = dir.path().join("outrigger.yaml");
    std::fs::write(&config_path, &config).expect("write outrigger.yaml");

    let stdout = File::create(dir.path().join("stdout.log")).expect("create stdout.log");
    let stderr = File::create(dir.path().join("stderr.log")).expect("create stderr.log");
    let child = Command::new(OUTRIGGER_BIN)
        .arg("-c")
        .arg(&config_path)
        .args(opts.args)
        .envs(opts.env.iter().copied())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {OUTRIGGER_BIN}: {e}"));

    let mut proxy = Proxy {
        port,
        port2,
        dir,
        config_path,
        config,
        child,
        exited: None,
    };
    if !opts.no_wait {
        proxy.wait_ready(STARTUP_TIMEOUT);
    }
    proxy
}

impl Proxy {
    /// `"127.0.0.1:PORT"`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Path of a file inside the temp dir.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Write a file inside the temp dir (creating parent dirs).
    pub fn write_file(&self, rel: &str, contents: &[u8]) {
        write_file(self.dir.path(), rel, contents);
    }

    /// Child process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send signal `sig` (e.g. `libc::SIGTERM`) to the child.
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        if rc != 0 {
            panic!(
                "kill({}, {sig}) failed: {}",
                self.child.id(),
                std::io::Error::last_os_error()
            );
        }
    }

    /// Non-blocking check whether the child has exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait on proxy child");
        }
        self.exited
    }

    /// Wait up to `timeout` for the child to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_exit_status() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Poll until the listener accepts; panics with the logs if the child
    /// exits first or `timeout` elapses.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_exit_status() {
                panic!(
                    "outrigger exited during startup ({st}) on port {}\n\
                     config:\n{}\n{}",
                    self.port,
                    self.config,
                    self.logs()
                );
            }
            if TcpStream::connect_timeout(
                &([127, 0, 0, 1], self.port).into(),
                Duration::from_millis(200),
            )
            .is_ok()
            {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "outrigger did not accept on 127.0.0.1:{} within {timeout:?}\n\
                     config:\n{}\n{}",
                    self.port,
                    self.config,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Captured stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read(self.dir.path().join("stdout.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Captured stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read(self.dir.path().join("stderr.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Captured stdout + stderr so far.
    pub fn logs(&self) -> String {
        format!(
            "--- outrigger stdout ---\n{}\n--- outrigger stderr ---\n{}",
            self.stdout(),
            self.stderr()
        )
    }

    /// Poll the logs until `needle` appears (true) or `timeout` elapses.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.logs().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap the child now (same as drop).
    pub fn kill(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `name` looks like a cache entry file (NGINX-style: the key's hash
/// in 32 hex digits). Temp files of in-progress fills are not entries.
fn is_entry_name(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Every committed entry file under `dir` with its size.
pub fn entry_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for de in rd.flatten() {
            let p = de.path();
            let Ok(md) = de.metadata() else { continue };
            if md.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_entry_name)
            {
                out.push((p, md.len()));
            }
        }
    }
    out
}
