#!/usr/bin/env python3
"""benches/slowclients.py: the load of benches/run's S8 (slow-client shield, issue 16).

Opens CLIENTS slow connections to a proxy and, while they are held, measures a fast client:

  --mode upload  each slow client POSTs a BODY-byte body (Content-Length) to UPLOAD_PATH, one
                 byte every BYTE_INTERVAL seconds (the head at once), and never finishes within
                 the run;
  --mode read    each slow client asks for READ_PATH (a large answer) and reads nothing (its
                 receive buffer is made small, so the kernel takes little on its behalf);
  --mode idle    no slow client: the fast client alone, the baseline.

With --pair-port, two proxies are measured at the same moment: CLIENTS slow connections are
held against each, and the fast client alternates between them (each pair of requests in a
random order, so each proxy still gets one every INTERVAL seconds). Machine noise (a stalled
vCPU, the runner's own threads) then falls on both alike, which a run of each in turn cannot
give: the figure to compare latencies by. A run of each alone shows what each shields.

After SETTLE seconds, and then (with --upstream-port) once the proxy holds no connection to the
app (the slow clients' requests answered and their answers absorbed, or the uploads not passed
on) or SETTLE_MAX seconds have passed, the fast client starts one `GET FAST_PATH` every INTERVAL seconds for
DURATION seconds (a fixed cadence, each request on its own connection and thread, so the number
of attempts is the same whatever the latency), each with a TIMEOUT for connect, send and the
whole answer. A success is a complete 200 answer within the timeout. Then every slow
connection is closed.

Prints one line per proxy for benches/run:
  S8RESULT port=N ok=N attempts=N p50_ms=X p99_ms=X max_ms=X slow_open=N slow_failed=N ready_s=X
           settle_s=X upstream=N upstream_mid=N
and with --pair-port one more, on the pairs where both requests succeeded (PORT's latency minus
PAIR_PORT's, ms; first_faster: the share of pairs where PORT's was lower):
  S8PAIRED pairs=N diff_p25_ms=X diff_p50_ms=X diff_p75_ms=X first_faster=X
(settle_s: from opening the slow connections to the fast client's start; upstream and
upstream_mid: the proxy's connections to the app then and halfway through the fast client's
run, "-" without --upstream-port; latencies of the successful requests, nearest rank; "-" when none succeeded; slow_open: slow
connections still open at the end; slow_failed: slow connections the server closed or refused).
Before anything, it waits up to READY_WAIT seconds for one fast request to succeed (the previous
load's connections may still be draining), ready_s says how long that took.

Standard library only. Traffic goes to HOST (loopback) only and every loop is bounded in time.
"""

import argparse
import random
import socket
import sys
import threading
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pair-port", type=int, help="a second proxy, measured alongside (see above)")
    p.add_argument("--mode", choices=["upload", "read", "idle"], required=True)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--fast-path", default="/api/")
    p.add_argument("--upload-path", default="/api/upload")
    p.add_argument("--read-path", default="/api/big")
    p.add_argument("--body", type=int, default=1000, help="slow upload's body size, bytes")
    p.add_argument("--byte-interval", type=float, default=0.5, help="seconds between upload bytes")
    p.add_argument("--settle", type=float, default=1.0, help="seconds between slow and fast clients")
    p.add_argument("--upstream-port", type=int, help="then wait until no connection to this port")
    p.add_argument("--settle-max", type=float, default=10.0, help="seconds, at most, of that wait")
    p.add_argument("--duration", type=float, default=10.0, help="fast client's run, seconds")
    p.add_argument("--interval", type=float, default=0.1, help="seconds between fast requests")
    p.add_argument("--timeout", type=float, default=2.0, help="fast request's timeout, seconds")
    p.add_argument("--ready-wait", type=float, default=30.0)
    p.add_argument("--trace", help="write each fast request's start (s) and latency (ms, - if failed) here")
    return p.parse_args()


def fast_request(host, port, path, timeout):
    """One GET on a new connection; returns the latency in seconds, or None on failure."""
    t0 = time.perf_counter()
    deadline = t0 + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(
                b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n"
                b"User-Agent: outrigger-bench-S8\r\nConnection: close\r\n\r\n"
            )
            buf = b""
            need = None  # total bytes of head + body once the head is read
            while True:
                left = deadline - time.perf_counter()
                if left <= 0:
                    return None
                s.settimeout(left)
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if need is None and b"\r\n\r\n" in buf:
                    head, _ = buf.split(b"\r\n\r\n", 1)
                    length = None
                    for line in head.split(b"\r\n")[1:]:
                        k, _, v = line.partition(b":")
                        if k.strip().lower() == b"content-length":
                            length = int(v.strip())
                    if length is not None:
                        need = len(head) + 4 + length
                if need is not None and len(buf) >= need:
                    break
            status = buf.split(b"\r\n", 1)[0].split(b" ")
            if len(status) < 2 or status[1] != b"200":
                return None
            if need is not None and len(buf) < need:
                return None
            return time.perf_counter() - t0
    except (OSError, ValueError):
        return None


class Slow:
    """The slow connections, driven by one thread: connect, send the head, then trickle."""

    def __init__(self, a, ports):
        self.a = a
        self.ports = ports
        self.socks = []
        self.sent = []
        self.failed = 0
        self.stop = threading.Event()

    def open_all(self):
        a = self.a
        for port in [p for p in self.ports for _ in range(a.clients)]:
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                if a.mode == "read":
                    # before connect: a small window, so the answer waits in the server
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.settimeout(5)
                s.connect((a.host, port))
                if a.mode == "upload":
                    s.sendall(
                        b"POST " + a.upload_path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n"
                        b"User-Agent: outrigger-bench-S8-slow\r\n"
                        b"Content-Type: application/octet-stream\r\n"
                        b"Content-Length: " + str(a.body).encode() + b"\r\n\r\n"
                    )
                else:
                    s.sendall(
                        b"GET " + a.read_path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n"
                        b"User-Agent: outrigger-bench-S8-slow\r\n\r\n"
                    )
                s.setblocking(False)
                self.socks.append(s)
                self.sent.append(0)
            except OSError:
                self.failed += 1

    def trickle(self):
        """Upload mode: one byte per connection every byte_interval until stopped."""
        a = self.a
        while not self.stop.wait(a.byte_interval):
            for i, s in enumerate(self.socks):
                if s is None or self.sent[i] >= a.body - 1:
                    continue  # the last byte is never sent: the body stays unfinished
                try:
                    s.send(b"x")
                    self.sent[i] += 1
                except BlockingIOError:
                    pass
                except OSError:
                    self.failed += 1
                    s.close()
                    self.socks[i] = None

    def close_all(self):
        self.stop.set()
        still_open = 0
        for s in self.socks:
            if s is None:
                continue
            # open = the server has not closed it (a read would give EOF or an error)
            try:
                if s.recv(1, socket.MSG_PEEK):
                    still_open += 1  # data waiting (a reader's answer): open
                # else EOF: the server closed it
            except BlockingIOError:
                still_open += 1
            except OSError:
                pass
            s.close()
        return still_open


def upstream_conns(port):
    """Established TCP connections whose remote port is PORT (a proxy's to the app)."""
    n = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                        n += 1
        except OSError:
            pass
    return n


def pct(sorted_vals, p):
    if not sorted_vals:
        return "-"
    k = max(0, min(len(sorted_vals) - 1, int(-(-p * len(sorted_vals) // 100)) - 1))
    return "%.2f" % (sorted_vals[k] * 1000)


def main():
    a = parse_args()
    ports = [a.port] + ([a.pair_port] if a.pair_port else [])
    # ready: one fast request through each (the previous load's connections may still drain)
    t_ready = time.perf_counter()
    for port in ports:
        while fast_request(a.host, port, a.fast_path, a.timeout) is None:
            if time.perf_counter() - t_ready > a.ready_wait:
                print("slowclients: %s:%d%s never answered within %.0f s" % (a.host, port, a.fast_path, a.ready_wait), file=sys.stderr)
                break
            time.sleep(0.2)
    ready_s = time.perf_counter() - t_ready

    slow = Slow(a, ports)
    trickler = None
    if a.mode != "idle":
        slow.open_all()
        if a.mode == "upload":
            trickler = threading.Thread(target=slow.trickle, daemon=True)
            trickler.start()
    t_settle = time.perf_counter()
    time.sleep(a.settle)
    upstream = "-"
    if a.upstream_port:
        while True:
            upstream = upstream_conns(a.upstream_port)
            if upstream == 0 or time.perf_counter() - t_settle >= a.settle_max:
                break
            time.sleep(0.05)
    settle_s = time.perf_counter() - t_settle

    # request i goes to plan[i]: each proxy once per pair, the pair's order at random
    n = int(round(a.duration / a.interval))
    rng = random.Random(16)
    plan = []
    for _ in range(n):
        plan.extend(rng.sample(ports, len(ports)))
    step = a.interval / len(ports)
    results = {}  # request index -> latency (s) or None
    lock = threading.Lock()

    def one(i):
        r = fast_request(a.host, plan[i], a.fast_path, a.timeout)
        with lock:
            results[i] = r

    threads = []
    t0 = time.perf_counter()
    upstream_mid = "-"
    for i in range(len(plan)):
        wait = t0 + i * step - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        if i == len(plan) // 2 and a.upstream_port:
            upstream_mid = upstream_conns(a.upstream_port)
        t = threading.Thread(target=one, args=(i,), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(a.timeout + 5)

    slow_open = slow.close_all()
    if trickler is not None:
        trickler.join(a.byte_interval + 1)

    if a.trace:
        with open(a.trace, "w") as f:
            for i in range(len(plan)):
                r = results.get(i)
                f.write("%.2f\t%d\t%s\n" % (i * step, plan[i], "-" if r is None else "%.2f" % (r * 1000)))
    for port in ports:
        ok = sorted(results[i] for i in results if plan[i] == port and results[i] is not None)
        print(
            "S8RESULT port=%d ok=%d attempts=%d p50_ms=%s p99_ms=%s max_ms=%s slow_open=%d slow_failed=%d"
            " ready_s=%.1f settle_s=%.1f upstream=%s upstream_mid=%s"
            % (port, len(ok), n, pct(ok, 50), pct(ok, 99), ("%.2f" % (ok[-1] * 1000)) if ok else "-",
               slow_open, slow.failed, ready_s, settle_s, upstream, upstream_mid)
        )
    if a.pair_port:
        diffs = []
        for k in range(n):
            pair = {plan[i]: results.get(i) for i in (2 * k, 2 * k + 1)}
            if pair.get(a.port) is not None and pair.get(a.pair_port) is not None:
                diffs.append(pair[a.port] - pair[a.pair_port])
        diffs.sort()
        faster = sum(1 for d in diffs if d < 0) / len(diffs) if diffs else 0.0
        print(
            "S8PAIRED pairs=%d diff_p25_ms=%s diff_p50_ms=%s diff_p75_ms=%s first_faster=%.2f"
            % (len(diffs), pct(diffs, 25), pct(diffs, 50), pct(diffs, 75), faster)
        )


if __name__ == "__main__":
    main()
