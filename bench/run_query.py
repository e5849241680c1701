#!/usr/bin/env python3
"""Query latency benchmark: IoT Hub queries over N device twins (default 100,000), over REST and in-process.

Setup (not measured; its rates are recorded): a hub with durability="relaxed" and no listeners creates the
devices bench000000.. and sets their tags {"region": "r0".."r7" (i % 8), "floor": i % 20, "kind": one of
sensor/gateway/actuator (i % 3)}; then it is closed and the SAME data directory is reopened with
durability="durable" and the HTTPS listener on a free port (hub process pinned to CPU 1). Measured, per
repetition and interleaved REST / Python:

  region_first_page  SELECT * FROM devices WHERE tags.region = 'r3'                 first page (100 twins)
  region_all_pages   the same, every page (N/8 twins, N/800 round trips)
  group_by_region    SELECT tags.region, COUNT() AS n FROM devices GROUP BY tags.region
  count_floor_gt_10  SELECT COUNT() AS n FROM devices WHERE tags.floor > 10

  rest    POST /devices/query?api-version=2021-04-12 (iothubowner SAS token, x-ms-max-item-count,
          x-ms-continuation), one keep-alive TLS connection (http.client, CA = hub.ca_cert_path), from this
          process pinned to CPU 0; the time includes reading and json-parsing every page.
  python  hub.query(text, page_size=100).pages() inside the hub's process (CPU 1): the time includes
          the Python wrapper's json.loads of each page.

Every result is checked against the counts the setup implies. There is no Mosquitto (or other) reference for
queries: the numbers are absolute, for this VM only. See bench/README.md, "Query latency".

The same file is the hub-side process (`--driver setup|serve`), started by the runner.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import http.client
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from _bench_io import write_json  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MARKER = "fleethub-bench-query.json"
REGIONS = 8
KINDS = ("sensor", "gateway", "actuator")
QUERIES = {  # name -> (text, "first" page only | "all" pages, label)
    "region_first_page": ("SELECT * FROM devices WHERE tags.region = 'r3'", "first", "region='r3', first page"),
    "region_all_pages": ("SELECT * FROM devices WHERE tags.region = 'r3'", "all", "region='r3', all pages"),
    "group_by_region": ("SELECT tags.region, COUNT() AS n FROM devices GROUP BY tags.region", "all",
                        "GROUP BY tags.region"),
    "count_floor_gt_10": ("SELECT COUNT() AS n FROM devices WHERE tags.floor > 10", "all", "COUNT() floor > 10"),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def device_id(i: int) -> str:
    return f"bench{i:06d}"


def tags_for(i: int) -> dict:
    return {"region": f"r{i % REGIONS}", "floor": i % 20, "kind": KINDS[i % 3]}


# ======================================================================================
# hub side (--driver): only this part knows the fleethub API
# ======================================================================================
def driver_setup(a) -> None:
    """Creates the devices and tags with durability="relaxed" (no listeners), then closes the hub."""
    import fleethub
    from concurrent.futures import ThreadPoolExecutor
    t0 = time.time()
    hub = fleethub.Hub(a.data_dir, hostname="localhost", mqtt_port=None, mqtt_plain_port=None, https_port=None,
                       durability="relaxed", log_level="warning")
    hub.start()
    n, th = a.devices, max(1, a.threads)

    def each(fn):
        if th == 1:
            for i in range(n):
                fn(i)
        else:  # the calls release the GIL: threads overlap their commits
            with ThreadPoolExecutor(th) as ex:
                list(ex.map(lambda k: [fn(i) for i in range(k, n, th)], range(th)))

    t1 = time.time()
    each(lambda i: hub.devices.create(device_id(i)))
    t2 = time.time()
    each(lambda i: hub.twins.update(device_id(i), tags=tags_for(i)))
    t3 = time.time()
    hub.close()
    t4 = time.time()
    info = {"devices": n, "threads": th, "create_per_s": n / (t2 - t1), "tags_per_s": n / (t3 - t2),
            "close_s": t4 - t3, "setup_s": t4 - t0}
    Path(a.data_dir, MARKER).write_text(json.dumps(info))
    write_json(a.ready, info)


def driver_serve(a) -> None:
    """Reopens the data directory durable with HTTPS, then runs `PYQ <name> <page_size> <out>` lines."""
    import fleethub
    t0 = time.time()
    hub = fleethub.Hub(a.data_dir, hostname="localhost", mqtt_port=None, mqtt_plain_port=None, https_port=0,
                       durability="durable", log_level="warning")
    hub.start()
    key = hub.policies()["iothubowner"]["primary_key"]
    token = fleethub.make_sas_token("localhost", key, ttl=7 * 86400, key_name="iothubowner")
    write_json(a.ready, {"pid": os.getpid(), "port": hub.ports["https"], "ca": hub.ca_cert_path, "token": token,
                         "open_s": time.time() - t0})
    try:
        for line in sys.stdin:
            cmd = line.split()
            if not cmd:
                continue
            if cmd[0] == "PYQ":
                text, mode, _ = QUERIES[cmd[1]]
                page_size, out = int(cmd[2]), cmd[3]
                try:
                    c0, t = time.process_time_ns(), time.perf_counter_ns()
                    items, pages = [], 0
                    for page in hub.query(text, page_size=page_size).pages():
                        pages += 1
                        items.extend(page.items)
                        if mode == "first":
                            break
                    dt, cpu = time.perf_counter_ns() - t, time.process_time_ns() - c0
                    res = {"ms": dt / 1e6, "hub_cpu_ms": cpu / 1e6, "pages": pages, "items": len(items),
                           "summary": summarize_items(cmd[1], items)}
                except Exception as e:  # noqa: BLE001 - reported to the runner
                    res = {"error": f"{type(e).__name__}: {e}"}
                write_json(out, res)
            elif cmd[0] == "QUIT":
                break
    finally:
        hub.close()




# ======================================================================================
# result checks (shared by both modes)
# ======================================================================================
def summarize_items(name: str, items: list):
    """What the check needs from a result, small enough to keep in the JSON."""
    if name.startswith("region"):
        return {"count": len(items), "all_r3": all((it.get("tags") or {}).get("region") == "r3" for it in items)}
    if name == "group_by_region":
        out = {}
        for it in items:
            reg = next((v for v in it.values() if isinstance(v, str)), None)
            out[str(reg)] = it.get("n")
        return out
    return items[0] if items else None


def expected(name: str, n: int):
    if name == "region_first_page":
        return {"count": min(100, len(range(3, n, REGIONS))), "all_r3": True}
    if name == "region_all_pages":
        return {"count": len(range(3, n, REGIONS)), "all_r3": True}
    if name == "group_by_region":
        return {f"r{k}": len(range(k, n, REGIONS)) for k in range(REGIONS) if k < n}
    return {"n": sum(1 for i in range(n) if i % 20 > 10)}


# ======================================================================================
# runner side (the client: no fleethub import)
# ======================================================================================
class RestClient:
    def __init__(self, port: int, ca: str, token: str, page_size: int):
        ctx = ssl.create_default_context(cafile=ca)
        self.conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=120)
        self.token, self.page_size = token, page_size

    def run(self, name: str):
        text, mode, _ = QUERIES[name]
        body = json.dumps({"query": text})
        items, pages, cont = [], 0, None
        t = time.perf_counter_ns()
        while True:
            h = {"Authorization": self.token, "Content-Type": "application/json",
                 "x-ms-max-item-count": str(self.page_size)}
            if cont:
                h["x-ms-continuation"] = cont
            self.conn.request("POST", "/devices/query?api-version=2021-04-12", body=body, headers=h)
            r = self.conn.getresponse()
            data = r.read()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}: {data[:300]!r}")
            items.extend(json.loads(data))
            pages += 1
            cont = r.getheader("x-ms-continuation")
            if mode == "first" or not cont:
                break
        return {"ms": (time.perf_counter_ns() - t) / 1e6, "pages": pages, "items": len(items),
                "summary": summarize_items(name, items)}


def proc_cpu_ms(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        d = f.read()
    fl = d[d.rindex(")") + 2:].split()
    return (int(fl[11]) + int(fl[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


def wait_file(path: Path, timeout: float, proc: subprocess.Popen) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                pass
        if proc.poll() is not None:
            raise RuntimeError(f"hub process exited with {proc.returncode} (see its .err file)")
        time.sleep(0.02)
    raise RuntimeError(f"{path} did not appear within {timeout}s")


def stats(xs):
    xs = sorted(xs)
    if not xs:
        return {}
    p95 = xs[min(len(xs) - 1, max(0, int(0.95 * len(xs) + 0.999999) - 1))]
    return {"n": len(xs), "median": statistics.median(xs), "p95": p95, "min": xs[0], "max": xs[-1],
            "mean": statistics.fmean(xs)}


def spawn_driver(cfg, wd: Path, role: str, data_dir: Path, extra: list) -> tuple[subprocess.Popen, Path]:
    env = dict(os.environ)
    if cfg.pythonpath:
        env["PYTHONPATH"] = cfg.pythonpath + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    ready = wd / f"{role}.ready"
    ready.unlink(missing_ok=True)
    cmd = (["taskset", "-c", cfg.hub_cpus] if cfg.hub_cpus else []) + [
        cfg.python, str(Path(__file__).resolve()), "--driver", role, "--data-dir", str(data_dir),
        "--ready", str(ready)] + extra
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, text=True, env=env, stdout=open(wd / f"{role}.out", "w"),
                            stderr=open(wd / f"{role}.err", "w"))
    return proc, ready


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=20, help="measured repetitions per query and mode")
    ap.add_argument("--warmup-reps", type=int, default=2, help="unmeasured repetitions first")
    ap.add_argument("--page-size", type=int, default=100)
    ap.add_argument("--queries", default=",".join(QUERIES), help=f"comma separated, of: {', '.join(QUERIES)}")
    ap.add_argument("--modes", default="rest,python")
    ap.add_argument("--setup-threads", type=int, default=1,
                    help="threads creating devices/tags in the relaxed setup (1 was fastest here)")
    ap.add_argument("--data-dir", default=None,
                    help="populated hub data directory to reuse (populated here if empty); kept afterwards")
    ap.add_argument("--hub-cpus", default="1")
    ap.add_argument("--gen-cpus", default="0", help="CPUs of this (client) process")
    ap.add_argument("--no-pin", dest="pin", action="store_false", default=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--pythonpath", default=str(ROOT / "python"))
    ap.add_argument("--hub-start-timeout", type=float, default=600.0)
    ap.add_argument("--results-dir", default=str(BENCH / "results"))
    ap.add_argument("--keep-workdir", action="store_true")
    # hub side
    ap.add_argument("--driver", choices=["setup", "serve"], help=argparse.SUPPRESS)
    ap.add_argument("--ready", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    cfg = ap.parse_args()
    if cfg.driver == "setup":
        driver_setup(cfg)
        return 0
    if cfg.driver == "serve":
        driver_serve(cfg)
        return 0

    if not cfg.pin:
        cfg.hub_cpus = cfg.gen_cpus = None
    names = [q.strip() for q in cfg.queries.split(",") if q.strip()]
    modes = [m.strip() for m in cfg.modes.split(",") if m.strip()]
    for q in names:
        if q not in QUERIES:
            raise SystemExit(f"unknown query {q!r}; choose from {list(QUERIES)}")
    wd = Path(tempfile.mkdtemp(prefix="fleethub-query-"))
    data_dir = Path(cfg.data_dir) if cfg.data_dir else wd / "hubdata"
    data_dir.mkdir(parents=True, exist_ok=True)
    n = cfg.devices
    ts = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    rd = Path(cfg.results_dir)
    rd.mkdir(parents=True, exist_ok=True)
    out_path = rd / f"query-{ts}.json"
    doc = {"meta": {"time": _dt.datetime.now().isoformat(timespec="seconds"), "ncpu": os.cpu_count(),
                    "loadavg_start": open("/proc/loadavg").read().split()[:3]},
           "config": {k: v for k, v in vars(cfg).items() if k not in ("driver", "ready", "threads")},
           "notes": ["no Mosquitto or other reference exists for queries: absolute numbers for this VM only",
                     "rest: client in this process (CPU 0), one keep-alive TLS connection, json parsing included",
                     "python: hub.query() inside the hub process (CPU 1), the wrapper's json.loads included"],
           "setup": None, "runs": [], "summary": []}
    errors = 0
    serve = None
    try:
        marker = data_dir / MARKER
        prev = json.loads(marker.read_text()) if marker.exists() else None
        if prev and prev.get("devices") == n:
            log(f"reusing {data_dir} ({n} devices)")
            doc["setup"] = dict(prev, reused=True)
        else:
            if any(data_dir.iterdir()):
                raise SystemExit(f"{data_dir} is not empty and not a populated {n}-device query data dir")
            log(f"setup: creating {n} devices and their tags (durability=relaxed, {cfg.setup_threads} thread(s))")
            proc, ready = spawn_driver(cfg, wd, "setup", data_dir, ["--devices", str(n), "--threads",
                                                                    str(cfg.setup_threads)])
            doc["setup"] = wait_file(ready, cfg.hub_start_timeout + n / 100, proc)
            proc.wait(60)
            s = doc["setup"]
            log(f"setup: {s['create_per_s']:.0f} creates/s, {s['tags_per_s']:.0f} tag updates/s, {s['setup_s']:.1f} s")
        serve, ready = spawn_driver(cfg, wd, "serve", data_dir, [])
        info = wait_file(ready, cfg.hub_start_timeout, serve)
        doc["restart_open_s"] = info["open_s"]
        log(f"hub reopened durable in {info['open_s']:.2f} s, https port {info['port']}")
        if cfg.gen_cpus:
            os.sched_setaffinity(0, {int(c) for c in cfg.gen_cpus.split(",")})
        rest = RestClient(info["port"], info["ca"], info["token"], cfg.page_size) if "rest" in modes else None
        seq = [0]

        def python_query(name):
            out = wd / f"pyq-{seq[0]}.json"
            seq[0] += 1
            serve.stdin.write(f"PYQ {name} {cfg.page_size} {out}\n")
            serve.stdin.flush()
            r = wait_file(out, 600, serve)
            if "error" in r:
                raise RuntimeError(r["error"])
            return r

        for name in names:
            exp = expected(name, n)
            for rep in range(-cfg.warmup_reps, cfg.reps):
                for mode in modes:
                    entry = {"query": name, "mode": mode, "rep": rep}
                    try:
                        if mode == "rest":
                            c0 = proc_cpu_ms(serve.pid)
                            r = rest.run(name)
                            r["hub_cpu_ms"] = proc_cpu_ms(serve.pid) - c0
                        else:
                            r = python_query(name)
                        r["check_ok"] = r["summary"] == exp
                        if not r["check_ok"] and rep == -cfg.warmup_reps:
                            log(f"  CHECK FAILED {name} {mode}: got {r['summary']}, expected {exp}")
                        entry.update(r)
                    except Exception as e:  # noqa: BLE001 - recorded, the matrix goes on
                        entry["error"] = f"{type(e).__name__}: {e}"
                        errors += 1
                        log(f"  {name} {mode} rep {rep}: ERROR {entry['error']}")
                    if rep >= 0:
                        doc["runs"].append(entry)
            for mode in modes:
                rs = [r for r in doc["runs"] if r["query"] == name and r["mode"] == mode and "error" not in r]
                row = {"query": name, "label": QUERIES[name][2], "mode": mode,
                       "latency_ms": stats([r["ms"] for r in rs]),
                       "hub_cpu_ms_per_query": (statistics.fmean(r["hub_cpu_ms"] for r in rs) if rs else None),
                       "pages": rs[0]["pages"] if rs else None, "items": rs[0]["items"] if rs else None,
                       "check": ("ok" if all(r["check_ok"] for r in rs) else "FAILED") if rs else "no data"}
                doc["summary"].append(row)
                lat = row["latency_ms"]
                log(f"{row['label']:<26} {mode:<6} median {lat.get('median', float('nan')):.2f} ms "
                    f"p95 {lat.get('p95', float('nan')):.2f} ms, {row['items']} items / {row['pages']} pages, "
                    f"check {row['check']}")
            out_path.write_text(json.dumps(doc, indent=1))
    except KeyboardInterrupt:
        log("interrupted; writing partial results")
    finally:
        if serve is not None and serve.poll() is None:
            try:
                serve.stdin.write("QUIT\n")
                serve.stdin.flush()
                serve.wait(60)
            except (BrokenPipeError, subprocess.TimeoutExpired, OSError):
                serve.kill()
    out_path.write_text(json.dumps(doc, indent=1))

    print(f"\nQuery latency, {n} devices (tags: region r0..r7, floor 0..19, kind), page size {cfg.page_size}, "
          f"{cfg.reps} reps after {cfg.warmup_reps} warm-up, hub durable on CPU {cfg.hub_cpus}, client on "
          f"CPU {cfg.gen_cpus}")
    if doc["setup"]:
        s = doc["setup"]
        print(f"setup (relaxed): {s['create_per_s']:.0f} creates/s, {s['tags_per_s']:.0f} tag updates/s"
              + (" (reused data dir)" if s.get("reused") else "")
              + (f"; durable reopen {doc['restart_open_s']:.2f} s" if "restart_open_s" in doc else ""))
    print("No reference system: there is no Mosquitto (or other broker) equivalent of a twin query.\n")
    print(f"{'query':<26}{'mode':<8}{'items':>8}{'pages':>7}{'median ms':>11}{'p95 ms':>9}{'min ms':>9}"
          f"{'max ms':>9}{'hub CPU ms':>12}  check")
    for row in doc["summary"]:
        lat = row["latency_ms"]

        def f(k):
            return f"{lat[k]:.2f}" if k in lat else "-"
        cpu = row["hub_cpu_ms_per_query"]
        print(f"{row['label']:<26}{row['mode']:<8}{row['items'] if row['items'] is not None else '-':>8}"
              f"{row['pages'] if row['pages'] is not None else '-':>7}{f('median'):>11}{f('p95'):>9}{f('min'):>9}"
              f"{f('max'):>9}{(f'{cpu:.2f}' if cpu is not None else '-'):>12}  {row['check']}")
    print(f"\nfull results: {out_path}")
    failed = [r for r in doc["summary"] if r["check"] != "ok"]
    if errors or failed:
        print(f"{errors} error(s), {len(failed)} failed check(s); work directory kept: {wd}", file=sys.stderr)
        return 1
    if not cfg.keep_workdir:
        shutil.rmtree(wd, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
