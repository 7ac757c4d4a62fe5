#!/usr/bin/env bash
# check-docker.sh [CHECK...] -- what can be checked of the Docker recipe without a Docker engine
# (ctest runs it as `docker_recipe`). The checks, all by default:
#   config    `docker-compose config -q` passes with an ADMIN_TOKEN and a NATS_PASSWORD and
#             fails without either
#   packages  the Dockerfiles install only through scripts/deps.sh SECTION (the one list), the
#             sections exist, their packages exist in Debian, and the [build] section (with its
#             dependencies) provides the compiler, CMake and every pkg-config module CMake needs
#   build     docker/build.sh builds both binaries into an empty directory; each prints --help
#             and exits 0; every shared library each loads comes from the runtime sections its
#             Dockerfile installs (or their dependencies)
#   layout    docker-compose.yml and the Dockerfiles: no port and no container_name on
#             webhooks-svc, the gateway on 8080, restart policies, health checks behind every
#             depends_on condition, non-root USER, EXPOSE, STOPSIGNAL, .dockerignore, .env.example,
#             NATS authorization from NATS_PASSWORD in a config file (not on the command line),
#             resource limits and rotated logs on every service
#   health    the images' own HEALTHCHECK commands, run against the real binaries, nats-server
#             and curl on 127.0.0.1: the svc's fails while NATS is down, passes once it is
#             connected and fails again once it is stopped though the gateway stays connected
#             (host networking shares one socket table); the gateway's passes with everything
#             up and fails once the svc is gone
# DOCKER_CHECK_ROOT=DIR checks another tree (tests/docker/test_check_docker.sh mutates a copy).
set -euo pipefail
root=$(cd "${DOCKER_CHECK_ROOT:-$(dirname "$0")/..}" && pwd)
py=/usr/bin/python3
all=(config packages build layout health)
[ "$#" -gt 0 ] || set -- "${all[@]}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-docker.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Each check runs in a subshell: the processes it starts are stopped by its own EXIT trap.
pids=()
# stop PID: SIGTERM, then SIGKILL after 10 s (Docker's default grace). Returns the exit status,
# 124 when it had to be killed.
stop() {
	local pid=$1 i rc=0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 40; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.25
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		return 124
	fi
	wait "$pid" 2>/dev/null || rc=$?
	return "$rc"
}
stop_pids() {
	local p
	for p in "${pids[@]}"; do
		stop "$p" || true
	done
}

die() {
	echo "check-docker: $check: $*" >&2
	exit 1
}

# ---- a small Dockerfile / compose reader, shared by the checks ----
cat >"$tmp/recipe.py" <<'PY'
import json, os, re, shlex, sys

def instructions(path):
    """(KEYWORD, args) of a Dockerfile, continuation lines joined and comments dropped."""
    out, cur = [], ""
    for raw in open(path, encoding="utf-8"):
        line = raw.rstrip("\n")
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        if cur.strip():
            kw, _, args = cur.strip().partition(" ")
            out.append((kw.upper(), args.strip()))
        cur = ""
    if cur.strip():
        kw, _, args = cur.strip().partition(" ")
        out.append((kw.upper(), args.strip()))
    return out

def stages(path):
    st = []
    for kw, args in instructions(path):
        if kw == "FROM":
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            st.append({"from": words[0], "name": name, "ins": []})
        elif st:
            st[-1]["ins"].append((kw, args))
    return st

FORBIDDEN = re.compile(r"\b(apt-get|apt|aptitude)\s+(-\S+\s+)*install\b|\bdpkg\s+(-\S+\s+)*-i\b|"
                       r"\bpip3?\s+install\b|\bnpm\s+(i|install)\b|\b(curl|wget)\b[^;&|]*\|\s*(ba)?sh\b")
DEPS = re.compile(r"(?:^|[\s;&|(])(?:sh\s+)?(\S*deps\.sh)((?:\s+[A-Za-z0-9_.-]+)*)")

def deps_calls(stage):
    calls = []
    for kw, args in stage["ins"]:
        if kw == "RUN":
            for m in DEPS.finditer(args):
                calls.append(m.group(2).split())
    return calls

def installs(path):
    """One line per stage: FROM-image then the sections it installs; errors on stderr."""
    errs = []
    st = stages(path)
    if not st:
        errs.append("no FROM")
    for i, s in enumerate(st):
        for kw, args in s["ins"]:
            if kw == "RUN" and FORBIDDEN.search(args):
                errs.append(f"stage {i} installs outside scripts/deps.sh: RUN {args}")
            if kw == "ADD" and re.search(r"https?://", args):
                errs.append(f"stage {i} downloads with ADD: {args}")
        calls = deps_calls(s)
        if not calls:
            errs.append(f"stage {i} ({s['from']}) installs nothing through scripts/deps.sh")
        for c in calls:
            if not c:
                errs.append(f"stage {i} runs deps.sh with no section (that would install every section)")
        # the list must be COPYed before deps.sh runs
        copied, seen_call = set(), False
        for kw, args in s["ins"]:
            if kw == "COPY":
                copied.update(os.path.basename(w) for w in args.split() if not w.startswith("--"))
            if kw == "RUN" and DEPS.search(args) and not seen_call:
                seen_call = True
                for f in ("packages.txt", "packages.sh", "deps.sh"):
                    if f not in copied:
                        errs.append(f"stage {i} runs deps.sh before COPYing scripts/{f}")
        print(s["from"], *sorted({w for c in calls for w in c}))
    return errs

def runtime(path):
    """The final stage: the binaries it copies from the build stage, then its sections."""
    s = stages(path)[-1]
    bins = []
    for kw, args in s["ins"]:
        if kw == "COPY" and "--from=" in args:
            srcs = [w for w in args.split() if not w.startswith("--")][:-1]
            bins += [os.path.basename(w) for w in srcs if "/bin/" in w]
    print(" ".join(bins), "|", " ".join(sorted({w for c in deps_calls(s) for w in c})))
    return [] if bins else ["the final stage copies no binary from the build stage"]

def healthcmd(path, root):
    """The final stage's HEALTHCHECK as a shell command line for this host: paths the image
    COPYs from the build context are replaced by the files in the tree."""
    s = stages(path)[-1]
    copies, cmd = {}, None
    for kw, args in s["ins"]:
        if kw == "COPY" and "--from=" not in args:
            w = [x for x in args.split() if not x.startswith("--")]
            if len(w) == 2:
                copies[w[1]] = os.path.join(root, w[0])
        if kw == "HEALTHCHECK":
            m = re.search(r"(?:^|\s)CMD\s+(.*)$", args)
            cmd = m.group(1) if m else None
    if cmd is None:
        return ["no HEALTHCHECK CMD in the final stage"]
    if cmd.startswith("["):
        argv = [copies.get(a, a) for a in json.loads(cmd)]
        print(" ".join(shlex.quote(a) for a in argv))
    else:
        for dst, src in copies.items():
            cmd = cmd.replace(dst, src)
        print("sh -c " + shlex.quote(cmd))
    return []

def env_dict(env):
    if env is None:
        return {}
    if isinstance(env, list):
        return dict((e.split("=", 1) + [""])[:2] for e in env)
    return {k: ("" if v is None else str(v)) for k, v in env.items()}

def layout(root):
    import yaml
    errs = []
    compose = yaml.safe_load(open(os.path.join(root, "docker-compose.yml"), encoding="utf-8"))
    svcs = compose.get("services") or {}
    for name in ("nats", "mongo", "webhooks-svc", "webhooks-gateway"):
        if name not in svcs:
            errs.append(f"docker-compose.yml has no service {name}")
    if errs:
        return errs
    dockerfiles = {"webhooks-svc": "docker/webhooks-svc.Dockerfile",
                   "webhooks-gateway": "docker/gateway.Dockerfile"}
    finals = {}
    for name, df in dockerfiles.items():
        b = svcs[name].get("build")
        if not isinstance(b, dict) or b.get("dockerfile") != df or b.get("context") not in (".", "./"):
            errs.append(f"{name} is not built from {df} with the repository root as context")
        p = os.path.join(root, df)
        if not os.path.exists(p):
            errs.append(f"{df} is missing")
            continue
        st = stages(p)
        if len(st) < 2:
            errs.append(f"{df} is not a multi-stage build")
            continue
        if st[0]["from"] != "debian:bookworm":
            errs.append(f"{df}: the build stage is FROM {st[0]['from']}, not debian:bookworm")
        if not any(kw == "RUN" and "docker/build.sh" in a for kw, a in st[0]["ins"]):
            errs.append(f"{df}: the build stage does not run docker/build.sh")
        f = st[-1]
        finals[name] = f
        if f["from"] != "debian:bookworm-slim":
            errs.append(f"{df}: the runtime stage is FROM {f['from']}, not debian:bookworm-slim")
        users = [a for kw, a in f["ins"] if kw == "USER"]
        if not users:
            errs.append(f"{df}: no USER in the runtime stage: it would run as root")
        elif users[-1].split(":")[0] in ("root", "0"):
            errs.append(f"{df}: the runtime stage runs as USER {users[-1]}")
        kws = [kw for kw, _ in f["ins"]]
        if "HEALTHCHECK" not in kws:
            errs.append(f"{df}: no HEALTHCHECK")
        if ("STOPSIGNAL", "SIGTERM") not in f["ins"]:
            errs.append(f"{df}: no STOPSIGNAL SIGTERM")
        ep = [a for kw, a in f["ins"] if kw == "ENTRYPOINT"]
        binary = name
        if not ep or not ep[-1].startswith("[") or binary not in ep[-1]:
            errs.append(f"{df}: no exec-form ENTRYPOINT running {binary} (it must be PID 1 to get SIGTERM)")
    exposes = {n: " ".join(a for kw, a in f["ins"] if kw == "EXPOSE").split() for n, f in finals.items()}
    if "webhooks-gateway" in exposes and exposes["webhooks-gateway"] not in (["8080"], ["8080/tcp"]):
        errs.append(f"gateway.Dockerfile exposes {exposes['webhooks-gateway']}, not just 8080")
    if exposes.get("webhooks-svc"):
        errs.append(f"webhooks-svc.Dockerfile exposes {exposes['webhooks-svc']}: it needs no port")
    if "webhooks-svc" in finals:
        f = finals["webhooks-svc"]
        vols = " ".join(a for kw, a in f["ins"] if kw == "VOLUME")
        if "/var/lib/webhooks" not in vols:
            errs.append("webhooks-svc.Dockerfile has no VOLUME /var/lib/webhooks for SQLite")
        if not any(kw == "ENV" and "sqlite:/var/lib/webhooks/" in a for kw, a in f["ins"]):
            errs.append("webhooks-svc.Dockerfile's STORE_URL does not point into /var/lib/webhooks")

    svc = svcs["webhooks-svc"]
    if svc.get("ports"):
        errs.append("webhooks-svc maps ports: --scale webhooks-svc=3 would clash")
    if "container_name" in svc:
        errs.append("webhooks-svc has a container_name: --scale would fail")
    env = env_dict(svc.get("environment"))
    if env.get("STORE_URL") != "mongodb://mongo:27017/webhooks":
        errs.append(f"webhooks-svc STORE_URL is {env.get('STORE_URL')!r}")
    nats_url = "nats://webhooks:${NATS_PASSWORD:?set NATS_PASSWORD in .env}@nats:4222"
    if env.get("NATS_URL") != nats_url:
        errs.append(f"webhooks-svc NATS_URL is {env.get('NATS_URL')!r}, not {nats_url!r}")
    gw = svcs["webhooks-gateway"]
    if "container_name" in gw:
        errs.append("webhooks-gateway has a container_name")
    ports = [str(p) for p in gw.get("ports") or []]
    if not any(re.fullmatch(r"(?:[\d.]+:)?8080:8080(?:/tcp)?", p) for p in ports):
        errs.append(f"webhooks-gateway does not map host port 8080 to 8080 (ports: {ports})")
    genv = env_dict(gw.get("environment"))
    if not genv.get("ADMIN_TOKEN", "").startswith("${ADMIN_TOKEN:?"):
        errs.append("webhooks-gateway's ADMIN_TOKEN is not ${ADMIN_TOKEN:?...} (required from .env)")
    if genv.get("NATS_URL") != nats_url:
        errs.append(f"webhooks-gateway NATS_URL is {genv.get('NATS_URL')!r}, not {nats_url!r}")
    nats = svcs["nats"]
    if not str(nats.get("image", "")).startswith("nats:2.10"):
        errs.append(f"nats image is {nats.get('image')!r}, not nats:2.10")
    cmd = nats.get("command")
    cmd = cmd if isinstance(cmd, list) else str(cmd or "").split()
    if "-js" not in cmd or "-sd" not in cmd or "/data" not in cmd:
        errs.append("nats does not run with -js -sd /data")
    # Authorization as make run sets it up: a config file written from NATS_PASSWORD by the
    # entrypoint, not --user/--pass on the command line, where ps on the host shows them.
    ep = nats.get("entrypoint")
    ep = "\n".join(ep) if isinstance(ep, list) else str(ep or "")
    if any(a.startswith(("--pass", "--user", "--auth")) for a in cmd) or "--pass" in ep:
        errs.append("nats takes its credentials on the command line (ps shows them)")
    for want in ("authorization {", "user: webhooks", '"$$NATS_PASSWORD"', "exec nats-server -c "):
        if want not in ep:
            errs.append(f"nats does not run with authorization from NATS_PASSWORD (its entrypoint lacks {want!r})")
            break
    if not env_dict(nats.get("environment")).get("NATS_PASSWORD", "").startswith("${NATS_PASSWORD:?"):
        errs.append("nats does not take NATS_PASSWORD (required) from .env")
    # What a real engine needs beyond a first run: bounded resources and rotated logs.
    for name, sv in svcs.items():
        lim = ((sv.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        if not lim.get("memory") or not lim.get("cpus"):
            errs.append(f"{name} has no deploy.resources.limits memory and cpus")
        lg = sv.get("logging") or {}
        opts = lg.get("options") or {}
        if lg.get("driver") != "json-file" or not opts.get("max-size") or not opts.get("max-file"):
            errs.append(f"{name} has no rotated log (logging: json-file with max-size and max-file)")
    if not str(svcs["mongo"].get("image", "")).startswith("mongo:7"):
        errs.append(f"mongo image is {svcs['mongo'].get('image')!r}, not mongo:7")
    named = compose.get("volumes") or {}
    for name, target in (("nats", "/data"), ("mongo", "/data/db")):
        vols = [str(v) for v in svcs[name].get("volumes") or []]
        if not any(v.split(":")[0] in named and v.split(":")[1] == target for v in vols if ":" in v):
            errs.append(f"{name} keeps {target} in no named volume")

    def healthy(name):
        hc = svcs[name].get("healthcheck")
        if hc is not None:
            return not hc.get("disable") and hc.get("test") not in (None, ["NONE"], "NONE")
        f = finals.get(name)
        return f is not None and any(kw == "HEALTHCHECK" and not a.startswith("NONE") for kw, a in f["ins"])

    for name, s in svcs.items():
        r = str(s.get("restart", ""))
        if not re.fullmatch(r"always|unless-stopped|on-failure(?::\d+)?", r):
            errs.append(f"{name} has no restart policy (restart: {r or 'none'})")
        if not healthy(name):
            errs.append(f"{name} has no health check")
        deps = s.get("depends_on") or {}
        if isinstance(deps, list):
            errs.append(f"{name}: depends_on is a list: it waits for nothing but the start")
            continue
        for dep, how in deps.items():
            if (how or {}).get("condition") != "service_healthy":
                errs.append(f"{name} does not wait for {dep} to be healthy")
            elif dep not in svcs or not healthy(dep):
                errs.append(f"{name} waits for {dep} to be healthy, but {dep} has no health check")
    for name, needs in (("webhooks-svc", ("nats", "mongo")), ("webhooks-gateway", ("nats", "webhooks-svc"))):
        for dep in needs:
            if dep not in (svcs[name].get("depends_on") or {}):
                errs.append(f"{name} does not depend on {dep}")

    ignore = [l.strip() for l in open(os.path.join(root, ".dockerignore"), encoding="utf-8")]
    for pat in ("build", "build-*", "data", ".git", ".env"):
        if not any(l.rstrip("/") in (pat, "/" + pat) for l in ignore):
            errs.append(f".dockerignore does not keep {pat} out of the build context")
    example = open(os.path.join(root, ".env.example"), encoding="utf-8").read()
    if not re.search(r"^ADMIN_TOKEN=\S+", example, re.M):
        errs.append(".env.example sets no ADMIN_TOKEN")
    gi = os.path.join(root, ".gitignore")
    if os.path.exists(gi) and not any(l.strip() in (".env", "/.env") for l in open(gi)):
        errs.append(".gitignore does not ignore .env")
    return errs

def owners(*files):
    """FILE PKG for each file: the package that ships it, in one dpkg -S call (usrmerge: dpkg
    may know a file under /lib or /usr/lib, or only under the path a symlink points to)."""
    import subprocess
    cands = {}
    for f in files:
        real = os.path.realpath(f)
        cands[f] = [c for p in (f, real) for c in (p, "/usr" + p, p[4:] if p.startswith("/usr/") else p)]
    out = subprocess.run(["dpkg", "-S"] + sorted({c for cs in cands.values() for c in cs}),
                         capture_output=True, text=True).stdout
    known = {}
    for line in out.splitlines():
        pkgs, sep, path = line.partition(": ")
        if sep and not line.startswith("diversion"):
            known.setdefault(path.strip(), pkgs.split(",")[0].split(":")[0].strip())
    errs = []
    for f, cs in cands.items():
        pkg = next((known[c] for c in cs if c in known), None)
        if pkg:
            print(f, pkg)
        else:
            errs.append(f"no package ships {f}")
    return errs

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    errs = {"installs": installs, "runtime": runtime, "healthcmd": healthcmd, "layout": layout,
            "owners": owners}[cmd](*args)
    for e in errs:
        print(e, file=sys.stderr)
    sys.exit(1 if errs else 0)
PY
recipe() { "$py" "$tmp/recipe.py" "$@"; }
dockerfiles=("$root/docker/gateway.Dockerfile" "$root/docker/webhooks-svc.Dockerfile")
# The local NATS image (scripts/docker-local.sh) installs from the list too; it has no binary
# of the project, so only the packages check reads it.
package_dockerfiles=("${dockerfiles[@]}" "$root/docker/nats.Dockerfile")

packages() { PACKAGES_LIST="$root/scripts/packages.txt" sh "$root/scripts/packages.sh" "$@"; }

# Every package that installing PKGS brings (Depends and Pre-Depends, recursively), one a line.
closure() {
	apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
		--no-replaces --no-enhances "$@" | grep -v '^ ' | tr -d '<>' | sort -u
}


free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# docker/build.sh into an empty directory, once per run (health reuses what build built).
# DOCKER_CHECK_BUILT=DIR takes the binaries that docker/build.sh of this same tree put in
# DIR/bin instead (tests/docker/test_check_docker.sh, for its breaks that leave the build alone).
built="$tmp/build/bin"
build_binaries() {
	[ -e "$tmp/build.ok" ] && return 0
	rm -rf "$tmp/build" && mkdir "$tmp/build"
	if [ -n "${DOCKER_CHECK_BUILT:-}" ]; then
		echo "check-docker: DOCKER_CHECK_BUILT is set: the binaries in $DOCKER_CHECK_BUILT/bin are used, docker/build.sh is not run" >&2
		cp -R "$DOCKER_CHECK_BUILT/bin" "$tmp/build/bin" || die "no binaries in $DOCKER_CHECK_BUILT/bin"
		: >"$tmp/build.ok"
		return 0
	fi
	if ! sh "$root/docker/build.sh" "$tmp/build" >"$tmp/build.log" 2>&1; then
		tail -n 30 "$tmp/build.log" >&2
		die "docker/build.sh failed"
	fi
	: >"$tmp/build.ok"
}

# ---- (1) compose config ----
check_config() {
	command -v docker-compose >/dev/null ||
		die "docker-compose is not installed (the [test] section of scripts/packages.txt has it)"
	local empty="$tmp/empty.env"
	: >"$empty"
	# --env-file: a developer's own .env must not make the "unset" case pass.
	dc() { (cd "$root" && env -u COMPOSE_FILE -u COMPOSE_PROJECT_NAME -u COMPOSE_PATH_SEPARATOR \
		docker-compose --env-file "$empty" -f docker-compose.yml "$@"); }
	export NATS_PASSWORD=dummy-password-for-the-check
	ADMIN_TOKEN=dummy-token-for-the-check dc config -q || die "docker-compose config -q fails"
	if (unset ADMIN_TOKEN && dc config -q) >"$tmp/unset.log" 2>&1; then
		die "docker-compose config passes with ADMIN_TOKEN unset"
	fi
	grep -q ADMIN_TOKEN "$tmp/unset.log" || die "the failure with ADMIN_TOKEN unset does not name it: $(cat "$tmp/unset.log")"
	if ADMIN_TOKEN="" dc config -q >/dev/null 2>&1; then
		die "docker-compose config passes with an empty ADMIN_TOKEN"
	fi
	# NATS runs with authorization: without its password compose refuses to start.
	if (unset NATS_PASSWORD && ADMIN_TOKEN=dummy-token-for-the-check dc config -q) \
		>"$tmp/unset-nats.log" 2>&1; then
		die "docker-compose config passes with NATS_PASSWORD unset"
	fi
	grep -q NATS_PASSWORD "$tmp/unset-nats.log" || die "the failure with NATS_PASSWORD unset does not name it"
	unset NATS_PASSWORD
}

# ---- (2) the packages the images install ----
check_packages() {
	grep -q 'packages\.sh' "$root/scripts/deps.sh" || die "scripts/deps.sh does not take its names from scripts/packages.sh"
	local df line from sections pkgs=() p missing
	for df in "${package_dockerfiles[@]}"; do
		[ -f "$df" ] || die "${df#"$root"/} is missing"
		recipe installs "$df" >"$tmp/installs" 2>"$tmp/err" || die "${df#"$root"/}: $(cat "$tmp/err")"
		while read -r from sections; do
			# shellcheck disable=SC2086
			line=$(packages $sections 2>&1) || die "${df#"$root"/} ($from) installs sections '$sections': $line"
			[ -n "$line" ] || die "${df#"$root"/} ($from): sections '$sections' are empty"
			# shellcheck disable=SC2206
			pkgs+=($line)
		done <"$tmp/installs"
	done
	# One apt-cache call (each costs a cache load): every name asked must come back.
	printf '%s\n' "${pkgs[@]}" | sort -u >"$tmp/wanted"
	apt-cache show --no-all-versions "${pkgs[@]}" 2>/dev/null | sed -n 's/^Package: //p' | sort -u >"$tmp/known" || true
	missing=$(comm -23 "$tmp/wanted" "$tmp/known" | tr '\n' ' ')
	[ -z "$missing" ] || die "not in Debian's archive (apt-cache show): $missing"
	if [ -r /etc/os-release ] && ! grep -q '^VERSION_CODENAME=bookworm' /etc/os-release; then
		echo "check-docker: packages: note: this host is not Debian 12; names were checked against its own archive" >&2
	fi
	# The build stage starts from a bare debian:bookworm: its section alone must bring the tools
	# and the -dev package of every pkg-config module CMakeLists.txt asks for.
	local build_closure="$tmp/build.closure" mod pc tool
	# shellcheck disable=SC2046
	closure $(packages build) >"$build_closure"
	local files=() mods f
	for tool in cc make cmake pkg-config; do
		f=$(command -v "$tool") || die "$tool is not installed on this host"
		files+=("$f")
	done
	mods=$(sed -n 's/^pkg_check_modules([A-Z_]* REQUIRED IMPORTED_TARGET \([^ )]*\)).*/\1/p' "$root/CMakeLists.txt")
	[ -n "$mods" ] || die "found no pkg_check_modules(... REQUIRED IMPORTED_TARGET module) in CMakeLists.txt"
	for mod in $mods; do
		pc="$(pkg-config --variable=pcfiledir "$mod" 2>/dev/null)/$mod.pc"
		[ -f "$pc" ] || die "pkg-config module $mod is not installed on this host"
		files+=("$pc")
	done
	recipe owners "${files[@]}" >"$tmp/owners" 2>"$tmp/err" || die "$(cat "$tmp/err")"
	while read -r f p; do
		grep -qx "$p" "$build_closure" || die "the [build] section does not bring ${f##*/} (package $p)"
	done <"$tmp/owners"
}

# ---- (3) the build script and the binaries ----
check_build() {
	build_binaries
	local bin
	for bin in webhooks-gateway webhooks-svc; do
		[ -x "$built/$bin" ] || die "docker/build.sh did not produce bin/$bin"
		env -i PATH=/usr/bin:/bin timeout 10 "$built/$bin" --help >"$tmp/help" 2>&1 ||
			die "$bin --help exited $?: $(head -n 5 "$tmp/help")"
		grep -q -- '--nats-url' "$tmp/help" || die "$bin --help does not list its options"
	done
	# Each image's runtime sections (with their dependencies) must bring every library its
	# binary loads: otherwise the image builds and the container dies at start.
	local df bins sections so p missing=""
	for df in "${dockerfiles[@]}"; do
		recipe runtime "$df" >"$tmp/runtime" 2>"$tmp/err" || die "${df#"$root"/}: $(cat "$tmp/err")"
		IFS='|' read -r bins sections <"$tmp/runtime"
		# shellcheck disable=SC2046,SC2086
		closure $(packages $sections) >"$tmp/rt.closure" || die "${df#"$root"/}: bad sections '$sections'"
		for bin in $bins; do
			[ -x "$built/$bin" ] || die "${df#"$root"/} copies $bin, which docker/build.sh does not build"
			if ldd "$built/$bin" | grep -q 'not found'; then
				die "$bin: $(ldd "$built/$bin" | grep 'not found')"
			fi
			# shellcheck disable=SC2046
			recipe owners $(ldd "$built/$bin" | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p') \
				>"$tmp/owners" 2>"$tmp/err" || die "$bin: $(cat "$tmp/err")"
			while read -r so p; do
				grep -qx "$p" "$tmp/rt.closure" || missing="$missing $bin:${so##*/}($p)"
			done <"$tmp/owners"
		done
		[ -z "$missing" ] || die "${df#"$root"/} installs sections '$sections', which miss:$missing"
	done
}

# ---- (4) the compose file and the Dockerfiles' runtime stages ----
check_layout() {
	recipe layout "$root" 2>"$tmp/err" || die "$(cat "$tmp/err")"
}

# ---- (5) the images' health checks, for real on 127.0.0.1 ----
# Polls CMD (a shell command line) until it exits 0, for at most $1 seconds.
wait_ok() {
	local secs=$1 i
	shift
	for ((i = 0; i < secs * 4; i++)); do
		eval "$*" >/dev/null 2>&1 && return 0
		sleep 0.25
	done
	return 1
}
check_health() {
	command -v nats-server >/dev/null || die "nats-server is not installed"
	command -v curl >/dev/null || die "curl is not installed"
	build_binaries
	trap stop_pids EXIT
	local gw_hc svc_hc nats_port gw_port svc gw nats rc
	gw_hc=$(recipe healthcmd "$root/docker/gateway.Dockerfile" "$root" 2>"$tmp/err") || die "gateway: $(cat "$tmp/err")"
	svc_hc=$(recipe healthcmd "$root/docker/webhooks-svc.Dockerfile" "$root" 2>"$tmp/err") || die "webhooks-svc: $(cat "$tmp/err")"
	nats_port=$(free_port)
	gw_port=$(free_port)
	export NATS_URL="nats://127.0.0.1:$nats_port" GATEWAY_BIND=127.0.0.1 GATEWAY_PORT=$gw_port
	export ADMIN_TOKEN=check-docker-token LOG_LEVEL=warn
	export STORE_URL="sqlite:$tmp/data/webhooks.db" METRICS_PORT=0

	"$built/webhooks-svc" >"$tmp/svc.log" 2>&1 &
	svc=$!
	pids+=("$svc")
	sleep 1
	kill -0 "$svc" 2>/dev/null || die "webhooks-svc did not start: $(cat "$tmp/svc.log")"
	if eval "$svc_hc" >/dev/null 2>&1; then
		die "the webhooks-svc HEALTHCHECK passes while NATS is down: $svc_hc"
	fi

	nats-server -a 127.0.0.1 -p "$nats_port" >"$tmp/nats.log" 2>&1 &
	nats=$!
	pids+=("$nats")
	wait_ok 20 "$svc_hc" || die "the webhooks-svc HEALTHCHECK does not pass once NATS is up: $svc_hc"

	"$built/webhooks-gateway" >"$tmp/gw.log" 2>&1 &
	gw=$!
	pids+=("$gw")
	wait_ok 20 "$gw_hc" || die "the gateway HEALTHCHECK does not pass with NATS and the svc up: $gw_hc ($(tail -n 3 "$tmp/gw.log"))"

	rc=0
	stop "$svc" || rc=$?
	[ "$rc" -ne 124 ] || die "webhooks-svc did not exit within 10 s of SIGTERM (docker would SIGKILL it)"
	[ "$rc" -eq 0 ] || die "webhooks-svc exited $rc on SIGTERM"
	if eval "$gw_hc" >/dev/null 2>&1; then
		die "the gateway HEALTHCHECK still passes with webhooks-svc stopped: it checks liveness only"
	fi
	# The gateway is still connected to NATS: with --network host its connection is in the
	# same socket table, and it must not make the stopped service look healthy.
	if eval "$svc_hc" >/dev/null 2>&1; then
		die "the webhooks-svc HEALTHCHECK passes with webhooks-svc stopped and the gateway connected to NATS"
	fi
	rc=0
	stop "$gw" || rc=$?
	[ "$rc" -ne 124 ] || die "webhooks-gateway did not exit within 10 s of SIGTERM (docker would SIGKILL it)"
	[ "$rc" -eq 0 ] || die "webhooks-gateway exited $rc on SIGTERM"
}

failed=0
for check in "$@"; do
	case " ${all[*]} " in *" $check "*) ;; *) echo "check-docker: unknown check $check (${all[*]})" >&2 && exit 2 ;; esac
	set +e
	(
		set -e
		"check_$check"
	)
	rc=$?
	set -e
	if [ "$rc" -eq 0 ]; then
		echo "check-docker: $check: ok"
	else
		echo "check-docker: $check: FAILED" >&2
		failed=$((failed + 1))
	fi
done
[ "$failed" -eq 0 ] || exit 1
