#!/usr/bin/env python3
"""Offline consistency checks for lakepool's Dockerfile and Kubernetes manifests.

Used by scripts/check-dockerfile.sh and scripts/validate-manifests.sh; needs PyYAML (and
tomllib, Python >= 3.11, for `configs`). Every failure is printed as "FAIL: ..." and makes the
command exit 1.

  deploycheck.py dockerfile --dockerfile Dockerfile --manifests config/kubernetes [--repo .]
  deploycheck.py kustomize --manifests config/kubernetes
  deploycheck.py configs --manifests config/kubernetes --lakepool target/debug/lakepool \
      --default-config /etc/lakepool/lakepool.toml
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import posixpath
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod"}


class Checker:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def fail(self, msg: str) -> None:
        self.failures.append(msg)
        print(f"FAIL: {msg}")

    def ok(self, msg: str) -> None:
        print(f"ok:   {msg}")

    def require(self, cond: bool, ok_msg: str, fail_msg: str) -> bool:
        if cond:
            self.ok(ok_msg)
        else:
            self.fail(fail_msg)
        return cond

    def exit_code(self) -> int:
        return 1 if self.failures else 0


# --------------------------------------------------------------------------------------------
# Kubernetes manifests


def manifest_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def load_docs(path: Path) -> list[dict]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


def all_resources(root: Path) -> list[tuple[Path, dict]]:
    out = []
    for p in manifest_files(root):
        if p.name in ("kustomization.yaml", "kustomization.yml"):
            continue
        for d in load_docs(p):
            out.append((p, d))
    return out


def pod_spec(res: dict) -> dict | None:
    kind = res.get("kind")
    if kind not in WORKLOAD_KINDS:
        return None
    if kind == "Pod":
        return res.get("spec") or {}
    return ((res.get("spec") or {}).get("template") or {}).get("spec") or {}


def is_lakepool(container: dict) -> bool:
    image = container.get("image", "")
    name = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    return container.get("name") == "lakepool" or name == "lakepool"


@dataclass
class LakepoolContainer:
    file: Path
    workload: str
    pod: dict
    container: dict
    init: bool

    @property
    def label(self) -> str:
        kind = "initContainer" if self.init else "container"
        return f"{self.file}: {self.workload} {kind} {self.container.get('name')}"


def lakepool_containers(resources: list[tuple[Path, dict]]) -> list[LakepoolContainer]:
    found = []
    for path, res in resources:
        spec = pod_spec(res)
        if spec is None:
            continue
        workload = f"{res['kind']}/{res.get('metadata', {}).get('name')}"
        for init, key in ((True, "initContainers"), (False, "containers")):
            for c in spec.get(key) or []:
                if is_lakepool(c):
                    found.append(LakepoolContainer(path, workload, spec, c, init))
    return found


def config_arg(argv: list[str]) -> str | None:
    """The value of --config/-c in an argument list, or None."""
    for i, a in enumerate(argv):
        if a in ("--config", "-c") and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return None


@dataclass
class Mounted:
    """What a file path inside a container resolves to."""

    mount_path: str
    volume: dict
    sub_path: str  # path below the mount point
    source_kind: str | None  # "configMap" / "secret" / other volume type
    source_name: str | None
    key: str | None  # the ConfigMap/Secret key behind the file, when known


def resolve_mount(container: dict, pod: dict, file_path: str) -> Mounted | None:
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    best = None
    for m in container.get("volumeMounts") or []:
        mp = m["mountPath"].rstrip("/") or "/"
        if file_path == mp or file_path.startswith(mp + "/"):
            if best is None or len(mp) > len(best["mountPath"].rstrip("/")):
                best = m
    if best is None:
        return None
    vol = volumes.get(best["name"], {})
    mp = best["mountPath"].rstrip("/")
    if best.get("subPath"):
        sub = best["subPath"] if file_path == mp else None
    else:
        sub = posixpath.relpath(file_path, mp)
    kind = name = key = None
    for k in ("configMap", "secret"):
        if k in vol:
            kind = k
            src = vol[k]
            name = src.get("name") if k == "configMap" else src.get("secretName")
            items = src.get("items")
            if sub is None:
                key = None
            elif items:
                key = next((i["key"] for i in items if i["path"] == sub), None)
            else:
                key = sub if "/" not in sub else None
    if kind is None:
        kind = next((k for k in vol if k != "name"), None)
    return Mounted(best["mountPath"], vol, sub or "", kind, name, key)


def find_object(resources: list[tuple[Path, dict]], kind: str, name: str) -> dict | None:
    for _, r in resources:
        if r.get("kind") == kind and r.get("metadata", {}).get("name") == name:
            return r
    return None


def object_data(obj: dict) -> dict[str, str]:
    data = {k: str(v) for k, v in (obj.get("stringData") or {}).items()}
    for k, v in (obj.get("data") or {}).items():
        if obj.get("kind") == "Secret":
            try:
                data[k] = base64.b64decode(v).decode()
            except Exception:  # noqa: BLE001 - kept as-is if not base64
                data[k] = str(v)
        else:
            data[k] = str(v)
    return data


# --------------------------------------------------------------------------------------------
# Dockerfile


@dataclass
class Instr:
    cmd: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instrs: list[Instr] = field(default_factory=list)


def parse_dockerfile(text: str) -> list[Stage]:
    stages: list[Stage] = []
    logical: list[tuple[int, str]] = []
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue  # comment lines inside a continuation are dropped by Docker too
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        logical.append((start, buf.strip()))
        buf = ""
    if buf:
        logical.append((start, buf.strip()))
    for n, line in logical:
        parts = line.split(None, 1)
        cmd, args = parts[0].upper(), (parts[1] if len(parts) > 1 else "")
        if cmd == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instrs.append(Instr(cmd, args, n))
    return stages


def exec_form(args: str) -> list[str] | None:
    try:
        v = json.loads(args)
    except json.JSONDecodeError:
        return None
    return v if isinstance(v, list) and all(isinstance(x, str) for x in v) else None


def strip_flags(args: str) -> tuple[dict[str, str], list[str]]:
    """Splits `--flag=value` options from the remaining words of a COPY/RUN/HEALTHCHECK."""
    flags, rest = {}, []
    words = shlex.split(args)
    i = 0
    while i < len(words) and words[i].startswith("--"):
        k, _, v = words[i][2:].partition("=")
        flags[k] = v
        i += 1
    rest = words[i:]
    return flags, rest


def dockerignore_patterns(p: Path) -> list[str]:
    if not p.exists():
        return []
    out = []
    for line in p.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def ignored(path: str, patterns: list[str]) -> bool:
    """Approximation of .dockerignore matching for plain paths (last match wins, ! negates)."""
    import fnmatch

    path = path.strip("/")
    result = False
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat.lstrip("!").strip("/")
        pat_re = pat[3:] if pat.startswith("**/") else pat
        candidates = [path]
        parts = path.split("/")
        candidates += ["/".join(parts[:i]) for i in range(1, len(parts))]
        if pat.startswith("**/"):
            candidates += ["/".join(parts[i:]) for i in range(1, len(parts))]
        if any(fnmatch.fnmatch(c, pat_re) for c in candidates):
            result = not neg
    return result


def check_dockerfile(args: argparse.Namespace) -> int:
    ck = Checker()
    dockerfile = Path(args.dockerfile)
    repo = Path(args.repo)
    manifests = Path(args.manifests)
    print(f"== {dockerfile} (manifests: {manifests})")
    stages = parse_dockerfile(dockerfile.read_text())
    if len(stages) < 2:
        ck.fail(f"{dockerfile}: expected a multi-stage build (builder + runtime), found {len(stages)} stage(s)")
        return ck.exit_code()
    final = stages[-1]
    by_name = {s.name: s for s in stages if s.name}

    # (a) the binary the runtime stage copies is where the builder's cargo build puts it.
    copies = []
    for ins in final.instrs:
        if ins.cmd != "COPY":
            continue
        flags, words = strip_flags(ins.args)
        if "from" in flags and len(words) >= 2:
            copies.append((flags["from"], words[:-1], words[-1], ins))
    bin_copy = next(
        ((frm, srcs, dst, ins) for frm, srcs, dst, ins in copies if any(s.endswith("/lakepool") for s in srcs)),
        None,
    )
    binary = None
    if not bin_copy:
        ck.fail("runtime stage: no `COPY --from=<builder> .../lakepool <dest>` found")
    else:
        frm, srcs, dst, ins = bin_copy
        builder = by_name.get(frm) or (stages[int(frm)] if frm.isdigit() and int(frm) < len(stages) else None)
        if builder is None:
            ck.fail(f"line {ins.line}: COPY --from={frm}: no such build stage")
        else:
            ck.require(builder.base.startswith("rust:"), f"builder stage {frm!r} is FROM {builder.base}",
                       f"builder stage {frm!r} is FROM {builder.base}, expected a rust:* image")
            workdir, build_ins, cargo_env = "/", None, {}
            for b in builder.instrs:
                if b.cmd == "WORKDIR":
                    workdir = posixpath.join(workdir, b.args.strip())
                elif b.cmd == "ENV":
                    for m in re.finditer(r"(CARGO_[A-Z_]+)[= ]", b.args):
                        cargo_env[m.group(1)] = b.args
                elif b.cmd == "RUN" and re.search(r"\bcargo\s+build\b", b.args):
                    build_ins = (b, workdir)
            if build_ins is None:
                ck.fail(f"builder stage {frm!r}: no RUN with `cargo build`")
            else:
                b, workdir = build_ins
                m = re.search(r"\bcargo\s+build\b([^&;|]*)", b.args)
                cargo_args = shlex.split(m.group(1)) if m else []
                has_release = "--release" in cargo_args or "-r" in cargo_args
                has_bin = any(
                    (a == "--bin" and i + 1 < len(cargo_args) and cargo_args[i + 1] == "lakepool") or a == "--bin=lakepool"
                    for i, a in enumerate(cargo_args)
                )
                moved = [a for a in cargo_args if a.split("=")[0] in ("--target", "--target-dir", "--profile", "--out-dir", "--artifact-dir")]
                ck.require(has_release and has_bin,
                           f"line {b.line}: builder runs `cargo build --release --bin lakepool` in {workdir}",
                           f"line {b.line}: builder's cargo build must have --release and --bin lakepool (got: cargo build {' '.join(cargo_args)})")
                ck.require(not moved and not any(k in cargo_env for k in ("CARGO_TARGET_DIR", "CARGO_BUILD_TARGET", "CARGO_BUILD_TARGET_DIR")),
                           "no --target/--target-dir/--profile/CARGO_TARGET_DIR moving the artifact",
                           f"line {b.line}: {moved or list(cargo_env)} moves the artifact away from target/release/lakepool")
                expected = posixpath.normpath(posixpath.join(workdir, "target/release/lakepool"))
                src = posixpath.normpath(posixpath.join(workdir, srcs[0])) if not srcs[0].startswith("/") else posixpath.normpath(srcs[0])
                ck.require(src == expected,
                           f"line {ins.line}: runtime copies {src}, where cargo puts the binary",
                           f"line {ins.line}: runtime copies {src}, but `cargo build --release --bin lakepool` in {workdir} writes {expected}")
        binary = dst if not dst.endswith("/") else posixpath.join(dst, "lakepool")
        ck.require(binary == "/usr/local/bin/lakepool", f"binary installed as {binary}",
                   f"line {ins.line}: binary installed as {binary}, expected /usr/local/bin/lakepool")

    # Cargo itself: the package has a `lakepool` bin, and (with --build) where it really lands.
    if args.cargo:
        try:
            meta = json.loads(subprocess.run(
                ["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"],
                cwd=repo, check=True, capture_output=True, text=True).stdout)
            bins = [t for p in meta["packages"] for t in p["targets"] if "bin" in t["kind"]]
            ck.require(any(t["name"] == "lakepool" for t in bins), "Cargo.toml has a `lakepool` bin target",
                       f"Cargo.toml has no bin target `lakepool` (bins: {[t['name'] for t in bins]})")
        except (OSError, subprocess.CalledProcessError) as e:
            ck.fail(f"cargo metadata failed: {e}")
    if args.build:
        print("   building: cargo build --release --locked --bin lakepool (this takes a while)")
        r = subprocess.run(
            ["cargo", "build", "--release", "--locked", "--bin", "lakepool", "--message-format=json-render-diagnostics"],
            cwd=repo, capture_output=True, text=True)
        exe = None
        for line in r.stdout.splitlines():
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "lakepool" and "bin" in msg["target"]["kind"]:
                exe = msg.get("executable")
        if r.returncode != 0 or not exe:
            ck.fail(f"cargo build --release --bin lakepool failed (exit {r.returncode}): {r.stderr[-2000:]}")
        else:
            rel = os.path.relpath(exe, repo.resolve())
            ck.require(rel == "target/release/lakepool", f"cargo build wrote {rel}",
                       f"cargo build wrote {rel}, not target/release/lakepool")

    # (b) the final stage runs as a numeric non-root user.
    users = [i for i in final.instrs if i.cmd == "USER"]
    uid = gid = None
    if not users:
        ck.fail("runtime stage has no USER: the container would run as root")
    else:
        u = users[-1].args.strip()
        user, _, group = u.partition(":")
        if not user.isdigit():
            ck.fail(f"line {users[-1].line}: USER {u}: use a numeric UID (Kubernetes runAsNonRoot cannot verify a user name)")
        elif int(user) == 0 or (group and group.isdigit() and int(group) == 0):
            ck.fail(f"line {users[-1].line}: USER {u} is root")
        else:
            uid = int(user)
            gid = int(group) if group.isdigit() else None
            ck.ok(f"line {users[-1].line}: runs as USER {u} (non-root)")

    # (c) ENTRYPOINT is the copied binary; CMD's config path is where the manifests mount it.
    def last(cmd: str) -> Instr | None:
        found = [i for i in final.instrs if i.cmd == cmd]
        return found[-1] if found else None

    entry, cmd, env_config = last("ENTRYPOINT"), last("CMD"), None
    for i in final.instrs:
        if i.cmd == "ENV":
            m = re.search(r"LAKEPOOL_CONFIG[= ]\"?([^\s\"]+)", i.args)
            if m:
                env_config = m.group(1)
    entry_argv = exec_form(entry.args) if entry else None
    if not entry_argv:
        ck.fail("runtime stage: ENTRYPOINT must be in exec (JSON) form, so lakepool is PID 1 and gets SIGTERM")
    elif binary:
        target = entry_argv[0]
        same = target == binary or (not target.startswith("/") and posixpath.join("/usr/local/bin", target) == binary)
        ck.require(same, f"ENTRYPOINT {entry_argv} runs {binary}",
                   f"line {entry.line}: ENTRYPOINT runs {target!r}, but the binary is copied to {binary}")
    cmd_argv = exec_form(cmd.args) if cmd else None
    image_config = config_arg(cmd_argv or []) or env_config
    if not cmd_argv:
        ck.fail("runtime stage: CMD must be in exec (JSON) form and pass --config PATH")
    elif not image_config:
        ck.fail(f"line {cmd.line}: CMD {cmd_argv} passes no --config PATH")
    else:
        ck.ok(f"CMD {cmd_argv}: config {image_config}")
        first = cmd_argv[0]
        if first not in ("--config", "-c") and not first.startswith("--config="):
            # `lakepool --config F` serves; the only subcommands are check and hash-password.
            ck.fail(f"line {cmd.line}: CMD starts with {first!r}: the image must serve, i.e. run "
                    "`lakepool --config PATH` (there is no `run` subcommand)")
    if env_config and image_config:
        ck.require(env_config == image_config, f"ENV LAKEPOOL_CONFIG = {env_config}",
                   f"ENV LAKEPOOL_CONFIG={env_config} differs from CMD's --config {image_config}")

    exposed = set()
    for i in final.instrs:
        if i.cmd == "EXPOSE":
            exposed |= {int(p.split("/")[0]) for p in i.args.split()}
    stop = last("STOPSIGNAL")
    if stop:
        ck.require(stop.args.strip() in ("SIGTERM", "15", "TERM"), f"STOPSIGNAL {stop.args.strip()}",
                   f"STOPSIGNAL {stop.args.strip()}: lakepool drains on SIGTERM")

    # HEALTHCHECK: present, and what it runs is in the image.
    hc = last("HEALTHCHECK")
    if not hc:
        ck.fail("runtime stage: no HEALTHCHECK (use HEALTHCHECK NONE to opt out explicitly)")
    elif hc.args.strip().upper() != "NONE":
        m = re.search(r"\bCMD\s+(.*)$", hc.args)
        hc_argv = exec_form(m.group(1)) if m else None
        if not hc_argv:
            ck.fail(f"line {hc.line}: HEALTHCHECK CMD must be exec form (the image has no curl; /bin/sh is dash)")
        else:
            prog = hc_argv[0]
            copied = {}
            for ins in final.instrs:
                if ins.cmd in ("COPY", "ADD"):
                    flags, words = strip_flags(ins.args)
                    if "from" not in flags and len(words) >= 2:
                        for s in words[:-1]:
                            copied[words[-1]] = (s, flags)
            if prog in copied:
                src, flags = copied[prog]
                src_path = repo / src
                ck.require(src_path.is_file(), f"HEALTHCHECK runs {prog} (from {src})",
                           f"HEALTHCHECK runs {prog}, copied from {src}, which does not exist")
                ck.require(os.access(src_path, os.X_OK) or flags.get("chmod", "").endswith(("5", "7")),
                           f"{src} is executable in the image", f"{src} is not executable (chmod +x or COPY --chmod=0755)")
            elif prog not in ("/bin/bash", "bash", "/usr/local/bin/lakepool", binary):
                ck.fail(f"line {hc.line}: HEALTHCHECK runs {prog}, which this Dockerfile does not put in the image")
            else:
                ck.ok(f"HEALTHCHECK runs {hc_argv}")

    # Build context: nothing the Dockerfile copies is excluded; target/ and .git are.
    patterns = dockerignore_patterns(Path(args.dockerignore) if args.dockerignore else repo / ".dockerignore")
    ck.require(ignored("target/release/lakepool", patterns) and ignored(".git/HEAD", patterns),
               ".dockerignore excludes target/ and .git", ".dockerignore must exclude target/ and .git")
    for st in stages:
        for ins in st.instrs:
            if ins.cmd in ("COPY", "ADD"):
                flags, words = strip_flags(ins.args)
                if "from" in flags:
                    continue
                for s in words[:-1]:
                    if ignored(s, patterns) or not (repo / s).exists():
                        ck.fail(f"line {ins.line}: COPY {s}: missing from the build context (absent or in .dockerignore)")

    # The opt-in PGO build (--build-arg PGO=1): the RUN that runs benches/pgo.sh needs ARG PGO=0
    # in its stage before it (an ARG before FROM is not seen inside a stage, and the default
    # build must stay the plain one), and a COPY of pgo.sh and of every file it sources (the
    # check above then finds them in the build context). PostgreSQL, which the training
    # installs in the builder, must not be installed in the runtime stage.
    for st in stages:
        pgo_run = next((i for i in st.instrs if i.cmd == "RUN" and re.search(r"\bbenches/pgo\.sh\b", i.args)), None)
        if pgo_run is None:
            continue
        pgo_args = [i for i in st.instrs if i.cmd == "ARG" and i.line < pgo_run.line and re.match(r"PGO(=|\s|$)", i.args.strip())]
        if not pgo_args:
            ck.fail(f"line {pgo_run.line}: runs benches/pgo.sh, but its stage declares no ARG PGO before it")
        else:
            default = pgo_args[-1].args.strip().partition("=")[2].strip().strip("\"'")
            ck.require(default == "0", f"line {pgo_args[-1].line}: ARG PGO defaults to 0 (PGO=1 runs benches/pgo.sh)",
                       f"line {pgo_args[-1].line}: ARG PGO defaults to {default!r}: the default build must be the plain one (PGO=0)")
        copied = []
        for ins in st.instrs:
            if ins.cmd in ("COPY", "ADD") and ins.line < pgo_run.line:
                flags, words = strip_flags(ins.args)
                if "from" not in flags:
                    copied += [posixpath.normpath(s) for s in words[:-1]]
        needed, seen = ["benches/pgo.sh"], set()
        while needed:
            f = needed.pop()
            if f in seen:
                continue
            seen.add(f)
            inside = any(f == c or c == "." or f.startswith(c + "/") for c in copied)
            ck.require(inside, f"line {pgo_run.line}: the PGO build has {f} (copied before it)",
                       f"line {pgo_run.line}: runs benches/pgo.sh, but its stage does not COPY {f} before it")
            src = repo / f
            if src.is_file():
                for m in re.finditer(r'^\s*(?:source|\.)\s+"?\$\{?repo\}?/([^"\s]+)"?', src.read_text(), re.M):
                    needed.append(posixpath.normpath(m.group(1)))
    pg_installs = [i for i in final.instrs if i.cmd == "RUN" and re.search(r"\binstall\b.*\bpostgresql", i.args)]
    ck.require(not pg_installs, "the runtime stage installs no PostgreSQL",
               f"line {pg_installs[0].line if pg_installs else 0}: the runtime stage installs PostgreSQL "
               "(only the PGO training in the builder needs it)")

    # Kubernetes manifests that run the image.
    resources = all_resources(manifests)
    found = lakepool_containers(resources)
    if not found:
        ck.fail(f"{manifests}: no workload runs a lakepool container")
    for lc in found:
        c = lc.container
        if c.get("command"):
            ck.require(binary is not None and c["command"][0] in (binary, "lakepool"), f"{lc.label}: command {c['command']}",
                       f"{lc.label}: command {c['command']} does not run {binary}")
        k8s_config = config_arg(c.get("args") or []) if c.get("args") else image_config
        if c.get("args") and k8s_config is None:
            ck.fail(f"{lc.label}: args {c['args']} replace the image CMD but pass no --config")
            continue
        ck.require(k8s_config == image_config, f"{lc.label}: config {k8s_config} matches the image CMD",
                   f"{lc.label}: config path {k8s_config} differs from the image CMD's {image_config}")
        if k8s_config:
            mnt = resolve_mount(c, lc.pod, k8s_config)
            if mnt is None:
                ck.fail(f"{lc.label}: nothing mounted at {k8s_config}")
            elif mnt.source_kind != "configMap" or mnt.key is None:
                ck.fail(f"{lc.label}: {k8s_config} is not a ConfigMap key (mounted {mnt.mount_path} from {mnt.source_kind})")
            else:
                ck.ok(f"{lc.label}: {k8s_config} = ConfigMap {mnt.source_name} key {mnt.key} mounted at {mnt.mount_path}")
        sc = {**(lc.pod.get("securityContext") or {}), **(c.get("securityContext") or {})}
        if uid is not None and "runAsUser" in sc:
            ck.require(sc["runAsUser"] == uid, f"{lc.label}: runAsUser {sc['runAsUser']} = image UID",
                       f"{lc.label}: runAsUser {sc['runAsUser']} differs from the image's USER {uid}")
        if gid is not None and "runAsGroup" in sc:
            ck.require(sc["runAsGroup"] == gid, f"{lc.label}: runAsGroup {sc['runAsGroup']} = image GID",
                       f"{lc.label}: runAsGroup {sc['runAsGroup']} differs from the image's group {gid}")
        ports = {p["containerPort"] for p in c.get("ports") or []}
        ck.require(ports <= exposed, f"{lc.label}: ports {sorted(ports)} are EXPOSEd",
                   f"{lc.label}: ports {sorted(ports - exposed)} are not in the Dockerfile's EXPOSE {sorted(exposed)}")
    return ck.exit_code()


# --------------------------------------------------------------------------------------------
# kustomization files


def check_kustomize(args: argparse.Namespace) -> int:
    ck = Checker()
    root = Path(args.manifests)
    kfiles = [p for p in manifest_files(root) if p.name in ("kustomization.yaml", "kustomization.yml")]
    if not kfiles:
        ck.fail(f"{root}: no kustomization.yaml")
    listed: set[Path] = set()
    for k in kfiles:
        docs = load_docs(k)
        doc = docs[0] if docs else {}
        problems = []
        if doc.get("kind") != "Kustomization" or not str(doc.get("apiVersion", "")).startswith("kustomize.config.k8s.io/"):
            problems.append("not a kustomize.config.k8s.io Kustomization")
        resources = doc.get("resources") or []
        if not resources:
            problems.append("lists no resources")
        for r in resources:
            p = (k.parent / r).resolve()
            if p.is_dir():
                if not any((p / n).is_file() for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")):
                    problems.append(f"resource {r}: directory without a kustomization.yaml")
            elif p.is_file():
                listed.add(p)
                if not load_docs(p):
                    problems.append(f"resource {r}: no YAML documents")
            else:
                problems.append(f"resource {r}: does not exist")
        if problems:
            for pr in problems:
                ck.fail(f"{k}: {pr}")
        else:
            print(f"PASS {k}: {len(resources)} resources, all present")
    # Every manifest is either listed somewhere or an example on purpose.
    for p in manifest_files(root):
        if p.name.startswith("kustomization.") or p.resolve() in listed:
            continue
        if ".example." in p.name:
            print(f"note {p}: not in any kustomization (example, applied by hand)")
        else:
            ck.fail(f"{p}: not listed in any kustomization.yaml resources (rename to *.example.yaml if on purpose)")
    return ck.exit_code()


# --------------------------------------------------------------------------------------------
# lakepool.toml in ConfigMaps


def file_keys(node, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, value) of every `*_file` string in a TOML document."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else k
            if k.endswith("_file") and isinstance(v, str):
                out.append((key, v))
            else:
                out += file_keys(v, key)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += file_keys(v, f"{prefix}[{i}]")
    return out


def env_keys(node, prefix: str = "") -> list[tuple[str, str]]:
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else k
            if k.endswith("_env") and isinstance(v, str):
                out.append((key, v))
            else:
                out += env_keys(v, key)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += env_keys(v, f"{prefix}[{i}]")
    return out


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def self_signed(dirpath: Path) -> tuple[str, str]:
    cert, key = dirpath / "placeholder.crt", dirpath / "placeholder.key"
    if not cert.exists():
        r = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=lakepool-placeholder"],
            capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"openssl could not make a placeholder certificate: {r.stderr.strip()}")
    return cert.read_text(), key.read_text()


def no_network() -> list[str]:
    """`unshare -n` when this user may make a network namespace (then `lakepool check` cannot
    reach any host even by mistake), else nothing: check calls no API either way."""
    try:
        if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
            return ["unshare", "-n"]
    except OSError:
        pass
    return []


def check_configs(args: argparse.Namespace) -> int:
    import tomllib

    ck = Checker()
    root = Path(args.manifests)
    lakepool = Path(args.lakepool).resolve()
    resources = all_resources(root)
    containers = lakepool_containers(resources)
    configmaps = [(p, r) for p, r in resources if r.get("kind") == "ConfigMap"
                  and any(k.endswith(".toml") for k in (r.get("data") or {}))]
    if not configmaps:
        ck.fail(f"{root}: no ConfigMap with a .toml key")
    tmp = Path(tempfile.mkdtemp(prefix="lakepool-manifests."))
    try:
        for path, cm in configmaps:
            cm_name = cm["metadata"]["name"]
            for key, text in cm["data"].items():
                if not key.endswith(".toml"):
                    continue
                label = f"{path}: ConfigMap {cm_name} key {key}"
                problems: list[str] = []
                try:
                    doc = tomllib.loads(text)
                except tomllib.TOMLDecodeError as e:
                    ck.fail(f"{label}: not TOML: {e}")
                    continue
                # Which lakepool containers use this key as their config file?
                users = []
                for lc in containers:
                    cfg = config_arg(lc.container.get("args") or []) or args.default_config
                    m = resolve_mount(lc.container, lc.pod, cfg)
                    if m and m.source_kind == "configMap" and m.source_name == cm_name and m.key == key:
                        users.append(lc)
                if not users:
                    problems.append("no lakepool container mounts it as its --config file")
                # Build the placeholder tree: every *_file path re-rooted under tmp/<n>/.
                case = tmp / f"case{len(list(tmp.glob('case*')))}"
                case.mkdir()
                rewritten = text
                for dotted, fpath in file_keys(doc):
                    if not fpath.startswith("/"):
                        problems.append(f"{dotted} = {fpath!r}: use an absolute path to a mounted file")
                        continue
                    content = "placeholder"
                    for lc in users:
                        m = resolve_mount(lc.container, lc.pod, fpath)
                        if m is None:
                            problems.append(f"{dotted} = {fpath}: nothing is mounted there in {lc.label}")
                            continue
                        if m.source_kind not in ("secret", "configMap") or m.key is None:
                            problems.append(f"{dotted} = {fpath}: not a Secret/ConfigMap key in {lc.label} (mount {m.mount_path}, {m.source_kind}, items?)")
                            continue
                        obj = find_object(resources, "Secret" if m.source_kind == "secret" else "ConfigMap", m.source_name)
                        if obj is not None:
                            data = object_data(obj)
                            if m.key not in data:
                                problems.append(f"{dotted} = {fpath}: {m.source_kind} {m.source_name} has no key {m.key!r}")
                            else:
                                content = data[m.key]
                        if m.source_kind == "configMap" and dotted.split(".")[-1] in ("password_file", "token_file", "client_secret_file", "client_id_file", "admin_token_file"):
                            problems.append(f"{dotted} = {fpath}: a secret read from ConfigMap {m.source_name}; use a Secret")
                    leaf = dotted.rsplit(".", 1)[-1]
                    if leaf in ("tls_cert_file", "ca_file"):
                        content = self_signed(tmp)[0]
                    elif leaf == "tls_key_file":
                        content = self_signed(tmp)[1]
                    target = case / "root" / fpath.lstrip("/")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(content + "\n")
                    literal = json.dumps(fpath)
                    if literal not in rewritten:
                        problems.append(f"{dotted}: cannot rewrite {literal} for the check (write it as a basic string)")
                    rewritten = rewritten.replace(literal, json.dumps(str(target)))
                for dotted, var in env_keys(doc):
                    for lc in users:
                        names = {e["name"] for e in lc.container.get("env") or []}
                        if var not in names:
                            problems.append(f"{dotted} = {var!r}: {lc.label} does not set that variable")
                # Ports, probes and drain timing against each container that uses it.
                server = doc.get("server", {})
                for lc in users:
                    c = lc.container
                    ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
                    listen = server.get("listen")
                    listen = [listen] if isinstance(listen, str) else (listen or [])
                    if "postgres" in ports and ports["postgres"] not in {port_of(a) for a in listen}:
                        problems.append(f"container port postgres={ports['postgres']} but server.listen = {listen}")
                    admin = server.get("admin_listen")
                    probes = [c.get(p) for p in ("startupProbe", "livenessProbe", "readinessProbe") if c.get(p)]
                    if probes and not admin:
                        problems.append("probes are set but server.admin_listen is not")
                    if admin:
                        ap = port_of(admin)
                        if admin.split(":")[0] in ("127.0.0.1", "localhost", "[::1]") and probes:
                            problems.append(f"server.admin_listen = {admin}: the kubelet probes the pod IP, listen on 0.0.0.0")
                        elif not any(k in server for k in ("admin_token", "admin_token_file", "admin_token_env")):
                            problems.append(f"server.admin_listen = {admin} is reachable from other pods: set admin_token_file so /metrics needs a token")
                        if ports.get("admin") not in (None, ap):
                            problems.append(f"container port admin={ports['admin']} but server.admin_listen = {admin}")
                        for pr in probes:
                            hg = pr.get("httpGet") or {}
                            p = hg.get("port")
                            if (ports.get(p) if isinstance(p, str) else p) != ap:
                                problems.append(f"a probe uses port {p!r}, not admin_listen's {ap}")
                            if hg.get("path") not in ("/healthz", "/readyz"):
                                problems.append(f"a probe requests {hg.get('path')!r}; lakepool serves /healthz and /readyz")
                    # The socket's directory must be a writable volume (the root filesystem is
                    # read-only), and clients in other containers need it mounted too.
                    sock_dir = server.get("unix_socket_dir")
                    if sock_dir:
                        m = resolve_mount(c, lc.pod, sock_dir.rstrip("/"))
                        mount = next((vm for vm in c.get("volumeMounts") or []
                                      if vm["mountPath"].rstrip("/") == sock_dir.rstrip("/")), None)
                        if m is None or mount is None:
                            problems.append(f"server.unix_socket_dir = {sock_dir}: no volume is mounted there in {lc.label}")
                        elif mount.get("readOnly"):
                            problems.append(f"server.unix_socket_dir = {sock_dir}: mounted read-only in {lc.label}; lakepool creates its socket there")
                        elif m.source_kind != "emptyDir":
                            problems.append(f"server.unix_socket_dir = {sock_dir}: mounted from {m.source_kind}, not a writable emptyDir")
                        else:
                            volume = mount["name"]
                            others = [o for o in (lc.pod.get("containers") or []) + (lc.pod.get("initContainers") or [])
                                      if o is not c]
                            if not any(vm["name"] == volume for o in others for vm in o.get("volumeMounts") or []):
                                problems.append(f"server.unix_socket_dir = {sock_dir}: no other container mounts that volume, so no client can reach the socket")
                    shutdown = float(server.get("shutdown_timeout", 30))
                    grace = lc.pod.get("terminationGracePeriodSeconds", 30)
                    pre = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
                    pre_sleep = float(pre[1]) if len(pre) == 2 and pre[0].endswith("sleep") else 0.0
                    if grace <= shutdown + pre_sleep:
                        problems.append(f"terminationGracePeriodSeconds {grace} must exceed preStop sleep {pre_sleep:g} + shutdown_timeout {shutdown:g}")
                cfg_file = case / "lakepool.toml"
                cfg_file.write_text(rewritten)
                # A clean environment (no DATABRICKS_* variables, an empty home without
                # ~/.databrickscfg) and, where possible, no network at all.
                env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(case)}
                r = subprocess.run([*no_network(), str(lakepool), "check", "--config", str(cfg_file)],
                                   capture_output=True, text=True, env=env, timeout=60)
                if r.returncode != 0 or "configuration is valid" not in r.stdout:
                    problems.append(f"lakepool check: {(r.stderr or r.stdout).strip()}")
                if problems:
                    for pr in problems:
                        ck.fail(f"{label}: {pr}")
                else:
                    who = ", ".join(f"{lc.workload}" for lc in users)
                    print(f"PASS {label}: lakepool check ok; files, ports, probes and drain timing match {who}")
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")
    return ck.exit_code()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dockerfile")
    d.add_argument("--dockerfile", default="Dockerfile")
    d.add_argument("--manifests", default="config/kubernetes")
    d.add_argument("--repo", default=".")
    d.add_argument("--dockerignore", help="this file instead of <repo>/.dockerignore")
    d.add_argument("--build", action="store_true", help="also run cargo build --release and check the artifact path")
    d.add_argument("--no-cargo", dest="cargo", action="store_false", help="skip `cargo metadata`")
    k = sub.add_parser("kustomize")
    k.add_argument("--manifests", default="config/kubernetes")
    c = sub.add_parser("configs")
    c.add_argument("--manifests", default="config/kubernetes")
    c.add_argument("--lakepool", required=True)
    c.add_argument("--default-config", default="/etc/lakepool/lakepool.toml")
    c.add_argument("--keep", action="store_true", help="keep the temp directory")
    a = ap.parse_args()
    return {"dockerfile": check_dockerfile, "kustomize": check_kustomize, "configs": check_configs}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
