//! Spawning and controlling the `outrigger` binary under test.

use std::fs::File;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, write_file};

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
    /// Temp dir holding the logs and, from `start_proxy*`, the config and any extra files.
    pub dir: tempfile::TempDir,
    /// What `-c` is given: `<dir>/outrigger.yaml` from `start_proxy*`.
    pub config_path: PathBuf,
    /// The config text as written (after substitution) or, for [`Proxy::spawn`], as read.
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
///
/// A config without a top-level `admin:` gets `admin: {listen: "127.0.0.1:<a free port>"}`
/// appended. Outrigger's default admin listener is `0.0.0.0:9145`, one port for the proxies of
/// all the tests running in parallel (and any other outrigger on the machine), and a taken admin
/// port stops outrigger's start.
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
    let mut config = config_yaml
        .replace("{PORT2}", &port2.to_string())
        .replace("{PORT}", &port.to_string())
        .replace("{DIR}", dir_str);
    if !config.lines().any(|l| l.starts_with("admin:")) {
        if !config.is_empty() && !config.ends_with('\n') {
            config.push('\n');
        }
        config.push_str(&format!(
            "admin: {{listen: \"127.0.0.1:{}\"}}\n",
            free_port()
        ));
    }
    let config_path = dir.path().join("outrigger.yaml");
    std::fs::write(&config_path, &config).expect("write outrigger.yaml");

    let mut cmd = Command::new(OUTRIGGER_BIN);
    cmd.arg("-c")
        .arg(&config_path)
        .args(opts.args)
        .envs(opts.env.iter().copied())
        .current_dir(dir.path());
    let mut proxy = Proxy::spawn(&mut cmd, dir, config_path, port, port2);
    if !opts.no_wait {
        proxy.wait_ready(STARTUP_TIMEOUT);
    }
    proxy
}

impl Proxy {
    /// Start `cmd`, an `outrigger` command line the caller has prepared (its arguments with
    /// `-c config_path`, its working directory and environment), listening on `port` (and
    /// `port2`, or 0), with its stdout and stderr in `stdout.log` and `stderr.log` of `dir`,
    /// which the Proxy keeps. Does not wait: see [`Proxy::wait_ready`]. [`start_proxy_opts`]
    /// is this with a config written into a fresh `dir`.
    pub fn spawn(
        cmd: &mut Command,
        dir: tempfile::TempDir,
        config_path: PathBuf,
        port: u16,
        port2: u16,
    ) -> Proxy {
        let stdout = File::create(dir.path().join("stdout.log")).expect("create stdout.log");
        let stderr = File::create(dir.path().join("stderr.log")).expect("create stderr.log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        // For messages only: the config as outrigger reads it (a relative path is relative to
        // the child's working directory).
        let config_file = match cmd.get_current_dir() {
            Some(cwd) => cwd.join(&config_path),
            None => config_path.clone(),
        };
        let config = std::fs::read_to_string(config_file).unwrap_or_default();
        Proxy {
            port,
            port2,
            dir,
            config_path,
            config,
            child,
            exited: None,
        }
    }

    /// Path of a file inside the temp dir.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Child process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send signal `sig` (e.g. `libc::SIGTERM`) to the child.
    ///
    /// Panics if the child has already been reaped: its pid may be another process's by now,
    /// such as the outrigger of a test running in parallel in this process.
    ///
    /// The signals outrigger handles are sent once the child catches them (5 s at most):
    /// outrigger installs its handlers first thing in `main`, and a signal sent before (just
    /// after the spawn) meets the default action, which kills it.
    pub fn signal(&self, sig: i32) {
        if let Some(st) = self.exited {
            panic!("signal {sig}: outrigger has already exited ({st})");
        }
        let handled = [
            libc::SIGTERM,
            libc::SIGQUIT,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGWINCH,
        ];
        if handled.contains(&sig) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !self.catches(sig) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // SAFETY: plain kill(2) on our own child's pid, not yet reaped (a zombie at worst).
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        if rc != 0 {
            panic!(
                "kill({}, {sig}) failed: {}",
                self.child.id(),
                std::io::Error::last_os_error()
            );
        }
    }

    /// Whether the child has a handler for signal `sig` (`SigCgt` of `/proc/PID/status`).
    fn catches(&self, sig: i32) -> bool {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (sig - 1)) != 0)
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
