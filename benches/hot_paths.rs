//! Criterion micro-benchmarks of the per-request hot paths (issue 6 §2): location matching on a
//! 50-location config with regexes, URI normalisation, cache key and variable rendering, response
//! header rules (add_header, set_header, expires), access-log formatting and Accept-Encoding
//! negotiation. Everything is built from YAML through `Config::from_str`, as the server does.
//!
//!   cargo bench --bench hot_paths                       # full (a few minutes)
//!   cargo bench --bench hot_paths -- --quick            # about a second per benchmark
//!   cargo bench --bench hot_paths -- router             # one group (a name filter)

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use outrigger::compress::negotiate;
use outrigger::config::{Config, Handler};
use outrigger::request::cache_key::key_bytes;
use outrigger::template::{write_time_local, Template, Var, VarSource};
use outrigger::uri::normalize;
use pingora_http::{RequestHeader, ResponseHeader};
use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

/// The seed's server (gzip, the cached `location /` with its headers, `= /script.js`) plus
/// enough locations to reach 50: exact paths, prefixes (some `no_regex`), and 10 regexes (some
/// case-insensitive), in the order a real config would list them.
fn config_yaml() -> String {
    let mut y = String::from(
        r#"listen: ["127.0.0.1:8080"]
admin: off
reload: {watch: off}
upstreams:
  app: {address: "127.0.0.1:9093", keepalive: 32}
caches:
  my_zone: {path: /tmp/outrigger-bench-unused, levels: "1:2", keys_zone: 100m, inactive: 1d, max_size: 10g, memory: 64m}
log_formats:
  main: '[$time_local - $status] $remote_addr - $remote_user $request ($http_referer)'
proxy_set_header: {Host: $host}
gzip:
  enabled: on
  min_length: 1k
  level: 2
  types: [text/plain, application/javascript, application/x-javascript, text/css,
          application/xml, text/javascript, application/json]
  vary: on
  disable: 'MSIE [1-6]\.'
zstd: {enabled: on, level: 3}
brotli: {enabled: on, level: 4}
locations:
  - exact: /script.js
    root: /tmp
    expires: 90d
  - prefix: /
    proxy_pass: http://app/
    cache:
      zone: my_zone
      valid: {"200 302": 1d, "301": 30d, any: 5m}
      bypass: [$http_cache_control]
    expires_if: {path: '\.(?:js|css|jpg|jpeg|gif|png|ico|cur|gz|svg|svgz|mp4|ogg|ogv|webm)$', expires: 90d}
    add_header: {X-Proxy-Cache: $upstream_cache_status}
    set_header: {Cache-Control: public}
"#,
    );
    let mut n = 2;
    for i in 0..14 {
        let _ = write!(y, "  - exact: /exact/page{i}.html\n    root: /tmp\n");
        n += 1;
    }
    for i in 0..12 {
        let _ = write!(
            y,
            "  - prefix: /api/v{}/service{i}/\n    proxy_pass: http://app\n",
            i % 3 + 1
        );
        n += 1;
    }
    for i in 0..12 {
        let _ = write!(
            y,
            "  - prefix: /static/bundle{i}/\n    no_regex: on\n    root: /tmp\n"
        );
        n += 1;
    }
    let regexes = [
        (r"^/users/[0-9]+/avatar$", false),
        (r"^/reports/\d{4}-\d{2}-\d{2}\.csv$", false),
        (r"\.(?:php|asp|aspx|jsp)$", true),
        (r"^/(?:wp-admin|wp-login)", false),
        (r"/\.git/", false),
        (r"^/graphql/?$", false),
        (r"^/metrics/[a-z_]+$", false),
        (r"\.(?:woff2?|ttf|eot)$", true),
        (r"\.(?:js|css|jpg|jpeg|gif|png|ico|svg)$", true),
        (r"^/download/.+\.(?:zip|tar\.gz)$", false),
    ];
    for (re, ci) in regexes {
        let key = if ci { "regex_i" } else { "regex" };
        let _ = write!(y, "  - {key}: '{re}'\n    proxy_pass: http://app\n");
        n += 1;
    }
    assert_eq!(n, 50, "the router benchmark wants 50 locations");
    y
}

fn config() -> Config {
    Config::from_str(&config_yaml(), Path::new("/tmp/x.yaml"))
        .unwrap_or_else(|e| panic!("bench config: {e:?}"))
}

/// Variables of one request, computed as the server's `RequestVars` does (headers looked up in
/// the request, `$time_local` from the clock, formatted once a second).
struct Vars {
    req: RequestHeader,
    uri: String,
    status: u16,
    cache_status: &'static str,
}

impl Vars {
    fn new(path_and_query: &str) -> Vars {
        let mut req = RequestHeader::build("GET", path_and_query.as_bytes(), None).unwrap();
        req.insert_header("Host", "alertmanager.example.org")
            .unwrap();
        req.insert_header(
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
        )
        .unwrap();
        req.insert_header("Referer", "https://alertmanager.example.org/#/alerts")
            .unwrap();
        req.insert_header("Accept-Encoding", "gzip, deflate, br, zstd")
            .unwrap();
        Vars {
            uri: req.uri.path().to_string(),
            req,
            status: 200,
            cache_status: "HIT",
        }
    }
}

impl VarSource for Vars {
    fn write_var(&self, var: &Var, out: &mut String) {
        match var {
            Var::TimeLocal => write_time_local(out),
            Var::Status => {
                let _ = write!(out, "{:03}", self.status);
            }
            Var::RemoteAddr => out.push_str("10.1.2.3"),
            Var::RemoteUser => {}
            Var::Request => {
                let _ = write!(
                    out,
                    "{} {} {:?}",
                    self.req.method,
                    self.req
                        .uri
                        .path_and_query()
                        .map(|p| p.as_str())
                        .unwrap_or("/"),
                    self.req.version
                );
            }
            Var::RequestUri => out.push_str(
                self.req
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/"),
            ),
            Var::Uri => out.push_str(&self.uri),
            Var::IsArgs if self.req.uri.query().is_some() => out.push('?'),
            Var::Args => out.push_str(self.req.uri.query().unwrap_or("")),
            Var::Scheme => out.push_str("http"),
            Var::Host | Var::ProxyHost => out.push_str("alertmanager.example.org"),
            Var::UpstreamCacheStatus => out.push_str(self.cache_status),
            Var::BodyBytesSent => out.push_str("2048"),
            Var::Http(name) => {
                if let Some(v) = self
                    .req
                    .headers
                    .get(name.as_str())
                    .and_then(|v| v.to_str().ok())
                {
                    out.push_str(v);
                }
            }
            _ => {}
        }
    }
}

fn router(c: &mut Criterion) {
    let cfg = config();
    let mut g = c.benchmark_group("router");
    let cases = [
        ("exact", "/script.js"),
        ("exact_late", "/exact/page13.html"),
        ("prefix_no_regex", "/static/bundle7/app.9f3c.js"),
        ("prefix_then_regexes", "/api/v2/service4/alerts"),
        ("regex_first", "/users/12345/avatar"),
        ("regex_last", "/download/outrigger-1.0.tar.gz"),
        ("regex_ci_asset", "/lib/Bootstrap.MIN.CSS"),
        ("fallback_root", "/-/healthy"),
    ];
    for (name, path) in cases {
        assert!(cfg.router.find(path).is_some(), "{path} routes nowhere");
        g.bench_function(name, |b| b.iter(|| cfg.router.find(black_box(path))));
    }
    g.finish();
}

fn uri(c: &mut Criterion) {
    let mut g = c.benchmark_group("uri_normalize");
    let cases = [
        ("plain", "/api/v2/alerts/groups"),
        ("encoded", "/%73cript.js"),
        ("dot_segments", "/static/./lib/../js//app.js"),
        (
            "long",
            "/static/bundle3/vendor/some/deeply/nested/path/to/a/module/index.es2019.min.js",
        ),
    ];
    for (name, path) in cases {
        g.bench_function(name, |b| b.iter(|| normalize(black_box(path))));
    }
    // what a request pays before its location is known
    let cfg = config();
    g.bench_function("normalize_and_route", |b| {
        b.iter(|| {
            let p = normalize(black_box("/static/./lib/../js//app.js")).unwrap();
            cfg.router.find(&p)
        })
    });
    g.finish();
}

fn templates(c: &mut Criterion) {
    let cfg = config();
    let mut g = c.benchmark_group("template");
    let vars = Vars::new("/api/v2/alerts?silenced=false&inhibited=false&active=true");
    // the cache key as the location compiled it (default: the URI as sent upstream, here
    // rewritten by `proxy_pass: http://app/`)
    let location = &cfg.locations[1];
    let rules = location.cache.as_ref().expect("location / is cached");
    let Handler::Proxy(proxy) = &location.handler else {
        panic!("location / proxies")
    };
    g.bench_function("cache_key_render", |b| {
        b.iter(|| key_bytes(rules, Some(proxy), black_box(&vars)))
    });
    let bypass = Template::parse("$http_cache_control").unwrap();
    g.bench_function("bypass_render_absent", |b| {
        b.iter(|| bypass.render(black_box(&vars)))
    });
    g.bench_function("parse_cache_key", |b| {
        b.iter(|| Template::parse(black_box("$scheme$proxy_host$request_uri")))
    });
    g.finish();
}

fn header_rules(c: &mut Criterion) {
    let cfg = config();
    let mut g = c.benchmark_group("headers");
    let vars = Vars::new("/static/app.js");
    let mut base = ResponseHeader::build(200, None).unwrap();
    base.insert_header("Content-Type", "application/javascript")
        .unwrap();
    base.insert_header("Content-Length", "1048576").unwrap();
    base.insert_header("Last-Modified", "Mon, 23 Nov 2026 20:07:45 GMT")
        .unwrap();
    base.insert_header("ETag", "\"6b049d11-100000\"").unwrap();
    base.insert_header("Cache-Control", "no-store").unwrap();
    // the seed's `location /`: expires_if (a .js path matches), add_header X-Proxy-Cache,
    // set_header Cache-Control merged with expires
    let proxied = &cfg.locations[1].headers;
    g.bench_function("location_root_js", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |r| proxied.apply(r, black_box("/static/app.js"), &vars),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("location_root_json", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |r| proxied.apply(r, black_box("/api/v2/alerts"), &vars),
            BatchSize::SmallInput,
        )
    });
    // `= /script.js { expires 90d; }`
    let script = &cfg.locations[0].headers;
    g.bench_function("expires_90d", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |r| script.apply(r, black_box("/script.js"), &vars),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("clone_only_baseline", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |r| black_box(r.status.as_u16()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn access_log(c: &mut Criterion) {
    let mut g = c.benchmark_group("access_log");
    let vars = Vars::new("/api/v2/alerts?silenced=false");
    let main = Template::parse(
        "[$time_local - $status] $remote_addr - $remote_user $request ($http_referer)",
    )
    .unwrap();
    let combined = Template::parse(
        "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\"",
    )
    .unwrap();
    let mut line = String::with_capacity(256);
    g.bench_function("main_format", |b| {
        b.iter(|| {
            line.clear();
            main.render_into(black_box(&vars), "-", &mut line);
            line.len()
        })
    });
    g.bench_function("combined_format", |b| {
        b.iter(|| {
            line.clear();
            combined.render_into(black_box(&vars), "-", &mut line);
            line.len()
        })
    });
    g.bench_function("time_local_only", |b| {
        b.iter(|| {
            line.clear();
            write_time_local(&mut line);
            line.len()
        })
    });
    g.finish();
}

fn accept_encoding(c: &mut Criterion) {
    let cfg = config();
    let cc = cfg.locations[1]
        .compress
        .clone()
        .expect("location / compresses");
    let mut g = c.benchmark_group("negotiate");
    let req = |ae: Option<&str>, ua: &str| {
        let mut r = RequestHeader::build("GET", b"/app.js", None).unwrap();
        r.insert_header("User-Agent", ua).unwrap();
        if let Some(ae) = ae {
            r.insert_header("Accept-Encoding", ae).unwrap();
        }
        r
    };
    let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36";
    let cases = [
        ("none", req(None, chrome)),
        ("gzip", req(Some("gzip"), chrome)),
        ("chrome", req(Some("gzip, deflate, br, zstd"), chrome)),
        (
            "qvalues",
            req(Some("br;q=0, zstd;q=0, gzip;q=0.8, *;q=0.1"), chrome),
        ),
        (
            "msie6_disabled",
            req(
                Some("gzip"),
                "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)",
            ),
        ),
    ];
    for (name, r) in &cases {
        g.bench_function(*name, |b| {
            b.iter(|| negotiate(black_box(&cc), black_box(r)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = router, uri, templates, header_rules, access_log, accept_encoding
}
criterion_main!(benches);
