//! The zone's memory tier (`caches.NAME.memory`): small entries read again, answered before Pingora's
//! cache machinery. Everything the disk path guarantees must hold when the answer comes from
//! memory: same bytes and headers, variants, freshness, purge and invalidation.

use crate::common::*;
use std::time::Duration;

fn config(origin: &str, extra_loc: &str) -> String {
    format!(
        r#"listen: ["127.0.0.1:{{PORT}}"]
gzip: {{enabled: on, min_length: 100, types: [text/plain, application/json], vary: on}}
zstd: {{enabled: on}}
caches: {{z: {{path: "{{DIR}}/cache", memory: 4m}}}}
upstreams: {{up: {{address: "{origin}"}}}}
locations:
  - prefix: /
    proxy_pass: http://up
    add_header: {{X-Proxy-Cache: $upstream_cache_status, X-Loc: one}}
    cache: {{zone: z, valid: {{"200": 1m}}, purge: {{allow: [127.0.0.1]}}{extra_loc}}}
"#
    )
}

#[test]
fn memory_hit_matches_the_fill() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr(), ""));
    let h = [
        ("X-Origin-Header", "X-App: 1"),
        ("X-Origin-Body-Size", "5000"),
    ];
    let first = get_with(p.port, "/a", &h);
    assert_eq!(cache_status(&first), "MISS");
    for _ in 0..3 {
        let r = get_with(p.port, "/a", &h);
        assert_eq!(r.status, 200);
        assert_eq!(cache_status(&r), "HIT");
        assert_eq!(r.body, first.body);
        assert_eq!(r.header("x-app"), Some("1"));
        assert_eq!(r.header("x-loc"), Some("one"));
        assert_eq!(r.header("content-length"), Some("5000"));
    }
    assert_eq!(hits(&origin, "/a"), 1);
    // HEAD from the same entry: headers, no body
    let r = head_with(p.port, "/a", &[]);
    assert_eq!((r.status, cache_status(&r), r.body.len()), (200, "HIT", 0));
    // a conditional request goes through the full cache path and still works
    let etag_probe = get_with(p.port, "/e", &[("X-Origin-Header", "ETag: \"v1\"")]);
    assert_eq!(cache_status(&etag_probe), "MISS");
    let r = get_with(p.port, "/e", &[("If-None-Match", "\"v1\"")]);
    assert_eq!((r.status, cache_status(&r)), (304, "HIT"));
    // and a range request too
    let r = get_with(p.port, "/a", &[("Range", "bytes=0-9")]);
    assert_eq!((r.status, cache_status(&r)), (206, "HIT"));
    assert_eq!(r.body, first.body[..10].to_vec());
    assert_eq!(hits(&origin, "/a"), 1);
}

/// A body larger than the single-write buffer (64 KiB) goes to the temp file in parts and is
/// read back whole into the memory tier on its first HIT (256 KiB entries with `memory: 4m`);
/// the disk copy, read by a range request, holds the same bytes.
#[test]
fn memory_tier_keeps_a_body_written_in_parts() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr(), ""));
    let h = [("X-Origin-Body-Size", "100000")];
    let want = pattern_body(100_000);
    let first = get_with(p.port, "/big", &h);
    assert_eq!((first.status, cache_status(&first)), (200, "MISS"));
    assert_eq!(first.body, want);
    for _ in 0..2 {
        let r = get_with(p.port, "/big", &h);
        assert_eq!((r.status, cache_status(&r)), (200, "HIT"));
        assert!(r.body == want, "memory HIT: {} bytes", r.body.len());
    }
    for (range, from) in [
        ("bytes=0-99", 0),
        ("bytes=65500-65599", 65_500),
        ("bytes=-100", 99_900),
    ] {
        let r = get_with(p.port, "/big", &[("Range", range)]);
        assert_eq!((r.status, cache_status(&r)), (206, "HIT"), "{range}");
        assert_eq!(r.body, want[from..from + 100].to_vec(), "{range}");
    }
    assert_eq!(hits(&origin, "/big"), 1);
}

#[test]
fn memory_respects_encoding_variants() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr(), ""));
    let body = [("X-Origin-Body-Size", "4000")];
    let gz = |ae: &'static str| {
        let mut h = body.to_vec();
        h.push(("Accept-Encoding", ae));
        h
    };
    let g1 = get_with(p.port, "/v", &gz("gzip"));
    assert_eq!(
        (cache_status(&g1), g1.header("content-encoding")),
        ("MISS", Some("gzip"))
    );
    let g2 = get_with(p.port, "/v", &gz("gzip, deflate"));
    assert_eq!(
        (cache_status(&g2), g2.header("content-encoding")),
        ("HIT", Some("gzip"))
    );
    assert_eq!(g2.body, g1.body);
    let plain = get_with(p.port, "/v", &body);
    assert_eq!(
        plain.header("content-encoding"),
        None,
        "identity client got {:?}",
        plain.headers
    );
    assert_eq!(plain.body, pattern_body(4000));
    let plain2 = get_with(p.port, "/v", &body);
    assert_eq!(
        (cache_status(&plain2), plain2.header("content-encoding")),
        ("HIT", None)
    );
    assert_eq!(plain2.body, pattern_body(4000));
    let z = get_with(p.port, "/v", &gz("zstd, gzip"));
    assert_eq!(z.header("content-encoding"), Some("zstd"));
    let z2 = get_with(p.port, "/v", &gz("zstd"));
    assert_eq!(
        (cache_status(&z2), z2.header("content-encoding")),
        ("HIT", Some("zstd"))
    );
    let g3 = get_with(p.port, "/v", &gz("gzip"));
    assert_eq!(
        (cache_status(&g3), g3.header("content-encoding")),
        ("HIT", Some("gzip"))
    );
    assert_eq!(hits(&origin, "/v"), 3);
}

/// Every encoding variant of a URI goes with one PURGE and with one POST (the store derives
/// the ids of variants by encoding instead of recording them).
#[test]
fn purge_and_post_drop_every_encoding_variant() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr(), ""));
    let body = [("X-Origin-Body-Size", "4000")];
    let with = |ae: &'static str| {
        let mut h = body.to_vec();
        if !ae.is_empty() {
            h.push(("Accept-Encoding", ae));
        }
        h
    };
    let encodings = ["", "gzip", "zstd"];
    for round in 0..2 {
        for ae in encodings {
            assert_eq!(
                cache_status(&get_with(p.port, "/pv", &with(ae))),
                "MISS",
                "{ae:?} round {round}"
            );
            assert_eq!(
                cache_status(&get_with(p.port, "/pv", &with(ae))),
                "HIT",
                "{ae:?} round {round}"
            );
        }
        let r = if round == 0 {
            send(p.port, "PURGE", "/pv", &[], b"")
        } else {
            send(p.port, "POST", "/pv", &[], b"{}")
        };
        assert_eq!(r.status, 200);
        for ae in encodings {
            assert_eq!(
                cache_status(&get_with(p.port, "/pv", &with(ae))),
                "MISS",
                "{ae:?} after round {round}"
            );
        }
        // and again for the next round: every variant stored anew
        if round == 0 {
            let again = send(p.port, "PURGE", "/pv", &[], b"");
            assert_eq!(again.status, 200);
        }
    }
}

#[test]
fn memory_respects_vary() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr(), ""));
    let req = |lang: &'static str| {
        get_with(
            p.port,
            "/lang",
            &[
                ("Accept-Language", lang),
                ("X-Origin-Header", "Vary: Accept-Language"),
            ],
        )
    };
    let en = req("en");
    let fr = req("fr");
    assert_eq!((cache_status(&en), cache_status(&fr)), ("MISS", "MISS"));
    for _ in 0..2 {
        let en2 = req("en");
        let fr2 = req("fr");
        assert_eq!((cache_status(&en2), cache_status(&fr2)), ("HIT", "HIT"));
        assert_eq!(en2.json()["headers"]["accept-language"], "en");
        assert_eq!(fr2.json()["headers"]["accept-language"], "fr");
    }
}

#[test]
fn memory_copy_expires_and_is_purged() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr(), ""));
    // origin freshness of 1 s
    let h = [("X-Origin-Header", "Cache-Control: max-age=1")];
    assert_eq!(cache_status(&get_with(p.port, "/x", &h)), "MISS");
    assert_eq!(cache_status(&get_with(p.port, "/x", &h)), "HIT");
    std::thread::sleep(Duration::from_millis(2100));
    let r = get_with(p.port, "/x", &h);
    assert_ne!(
        cache_status(&r),
        "HIT",
        "a stale memory copy was served as a HIT"
    );
    assert_eq!(hits(&origin, "/x"), 2);
    // PURGE drops the memory copy too
    assert_eq!(get(p.port, "/y").status, 200);
    assert_eq!(cache_status(&get(p.port, "/y")), "HIT");
    assert_eq!(send(p.port, "PURGE", "/y", &[], b"").status, 200);
    assert_eq!(cache_status(&get(p.port, "/y")), "MISS");
    // a POST invalidates it as well
    assert_eq!(cache_status(&get(p.port, "/y")), "HIT");
    assert_eq!(send(p.port, "POST", "/y", &[], b"{}").status, 200);
    assert_eq!(cache_status(&get(p.port, "/y")), "MISS");
    // a bypass skips the memory tier
    let r = get_with(p.port, "/y", &[("Cache-Control", "no-cache")]);
    assert_eq!(r.status, 200);
}

#[test]
fn restart_warms_memory_from_disk() {
    let origin = start_origin();
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = config(&origin.addr(), "").replace("{DIR}", &dir.path().display().to_string());
    let mut p = start_proxy(&cfg);
    assert_eq!(cache_status(&get(p.port, "/w")), "MISS");
    p.kill();
    let p2 = start_proxy(&cfg);
    let r = get(p2.port, "/w");
    assert_eq!((r.status, cache_status(&r)), (200, "HIT"));
    let r = get(p2.port, "/w");
    assert_eq!((r.status, cache_status(&r)), (200, "HIT"));
    assert_eq!(r.json()["uri"], "/w");
    assert_eq!(hits(&origin, "/w"), 1);
}

/// NGINX `proxy_cache_min_uses 3`: the response is stored on the third request.
#[test]
fn min_uses_defers_storing() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr(), ", min_uses: 3"));
    for i in 1..=3 {
        let r = get(p.port, "/popular");
        assert_eq!((r.status, cache_status(&r)), (200, "MISS"), "request {i}");
    }
    let r = get(p.port, "/popular");
    assert_eq!(cache_status(&r), "HIT");
    assert_eq!(hits(&origin, "/popular"), 3);
}

/// Header names keep their case on the wire: a HIT from memory writes the origin's names as
/// the origin sent them (the test origin sends lower case), like the fill did, and the headers
/// outrigger adds are in NGINX's Title-Case (`X-Proxy-Cache`, `Vary`).
#[test]
fn header_names_keep_their_case() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr(), ""));
    let h = [
        ("X-Origin-Header", "X-App: 1"),
        ("X-Origin-Body-Size", "5000"),
        ("Accept-Encoding", "gzip"),
    ];
    let names = |r: &Response| -> Vec<String> {
        r.headers
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| !n.eq_ignore_ascii_case("transfer-encoding"))
            .filter(|n| !n.eq_ignore_ascii_case("content-length"))
            .collect()
    };
    let fill = get_with(p.port, "/case", &h);
    assert_eq!(cache_status(&fill), "MISS");
    // the first HIT reads the disk entry (and puts it in memory), the next comes from memory
    let _ = get_with(p.port, "/case", &h);
    let hit = get_with(p.port, "/case", &h);
    assert_eq!(cache_status(&hit), "HIT");
    // a HIT adds `Age` (see `hits_carry_age_from_disk_and_memory`)
    let (mut a, mut b) = (names(&fill), names(&hit));
    b.retain(|n| n != "Age");
    a.sort();
    b.sort();
    assert_eq!(a, b, "header names of the fill and of the memory HIT");
    for n in [
        "x-app",
        "X-Proxy-Cache",
        "X-Loc",
        "Vary",
        "Content-Encoding",
        "Server",
    ] {
        assert!(b.iter().any(|x| x == n), "`{n}` missing from {b:?}");
    }
}

/// An entry enters the memory tier when it is first read back from disk, not when it is
/// stored: a response requested once never takes RAM (S7 bench: 10,000 keys fetched once
/// each). Seen from outside by removing the entry's file: before its first HIT that is a
/// MISS (nothing in memory); after it, memory still answers.
#[test]
fn an_entry_enters_memory_on_its_first_hit() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr(), ""));
    let h = [("X-Origin-Body-Size", "3000")];
    assert_eq!(cache_status(&get_with(p.port, "/once", &h)), "MISS");
    let files = entry_files(&p.path("cache"));
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::remove_file(&files[0].0).unwrap();
    let r = get_with(p.port, "/once", &h);
    assert_eq!(
        cache_status(&r),
        "MISS",
        "the fill alone put nothing in memory"
    );
    assert_eq!(hits(&origin, "/once"), 2);

    let r = get_with(p.port, "/once", &h);
    assert_eq!(
        (r.status, cache_status(&r)),
        (200, "HIT"),
        "first HIT, from disk"
    );
    for (f, _) in entry_files(&p.path("cache")) {
        std::fs::remove_file(f).unwrap();
    }
    let r = get_with(p.port, "/once", &h);
    assert_eq!(
        (r.status, cache_status(&r)),
        (200, "HIT"),
        "from memory, the file gone"
    );
    assert_eq!(r.body, pattern_body(3000));
    assert_eq!(hits(&origin, "/once"), 2);
}

/// Every HIT carries `Age` (RFC 9111 §4), from the disk path (Pingora's) and from the memory
/// tier alike: seconds since the entry was stored.
#[test]
fn hits_carry_age_from_disk_and_memory() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr(), ""));
    let fill = get(p.port, "/age");
    assert_eq!((cache_status(&fill), fill.header("age")), ("MISS", None));
    std::thread::sleep(Duration::from_millis(1100));
    for from in ["disk", "memory", "memory"] {
        let r = get(p.port, "/age");
        assert_eq!(cache_status(&r), "HIT", "{from}");
        let age: u64 = r
            .header("age")
            .unwrap_or_else(|| panic!("no Age from {from}"))
            .parse()
            .unwrap();
        assert!((1..=5).contains(&age), "Age {age} from {from}");
    }
}
