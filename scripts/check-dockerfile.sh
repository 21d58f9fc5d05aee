#!/usr/bin/env bash
# Offline checks of the Dockerfile (no Docker engine needed):
#   (a) the runtime stage copies the binary from exactly where the builder's
#       `cargo build --release --bin lakepool` puts it (<WORKDIR>/target/release/lakepool), and
#       nothing (--target, --target-dir, CARGO_TARGET_DIR) moves it;
#   (b) the final stage runs as a numeric non-root USER;
#   (c) ENTRYPOINT runs the copied binary, CMD's --config path is the one the Kubernetes
#       manifests mount from their ConfigMaps, and their runAsUser/ports match the image;
#   plus: HEALTHCHECK present and runnable without curl, STOPSIGNAL, .dockerignore; and for the
#   opt-in PGO build (--build-arg PGO=1): ARG PGO=0 in the builder, benches/pgo.sh and what it
#   sources copied in (and not excluded by .dockerignore), no PostgreSQL in the runtime stage.
#
#   scripts/check-dockerfile.sh                    # check ./Dockerfile against config/kubernetes
#   scripts/check-dockerfile.sh --build            # also build in release mode and check where
#                                                  # cargo really writes the binary (slow)
#   scripts/check-dockerfile.sh --dockerfile F --manifests DIR
#   scripts/check-dockerfile.sh --self-test        # mutate temp copies; each must fail
#
# Needs python3 with PyYAML (or the venv scripts/validate-manifests.sh makes in target/k8s-venv)
# and cargo (for `cargo metadata`). Exits 1 with FAIL lines when a check fails.
set -euo pipefail

cd "$(dirname "$0")/.."
repo="$(pwd)"

die() {
    echo "check-dockerfile: $*" >&2
    exit 1
}

python=""
for candidate in target/k8s-venv/bin/python python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import yaml' 2>/dev/null; then
        python="$candidate"
        break
    fi
done
[[ -n "$python" ]] || die "needs python3 with PyYAML: apt-get install python3-yaml, or run scripts/validate-manifests.sh once (it makes target/k8s-venv)"

if [[ "${1:-}" != "--self-test" ]]; then
    if "$python" scripts/deploycheck.py dockerfile --repo "$repo" "$@"; then
        echo "check-dockerfile: all checks passed"
    else
        echo "check-dockerfile: FAILED (see FAIL lines above)" >&2
        exit 1
    fi
    exit 0
fi

# --self-test: every mutation of a temp copy must make the check fail.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp -r config/kubernetes "$tmp/manifests"

# name | file to mutate (Dockerfile, dockerignore or a manifest) | sed expression
mutations=(
    "copies a debug build|Dockerfile|s#/src/target/release/lakepool#/src/target/debug/lakepool#"
    "builds without --bin lakepool|Dockerfile|s#--bin lakepool##"
    "builds for another --target|Dockerfile|s#--bin lakepool#--bin lakepool --target x86_64-unknown-linux-musl#"
    "different WORKDIR in the builder|Dockerfile|s#^WORKDIR /src#WORKDIR /build#"
    "runs as root|Dockerfile|s#^USER 10001:10001#USER root#"
    "runs as UID 0|Dockerfile|s#^USER 10001:10001#USER 0#"
    "has no USER|Dockerfile|/^USER /d"
    "user name instead of UID|Dockerfile|s#^USER 10001:10001#USER lakepool#"
    "ENTRYPOINT elsewhere|Dockerfile|s#ENTRYPOINT \[\"/usr/local/bin/lakepool\"\]#ENTRYPOINT [\"/usr/bin/lakepool\"]#"
    "ENTRYPOINT in shell form|Dockerfile|s#^ENTRYPOINT .*#ENTRYPOINT /usr/local/bin/lakepool#"
    "CMD with another config path|Dockerfile|s#CMD \[\"--config\", \"/etc/lakepool/lakepool.toml\"\]#CMD [\"--config\", \"/etc/lakepool/config.toml\"]#"
    "CMD with a run subcommand|Dockerfile|s#CMD \[\"--config\"#CMD [\"run\", \"--config\"#"
    "no HEALTHCHECK|Dockerfile|/^HEALTHCHECK/,/lakepool-healthcheck\", \"\/healthz\"\]/d"
    "manifest mounts the config elsewhere|manifests/shared/deployment.yaml|s#mountPath: /etc/lakepool\$#mountPath: /etc/lakepool-conf#"
    "manifest passes another --config|manifests/sidecar/deployment.yaml|s#args: \[\"--config\", \"/etc/lakepool/lakepool.toml\"\]#args: [\"--config\", \"/config/lakepool.toml\"]#"
    "manifest runAsUser differs|manifests/shared/deployment.yaml|s#runAsUser: 10001#runAsUser: 1000#"
    "PGO build without lib.sh|Dockerfile|s#^COPY benches/pgo.sh benches/lib.sh #COPY benches/pgo.sh #"
    "no ARG PGO in the builder|Dockerfile|/^ARG PGO=0/d"
    "PGO on by default|Dockerfile|s#^ARG PGO=0#ARG PGO=1#"
    ".dockerignore drops pgo.sh|dockerignore|/^!benches\/pgo.sh/d"
    "runtime installs PostgreSQL|Dockerfile|s#no-install-recommends ca-certificates#no-install-recommends ca-certificates postgresql#"
)

failed=0
for m in "${mutations[@]}"; do
    IFS='|' read -r name file expr <<<"$m"
    rm -rf "$tmp/case" && mkdir "$tmp/case"
    cp Dockerfile "$tmp/case/Dockerfile"
    cp .dockerignore "$tmp/case/dockerignore"
    cp -r "$tmp/manifests" "$tmp/case/manifests"
    sed -i -e "$expr" "$tmp/case/$file"
    case "$file" in
        Dockerfile) orig=Dockerfile ;;
        dockerignore) orig=.dockerignore ;;
        *) orig="$tmp/$file" ;;
    esac
    if cmp -s "$tmp/case/$file" "$orig"; then
        echo "self-test: mutation '$name' changed nothing (fix the sed expression)" >&2
        failed=1
        continue
    fi
    if out="$("$python" scripts/deploycheck.py dockerfile --repo "$repo" --no-cargo \
        --dockerfile "$tmp/case/Dockerfile" --dockerignore "$tmp/case/dockerignore" \
        --manifests "$tmp/case/manifests" 2>&1)"; then
        echo "self-test: NOT CAUGHT: $name"
        failed=1
    else
        echo "self-test: caught: $name -> $(grep -m1 '^FAIL' <<<"$out")"
    fi
done
# The unmodified copy must pass.
if "$python" scripts/deploycheck.py dockerfile --repo "$repo" --no-cargo \
    --dockerfile Dockerfile --manifests "$tmp/manifests" >/dev/null; then
    echo "self-test: unmodified Dockerfile passes"
else
    echo "self-test: the unmodified Dockerfile fails" >&2
    failed=1
fi
if ((failed)); then
    echo "check-dockerfile --self-test: FAILED" >&2
    exit 1
fi
echo "check-dockerfile --self-test: all ${#mutations[@]} mutations caught"
