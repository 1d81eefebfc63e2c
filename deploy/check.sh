#!/usr/bin/env bash
# deploy/check.sh — offline checks of the container image recipe and the Kubernetes manifests.
#
#   bash deploy/check.sh          # from the repository root (CI calls it from .ci/run)
#   bash deploy/check.sh --sync   # first copy conf/*.yaml to their deploy/ copies, then check
#
#  (a) every path the Dockerfile COPYs from the build context exists and is not .dockerignored,
#      and the file of every cargo target (bins, benches, tests: cargo refuses to build when a
#      declared one is missing) is among them;
#  (b) hadolint on the Dockerfile (and shellcheck on this script) when they are on PATH;
#  (c) each kustomization (deploy/alertmanager/example, deploy/flask-api) renders with
#      `kubectl kustomize` (or `kustomize build`), and every rendered document validates against
#      the Kubernetes JSON schemas of version $K8S_VERSION in strict mode (unknown fields are
#      errors), with the kubernetes-validate package from PyPI, installed into a venv under
#      target/deploy-check/; deploy/check_manifests.py then checks the wiring (sidecar ports,
#      probes, securityContext, volumes and ConfigMaps, Service -> sidecar). Without kubectl or
#      kustomize the standalone resource files are validated and rendering is skipped;
#  (d) the configs in the ConfigMaps are byte-for-byte conf/outrigger.yaml and conf/static-api.yaml
#      (the copies in deploy/ and, when rendered, the ConfigMaps themselves);
#  (e) when target/{release,debug}/outrigger exists, `outrigger -t` on each rendered config, laid
#      out as the container sees it (ConfigMaps over the image's conf/ and static/).
# Needs bash and python3 (with venv or pip); installs nothing else. Exits 1 if a check failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

K8S_VERSION="${K8S_VERSION:-1.29.0}"
KUBERNETES_VALIDATE="kubernetes-validate==1.37.0"
WORK="target/deploy-check"
KUSTOMIZATIONS=(deploy/alertmanager/example deploy/flask-api)
declare -A CASE=([deploy/alertmanager/example]=alertmanager [deploy/flask-api]=flask-api)
# Resource files that are complete objects (validated on their own when nothing can render).
STANDALONE=(deploy/alertmanager/example/alertmanager.yaml deploy/flask-api/deployment.yaml
            deploy/flask-api/service.yaml)
# deploy/ copies that must equal the shipped configs.
declare -A COPIES=([deploy/alertmanager/base/outrigger.yaml]=conf/outrigger.yaml
                   [deploy/flask-api/static-api.yaml]=conf/static-api.yaml)

# --sync: first refresh the deploy/ copies from conf/ (after editing a shipped config).
if [ "${1:-}" = "--sync" ]; then
  for copy in "${!COPIES[@]}"; do cp "${COPIES[$copy]}" "$copy" && echo "synced $copy from ${COPIES[$copy]}"; done
fi

passed=0 failed=0 skipped=0
pass() { passed=$((passed + 1)); echo "PASS  $*"; }
fail() { failed=$((failed + 1)); echo "FAIL  $*"; }
skip() { skipped=$((skipped + 1)); echo "SKIP  $*"; }
mkdir -p "$WORK"

# --- (a) Dockerfile COPY sources -----------------------------------------------------------------
ignore_patterns=()
if [ -f .dockerignore ]; then
  while IFS= read -r line; do
    line="${line%%#*}"; line="${line#"${line%%[![:space:]]*}"}"; line="${line%"${line##*[![:space:]]}"}"
    [ -z "$line" ] && continue
    [ "${line:0:1}" = "!" ] && continue
    line="${line#/}"; line="${line%/}"
    ignore_patterns+=("$line")
  done < .dockerignore
fi
ignored_by() { # PATH -> the .dockerignore pattern that excludes it (or one of its parents)
  local p="$1" prefix="" part pat
  local IFS=/
  for part in $p; do
    prefix="${prefix:+$prefix/}$part"
    for pat in "${ignore_patterns[@]}"; do
      # shellcheck disable=SC2053  # the pattern is a glob on purpose
      if [[ "$prefix" == $pat ]]; then echo "$pat"; return 0; fi
    done
  done
  return 1
}
copy_errors=0 copy_count=0 context_paths=()
while read -r -a words; do
  [ "${#words[@]}" -eq 0 ] && continue
  [ "${words[0]^^}" = "COPY" ] || continue
  if [[ "${words[1]}" == \[* ]]; then
    fail "Dockerfile: JSON-form COPY not understood by deploy/check.sh: ${words[*]}"; copy_errors=1; continue
  fi
  srcs=(); from=0
  for w in "${words[@]:1}"; do
    case "$w" in
      --from=*) from=1 ;;
      --*) ;;
      *) srcs+=("$w") ;;
    esac
  done
  [ "$from" -eq 1 ] && continue                     # from another stage, not the build context
  unset 'srcs[${#srcs[@]}-1]'                       # the destination
  for s in "${srcs[@]}"; do
    copy_count=$((copy_count + 1))
    s="${s#./}"; s="${s%/}"
    context_paths+=("$s")
    if ! compgen -G "$s" >/dev/null; then
      fail "Dockerfile COPYs '$s', which does not exist in the repository"; copy_errors=1
    elif pat=$(ignored_by "$s"); then
      fail "Dockerfile COPYs '$s', which .dockerignore excludes (pattern '$pat')"; copy_errors=1
    fi
  done
done < <(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' Dockerfile)
if [ "$copy_errors" -eq 0 ] && [ "$copy_count" -gt 0 ]; then
  pass "Dockerfile: all $copy_count COPY sources from the build context exist and are not .dockerignored"
elif [ "$copy_count" -eq 0 ]; then
  fail "Dockerfile: no COPY from the build context found"
fi
# cargo refuses to build when a target the manifest declares (a [[bench]], [[test]], ...) has no
# file, even one `cargo build` does not compile: every target's file must be in the image context.
if command -v cargo >/dev/null 2>&1; then
  if targets=$(cargo metadata --no-deps --format-version 1 --offline 2>/dev/null | python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
for pkg in meta["packages"]:
    for t in pkg["targets"]:
        print(os.path.relpath(t["src_path"], meta["workspace_root"]))'); then
    missing=()
    while IFS= read -r t; do
      [ -z "$t" ] && continue
      covered=0
      for c in "${context_paths[@]}"; do
        if [ "$t" = "$c" ] || [[ "$t" == "$c"/* ]]; then covered=1; fi
      done
      if [ "$covered" -eq 0 ] || ignored_by "$t" >/dev/null; then missing+=("$t"); fi
    done <<< "$targets"
    if [ "${#missing[@]}" -eq 0 ]; then
      pass "Dockerfile: the files of all $(grep -c . <<< "$targets") cargo targets are copied into the builder"
    else
      fail "Dockerfile: cargo targets whose files the image build lacks (cargo build would fail): ${missing[*]}"
    fi
  else
    fail "cargo metadata failed"
  fi
else
  skip "cargo is not on PATH: cargo targets vs Dockerfile COPYs not checked"
fi

# --- (b) linters, when installed --------------------------------------------------------------------
if command -v hadolint >/dev/null 2>&1; then
  if hadolint Dockerfile; then pass "hadolint Dockerfile"; else fail "hadolint Dockerfile"; fi
else
  skip "hadolint is not on PATH: Dockerfile not linted"
fi
if command -v shellcheck >/dev/null 2>&1; then
  if shellcheck deploy/check.sh; then pass "shellcheck deploy/check.sh"; else fail "shellcheck deploy/check.sh"; fi
else
  skip "shellcheck is not on PATH: deploy/check.sh not linted"
fi

# --- (d) the deploy/ copies of the configs ----------------------------------------------------------
for copy in "${!COPIES[@]}"; do
  if cmp -s "$copy" "${COPIES[$copy]}"; then
    pass "$copy is identical to ${COPIES[$copy]}"
  else
    fail "$copy differs from ${COPIES[$copy]}: run 'bash deploy/check.sh --sync' (copies conf/ there)"
  fi
done

# Example content (your own script.js, pages and site go there): differences are only noted.
for pair in deploy/alertmanager/base/script.js:static/script.js deploy/alertmanager/base/50x.html:static/50x.html \
            deploy/flask-api/site/index.html:static/site/index.html deploy/flask-api/site/script.js:static/site/script.js; do
  cmp -s "${pair%%:*}" "${pair#*:}" || echo "NOTE  ${pair%%:*} differs from ${pair#*:} (fine if it is your own content)"
done

# --- (c) render and validate --------------------------------------------------------------------
# kubernetes-validate: already importable, else a venv under target/, else pip --user.
PY=""
if python3 -c 'import kubernetes_validate, yaml' >/dev/null 2>&1; then
  PY=python3
else
  venv="$WORK/venv"
  if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$KUBERNETES_VALIDATE" ] \
    || ! "$venv/bin/python" -c 'import kubernetes_validate, yaml' >/dev/null 2>&1; then
    echo "installing $KUBERNETES_VALIDATE into $venv"
    rm -rf "$venv"
    if python3 -m venv "$venv" >/dev/null 2>&1 \
      && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$KUBERNETES_VALIDATE"; then
      echo "$KUBERNETES_VALIDATE" > "$venv/.installed"
    else
      rm -rf "$venv"
      echo "no venv: installing $KUBERNETES_VALIDATE with pip --user"
      python3 -m pip install --quiet --disable-pip-version-check --user "$KUBERNETES_VALIDATE" || true
    fi
  fi
  if [ -x "$venv/bin/python" ]; then
    PY="$venv/bin/python"
  elif python3 -c 'import kubernetes_validate, yaml' >/dev/null 2>&1; then
    PY=python3
  fi
fi
validate() { # FILE... -> kubernetes-validate, strict, against $K8S_VERSION
  "$PY" -m kubernetes_validate --kubernetes-version "$K8S_VERSION" --strict --quiet "$@"
}
if [ -z "$PY" ]; then
  fail "could not install $KUBERNETES_VALIDATE (PyPI unreachable?): manifests not validated"
fi

render=""
if command -v kubectl >/dev/null 2>&1; then
  render="kubectl kustomize"
elif command -v kustomize >/dev/null 2>&1; then
  render="kustomize build"
fi

if [ -z "$render" ]; then
  skip "neither kubectl nor kustomize on PATH: kustomizations not rendered (patches, ConfigMaps and (e) unchecked)"
  if [ -n "$PY" ]; then
    if validate "${STANDALONE[@]}"; then
      pass "standalone resources valid against Kubernetes $K8S_VERSION (strict): ${STANDALONE[*]}"
    else
      fail "standalone resources do not validate against Kubernetes $K8S_VERSION"
    fi
  fi
else
  # (e) the newest outrigger binary, if one was built.
  bin=""
  for b in target/release/outrigger target/debug/outrigger; do
    if [ -x "$b" ] && { [ -z "$bin" ] || [ "$b" -nt "$bin" ]; }; then bin="$b"; fi
  done
  for k in "${KUSTOMIZATIONS[@]}"; do
    case_name="${CASE[$k]}"
    out="$WORK/rendered-$case_name.yaml"
    if ! $render "$k" > "$out" 2> "$WORK/render-$case_name.err"; then
      fail "$render $k"; sed 's/^/      /' "$WORK/render-$case_name.err"; continue
    fi
    ndocs=$(grep -c '^kind: ' "$out" || true)
    pass "$render $k: $ndocs objects -> $out"
    [ -n "$PY" ] || continue
    if validate "$out"; then
      pass "$k: all $ndocs objects valid against Kubernetes $K8S_VERSION schemas (strict)"
    else
      fail "$k: rendered objects do not validate against Kubernetes $K8S_VERSION"
    fi
    pod_root="$WORK/pod-$case_name"
    echo "      wiring checks ($case_name):"
    if "$PY" deploy/check_manifests.py "$case_name" "$out" "$pod_root"; then
      pass "$k: sidecar wiring, volumes, Service and the ConfigMap config (= conf/) check out"
    else
      fail "$k: wiring checks (see FAIL lines above)"; continue
    fi
    if [ -z "$bin" ]; then
      skip "$k: no target/{release,debug}/outrigger built: outrigger -t not run"
      continue
    fi
    cfg=$(cat "$pod_root/config-path")
    env_args=()
    while IFS= read -r kv; do [ -n "$kv" ] && env_args+=("$kv"); done < "$pod_root/env"
    # -t creates nothing, but checks the cache directory can be made: point it at $WORK.
    if env "${env_args[@]}" OUTRIGGER_CACHE_DIR="$WORK/cache-$case_name" "$bin" -t -c "$cfg" \
        > "$WORK/t-$case_name.log" 2>&1; then
      pass "$k: $bin -t accepts the rendered config as the container sees it ($cfg)"
    else
      fail "$k: $bin -t rejects the rendered config"; sed 's/^/      /' "$WORK/t-$case_name.log"
    fi
  done
fi

echo "deploy-check: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
