//! The listeners as a config writes them and as the process opens them: `listen` as a list or a
//! single value (NGINX's `listen 8080;`), `admin.listen` likewise.

use crate::common::*;

/// `listen: 8080` and `admin: {listen: 9145}`, bare ports as NGINX users write them, are lists
/// of one address on every IPv4 address; `listen: "addr:port"` is a list of one too.
#[test]
fn listen_takes_a_single_port_or_address() {
    let www: &[(&str, &[u8])] = &[("www/a.txt", b"alpha")];
    let yaml = "listen: {PORT}\nadmin: {listen: {PORT2}}\nlocations:\n  - prefix: /\n    root: {DIR}/www\n";
    let p = start_proxy_with(yaml, www);
    assert_eq!(get(p.port, "/a.txt").body, b"alpha");
    assert_eq!(get(p.port2, "/healthz").status, 200);

    let yaml = "listen: \"127.0.0.1:{PORT}\"\nlocations:\n  - prefix: /\n    root: {DIR}/www\n";
    let p = start_proxy_with(yaml, www);
    assert_eq!(get(p.port, "/a.txt").body, b"alpha");
}

/// A bad single `listen` value is refused by `-t` at its FILE:LINE:COLUMN, as a bad list item is.
#[test]
fn a_bad_single_listen_names_its_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "threads: 1\nlisten: nowhere\nlocations:\n  - prefix: /\n    root: /tmp\n",
    )
    .expect("write config");
    let out = run_outrigger(&["-t", "-c", path.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let want = format!(
        "{}:2:9: `listen`: invalid listen address `nowhere`",
        path.display()
    );
    assert!(stderr.contains(&want), "want {want:?} in:\n{stderr}");
}

/// A taken admin port stops the start (exit 1, the address named) as a taken `listen` port
/// does, rather than running without probes; the shipped config takes the admin address from
/// `OUTRIGGER_ADMIN_LISTEN`.
#[test]
fn a_taken_admin_port_stops_the_start() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let admin = holder.local_addr().expect("local_addr").to_string();
    let tmp = tempfile::Builder::new()
        .prefix("outrigger-admin-")
        .tempdir()
        .expect("temp dir");
    copy_shipped(tmp.path());
    let port = free_port();
    let config = tmp.path().join("conf/outrigger.yaml");
    let mut cmd = std::process::Command::new(OUTRIGGER_BIN);
    cmd.arg("-c")
        .arg(&config)
        .env("OUTRIGGER_LISTEN", format!("127.0.0.1:{port}"))
        .env("OUTRIGGER_ADMIN_LISTEN", &admin)
        .env("OUTRIGGER_CACHE_DIR", tmp.path().join("cache"))
        .env_remove("OUTRIGGER_PID_FILE");
    let mut p = Proxy::spawn(&mut cmd, tmp, config, port, 0);
    let status = p.wait_exit(STARTUP_TIMEOUT);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "admin port {admin} taken: {status:?}\n{}",
        p.logs()
    );
    let stderr = p.stderr();
    assert!(
        stderr.contains(&format!("cannot listen on {admin} (admin")),
        "{stderr}"
    );
    no_panic_in_logs(&p);
    drop(holder);
}
