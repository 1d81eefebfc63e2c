#!/usr/bin/env python3
"""benches/s8pool.py OR_PORT NGINX_PORT TRACE...: S8's side-by-side requests of all loads pooled.

Reads the traces of `slowclients.py --pair-port` (start, port, latency ms or "-") and prints a
Markdown table per proxy: requests, p50/p90/p99/p99.9/max (nearest rank) and how many took over
3, 4 and 6 ms. Pooled, a p99 rests on hundreds more samples than one load's, and the tail counts
show whether one proxy has more hiccups than the other.
"""

import sys


def main():
    names = {sys.argv[1]: "outrigger", sys.argv[2]: "NGINX"}
    lat = {p: [] for p in names}
    for path in sys.argv[3:]:
        with open(path) as f:
            for line in f:
                _, port, ms = line.rstrip("\n").split("\t")
                if ms != "-" and port in lat:
                    lat[port].append(float(ms))
    print("| proxy | requests | p50 | p90 | p99 | p99.9 | max | over 3 ms | over 4 ms | over 6 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for port, name in names.items():
        v = sorted(lat[port])
        if not v:
            continue

        def at(per_mille):
            return v[max(0, min(len(v) - 1, -(-per_mille * len(v) // 1000) - 1))]

        over = [sum(1 for x in v if x > t) for t in (3, 4, 6)]
        print("| %s | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %d | %d | %d |"
              % (name, len(v), at(500), at(900), at(990), at(999), v[-1], *over))


if __name__ == "__main__":
    main()
