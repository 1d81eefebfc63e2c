//! What `outrigger -t`, the start and a reload check on disk once a config compiles: a cache
//! directory or a temp path set that cannot be created or written and a missing `error_pages`
//! file are errors with
//! `FILE:LINE:COLUMN`; a missing `root` or `alias` is a warning with its position (NGINX starts
//! without it too). The checks create nothing.
//!
//! The tests run as root, for whom every directory is writable: an unwritable cache directory is
//! one under a regular file, or under `/proc`.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// A temp dir with `files` written in it and `yaml` (`{DIR}` replaced by the dir) as `t.yaml`.
fn config_dir(yaml: &str, files: &[(&str, &[u8])]) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::Builder::new()
        .prefix("outrigger-check-")
        .tempdir()
        .expect("temp dir");
    for (rel, contents) in files {
        write_file(dir.path(), rel, contents);
    }
    let yaml = yaml.replace("{DIR}", dir.path().to_str().expect("utf-8 path"));
    let path = dir.path().join("t.yaml");
    std::fs::write(&path, &yaml).expect("write config");
    (dir, path, yaml)
}

/// `outrigger -t -c path`, its exit code and stderr.
fn check(path: &Path) -> (Option<i32>, String) {
    let out: Output = run_outrigger(&["-t", "-c", path.to_str().expect("utf-8 path")]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `FILE:LINE:` of the first line of `yaml` containing `needle`, as messages start.
fn position(path: &Path, yaml: &str, needle: &str) -> String {
    let line = yaml
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("test bug: {needle:?} not in\n{yaml}"))
        + 1;
    format!("{}:{line}:", path.display())
}

/// Run `-t` on `path`: it must exit 1 with an error at the line of `needle`. Returns stderr.
fn refused(path: &Path, yaml: &str, needle: &str) -> String {
    let (code, stderr) = check(path);
    assert_eq!(code, Some(1), "-t must fail:\n{stderr}");
    let at = position(path, yaml, needle);
    assert!(stderr.contains(&at), "no {at} in:\n{stderr}");
    stderr
}

/// Every name in `dir`, recursively, relative to it.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(dir).expect("under dir").to_path_buf());
        }
    }
    out.sort();
    out
}

const CACHED: &str = "listen: [\"127.0.0.1:1\"]
admin: off
upstreams: {app: {address: \"127.0.0.1:9\"}}
caches:
  z:
    path: CACHE_PATH
locations:
  - prefix: /
    proxy_pass: http://app/
    cache: {zone: z}
";

/// NGINX fails to start without its temp paths; so does a config naming one that cannot be
/// made, at `-t` already, with its position.
#[test]
fn t_refuses_temp_paths_that_cannot_be_created() {
    for key in ["proxy_temp_path", "client_body_temp_path"] {
        for (dir_value, files) in [
            ("/proc/outrigger-no-such-temp", &[][..]),
            (
                "\"{DIR}/afile/tmp\"",
                &[("afile", &b"not a directory\n"[..])][..],
            ),
        ] {
            let yaml = format!(
                "listen: [\"127.0.0.1:1\"]\nadmin: off\n{key}: {dir_value}\n\
                 upstreams: {{app: {{address: \"127.0.0.1:9\"}}}}\n\
                 locations:\n  - prefix: /\n    proxy_pass: http://app/\n"
            );
            let (_dir, path, yaml) = config_dir(&yaml, files);
            let stderr = refused(&path, &yaml, key);
            assert!(stderr.contains(key), "{stderr}");
        }
        // one that can be made is made at start, not by -t
        let yaml = format!(
            "listen: [\"127.0.0.1:1\"]\nadmin: off\n{key}: \"{{DIR}}/tmp/x\"\n\
             upstreams: {{app: {{address: \"127.0.0.1:9\"}}}}\n\
             locations:\n  - prefix: /\n    proxy_pass: http://app/\n"
        );
        let (dir, path, _) = config_dir(&yaml, &[]);
        let (code, stderr) = check(&path);
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(
            tree(dir.path()),
            [PathBuf::from("t.yaml")],
            "-t created nothing"
        );
    }
}

#[test]
fn t_refuses_a_cache_directory_under_a_regular_file() {
    let yaml = CACHED.replace("CACHE_PATH", "\"{DIR}/afile/cache\"");
    let (dir, path, yaml) = config_dir(&yaml, &[("afile", b"not a directory\n")]);
    let stderr = refused(&path, &yaml, "path:");
    assert!(stderr.contains("caches.z.path"), "{stderr}");
    assert!(
        stderr.contains("afile"),
        "the message names the file:\n{stderr}"
    );
    assert!(
        std::fs::metadata(dir.path().join("afile")).is_ok_and(|m| m.is_file()),
        "afile is left as it was"
    );
}

#[test]
fn t_refuses_a_cache_directory_that_cannot_be_created() {
    // /proc takes no new directories, not even from root (whom access(2) lets write anywhere).
    let yaml = CACHED.replace("CACHE_PATH", "/proc/outrigger-no-such-cache");
    let (_dir, path, yaml) = config_dir(&yaml, &[]);
    let stderr = refused(&path, &yaml, "path:");
    assert!(stderr.contains("/proc"), "{stderr}");
}

#[test]
fn t_accepts_a_cache_directory_it_can_create_and_creates_nothing() {
    let yaml = CACHED.replace("CACHE_PATH", "\"{DIR}/var/cache/outrigger\"");
    let (dir, path, _yaml) = config_dir(&yaml, &[("keep", b"x")]);
    let before = tree(dir.path());
    let (code, stderr) = check(&path);
    assert_eq!(code, Some(0), "-t must pass:\n{stderr}");
    assert_eq!(tree(dir.path()), before, "-t left something on disk");
    // an existing, writable directory passes too, and stays empty
    std::fs::create_dir_all(dir.path().join("var/cache/outrigger")).expect("mkdir");
    let before = tree(dir.path());
    let (code, stderr) = check(&path);
    assert_eq!(code, Some(0), "-t must pass:\n{stderr}");
    assert_eq!(tree(dir.path()), before, "-t left something on disk");
}

const ERROR_PAGE: &str = "listen: [\"127.0.0.1:1\"]
admin: off
upstreams: {app: {address: \"127.0.0.1:9\"}}
error_pages:
  404: /404.html
  \"502 504\": /50x.html
locations:
  - exact: /50x.html
    root: \"{DIR}/html\"
  - exact: /404.html
    alias: \"{DIR}/html/not-found.html\"
  - prefix: /
    proxy_pass: http://app/
";

#[test]
fn t_refuses_a_missing_error_page_file() {
    let (_dir, path, yaml) = config_dir(ERROR_PAGE, &[("html/not-found.html", b"404\n")]);
    let stderr = refused(&path, &yaml, "\"502 504\"");
    assert!(stderr.contains("/50x.html"), "{stderr}");
    assert!(
        stderr.contains("html/50x.html"),
        "names the file:\n{stderr}"
    );

    let (_dir, path, yaml) = config_dir(ERROR_PAGE, &[("html/50x.html", b"50x\n")]);
    let stderr = refused(&path, &yaml, "404: /404.html");
    assert!(stderr.contains("not-found.html"), "{stderr}");

    let (_dir, path, _yaml) = config_dir(
        ERROR_PAGE,
        &[
            ("html/50x.html", b"50x\n"),
            ("html/not-found.html", b"404\n"),
        ],
    );
    let (code, stderr) = check(&path);
    assert_eq!(code, Some(0), "both pages exist:\n{stderr}");
}

#[test]
fn t_warns_of_a_missing_root_or_alias_with_its_position_and_passes() {
    let yaml = "listen: [\"127.0.0.1:1\"]
admin: off
root: \"{DIR}/server-root\"
locations:
  - prefix: /a/
    root: \"{DIR}/no-root\"
  - prefix: /b/
    alias: \"{DIR}/no-alias/\"
  - prefix: /
";
    let (_dir, path, yaml) = config_dir(yaml, &[]);
    let (code, stderr) = check(&path);
    assert_eq!(code, Some(0), "a missing root is not an error:\n{stderr}");
    for (needle, key) in [
        ("no-root", "locations[0].root"),
        ("no-alias", "locations[1].alias"),
        ("server-root", "`root`"),
    ] {
        let at = position(&path, &yaml, needle);
        let line = stderr
            .lines()
            .find(|l| l.contains(&at))
            .unwrap_or_else(|| panic!("no warning at {at} in:\n{stderr}"));
        assert!(line.contains("[warn]"), "{line}");
        assert!(line.contains(key), "{line}");
        assert!(line.contains(needle), "names the directory: {line}");
    }
    assert!(stderr.contains("test is successful"), "{stderr}");
}

#[test]
fn start_refuses_an_unwritable_cache_directory_with_its_position() {
    let port = free_port();
    let yaml = CACHED
        .replace("127.0.0.1:1", &format!("127.0.0.1:{port}"))
        .replace("CACHE_PATH", "\"{DIR}/afile/cache\"");
    let (_dir, path, yaml) = config_dir(&yaml, &[("afile", b"x")]);
    let out = run_outrigger(&["-c", path.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "must not start:\n{stderr}");
    let at = position(&path, &yaml, "path:");
    assert!(stderr.contains(&at), "no {at} in:\n{stderr}");
}

fn reload_config(origin: &str, marker: &str) -> String {
    format!(
        "listen: [\"127.0.0.1:{{PORT}}\"]
reload: {{watch: on, interval: 200ms}}
upstreams: {{up: {{address: \"{origin}\"}}}}
error_pages: {{\"502\": /50x.html}}
caches:
  z:
    path: \"{{DIR}}/cache\"
locations:
  - exact: /50x.html
    root: \"{{DIR}}/html\"
  - prefix: /
    proxy_pass: http://up/
    add_header: {{X-Marker: {marker}}}
    cache: {{zone: z, valid: {{\"200\": 1m}}}}
"
    )
}

fn marker(port: u16) -> Option<String> {
    try_request(port, &build_request("GET", "/m", &[], b""))
        .ok()
        .and_then(|r| r.header("x-marker").map(str::to_string))
}

/// Write `text` as the proxy's config; wait for the reload's error at the line of `needle` and
/// check the old config still serves.
fn refused_reload(p: &Proxy, text: &str, needle: &str) {
    std::fs::write(&p.config_path, text).expect("edit");
    let at = position(&p.config_path, text, needle);
    assert!(
        p.wait_for_log(&at, Duration::from_secs(5)),
        "no reload error at {at}:\n{}",
        p.logs()
    );
    for _ in 0..3 {
        assert_eq!(marker(p.port).as_deref(), Some("one"), "{}", p.logs());
    }
}

#[test]
fn reload_refuses_a_missing_error_page_or_unwritable_cache_and_keeps_the_old_config() {
    let origin = start_origin();
    let p = start_proxy_with(
        &reload_config(&origin.addr(), "one"),
        &[("html/50x.html", b"50x\n"), ("afile", b"x")],
    );
    assert_eq!(marker(p.port).as_deref(), Some("one"));
    let good = std::fs::read_to_string(&p.config_path).expect("config");
    let dir = p.path("").display().to_string();
    let dir = dir.trim_end_matches('/');

    let no_page = good
        .replace("X-Marker: one", "X-Marker: two")
        .replace("/50x.html}", "/gone.html}")
        .replace("exact: /50x.html", "exact: /gone.html");
    refused_reload(&p, &no_page, "/gone.html}");

    let bad_cache = good
        .replace("X-Marker: one", "X-Marker: three")
        .replace(&format!("{dir}/cache"), &format!("{dir}/afile/cache"));
    assert_ne!(bad_cache, good.replace("X-Marker: one", "X-Marker: three"));
    refused_reload(&p, &bad_cache, "afile/cache");
}

#[test]
fn start_warns_of_a_missing_root_with_its_position() {
    let p = start_proxy(
        "listen: [\"127.0.0.1:{PORT}\"]\nlocations:\n  - prefix: /\n    root: \"{DIR}/nowhere\"\n",
    );
    let text = std::fs::read_to_string(&p.config_path).expect("config");
    let at = position(&p.config_path, &text, "nowhere");
    assert!(
        p.wait_for_log(&at, Duration::from_secs(5)),
        "no warning at {at}:\n{}",
        p.logs()
    );
    assert_eq!(get(p.port, "/x").status, 404);
}
