#!/usr/bin/env bash
# Offline validation of the Kubernetes manifests under config/kubernetes (no cluster needed):
#
#   1. every YAML (but kustomization.yaml) against the Kubernetes 1.30 OpenAPI schemas with
#      kubernetes-validate --strict (unknown fields are errors; so is an unknown kind/apiVersion);
#   2. every kustomization.yaml: its resources exist, and every manifest is listed in one
#      (or named *.example.yaml); with kubectl installed, `kubectl kustomize` renders each and
#      the result is validated as in 1;
#   3. every lakepool.toml in a ConfigMap: `lakepool check` accepts it (offline: check loads and
#      validates the config and builds the pools without binding sockets or calling the
#      workspace API), with each `*_file` path re-pointed at a temp placeholder; and the files
#      it names are mounted from Secret keys that exist, its ports match the container ports and
#      probes, and terminationGracePeriodSeconds exceeds preStop sleep + shutdown_timeout.
#
#   scripts/validate-manifests.sh [DIR]     # DIR defaults to config/kubernetes
#   scripts/validate-manifests.sh --self-test   # broken temp copies of config/kubernetes: each
#                                               # must fail
#
# Makes (once) a Python venv in target/k8s-venv with a pinned kubernetes-validate from PyPI,
# builds target/debug/lakepool (cargo build --bin lakepool; LAKEPOOL_BIN=path to use another
# binary). Needs python3 (3.11+, for tomllib) with venv, and openssl (placeholder TLS cert).
# Prints one line per file and check; exits 1 on any failure.
set -euo pipefail

cd "$(dirname "$0")/.."

KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.30.0}"
KV_VERSION="1.37.0" # kubernetes-validate; ships schemas for Kubernetes 1.25 .. 1.37
venv="target/k8s-venv"
dir="${1:-config/kubernetes}"
self_test=0
if [[ "$dir" == "--self-test" ]]; then
    self_test=1
    dir=config/kubernetes
fi

die() {
    echo "validate-manifests: $*" >&2
    exit 1
}

[[ -d "$dir" ]] || die "no directory $dir"

# --- venv (idempotent: reused while it has the pinned version) ---------------------------
if [[ "$("$venv/bin/kubernetes-validate" --version 2>/dev/null || true)" != "$KV_VERSION" ]]; then
    echo "==> creating $venv with kubernetes-validate==$KV_VERSION"
    command -v python3 >/dev/null || die "python3 not found (apt-get install python3 python3-venv)"
    rm -rf "$venv"
    mkdir -p target
    python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION" ||
        die "pip install kubernetes-validate==$KV_VERSION failed"
fi
py="$venv/bin/python"
"$py" -c 'import tomllib, yaml' 2>/dev/null || die "$py lacks tomllib (needs Python 3.11+) or PyYAML"

# --- lakepool binary ----------------------------------------------------------------------
if [[ -n "${LAKEPOOL_BIN:-}" ]]; then
    lakepool="$LAKEPOOL_BIN"
else
    cargo build --quiet --bin lakepool || die "cargo build --bin lakepool failed"
    lakepool="target/debug/lakepool"
fi
[[ -x "$lakepool" ]] || die "$lakepool is not an executable"

if ((self_test)); then
    # name | file under the copy | sed expression. Each mutated copy must fail validation.
    mutations=(
        "unknown field in a container|shared/deployment.yaml|s#^          imagePullPolicy: IfNotPresent#          imagePullPolicyy: IfNotPresent#"
        "wrong apiVersion|shared/pdb.yaml|s#^apiVersion: policy/v1#apiVersion: policy/v2#"
        "native sidecar on a 1.27 schema|sidecar/deployment.yaml|KUBERNETES_VERSION=1.27.0"
        "missing kustomization resource|shared/kustomization.yaml|s#  - pdb.yaml#  - pdb.yaml\n  - hpa.yaml#"
        "manifest in no kustomization|shared/kustomization.yaml|/  - service.yaml/d"
        "unknown lakepool.toml key|shared/configmap.yaml|s#^    max_client_conn = 5000#    max_client_connections = 5000#"
        "invalid lakepool.toml value|sidecar/configmap.yaml|s#^    pool_size = 10#    pool_size = 0#"
        "secret file not mounted|sidecar/deployment.yaml|s#^              - key: client_secret\$#              - key: client_secret_x#"
        "secret key missing from the Secret|shared/secret.example.yaml|s#^  client_secret: #  clientsecret: #"
        "admin port differs from probes|shared/configmap.yaml|s#^    admin_listen = \"0.0.0.0:9187\"#    admin_listen = \"0.0.0.0:9188\"#"
        "admin port on loopback|sidecar/configmap.yaml|s#^    admin_listen = \"0.0.0.0:9187\"#    admin_listen = \"127.0.0.1:9187\"#"
        "metrics without a token|shared/configmap.yaml|/^    admin_token_file = /d"
        "socket directory not mounted|sidecar/deployment.yaml|s#^              mountPath: /var/run/lakepool\$#              mountPath: /var/run/lakepool-x#"
        "socket volume not shared with the app|sidecar/deployment.yaml|/# lakepool's Unix socket (DATABASE_SOCKET_URL)/{n;s#lakepool-socket#lakepool-sockets#}"
        "socket directory read-only|sidecar/deployment.yaml|0,/^              mountPath: \/var\/run\/lakepool\$/s##              mountPath: /var/run/lakepool\n              readOnly: true#"
        "socket directory not an emptyDir|sidecar/deployment.yaml|s#^          emptyDir:\$#          hostPath: {path: /tmp}\n          emptyDir:#"
        "grace period shorter than the drain|shared/deployment.yaml|s#terminationGracePeriodSeconds: 45#terminationGracePeriodSeconds: 30#"
    )
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    bad=0
    for m in "${mutations[@]}"; do
        IFS='|' read -r name file expr <<<"$m"
        rm -rf "$tmp/k" && cp -r config/kubernetes "$tmp/k"
        version="$KUBERNETES_VERSION"
        if [[ "$expr" == KUBERNETES_VERSION=* ]]; then
            version="${expr#KUBERNETES_VERSION=}"
        else
            sed -i -e "$expr" "$tmp/k/$file"
            if cmp -s "$tmp/k/$file" "config/kubernetes/$file"; then
                echo "self-test: mutation '$name' changed nothing (fix its sed expression)" >&2
                bad=1
                continue
            fi
        fi
        if out="$(KUBERNETES_VERSION="$version" LAKEPOOL_BIN="$lakepool" "$0" "$tmp/k" 2>&1)"; then
            echo "self-test: NOT CAUGHT: $name"
            bad=1
        else
            echo "self-test: caught: $name -> $(awk '/^FAIL/ { if ($0 ~ /:$/) { getline n; $0 = $0 n } print; exit }' <<<"$out" | tr -s ' ' | cut -c1-240)"
        fi
    done
    if ((bad)); then
        echo "validate-manifests --self-test: FAILED" >&2
        exit 1
    fi
    echo "validate-manifests --self-test: all ${#mutations[@]} mutations caught"
    exit 0
fi

failures=0
fail() {
    echo "FAIL $*"
    failures=$((failures + 1))
}

# --- 1. schemas ---------------------------------------------------------------------------
mapfile -t files < <(find "$dir" -type f \( -name '*.yaml' -o -name '*.yml' \) \
    ! -name 'kustomization.yaml' ! -name 'kustomization.yml' | sort)
((${#files[@]})) || die "no manifests under $dir"

# validate_files LABEL FILE...: validates the files (one process for all) and prints one line
# per file, named LABEL if not empty (for a single rendered file), else by its path. kubernetes-validate
# only warns (exit 0) for a kind/apiVersion it has no schema for, so WARN counts as a failure.
validate_files() {
    local label_prefix="$1"
    shift
    local out rc=0
    out="$("$venv/bin/kubernetes-validate" -k "$KUBERNETES_VERSION" --strict "$@" 2>&1)" || rc=$?
    local f lines
    for f in "$@"; do
        lines="$(grep -F -- " $f " <<<"$out" || true)"
        local label="${label_prefix:-$f}"
        if [[ -z "$lines" ]]; then
            fail "$label: no resources found"
        elif grep -qv '^INFO ' <<<"$lines"; then
            fail "$label:"
            grep -v '^INFO ' <<<"$lines" | sed 's/^/     /'
        else
            local res
            res="$(sed -n 's/.* for resource \([^ ]*\) against.*/\1/p' <<<"$lines" | paste -sd, -)"
            echo "PASS $label: $res (Kubernetes ${KUBERNETES_VERSION%.*}, strict)"
        fi
    done
    # Anything else it said (a FATAL, a parse error) is a failure too.
    if ((rc != 0)) && ! grep -q '^ERROR ' <<<"$out"; then
        fail "kubernetes-validate exited $rc: $out"
    fi
}

echo "==> schemas: kubernetes-validate $KV_VERSION -k $KUBERNETES_VERSION --strict"
validate_files "" "${files[@]}"

# --- 2. kustomizations --------------------------------------------------------------------
echo "==> kustomization.yaml"
"$py" scripts/deploycheck.py kustomize --manifests "$dir" || failures=$((failures + 1))
if command -v kubectl >/dev/null 2>&1; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    while IFS= read -r k; do
        kdir="$(dirname "$k")"
        out="$tmp/$(echo "$kdir" | tr '/' '_').yaml"
        if kubectl kustomize "$kdir" >"$out" 2>"$tmp/err"; then
            validate_files "kubectl kustomize $kdir" "$out"
        else
            fail "kubectl kustomize $kdir: $(cat "$tmp/err")"
        fi
    done < <(find "$dir" -name kustomization.yaml | sort)
else
    echo "note kubectl not installed: kustomize rendering skipped (resources checked above)"
fi

# --- 3. lakepool.toml in ConfigMaps -------------------------------------------------------
echo "==> lakepool.toml in ConfigMaps: $lakepool check"
"$py" scripts/deploycheck.py configs --manifests "$dir" --lakepool "$lakepool" || failures=$((failures + 1))

if ((failures)); then
    echo "validate-manifests: FAILED ($failures problem(s))" >&2
    exit 1
fi
echo "validate-manifests: all manifests valid"
