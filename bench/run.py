#!/usr/bin/env python3
"""run.py -- the benchmarks behind BENCHMARKS.md, each beside its ceiling measured in the same run.

  1. API: wrk at 32 connections against bench-const-server (the ceiling: libmicrohttpd answering
     a constant), then POST /webhooks (SQLite) and GET /webhooks/{id} through the real gateway,
     NATS and webhooks-svc.
  2. Fan-out: N webhooks on distinct paths of webhook-target on 4 loopback ports,
     MAX_IN_FLIGHT=64, one GET /ip; deliveries/s from the reply to the last delivery, time from
     the reply to the first delivery, and the service's peak RSS (VmHWM). The ceiling: wrk
     POSTing the same body to the same target with 64 connections. Beside it, libcurl's own
     floor: bench-curl-floor driving one multi handle on one thread with the dispatcher's
     request (64 in flight, distinct paths on the 4 ports) and nothing else, which is as fast
     as any single-threaded libcurl dispatcher can go here.

  3. Scale-out: one event of --scale-webhooks webhooks on a target that holds each request
     20 ms, MAX_IN_FLIGHT=10 per instance, with 1, 2 and 3 webhooks-svc instances sharing the
     event through JetStream; deliveries/s against instances x 500/s (10 slots / 20 ms).
  4. Trigger rate: wrk on GET /ip with --trigger-webhooks registered (each accepted trigger is
     a stored event and a JetStream work item); accepted triggers/s.

Only 127.0.0.1 is used. Every process started here is stopped at the end.
Each API figure is the median of --runs wrk runs, and each fan-out size the median of
--fanout-runs runs (this 2-core machine is noisy); the million-webhook RSS run is made once. The
fan-out also runs with WEBHOOKS_BENCH_NO_RECORD=1 at the first size, to show what recording
costs, and with WEBHOOKS_BENCH_NO_SIGN=1 (no signatures) and WEBHOOKS_BENCH_NO_METRICS=1 (the
metrics' atomic updates skipped), each of these runs alternating with one of the normal build so
that a drift of the machine weighs on both alike.

Usage: run.py BUILD_DIR [--duration S] [--runs N] [--fanout 10000,100000] [--fanout-runs N]
              [--rss-webhooks 1000000] [--scale-webhooks 20000] [--trigger-webhooks 10000,1000000]
              [--only api,fanout,scale,trigger]
"""
import argparse
import base64
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = "bench-token-0123456789abcdef"
procs = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, deadline_s=10):
    end = time.time() + deadline_s
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"port {port} did not open")


def start(argv, env=None, log=None, stdout=None):
    # Every process stays in this driver's session, as wrk does. With the kernel's autogroup
    # scheduling (sched_autogroup_enabled=1 on Debian), each session gets an equal share of the
    # CPU whatever its thread count: separate sessions for nats-server, the gateway and the
    # service would each be held to a slice beside wrk's, and measure that split instead of
    # the code. One session lets the scheduler share by thread, as a server without autogroup.
    p = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=stdout or subprocess.DEVNULL,
                         stderr=log or subprocess.DEVNULL)
    procs.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def stop_all():
    for p in reversed(procs):
        stop(p)


def wrk(url, script, conns, duration, env=None):
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{duration}s", "-s", script, url],
                         env={**os.environ, **(env or {})}, capture_output=True, text=True, check=True).stdout
    return result_line(out)


def result_line(out):
    """The last "RESULT k=v ..." line of a tool's output (wrk scripts, bench-curl-floor)."""
    line = [l for l in out.splitlines() if l.startswith("RESULT")][-1]
    return {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}


def curl_floor(bindir, count, ports):
    """bench-curl-floor: the dispatcher's transfer loop alone, at 64 in flight."""
    out = subprocess.run([os.path.join(bindir, "bench-curl-floor"), "--count", str(count), "--in-flight", "64"] +
                         [f"http://127.0.0.1:{p}/ok" for p in ports], capture_output=True, text=True,
                         check=True).stdout
    return result_line(out)


def http(method, url, body=None, token=True):
    req = urllib.request.Request(url, method=method, data=body)
    if token:
        req.add_header("Authorization", "Bearer " + TOKEN)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.loads(r.read() or b"null")


def trigger(port):
    """GET /ip on a raw socket; returns (status, body, wall-clock microseconds at which the
    reply's first bytes arrived), the moment the first delivery is measured from."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /ip HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = s.recv(65536)
        replied_us = time.time() * 1e6
        while True:
            more = s.recv(65536)
            if not more:
                break
            data += more
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body), replied_us


class System:
    """nats-server (JetStream on, in the temp dir) + webhooks-svc instances + webhooks-gateway
    on free ports, SQLite in the temp dir."""

    def __init__(self, bindir, work, svc_env=None):
        self.bindir, self.work = bindir, work
        self.nats_port, self.http_port = free_port(), free_port()
        self.nats = start(["nats-server", "-a", "127.0.0.1", "-p", str(self.nats_port), "-js",
                           "-sd", os.path.join(work, "nats")])
        wait_port(self.nats_port)
        self.db = os.path.join(work, "webhooks.db")
        self.svc_env = {"NATS_URL": f"nats://127.0.0.1:{self.nats_port}",
                        "STORE_URL": "sqlite:" + self.db, "TARGET_ALLOW_CIDRS": "127.0.0.0/8", "MAX_PENDING_DELIVERIES": "0", "MAX_IN_FLIGHT_PER_HOST": "0", "METRICS_PORT": "0", "LOG_LEVEL": os.environ.get("SVC_LOG_LEVEL", "warn"), **(svc_env or {})}
        self.svc = None
        self.extra = []
        self.gw = start([os.path.join(bindir, "webhooks-gateway")],
                        {"NATS_URL": f"nats://127.0.0.1:{self.nats_port}", "GATEWAY_BIND": "127.0.0.1", "IP_RATE_LIMIT": "0",
                         "GATEWAY_PORT": str(self.http_port), "ADMIN_TOKEN": TOKEN, "LOG_LEVEL": "warn"})
        wait_port(self.http_port)
        self.base = f"http://127.0.0.1:{self.http_port}"

    def start_svc(self):
        self.svc = start([os.path.join(self.bindir, "webhooks-svc")], self.svc_env)
        self.wait_ready()

    def add_svc(self):
        """Another instance on the same store and NATS (the scale-out runs)."""
        self.extra.append(start([os.path.join(self.bindir, "webhooks-svc")], self.svc_env))

    def wait_ready(self):
        end = time.time() + 10
        while time.time() < end:
            try:
                if http("GET", self.base + "/healthz", token=False)[0] == 200:
                    return
            except Exception:
                pass
            time.sleep(0.05)
        raise RuntimeError("webhooks-svc did not come up")

    def stop_svc(self):
        for p in self.extra:
            stop(p)
        self.extra = []
        stop(self.svc)

    def stop(self):
        self.stop_svc()
        stop(self.gw)
        stop(self.nats)

    def cpu_s(self):
        """CPU time (user + system) webhooks-svc has used so far, in seconds."""
        with open(f"/proc/{self.svc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_kib(self):
        with open(f"/proc/{self.svc.pid}/status") as f:
            return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))


def sorted_runs(runs, fn, key):
    """Run fn runs times; return the results sorted by key, the median at len // 2."""
    return sorted((fn() for _ in range(runs)), key=lambda r: r[key])


def median_of(runs, fn):
    """Run fn runs times; return the run with the median requests/s, and all the rates."""
    results = sorted_runs(runs, fn, "requests_per_sec")
    r = dict(results[len(results) // 2])
    r["all"] = [round(x["requests_per_sec"]) for x in results]
    return r


def bench_api(bindir, duration, work, runs):
    res = {}
    port = free_port()
    const = start([os.path.join(bindir, "bench-const-server"), "--port", str(port)])
    wait_port(port)
    res["ceiling"] = median_of(runs, lambda: wrk(f"http://127.0.0.1:{port}/",
                                                 os.path.join(HERE, "get_const.lua"), 32, duration))
    stop(const)

    system = System(bindir, work)
    system.start_svc()
    env = {"ADMIN_TOKEN": TOKEN}
    res["register"] = median_of(runs, lambda: wrk(system.base, os.path.join(HERE, "post_webhook.lua"),
                                                  32, duration, env))
    ids, after = [], None
    while len(ids) < 10000:
        q = "?limit=1000" + (f"&after={after}" if after else "")
        _, page = http("GET", system.base + "/webhooks" + q)
        ids += [w["id"] for w in page["webhooks"]]
        after = page["next"]
        if not after:
            break
    ids_file = os.path.join(work, "ids.txt")
    with open(ids_file, "w") as f:
        f.write("\n".join(ids) + "\n")
    res["get"] = median_of(runs, lambda: wrk(system.base, os.path.join(HERE, "get_webhook.lua"), 32,
                                             duration, {**env, "IDS_FILE": ids_file}))
    system.stop_svc()
    stop(system.gw)
    stop(system.nats)
    return res


def ordered_id(ms, i):
    """A time-ordered id as webhooks-svc makes them (milliseconds, then a counter, then random
    bits), so that seeded webhooks sort as registered ones do."""
    r = uuid.uuid4().int
    v = (ms << 80) | (0x7 << 76) | ((i & 0xfff) << 64) | (0x2 << 62) | (r & ((1 << 62) - 1))
    return str(uuid.UUID(int=v))


# Webhooks seeded per millisecond of their ids (--seed-per-ms): registration through the API
# makes about 25 a millisecond at its measured peak (BENCHMARKS.md, api register). A denser
# seed (4,096, the counter's limit, until 2026-12-04) is one no registration path makes: its
# deliveries' ids, ordered by their webhooks' millisecond and hashed within it, then scatter
# each batch of attempt records over as many pages of the store as it has records.
SEED_PER_MS = 25


def seed(db, n, ports, path="/ok/hook-{i}"):
    """Register n webhooks straight into the SQLite store (the schema webhooks-svc created),
    and its counter and greatest id as the service keeps them: registering a million through
    HTTP would measure the API again, not the fan-out. Their ids are spread as registering
    SEED_PER_MS a millisecond would make them, all in the past."""
    con = sqlite3.connect(db)
    per_ms = SEED_PER_MS
    now = int(time.time() * 1000) - 10000 - n // per_ms
    # Each with a secret of its own, as registration gives (the service would otherwise give
    # them at its start, which is not what is measured).
    rows = ((ordered_id(now + i // per_ms, i % per_ms),
             f"http://127.0.0.1:{ports[i % len(ports)]}" + path.format(i=i), now, now,
             "whsec_" + base64.b64encode(os.urandom(24)).decode())
            for i in range(n))
    con.executemany("INSERT INTO webhooks (id, target_url, created_ms, updated_ms, secret) "
                    "VALUES (?,?,?,?,?)", rows)
    con.execute("UPDATE meta SET n = (SELECT count(*) FROM webhooks), "
                "last_id = (SELECT max(id) FROM webhooks) WHERE k = 'webhooks'")
    con.commit()
    con.close()


def wait_delivered(port, n, wait_s):
    """Poll webhook-target's stats until n requests arrived or wait_s passed."""
    stats, end = None, time.time() + wait_s
    while time.time() < end:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_control/stats") as r:
            stats = json.loads(r.read())
        if stats["total"] >= n:
            break
        time.sleep(0.05)
    return stats


def bench_fanout(bindir, n, work, wait_s, record=True, sign=True, metrics=True):
    tgt = start([os.path.join(bindir, "webhook-target"), "--no-record", "--quiet"] +
                sum([["--port", "0"] for _ in range(4)], []), stdout=subprocess.PIPE)
    ports = [int(tgt.stdout.readline().split()[1]) for _ in range(4)]
    svc_env = {"MAX_IN_FLIGHT": "64"}
    if not record:
        svc_env["WEBHOOKS_BENCH_NO_RECORD"] = "1"
    if not sign:
        svc_env["WEBHOOKS_BENCH_NO_SIGN"] = "1"
    if not metrics:
        svc_env["WEBHOOKS_BENCH_NO_METRICS"] = "1"
    metrics_port = free_port()  # one instance here: a port of its own, scraped at the end
    svc_env["METRICS_PORT"] = str(metrics_port)
    system = System(bindir, work, svc_env)
    system.start_svc()  # creates the schema
    system.stop_svc()
    seed(system.db, n, ports)
    system.start_svc()
    ceiling = wrk(f"http://127.0.0.1:{ports[0]}", os.path.join(HERE, "post_target.lua"), 64, 5)
    floor = curl_floor(bindir, min(n, 200000), ports)
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{ports[0]}/_control/reset", method="POST")).read()

    cpu0 = system.cpu_s()
    status, body, replied_us = trigger(system.http_port)
    assert status == 202 and body["targets"] == n, (status, body)
    stats = wait_delivered(ports[0], n, wait_s)
    cpu = system.cpu_s() - cpu0
    rss = system.peak_rss_kib()
    total = stats["total"]
    if not stats.get("lastArrivalUs"):
        raise RuntimeError("nothing was delivered")
    span_s = (stats["lastArrivalUs"] - replied_us) / 1e6
    out = {"webhooks": n, "delivered": total, "deliveries_per_sec": total / span_s if span_s > 0 else 0,
           "first_delivery_ms": (stats["firstArrivalUs"] - replied_us) / 1000, "peak_rss_mib": rss / 1024,
           "ceiling_requests_per_sec": ceiling["requests_per_sec"],
           "curl_floor_per_sec": floor["transfers_per_sec"],
           "svc_cpu_us_per_delivery": cpu * 1e6 / total if total else 0}
    # The attempts the service counted: all of them, or none with the switch. (The last
    # attempts are counted as they end, a moment after the target saw them.)
    want, counted = (total if metrics else 0), None
    for _ in range(100):
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as r:
            m = re.search(r'^webhooks_delivery_attempts_total\{result="2xx"\} (\d+)$',
                          r.read().decode(), re.M)
        counted = int(m.group(1))
        if counted == want:
            break
        time.sleep(0.05)
    if counted != want:
        raise RuntimeError(f"the service counted {counted} attempts, expected {want}")
    system.stop()
    stop(tgt)
    return out


def bench_scale(bindir, n, instances, work):
    """One event of n webhooks on a target holding each request 20 ms, MAX_IN_FLIGHT=10 per
    instance: deliveries/s with `instances` instances sharing it."""
    tgt = start([os.path.join(bindir, "webhook-target"), "--no-record", "--quiet", "--port", "0"],
                stdout=subprocess.PIPE)
    port = int(tgt.stdout.readline().split()[1])
    system = System(bindir, work, {"MAX_IN_FLIGHT": "10"})
    system.start_svc()
    system.stop_svc()
    seed(system.db, n, [port], "/slow/20/hook-{i}")
    system.start_svc()
    for _ in range(instances - 1):
        system.add_svc()
    time.sleep(1)  # every instance subscribed and pulling
    status, body, replied_us = trigger(system.http_port)
    assert status == 202 and body["targets"] == n, (status, body)
    stats = wait_delivered(port, n, 120)
    span_s = (stats["lastArrivalUs"] - replied_us) / 1e6
    system.stop()
    stop(tgt)
    return {"instances": instances, "delivered": stats["total"], "deliveries_per_sec": stats["total"] / span_s,
            "peak_in_flight": stats.get("peakInFlight")}


def bench_trigger(bindir, n, duration, work):
    """Accepted GET /ip per second with n webhooks registered (their deliveries go to a port
    where nothing listens, so the fan-out that follows costs little while wrk runs)."""
    system = System(bindir, work, {"MAX_IN_FLIGHT": "10", "MAX_RETRIES": "0"})
    system.start_svc()
    system.stop_svc()
    seed(system.db, n, [9], "/none/{i}")
    system.start_svc()
    r = wrk(system.base, os.path.join(HERE, "get_ip.lua"), 32, duration)
    system.stop()
    r["accepted_per_sec"] = (r["requests"] - r["non2xx"]) / r["duration_s"]
    return r


def main():
    global SEED_PER_MS
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--fanout", default="100000,10000")
    ap.add_argument("--rss-webhooks", type=int, default=1000000)
    ap.add_argument("--skip-api", action="store_true")
    ap.add_argument("--runs", type=int, default=3, help="wrk runs per API measurement (median)")
    ap.add_argument("--fanout-runs", type=int, default=3,
                    help="runs per --fanout size (median); the --rss-webhooks run is made once")
    ap.add_argument("--no-record-overhead", dest="record_overhead", action="store_false",
                    help="skip the run without delivery records that measures their cost")
    ap.add_argument("--no-sign-overhead", dest="sign_overhead", action="store_false",
                    help="skip the run without signatures that measures their cost")
    ap.add_argument("--no-metrics-overhead", dest="metrics_overhead", action="store_false",
                    help="skip the runs without metrics updates that measure their cost")
    ap.add_argument("--seed-per-ms", type=int, default=SEED_PER_MS,
                    help="webhooks seeded per millisecond of their ids (1..4096)")
    ap.add_argument("--scale-webhooks", type=int, default=20000)
    ap.add_argument("--trigger-webhooks", default="10000,1000000")
    ap.add_argument("--only", default="api,fanout,scale,trigger")
    args = ap.parse_args()
    if not 1 <= args.seed_per_ms <= 4096:
        ap.error("--seed-per-ms must be 1..4096")
    SEED_PER_MS = args.seed_per_ms
    only = set(args.only.split(","))
    bindir = os.path.join(os.path.abspath(args.build), "bin")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"seed: {SEED_PER_MS} webhooks per millisecond of their ids")
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2**30} GiB, {platform.platform()}")
    try:
        if not args.skip_api and "api" in only:
            with tempfile.TemporaryDirectory() as work:
                r = bench_api(bindir, args.duration, work, args.runs)
            for name, v in r.items():
                print(f"api {name:9s} {v['requests_per_sec']:9.0f} req/s  p99 {v['p99_ms']:6.2f} ms  "
                      f"non2xx {int(v['non2xx'])}  (median of {v['all']})")
        sizes = [int(x) for x in args.fanout.split(",") if x] if "fanout" in only else []
        plan = [(n, True, True, True, args.fanout_runs) for n in sizes]
        if args.record_overhead and sizes:
            plan.insert(1, (sizes[0], False, True, True, args.fanout_runs))
        if args.sign_overhead and sizes:
            plan.insert(1, (sizes[0], True, False, True, args.fanout_runs))
        if args.metrics_overhead and sizes:
            plan.insert(1, (sizes[0], True, True, False, args.fanout_runs))
        if args.rss_webhooks and "fanout" in only:
            plan.append((args.rss_webhooks, True, True, True, 1))

        def one(n, record, sign, metrics):
            with tempfile.TemporaryDirectory() as work:
                return bench_fanout(bindir, n, work, wait_s=max(60, n / 2000), record=record,
                                    sign=sign, metrics=metrics)

        # Signing and metrics, each on and off at the first size: the runs of a pair alternate
        # (on, off, on, off, ...), so that a drift of the machine during the run weighs on both
        # alike, and each pair's ratio is printed.
        done = {}

        def paired(what, off_key):
            on_key = (sizes[0], True, True, True)
            on, off = [], []
            for _ in range(args.fanout_runs):
                on.append(one(*on_key))
                off.append(one(*off_key))
            done.setdefault(on_key, []).extend(on)
            done[off_key] = off
            ratios = sorted(a["deliveries_per_sec"] / b["deliveries_per_sec"] for a, b in zip(on, off))
            floors = sorted((a["deliveries_per_sec"] / a["curl_floor_per_sec"]) /
                            (b["deliveries_per_sec"] / b["curl_floor_per_sec"]) for a, b in zip(on, off))
            cpus = sorted(a["svc_cpu_us_per_delivery"] / b["svc_cpu_us_per_delivery"]
                          for a, b in zip(on, off))
            print(f"fanout {sizes[0]:8d} webhooks, {what} on / off, run by run (alternating): "
                  f"deliveries/s {[round(r, 3) for r in ratios]}, median {ratios[len(ratios) // 2]:.3f}; "
                  f"share of the floor {[round(r, 3) for r in floors]}, median {floors[len(floors) // 2]:.3f}; "
                  f"webhooks-svc CPU per delivery {[round(r, 3) for r in cpus]}, median {cpus[len(cpus) // 2]:.3f}",
                  flush=True)

        if args.sign_overhead and sizes:
            paired("signatures", (sizes[0], True, False, True))
        if args.metrics_overhead and sizes:
            paired("metrics", (sizes[0], True, True, False))

        for n, record, sign, metrics, runs in plan:
            key = (n, record, sign, metrics)
            if key in done and runs == args.fanout_runs:
                # The "on" runs of every pair above, together.
                results = sorted(done.pop(key), key=lambda x: x["deliveries_per_sec"])
                runs = len(results)
            else:
                results = sorted_runs(runs, lambda: one(n, record, sign, metrics),
                                      "deliveries_per_sec")
            r = results[len(results) // 2]
            what = (('' if record else ' (not recorded)') + ('' if sign else ' (not signed)') +
                    ('' if metrics else ' (metrics not counted)'))
            line = (f"fanout {r['webhooks']:8d} webhooks{what}: "
                    f"delivered {r['delivered']}, "
                    f"{r['deliveries_per_sec']:8.0f}/s (ceiling wrk {r['ceiling_requests_per_sec']:.0f}/s, "
                    f"libcurl floor {r['curl_floor_per_sec']:.0f}/s), "
                    f"first delivery {r['first_delivery_ms']:.2f} ms after the reply, "
                    f"peak RSS {r['peak_rss_mib']:.1f} MiB, "
                    f"webhooks-svc CPU {r['svc_cpu_us_per_delivery']:.1f} us/delivery")
            if runs > 1:
                line += (f"\n    median of {runs} runs: deliveries/s {[round(x['deliveries_per_sec']) for x in results]}, "
                         f"share of wrk {[round(100 * x['deliveries_per_sec'] / x['ceiling_requests_per_sec']) for x in results]}%, "
                         f"share of the floor {[round(100 * x['deliveries_per_sec'] / x['curl_floor_per_sec']) for x in results]}%, "
                         f"worst first delivery {max(x['first_delivery_ms'] for x in results):.2f} ms, "
                         f"highest peak RSS {max(x['peak_rss_mib'] for x in results):.1f} MiB, "
                         f"webhooks-svc CPU us/delivery {[round(x['svc_cpu_us_per_delivery'], 1) for x in results]}")
            print(line, flush=True)
        if "scale" in only and args.scale_webhooks:
            for k in (1, 2, 3):
                with tempfile.TemporaryDirectory() as work:
                    r = bench_scale(bindir, args.scale_webhooks, k, work)
                print(f"scale-out {args.scale_webhooks} webhooks (20 ms each, MAX_IN_FLIGHT=10), {k} instance(s): "
                      f"{r['deliveries_per_sec']:7.0f}/s = {r['deliveries_per_sec'] / (k * 500):.2f} x {k} x 500/s, "
                      f"delivered {r['delivered']}, target's peak in flight {r['peak_in_flight']}", flush=True)
        if "trigger" in only:
            for n in [int(x) for x in args.trigger_webhooks.split(",") if x]:
                with tempfile.TemporaryDirectory() as work:
                    r = bench_trigger(bindir, n, args.duration, work)
                print(f"trigger with {n:8d} webhooks: {r['accepted_per_sec']:7.0f} accepted/s "
                      f"(p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, non-202 {int(r['non2xx'])})", flush=True)
    finally:
        stop_all()


if __name__ == "__main__":
    main()
