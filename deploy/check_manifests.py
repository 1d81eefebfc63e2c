#!/usr/bin/env python3
"""Checks of the rendered Kubernetes manifests that a JSON schema cannot express.

Called by deploy/check.sh (which also validates every document against the Kubernetes schemas):

    check_manifests.py CASE RENDERED.yaml POD_ROOT

CASE is `alertmanager` (deploy/alertmanager/example) or `flask-api` (deploy/flask-api). Checks
that the sidecar is wired as the image expects, that every volume, mount and ConfigMap reference
resolves, and that the config in the ConfigMap is byte-for-byte the shipped one in conf/ (so the
two cannot drift). Then it lays out what the sidecar container would see under /etc/outrigger
(ConfigMap volumes over the image's conf/ and static/) under POD_ROOT/etc/outrigger, and writes
POD_ROOT/config-path and POD_ROOT/env (the sidecar's env, NAME=value lines), for `outrigger -t`.
Prints one line per check; exits 1 if any failed. Run from the repository root.
"""

import os
import re
import shutil
import sys

import yaml

IMAGE_ROOT = "/etc/outrigger"  # where the Dockerfile copies conf/ and static/
PROXY_IMAGE = "ghcr.io/outrigger/outrigger:"

CASES = {
    "alertmanager": {
        "workload": ("StatefulSet", "monitor-alertmanager"),
        "sidecar": "outrigger",
        "app": "alertmanager",
        "config": "conf/outrigger.yaml",
        "config_configmap": "alertmanager-outrigger-config",
        "proxy_port": 8080,
        "service": "monitor-alertmanager",
        "service_port": 8080,
        "service_type": "ClusterIP",
        "env": {"ALERTMANAGER_ADDR": "127.0.0.1:9093", "OUTRIGGER_CACHE_DIR": "/var/cache/outrigger",
                "OUTRIGGER_CACHE_MAX_SIZE": "768m",
                "OUTRIGGER_SHUTDOWN_DELAY": "5s"},
        "static_files": ["script.js", "50x.html"],  # must be in the volume at /etc/outrigger/static
        "cache_dir": "/var/cache/outrigger",
    },
    "flask-api": {
        "workload": ("Deployment", "hello-deployment"),
        "sidecar": "web",
        "app": "app",
        "config": "conf/static-api.yaml",
        "config_configmap": "hello-outrigger-config",
        "proxy_port": 8081,
        "service": "hello-svc",
        "service_port": 80,
        "service_type": "NodePort",
        "node_port": 32001,
        "replicas": 2,
        "env": {"API_ADDR": "127.0.0.1:5000", "OUTRIGGER_SHUTDOWN_DELAY": "5s"},
        "static_files": ["site/index.html", "site/script.js"],
        "cache_dir": None,
    },
}

results = []


def check(ok, what):
    results.append(bool(ok))
    print(("  ok    " if ok else "  FAIL  ") + what)
    return bool(ok)


def find(docs, kind, name_prefix, generated=False):
    """The document of this kind and name; generated ConfigMaps carry a -hash suffix."""
    for d in docs:
        if d.get("kind") != kind:
            continue
        name = d["metadata"]["name"]
        if name == name_prefix or (generated and name.rsplit("-", 1)[0] == name_prefix):
            return d
    return None


def main():
    case_name, rendered, pod_root = sys.argv[1], sys.argv[2], sys.argv[3]
    layout = os.path.join(pod_root, IMAGE_ROOT.lstrip("/"))
    case = CASES[case_name]
    with open(rendered, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    configmaps = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ConfigMap"}

    kind, name = case["workload"]
    wl = find(docs, kind, name)
    if not check(wl is not None, f"{kind} {name} rendered"):
        return
    if "replicas" in case:
        check(wl["spec"].get("replicas") == case["replicas"], f"{kind} {name}: {case['replicas']} replicas")
    pod = wl["spec"]["template"]["spec"]
    tmpl_labels = wl["spec"]["template"]["metadata"].get("labels", {})
    containers = {c["name"]: c for c in pod["containers"]}
    check(case["app"] in containers, f"app container `{case['app']}` kept")
    side = containers.get(case["sidecar"])
    if not check(side is not None, f"sidecar container `{case['sidecar']}` added"):
        return
    check(side["image"].startswith(PROXY_IMAGE), f"sidecar image {side['image']}")

    # Command line: -c CONFIG under the config mount.
    args = side.get("args", [])
    config_path = args[args.index("-c") + 1] if "-c" in args[:-1] else None
    check(config_path == f"{IMAGE_ROOT}/conf/{os.path.basename(case['config'])}",
          f"sidecar args -c {config_path}")

    env = {e["name"]: e.get("value") for e in side.get("env", [])}
    for k, v in case["env"].items():
        check(env.get(k) == v, f"env {k}={env.get(k)}")

    ports = {p.get("name"): p for p in side.get("ports", [])}
    check(ports.get("proxy-http", {}).get("containerPort") == case["proxy_port"],
          f"port proxy-http = {case['proxy_port']}")
    check(ports.get("metrics", {}).get("containerPort") == 9145, "port metrics = 9145 (admin listener)")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = side.get(probe, {}).get("httpGet", {})
        check(get.get("path") == path and get.get("port") in ("metrics", 9145),
              f"{probe}: GET {get.get('path')} on {get.get('port')}")
    check(pod.get("terminationGracePeriodSeconds", 30) >= 15,
          "terminationGracePeriodSeconds covers the 10s grace_period")
    res = side.get("resources", {})
    check(res.get("requests") and res.get("limits", {}).get("memory"), "sidecar requests and memory limit set")

    sc = side.get("securityContext", {})
    want = {"runAsNonRoot": True, "runAsUser": 101, "runAsGroup": 101, "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False}
    check(all(sc.get(k) == v for k, v in want.items())
          and sc.get("capabilities", {}).get("drop") == ["ALL"]
          and (sc.get("seccompProfile") or pod.get("securityContext", {}).get("seccompProfile", {})).get("type")
          == "RuntimeDefault",
          "sidecar securityContext: non-root 101:101, read-only root, no privilege escalation, "
          "caps dropped, seccomp RuntimeDefault")

    # Volumes, mounts and their ConfigMaps.
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in side.get("volumeMounts", [])}
    all_mounts_ok = True
    for c in pod["containers"]:
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes and not any(
                    t["metadata"]["name"] == m["name"] for t in wl["spec"].get("volumeClaimTemplates", [])):
                all_mounts_ok = check(False, f"container {c['name']}: mount {m['name']} has no volume")
    check(all_mounts_ok, "every volumeMount names a volume")

    def files_of(volume):
        """{path in volume: content} for a configMap or projected-configMap volume."""
        sources = []
        if "configMap" in volume:
            sources = [volume["configMap"]]
        elif "projected" in volume:
            sources = [s["configMap"] for s in volume["projected"]["sources"] if "configMap" in s]
        out = {}
        for src in sources:
            cm = configmaps.get(src["name"])
            if not check(cm is not None, f"volume {volume['name']}: ConfigMap {src['name']} rendered"):
                continue
            data = cm.get("data", {})
            items = src.get("items") or [{"key": k, "path": k} for k in data]
            for it in items:
                if check(it["key"] in data, f"ConfigMap {src['name']} has key {it['key']}"):
                    out[it["path"]] = data[it["key"]]
        return out

    conf_mount = mounts.get(f"{IMAGE_ROOT}/conf")
    if not check(conf_mount is not None, f"config volume mounted at {IMAGE_ROOT}/conf"):
        return
    conf_files = files_of(volumes[conf_mount["name"]])
    conf_name = os.path.basename(case["config"])
    with open(case["config"], encoding="utf-8") as f:
        shipped = f.read()
    # (d) the ConfigMap's config is the shipped one.
    check(conf_files.get(conf_name) == shipped,
          f"ConfigMap {conf_name} is byte-for-byte {case['config']}")
    # A ${VAR} without a default is a start-up error when VAR is unset.
    required = sorted({m.group(1) for m in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", shipped)})
    check(all(v in env for v in required),
          f"env sets every ${{VAR}} the config needs without a default ({', '.join(required) or 'none'})")
    cm = find(docs, "ConfigMap", case["config_configmap"], generated=True)
    check(cm is not None and volumes[conf_mount["name"]].get("configMap", {}).get("name") == cm["metadata"]["name"],
          f"config volume uses the generated ConfigMap {case['config_configmap']}-<hash>")

    # What the container sees under /etc/outrigger/static: the image's static/ with volumes on top.
    static_view = {}
    for root, _dirs, files in os.walk("static"):
        for fn in files:
            rel = os.path.relpath(os.path.join(root, fn), "static")
            with open(os.path.join(root, fn), "rb") as f:
                static_view[rel] = f.read()
    for path, m in sorted(mounts.items()):  # sorted: a parent mount before the mounts below it
        if path != f"{IMAGE_ROOT}/static" and not path.startswith(f"{IMAGE_ROOT}/static/"):
            continue
        sub = path[len(f"{IMAGE_ROOT}/static"):].strip("/")
        prefix = sub + "/" if sub else ""
        # A mount hides what the image had below it ("" hides all of static/).
        static_view = {k: v for k, v in static_view.items() if not k.startswith(prefix)}
        for rel, content in files_of(volumes[m["name"]]).items():
            static_view[prefix + rel] = content.encode("utf-8")
    for f_ in case["static_files"]:
        check(f_ in static_view, f"{IMAGE_ROOT}/static/{f_} present in the container")
    if "50x.html" not in case["static_files"]:
        check("50x.html" in static_view, f"{IMAGE_ROOT}/static/50x.html (error page) present in the container")

    if case["cache_dir"]:
        m = mounts.get(case["cache_dir"])
        check(m is not None and "emptyDir" in volumes.get(m["name"], {}),
              f"emptyDir mounted at {case['cache_dir']} (the cache; the root filesystem is read-only)")
    else:
        check(True, "no cache configured: no writable volume needed")

    # The Service reaches the sidecar.
    svc = find(docs, "Service", case["service"])
    if check(svc is not None, f"Service {case['service']} rendered"):
        sp = svc["spec"]
        check(sp.get("type", "ClusterIP") == case["service_type"], f"Service type {sp.get('type', 'ClusterIP')}")
        sel = sp.get("selector", {})
        check(sel and all(tmpl_labels.get(k) == v for k, v in sel.items()), "Service selector matches the pods")
        check(len(sp["ports"]) == 1, f"Service has one port ({len(sp['ports'])})")
        p = sp["ports"][0]
        tp = p.get("targetPort")
        check(p["port"] == case["service_port"] and tp in ("proxy-http", case["proxy_port"]),
              f"Service port {p['port']} -> targetPort {tp} (the sidecar)")
        if "node_port" in case:
            check(p.get("nodePort") == case["node_port"], f"nodePort {p.get('nodePort')}")

    # Lay out /etc/outrigger for `outrigger -t`.
    shutil.rmtree(pod_root, ignore_errors=True)
    for rel, content in conf_files.items():
        dst = os.path.join(layout, "conf", rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "w", encoding="utf-8") as f:
            f.write(content)
    for rel, content in static_view.items():
        dst = os.path.join(layout, "static", rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "wb") as f:
            f.write(content)
    with open(os.path.join(pod_root, "config-path"), "w", encoding="utf-8") as f:
        f.write(os.path.join(layout, "conf", conf_name) + "\n")
    with open(os.path.join(pod_root, "env"), "w", encoding="utf-8") as f:
        for k, v in env.items():
            if v is not None:
                f.write(f"{k}={v}\n")


if __name__ == "__main__":
    main()
    sys.exit(0 if results and all(results) else 1)
