//! End-to-end: the shipped Alertmanager sidecar (`conf/outrigger.yaml` + `static/`) in front of a
//! real Alertmanager, checked with the raw client and rendered by headless Chromium.
//!
//! Debian's `prometheus-alertmanager` ships no web UI, so it is started with
//! `--web.ui-path=tests/e2e_ui`: a small UI page whose `script.js` renders the status, alerts and
//! silences with a matcher filter box. The sidecar overrides `/script.js` with `static/script.js`,
//! the "patched" copy of that script (other matcher examples, a visible marker), as the seed did
//! with NGINX's `location = /script.js`.
//!
//! Needs `prometheus-alertmanager` and `chromium` (Debian packages). Without them the test is
//! skipped with a message, except under CI (`CI` set), where it fails: `.ci/run` must install them.

use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::common::*;
use serde_json::{json, Value};

const STARTUP: Duration = Duration::from_secs(20);
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(40);
const PACKAGES: &str = "prometheus-alertmanager chromium";

// ---------------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------------

struct Tools {
    alertmanager: PathBuf,
    chromium: PathBuf,
}

/// An executable `name` on `PATH` (or in /usr/bin, which `PATH` may lack under some runners).
fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// The binaries, or `None` (skip) when one is missing outside CI; under CI a missing binary fails.
fn tools() -> Option<Tools> {
    let alertmanager = find_binary("prometheus-alertmanager");
    let chromium = find_binary("chromium");
    let missing: Vec<&str> = [
        ("prometheus-alertmanager", &alertmanager),
        ("chromium", &chromium),
    ]
    .iter()
    .filter(|(_, p)| p.is_none())
    .map(|(n, _)| *n)
    .collect();
    if missing.is_empty() {
        return Some(Tools {
            alertmanager: alertmanager.unwrap(),
            chromium: chromium.unwrap(),
        });
    }
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!(
            "e2e_alertmanager: {} not found, and CI is set: .ci/run must install them \
             with `apt-get install -y {PACKAGES}`",
            missing.join(" and ")
        );
    }
    println!(
        "e2e_alertmanager skipped: {} not found; install prometheus-alertmanager chromium \
         (`apt-get install -y {PACKAGES}`) to run it",
        missing.join(" and ")
    );
    None
}

// ---------------------------------------------------------------------------------------------
// Processes: each in its own process group, SIGKILLed (group and all) on drop or timeout
// ---------------------------------------------------------------------------------------------

fn kill_group(child: &mut Child) {
    // SAFETY: kill(2) on the process group of our own child (spawned with process_group(0), so
    // its pgid is its pid); harmless ESRCH if it is already gone.
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// A long-running process (Alertmanager, outrigger) with its output in `log`.
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Daemon {
        let out = File::create(&log).expect("create log");
        let err = out.try_clone().expect("clone log handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {name} ({cmd:?}): {e}"));
        Daemon { name, child, log }
    }

    fn logs(&self) -> String {
        format!("--- {} log ---\n{}", self.name, read_lossy(&self.log))
    }

    /// Poll `ready` until true; `Err(logs)` if the process exits first or `STARTUP` elapses.
    fn wait_until(&mut self, mut ready: impl FnMut() -> bool) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Err(format!(
                    "{} exited during startup ({st})\n{}",
                    self.name,
                    self.logs()
                ));
            }
            if ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} not ready within {STARTUP:?}\n{}",
                    self.name,
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// Start a daemon on a fresh free port, retrying (a free port can be taken before it is bound).
fn start_on_free_port(
    name: &str,
    mut start: impl FnMut(u16) -> Daemon,
    ready: impl Fn(u16) -> bool,
) -> (Daemon, u16) {
    let mut errors = Vec::new();
    for _ in 0..3 {
        let port = free_port();
        let mut d = start(port);
        match d.wait_until(|| ready(port)) {
            Ok(()) => return (d, port),
            Err(e) => errors.push(e),
        }
    }
    panic!("{name} did not start:\n{}", errors.join("\n"));
}

/// Run a command to completion with stdout/stderr in files, killed (with its whole process
/// group) after `timeout`. Returns the exit status, stdout and stderr.
fn run_bounded(
    cmd: &mut Command,
    timeout: Duration,
    dir: &Path,
    tag: &str,
) -> (Option<ExitStatus>, String, String) {
    let out_path = dir.join(format!("{tag}.stdout"));
    let err_path = dir.join(format!("{tag}.stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break Some(st);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Also reaps helper processes (Chromium's zygote, GPU and renderer processes) left behind.
    kill_group(&mut child);
    (status, read_lossy(&out_path), read_lossy(&err_path))
}

// ---------------------------------------------------------------------------------------------
// Alertmanager and the sidecar
// ---------------------------------------------------------------------------------------------

const ALERTMANAGER_YML: &str = "\
route:
  receiver: blackhole
  group_wait: 1s
receivers:
  - name: blackhole
";

fn ui_dir() -> PathBuf {
    Path::new(MANIFEST_DIR).join("tests").join("e2e_ui")
}

fn http_ok(port: u16, path: &str) -> bool {
    try_request(port, &build_request("GET", path, &[], b""))
        .map(|r| r.status == 200)
        .unwrap_or(false)
}

fn start_alertmanager(bin: &Path, work: &Path) -> (Daemon, u16) {
    let config = work.join("alertmanager.yml");
    std::fs::write(&config, ALERTMANAGER_YML).unwrap();
    let mut attempt = 0;
    start_on_free_port(
        "prometheus-alertmanager",
        |port| {
            attempt += 1;
            let storage = work.join(format!("am-data-{attempt}"));
            let mut cmd = Command::new(bin);
            cmd.arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.path={}", storage.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address=")
                .arg(format!("--web.ui-path={}/", ui_dir().display()))
                .current_dir(work);
            println!("starting {cmd:?}");
            Daemon::spawn(
                "prometheus-alertmanager",
                &mut cmd,
                work.join(format!("alertmanager-{attempt}.log")),
            )
        },
        |port| http_ok(port, "/-/ready"),
    )
}

/// outrigger on a copy of the shipped `conf/` + `static/`, configured through the environment as
/// in the pod, started from an unrelated working directory.
fn start_sidecar(work: &Path, alertmanager_addr: &str) -> (Daemon, u16) {
    copy_shipped(work);
    let cwd = work.join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let mut attempt = 0;
    start_on_free_port(
        "outrigger",
        |port| {
            attempt += 1;
            let mut cmd = Command::new(OUTRIGGER_BIN);
            cmd.arg("-c")
                .arg(work.join("conf").join("outrigger.yaml"))
                .env("OUTRIGGER_LISTEN", format!("127.0.0.1:{port}"))
                .env(
                    "OUTRIGGER_ADMIN_LISTEN",
                    format!("127.0.0.1:{}", free_port()),
                )
                .env("ALERTMANAGER_ADDR", alertmanager_addr)
                .env("OUTRIGGER_CACHE_DIR", work.join(format!("cache-{attempt}")))
                .env_remove("OUTRIGGER_PID_FILE")
                .current_dir(&cwd);
            println!("starting {cmd:?}");
            Daemon::spawn(
                "outrigger",
                &mut cmd,
                work.join(format!("outrigger-{attempt}.log")),
            )
        },
        |port| http_ok(port, "/-/ready"),
    )
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn describe(what: &str, r: &Response) -> String {
    format!(
        "{what}: status {} headers {:?}\nbody: {}",
        r.status,
        r.headers,
        r.text().chars().take(2000).collect::<String>()
    )
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `GET` through the proxy, expecting 200 and a JSON body.
fn get_json(port: u16, path: &str, logs: &dyn Fn() -> String) -> (Response, Value) {
    let r = get(port, path);
    assert_eq!(r.status, 200, "{}\n{}", describe(path, &r), logs());
    let v = r.json();
    (r, v)
}

fn silence_ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("silences are not a list: {list}"))
        .iter()
        .map(|s| s["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn alert_names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("alerts are not a list: {list}"))
        .iter()
        .map(|a| {
            a["labels"]["alertname"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// Run headless Chromium on `url` with `extra` arguments and a fresh profile.
fn chromium(
    bin: &Path,
    url: &str,
    extra: &[String],
    work: &Path,
    tag: &str,
) -> (Option<ExitStatus>, String, String) {
    let profile = work.join(format!("chromium-profile-{tag}"));
    std::fs::create_dir_all(&profile).unwrap();
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--no-proxy-server",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg("--virtual-time-budget=5000")
    .args(extra)
    .arg(url)
    .current_dir(work);
    run_bounded(&mut cmd, CHROMIUM_TIMEOUT, work, tag)
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[test]
fn alertmanager_ui_and_api_through_the_shipped_sidecar() {
    let t0 = Instant::now();
    let Some(tools) = tools() else {
        return;
    };
    let tmp = tempfile::Builder::new()
        .prefix("outrigger-e2e-alertmanager-")
        .tempdir()
        .expect("temp dir");
    let work = tmp.path();

    // 1. Alertmanager with the test UI, 2. the sidecar on the shipped config in front of it.
    let (am, am_port) = start_alertmanager(&tools.alertmanager, work);
    let (sidecar, port) = start_sidecar(work, &format!("127.0.0.1:{am_port}"));
    let logs = || format!("{}\n{}", sidecar.logs(), am.logs());
    println!(
        "alertmanager on 127.0.0.1:{am_port}, outrigger on 127.0.0.1:{port} ({:.1?})",
        t0.elapsed()
    );

    let ui_index = std::fs::read(ui_dir().join("index.html")).unwrap();
    let ui_script = std::fs::read(ui_dir().join("script.js")).unwrap();
    let override_script = std::fs::read(work.join("static").join("script.js")).unwrap();
    assert!(
        ui_script != override_script,
        "static/script.js must differ from tests/e2e_ui/script.js"
    );

    // 3a. `/` is Alertmanager's UI page, proxied (not cached).
    let r = get(port, "/");
    assert_eq!(r.status, 200, "{}\n{}", describe("GET /", &r), logs());
    assert!(
        r.body == ui_index,
        "GET / through the sidecar is not tests/e2e_ui/index.html\n{}",
        describe("GET /", &r)
    );
    assert!(!r.has_header("x-proxy-cache"), "{:?}", r.headers);

    // 3b. `/script.js`: Alertmanager serves the UI's own script; the sidecar serves the override.
    let direct = get(am_port, "/script.js");
    assert_eq!(
        direct.status,
        200,
        "{}",
        describe("GET /script.js (direct)", &direct)
    );
    assert!(
        direct.body == ui_script,
        "Alertmanager does not serve tests/e2e_ui/script.js"
    );
    for path in ["/script.js", "/%73cript.js"] {
        let r = get(port, path);
        assert_eq!(r.status, 200, "{}\n{}", describe(path, &r), logs());
        assert!(
            r.body == override_script,
            "{path} through the sidecar is not static/script.js (the UI's own script: {})\n{}",
            r.body == ui_script,
            describe(path, &r)
        );
        assert_eq!(
            r.header("cache-control"),
            Some("max-age=7776000"),
            "{:?}",
            r.headers
        );
        assert_expires_in_90_days(&r);
    }
    // What Chromium asks for: zstd, decoded back to the same override bytes.
    let r = get_with(
        port,
        "/script.js",
        &[("Accept-Encoding", "gzip, deflate, br, zstd")],
    );
    assert_eq!(r.status, 200, "{}", describe("GET /script.js (zstd)", &r));
    assert_eq!(
        r.header("content-encoding"),
        Some("zstd"),
        "{:?}",
        r.headers
    );
    let decoded = zstd::decode_all(&r.body[..]).expect("zstd body decodes");
    assert!(
        decoded == override_script,
        "zstd /script.js decodes to other bytes"
    );

    // 3c. The API: Alertmanager's status, whatever Host the client (an Ingress) sends. The
    // micro-cache key ignores Host, so these requests bypass it (`Cache-Control` is the seed's
    // proxy_cache_bypass) to make each one reach Alertmanager.
    let direct = get(am_port, "/api/v2/status");
    assert_eq!(
        direct.status,
        200,
        "{}",
        describe("status (direct)", &direct)
    );
    let version = direct.json()["versionInfo"]["version"]
        .as_str()
        .expect("versionInfo.version")
        .to_string();
    assert!(!version.is_empty());
    for host in [
        "localhost",
        "alertmanager.monitoring.example:8080",
        "127.0.0.1",
    ] {
        let r = get_with(
            port,
            "/api/v2/status",
            &[("Host", host), ("Cache-Control", "no-cache")],
        );
        assert_eq!(
            r.status,
            200,
            "Host {host}: {}\n{}",
            describe("status", &r),
            logs()
        );
        let v = r.json();
        assert_eq!(
            v["versionInfo"]["version"],
            version.as_str(),
            "Host {host}: {v}"
        );
        assert_eq!(v["cluster"]["status"], "disabled", "Host {host}: {v}");
        assert_eq!(r.header("x-proxy-cache"), Some("BYPASS"), "{:?}", r.headers);
    }
    // 3d. A new silence is visible at once although the list was in the micro-cache.
    let (first, before) = get_json(port, "/api/v2/silences", &logs);
    let primed_at = Instant::now();
    assert_eq!(
        first.header("x-proxy-cache"),
        Some("MISS"),
        "{:?}",
        first.headers
    );
    let (again, _) = get_json(port, "/api/v2/silences", &logs);
    if primed_at.elapsed() < Duration::from_millis(800) {
        assert_eq!(
            again.header("x-proxy-cache"),
            Some("HIT"),
            "the list should be in the 1 s micro-cache: {:?}",
            again.headers
        );
    }
    let now = SystemTime::now();
    let comment = format!(
        "e2e: maintenance window through outrigger {}",
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let silence = json!({
        "matchers": [
            {"name": "alertname", "value": "E2EDiskFull", "isRegex": false, "isEqual": true},
            {"name": "namespace", "value": "prod-.*", "isRegex": true, "isEqual": true}
        ],
        "startsAt": rfc3339(now),
        "endsAt": rfc3339(now + Duration::from_secs(3600)),
        "createdBy": "e2e-alertmanager-test",
        "comment": comment,
    });
    let body = serde_json::to_vec(&silence).unwrap();
    let r = send(
        port,
        "POST",
        "/api/v2/silences",
        &[("Content-Type", "application/json")],
        &body,
    );
    assert_eq!(
        r.status,
        200,
        "{}\n{}",
        describe("POST /api/v2/silences", &r),
        logs()
    );
    let silence_id = r.json()["silenceID"]
        .as_str()
        .unwrap_or_else(|| panic!("no silenceID: {}", r.text()))
        .to_string();
    assert!(!silence_ids(&before).contains(&silence_id));
    let (r, after) = get_json(port, "/api/v2/silences", &logs);
    assert!(
        silence_ids(&after).contains(&silence_id),
        "GET /api/v2/silences right after the POST does not list silence {silence_id} \
         (X-Proxy-Cache {:?}): the micro-cache hid the write\n{}",
        r.header("x-proxy-cache"),
        describe("silences", &r)
    );
    let listed = after
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == silence_id.as_str())
        .unwrap();
    assert_eq!(listed["comment"], comment.as_str());
    assert_eq!(listed["status"]["state"], "active", "{listed}");

    // 3e. A new alert is listed at once as well.
    let (_, before) = get_json(port, "/api/v2/alerts", &logs);
    let alertname = "E2EOutriggerHighLatency";
    assert!(!alert_names(&before).iter().any(|n| n == alertname));
    let alerts = json!([{
        "labels": {
            "alertname": alertname,
            "severity": "critical",
            "namespace": "prod-payments",
        },
        "annotations": {"summary": "p99 latency above 2s"},
        "startsAt": rfc3339(now),
        "endsAt": rfc3339(now + Duration::from_secs(3600)),
        "generatorURL": "http://prometheus.example/graph",
    }]);
    let r = send(
        port,
        "POST",
        "/api/v2/alerts",
        &[("Content-Type", "application/json")],
        &serde_json::to_vec(&alerts).unwrap(),
    );
    assert_eq!(
        r.status,
        200,
        "{}\n{}",
        describe("POST /api/v2/alerts", &r),
        logs()
    );
    let (r, after) = get_json(port, "/api/v2/alerts", &logs);
    assert!(
        alert_names(&after).iter().any(|n| n == alertname),
        "GET /api/v2/alerts right after the POST does not list {alertname} \
         (X-Proxy-Cache {:?})\n{}",
        r.header("x-proxy-cache"),
        describe("alerts", &r)
    );
    println!("API checks done ({:.1?})", t0.elapsed());

    // 4. Headless Chromium renders the proxied UI with the override in effect.
    let url = format!("http://127.0.0.1:{port}/");
    let (status, dom, stderr) = chromium(
        &tools.chromium,
        &url,
        &["--dump-dom".into()],
        work,
        "dump-dom",
    );
    let ctx = || {
        format!(
            "chromium exit {status:?}\n--- DOM ---\n{dom}\n--- chromium stderr ---\n{stderr}\n{}",
            logs()
        )
    };
    assert!(
        status.is_some(),
        "chromium --dump-dom timed out after {CHROMIUM_TIMEOUT:?}\n{}",
        ctx()
    );
    for needle in [
        r#"data-script="outrigger-override""#,
        "patched by outrigger sidecar",
        r#">severity="critical"</code>"#,
        r#">namespace=~"prod-.*"</code>"#,
        r#">alertname!="Watchdog"</code>"#,
        &format!(r#"<dd id="am-version">{version}</dd>"#),
        r#"<dd id="cluster-status">disabled</dd>"#,
        &comment,
        r#"alertname="E2EDiskFull""#,
        r#"namespace=~"prod-.*""#,
        alertname,
    ] {
        assert!(
            dom.contains(needle),
            "rendered DOM lacks {needle:?}\n{}",
            ctx()
        );
    }
    for absent in [
        r#"data-script="alertmanager-ui""#,
        r#">env="production"</code>"#,
        r#"id="api-error""#,
        "Loading Alertmanager UI",
    ] {
        assert!(
            !dom.contains(absent),
            "rendered DOM contains {absent:?}\n{}",
            ctx()
        );
    }

    // The same page straight from Alertmanager runs the UI's own script: the original examples,
    // no marker. So the marker above is the sidecar's doing, and the UI itself works.
    let direct_url = format!("http://127.0.0.1:{am_port}/");
    let (status, dom, stderr) = chromium(
        &tools.chromium,
        &direct_url,
        &["--dump-dom".into()],
        work,
        "dump-dom-direct",
    );
    let ctx = || format!("chromium exit {status:?}\n--- DOM ---\n{dom}\n--- stderr ---\n{stderr}");
    for needle in [
        r#"data-script="alertmanager-ui""#,
        r#">env="production"</code>"#,
        &format!(r#"<dd id="am-version">{version}</dd>"#),
        &comment,
    ] {
        assert!(
            dom.contains(needle),
            "direct DOM lacks {needle:?}\n{}",
            ctx()
        );
    }
    for absent in ["outrigger-override", "patched by outrigger sidecar"] {
        assert!(
            !dom.contains(absent),
            "direct DOM contains {absent:?}\n{}",
            ctx()
        );
    }

    // The screenshot is taken in the temp dir and then moved into place, so a stale or partial
    // file never passes for this run's.
    let shot = work.join("e2e-alertmanager.png");
    let (status, _, stderr) = chromium(
        &tools.chromium,
        &url,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,800".into(),
        ],
        work,
        "screenshot",
    );
    let mut magic = [0u8; 8];
    let is_png = File::open(&shot)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x89PNG\r\n\x1a\n";
    assert!(
        status.is_some() && is_png,
        "chromium wrote no PNG screenshot (exit {status:?})\n{stderr}"
    );
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e");
    std::fs::create_dir_all(&out_dir).unwrap();
    let png = out_dir.join("e2e-alertmanager.png");
    let partial = out_dir.join(format!(".e2e-alertmanager.png.{}", std::process::id()));
    std::fs::copy(&shot, &partial).expect("copy screenshot");
    std::fs::rename(&partial, &png).expect("move screenshot into place");
    println!("screenshot: {}", png.display());
    // 5. (Last, so that everything above is checked even while it fails.) An HTTP/1.0 client
    // that sends no Host, such as a bare health checker: `$host` is then empty, and the proxy must
    // still send Alertmanager a Host — its HTTP/1.1 request without one gets Go's
    // `400 Bad Request: missing required Host header`. NGINX's `$host` falls back to the server
    // name (the seed's `server_name localhost`), and NGINX talks HTTP/1.0 upstream anyway.
    let r = request(
        port,
        b"GET /api/v2/status HTTP/1.0\r\nCache-Control: no-cache\r\n\r\n",
    );
    assert_eq!(
        r.status,
        200,
        "HTTP/1.0 request without Host through the sidecar; expected Alertmanager's status \
         (outrigger must send a Host upstream even when $host is empty)\n{}\n{}",
        describe("GET /api/v2/status", &r),
        logs()
    );
    assert_eq!(r.json()["versionInfo"]["version"], version.as_str());
    assert_eq!(r.header("x-proxy-cache"), Some("BYPASS"), "{:?}", r.headers);

    println!("e2e_alertmanager done in {:.1?}", t0.elapsed());
}
