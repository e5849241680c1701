#!/usr/bin/env python3
"""Fan-in benchmark: N publishers -> broker -> 1 consumer, Mosquitto versus fleethub.

Method (shared/reference/performance.md sections 2.2, 2.3 and 7):
  * open-loop publishers (fleethub_loadgen pub), scheduled send time in the payload;
  * interleaved A/B repetitions: mosquitto, fleethub, mosquitto, fleethub, ...;
  * broker pinned to CPU 1 and load generator to CPU 0 (--no-pin to disable);
  * broker CPU = utime+stime delta from /proc/<pid>/stat over the measured window,
    divided by the messages delivered in that window -> CPU-us per message;
  * RSS from /proc/<pid>/status; an idle cell measures RSS per idle connection;
  * ratios hub/mosq for rate, mosq/hub for CPU, latency and memory (> 1 = hub better),
    medians over repetitions.

Only `start_fleethub()` and the HUB_SERVER template below know the fleethub Python API.
See bench/README.md.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
MOSQ_TEMPLATE = BENCH / "mosquitto.conf"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------
def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout}s")


def wait_file(path: Path, timeout: float, proc: subprocess.Popen | None = None) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before writing {path}")
        time.sleep(0.05)
    raise RuntimeError(f"{path} did not appear within {timeout}s")


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def proc_cpu_ns(pid: int) -> int:
    """utime+stime of the whole process (all threads), in ns (CLK_TCK resolution)."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // CLK_TCK


def proc_mem_kb(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "Threads:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    return out


def sleep_until_ns(t_ns: int) -> None:
    d = (t_ns - time.time_ns()) / 1e9
    if d > 0:
        time.sleep(d)


def taskset(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus else []


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(runs, key, match):
    """{median, min, max, n} of metric `key` over the runs that `match` accepts (failed runs and missing
    values are skipped): the per-system entry of every runner's summary."""
    vals = [r["result"]["metrics"].get(key) for r in runs if match(r) and "error" not in r]
    vals = [v for v in vals if v is not None]
    return {"median": median(vals), "min": min(vals) if vals else None, "max": max(vals) if vals else None,
            "n": len(vals)}


def find_loadgen(explicit: str | None) -> Path:
    cands = []
    if explicit:
        cands.append(Path(explicit))
    if os.environ.get("FLEETHUB_LOADGEN"):
        cands.append(Path(os.environ["FLEETHUB_LOADGEN"]))
    found = sorted(ROOT.glob("build/*/bench/fleethub_loadgen"), key=lambda p: p.stat().st_mtime, reverse=True)
    cands += found + [ROOT / "build/bench/fleethub_loadgen"]
    for c in cands:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise SystemExit("fleethub_loadgen not found: build target fleethub_loadgen "
                     "(cmake --build --preset release --target fleethub_loadgen) or pass --loadgen")


def terminate(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------------------
# Brokers. A broker object exposes: pid, port, creds (path or None), start(), stop(),
# and a consumer: start_consumer(qos, ws, we, exit_at) / finish_consumer() -> stats dict
# in the loadgen `sub` schema (bench/README.md).
# --------------------------------------------------------------------------------------
class Mosquitto:
    name = "mosquitto"

    def __init__(self, cfg, workdir: Path):
        self.cfg = cfg
        self.workdir = workdir
        self.proc = None
        self.sub = None
        self.creds = None

    def start(self):
        self.port = free_port()
        conf = MOSQ_TEMPLATE.read_text()
        for k, v in {"@PORT@": str(self.port), "@BIND@": "127.0.0.1",
                     "@MAX_INFLIGHT@": str(self.cfg.inflight), "@MAX_QUEUED@": str(self.cfg.max_queued),
                     "@NODELAY@": "true" if self.cfg.mosq_nodelay else "false"}.items():
            conf = conf.replace(k, v)
        path = self.workdir / "mosquitto.conf"
        path.write_text(conf)
        cmd = taskset(self.cfg.broker_cpus) + [self.cfg.mosquitto, "-c", str(path)]
        self.proc = subprocess.Popen(cmd, preexec_fn=raise_nofile, stdout=subprocess.DEVNULL,
                                     stderr=open(self.workdir / "mosquitto.err", "w"))
        wait_port(self.port, 10, self.proc)
        self.pid = self.proc.pid
        return self

    def start_consumer(self, qos, ws, we, exit_at):
        ready = self.workdir / "sub.ready"
        self.sub_stats = self.workdir / "sub.json"
        for p in (ready, self.sub_stats):
            p.unlink(missing_ok=True)
        cmd = taskset(self.cfg.gen_cpus) + [
            str(self.cfg.loadgen), "sub", "--port", str(self.port), "--qos", str(qos),
            "--topic", self.cfg.topic_filter, "--window", f"{ws}:{we}", "--exit-at", str(exit_at),
            "--ready-file", str(ready), "--stats-file", str(self.sub_stats), "--no-stdout"]
        if self.cfg.sub_quickack:
            cmd.append("--quickack")
        self.sub = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(self.workdir / "sub.err", "w"))
        wait_file(ready, 10, self.sub)

    def finish_consumer(self, timeout):
        try:
            self.sub.wait(timeout)
        except subprocess.TimeoutExpired:
            terminate(self.sub)
        return json.loads(self.sub_stats.read_text())

    def stop(self):
        terminate(self.sub)
        terminate(self.proc)


# ---- fleethub -------------------------------------------------------------------------
# The hub runs in its own Python process (so /proc CPU and RSS are its own and it can be
# pinned). That process starts the hub, creates the devices, writes the MQTT credentials
# file, then waits on stdin for "GO <ws_ns> <we_ns> <exit_at_ns>" and consumes the event
# tail in-process, writing the same stats JSON as `fleethub_loadgen sub`.
# Only the ADAPTER section of this template depends on the fleethub API.
HUB_SERVER = r'''
import argparse, base64, json, os, signal, sys, threading, time

# ============================ ADAPTER: fleethub API =====================================
import fleethub

def hub_start(data_dir, durability):
    hub = fleethub.Hub(data_dir, hostname="localhost", mqtt_tls_port=None, mqtt_plain_port=0, https_port=None,
                       durability=durability)
    hub.start()
    return hub, hub.ports["mqtt"]

def hub_create_device_credentials(hub, device_id, key_b64, expiry):
    """-> (client_id, username, password) for MQTT CONNECT."""
    hub.devices.create(device_id, primary_key=key_b64)
    token = fleethub.make_sas_token(resource=f"localhost/devices/{device_id}", key=key_b64, expiry=expiry)
    return device_id, f"localhost/{device_id}/?api-version=2021-04-12", token

def hub_open_tail(hub):
    return hub.events.tail(from_="end")

def hub_batches(tail, timeout):
    """Yields lists of message bodies (bytes). May return on timeout; the caller loops."""
    while True:
        batch = tail.get_batch(timeout, properties=False)  # columnar, body-only: the public batch API
        if not len(batch):
            return
        yield batch.bodies

def hub_stop(hub):
    hub.stop()
    if hasattr(hub, "close"):
        hub.close()
# ========================================================================================

PFX = b'{"pub":'
LIN = 8192          # 1 us buckets below 8.192 ms, then 128 log buckets per octave

def hidx(us):
    if us < LIN:
        return us if us >= 0 else 0
    e = us.bit_length()
    i = LIN + (e - 14) * 128 + ((us >> (e - 8)) & 127)
    return i if i < NB else NB - 1

NB = LIN + 30 * 128

def hval(i):
    if i < LIN:
        return float(i)
    o, s = divmod(i - LIN, 128)
    e = o + 14
    lo = (128 + s) << (e - 8)
    return lo + (1 << (e - 8)) / 2.0

def hsummary(h, n, total_us, mx_us):
    def q(p):
        if not n:
            return 0.0
        rank = max(1, -(-int(p * n * 1000000) // 1000000))
        acc = 0
        for i, c in enumerate(h):
            acc += c
            if acc >= rank:
                return min(hval(i), mx_us) / 1000.0
        return mx_us / 1000.0
    return {"count": n, "mean": (total_us / n / 1000.0) if n else 0.0, "p50": q(0.5), "p90": q(0.9),
            "p99": q(0.99), "p999": q(0.999), "max": mx_us / 1000.0}

class Consumer:
    """Consumes the tail until exit_at; counts are in plain attributes so that a watchdog thread
    can still write the stats if the tail iterator blocks past the deadline."""

    def __init__(self, ws, we, exit_at):
        self.ws, self.we, self.exit_at = ws, we, exit_at
        self.h = [0] * NB
        self.bitmaps = {}
        self.mn = {}
        self.mx = {}
        self.received = self.foreign = self.uniq_w = self.dup = self.dup_w = self.recv_w_rt = 0
        self.lat_sum = self.lat_max = 0
        self.per_sec = []
        self.first_rx = self.last_rx = 0
        self.cpu_s = None
        self.cpu_ws = self.cpu_we = None

    def run(self, tail, stop):
        ws, we, exit_at = self.ws, self.we, self.exit_at
        h, bitmaps, mn, mx = self.h, self.bitmaps, self.mn, self.mx
        t_cpu0 = time.thread_time_ns()
        done = False
        while not done and not stop[0] and time.time_ns() < exit_at:
            t_pass = time.monotonic()
            got = 0
            for bodies in hub_batches(tail, 0.2):
                got += 1
                now = time.time_ns()
                if self.cpu_we is None and now >= ws:
                    if self.cpu_ws is None:
                        self.cpu_ws = (now, time.thread_time_ns())
                    elif now >= we:
                        self.cpu_we = (now, time.thread_time_ns())
                nb = len(bodies)
                if nb:
                    self.received += nb
                    if not self.first_rx:
                        self.first_rx = now
                    self.last_rx = now
                    if ws <= now < we:
                        self.recv_w_rt += nb
                        sec = (now - ws) // 1000000000
                        while len(self.per_sec) <= sec:
                            self.per_sec.append(0)
                        self.per_sec[sec] += nb
                    for b in bodies:
                        if b[:7] != PFX:
                            self.foreign += 1
                            continue
                        pub = int(b[7:17]); seq = int(b[24:44]); ts = int(b[50:69])
                        bm = bitmaps.get(pub)
                        if bm is None:
                            bm = bitmaps[pub] = bytearray(64)
                        i = seq >> 3
                        if i >= len(bm):
                            bm.extend(bytes(i + 64 - len(bm)))
                        bit = 1 << (seq & 7)
                        inw = ws <= ts < we
                        if bm[i] & bit:
                            self.dup += 1
                            if inw:
                                self.dup_w += 1
                            continue
                        bm[i] |= bit
                        if inw:
                            self.uniq_w += 1
                            us = (now - ts) // 1000
                            self.lat_sum += us
                            if us > self.lat_max:
                                self.lat_max = us
                            h[us if 0 <= us < LIN else hidx(us)] += 1
                            if seq < mn.get(pub, 1 << 62):
                                mn[pub] = seq
                            if seq > mx.get(pub, -1):
                                mx[pub] = seq
                if now >= exit_at or stop[0]:
                    done = True
                    break
            if not got and time.monotonic() - t_pass < 0.01:
                time.sleep(0.01)  # the iterator returned at once: do not spin
        self.cpu_s = (time.thread_time_ns() - t_cpu0) / 1e9

    def stats(self):
        # runs after the measured window
        gap_lost = 0
        for pub, lo in list(self.mn.items()):
            bm = self.bitmaps[pub]
            hi = self.mx[pub]
            seen = sum(1 for s in range(lo, hi + 1) if bm[s >> 3] & (1 << (s & 7)))
            gap_lost += (hi - lo + 1) - seen
        ws, we = self.ws, self.we
        dur = (we - ws) / 1e9
        return {"mode": "hub-consumer", "window_start_ns": ws, "window_end_ns": we, "duration_s": dur,
                "received": self.received, "foreign": self.foreign,
                "received_in_window": self.uniq_w + self.dup_w, "unique_in_window": self.uniq_w,
                "delivered_in_window": self.recv_w_rt,
                "delivered_per_s": self.recv_w_rt / dur if dur > 0 else 0.0, "dup": self.dup,
                "dup_in_window": self.dup_w, "gap_lost": gap_lost, "publishers_seen": len(self.mn),
                "first_rx_ns": self.first_rx, "last_rx_ns": self.last_rx,
                "latency_ms": hsummary(self.h, self.uniq_w, self.lat_sum, self.lat_max),
                "per_second": list(self.per_sec), "consumer_thread_cpu_s": self.cpu_s,
                "cpu_window_pct": (100.0 * (self.cpu_we[1] - self.cpu_ws[1]) / (self.cpu_we[0] - self.cpu_ws[0])
                                   if self.cpu_ws and self.cpu_we and self.cpu_we[0] > self.cpu_ws[0] else None),
                "watchdog": self.cpu_s is None}

def write_json(path, obj):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f)
    os.rename(path + ".tmp", path)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--devices", type=int, required=True)
    ap.add_argument("--prefix", default="bench")
    ap.add_argument("--durability", default="durable")
    ap.add_argument("--creds", required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--stats", required=True)
    a = ap.parse_args()
    stop = [False]
    def on_term(*_):
        stop[0] = True
    signal.signal(signal.SIGTERM, on_term)
    t0 = time.time()
    hub, port = hub_start(a.data_dir, a.durability)
    key = base64.b64encode(b"fleethub-bench-key-0123456789abc").decode()
    expiry = int(time.time()) + 7 * 86400
    lines = []
    for i in range(a.devices):
        cid, user, pw = hub_create_device_credentials(hub, f"{a.prefix}{i}", key, expiry)
        lines.append(f"{cid}\t{user}\t{pw}\n")
    with open(a.creds, "w") as f:
        f.writelines(lines)
    tail = hub_open_tail(hub)
    with open(a.ready + ".tmp", "w") as f:
        json.dump({"pid": os.getpid(), "port": port, "setup_s": time.time() - t0}, f)
    os.rename(a.ready + ".tmp", a.ready)
    try:
        for line in sys.stdin:
            cmd = line.split()
            if not cmd:
                continue
            if cmd[0] == "GO":
                ws, we, exit_at = int(cmd[1]), int(cmd[2]), int(cmd[3])
                c = Consumer(ws, we, exit_at)
                written = threading.Event()
                def watchdog():  # the tail iterator may block past the deadline
                    if not written.wait(max(0.0, (exit_at - time.time_ns()) / 1e9) + 5.0):
                        write_json(a.stats, c.stats())
                threading.Thread(target=watchdog, daemon=True).start()
                c.run(tail, stop)
                if not os.path.exists(a.stats):
                    write_json(a.stats, c.stats())
                written.set()
            elif cmd[0] == "QUIT":
                break
            if stop[0]:
                break
    finally:
        hub_stop(hub)

main()
'''


class Fleethub:
    name = "fleethub"

    def __init__(self, cfg, workdir: Path):
        self.cfg = cfg
        self.workdir = workdir
        self.proc = None

    def start(self):
        self.pid, self.port, self.creds = start_fleethub(self, self.cfg, self.workdir)
        return self

    def start_consumer(self, qos, ws, we, exit_at):
        self.stats_path.unlink(missing_ok=True)
        self.proc.stdin.write(f"GO {ws} {we} {exit_at}\n")
        self.proc.stdin.flush()

    def finish_consumer(self, timeout):
        return wait_file(self.stats_path, timeout, self.proc)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.stdin.write("QUIT\n")
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (BrokenPipeError, subprocess.TimeoutExpired, OSError):
                terminate(self.proc)
        shutil.rmtree(self.workdir / "hubdata", ignore_errors=True)


def start_fleethub(handle: Fleethub, cfg, workdir: Path):
    """Start the hub server process; returns (pid, mqtt_port, credentials_path).

    This function and the ADAPTER section of HUB_SERVER are the only places that know
    how fleethub is started; adjust them if the Python API changes."""
    script = workdir / "hub_server.py"
    script.write_text(HUB_SERVER)
    data_dir = workdir / "hubdata"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    creds = workdir / "hub_creds.tsv"
    ready = workdir / "hub.ready"
    handle.stats_path = workdir / "hub_stats.json"
    for p in (creds, ready, handle.stats_path):
        p.unlink(missing_ok=True)
    env = dict(os.environ)
    if cfg.pythonpath:
        env["PYTHONPATH"] = cfg.pythonpath + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = taskset(cfg.hub_cpus) + [cfg.python, str(script), "--data-dir", str(data_dir),
                                   "--devices", str(max(cfg.clients, cfg.idle_clients)), "--prefix", cfg.prefix,
                                   "--durability", cfg.durability, "--creds", str(creds),
                                   "--ready", str(ready), "--stats", str(handle.stats_path)]
    handle.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, text=True, env=env, preexec_fn=raise_nofile,
                                   stdout=open(workdir / "hub.out", "w"), stderr=open(workdir / "hub.err", "w"))
    info = wait_file(ready, cfg.hub_start_timeout, handle.proc)
    wait_port(int(info["port"]), 10, handle.proc)
    return handle.proc.pid, int(info["port"]), creds


# --------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------
def run_fanin_cell(broker, cfg, qos: int, rate: int) -> dict:
    """One measured run against an already started broker."""
    wd = broker.workdir
    connect_s = cfg.clients / cfg.connect_rate + 1.5
    st = time.time_ns() + int((connect_s + 1.0) * 1e9)
    ws = st + int(cfg.warmup * 1e9)
    we = ws + int(cfg.duration * 1e9)
    pub_end = we + int(cfg.cooldown * 1e9)
    exit_at = pub_end + int((cfg.drain + 1.0) * 1e9)
    broker.start_consumer(qos, ws, we, exit_at)

    pub_json = wd / "pub.json"
    pub_json.unlink(missing_ok=True)
    cmd = taskset(cfg.gen_cpus) + [
        str(cfg.loadgen), "pub", "--port", str(broker.port), "--clients", str(cfg.clients),
        "--connect-rate", str(cfg.connect_rate), "--rate", str(rate), "--qos", str(qos),
        "--inflight", str(cfg.inflight), "--size", str(cfg.size), "--prefix", cfg.prefix,
        "--start-at", str(st), "--warmup", str(cfg.warmup), "--duration", str(cfg.duration),
        "--cooldown", str(cfg.cooldown), "--drain", str(cfg.drain),
        "--stats-file", str(pub_json), "--no-stdout"]
    if broker.creds:
        cmd += ["--credentials", str(broker.creds)]
    pub = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(wd / "pub.err", "w"))

    # broker samples over the measured window (1 s timeline + exact window edges)
    sleep_until_ns(ws)
    cpu0, t0 = proc_cpu_ns(broker.pid), time.time_ns()
    timeline = []
    while True:
        nxt = min(we, time.time_ns() + 1_000_000_000)
        sleep_until_ns(nxt)
        now = time.time_ns()
        mem = proc_mem_kb(broker.pid)
        timeline.append({"t": (now - ws) / 1e9, "cpu_s": (proc_cpu_ns(broker.pid) - cpu0) / 1e9,
                         "rss_kb": mem.get("VmRSS")})
        if now >= we:
            break
    cpu1, t1 = proc_cpu_ns(broker.pid), time.time_ns()
    mem = proc_mem_kb(broker.pid)

    try:
        pub.wait(max(5.0, (exit_at - time.time_ns()) / 1e9 + 20))
    except subprocess.TimeoutExpired:
        terminate(pub)
    pubs = json.loads(pub_json.read_text()) if pub_json.exists() else {}
    cons = broker.finish_consumer(max(5.0, (exit_at - time.time_ns()) / 1e9 + 20))

    delivered = cons.get("delivered_in_window", 0)
    cpu_ns = cpu1 - cpu0
    win_s = (t1 - t0) / 1e9
    offered = pubs.get("offered", 0)
    sent = pubs.get("sent", 0)
    uniq = cons.get("unique_in_window", 0)
    lat = cons.get("latency_ms", {})
    lost = max(0, sent - uniq)
    frac = uniq / offered if offered else 0.0
    ok_frac = 0.999 if qos == 0 else 1.0
    res = {
        "offered_per_s": pubs.get("offered_per_s"),
        "sent_per_s": pubs.get("sent_per_s"),
        "delivered_per_s": cons.get("delivered_per_s"),
        "delivered_fraction": frac,
        "cpu_us_per_msg": (cpu_ns / 1000 / delivered) if delivered else None,
        "broker_cpu_pct": 100.0 * cpu_ns / 1e9 / win_s if win_s > 0 else None,
        "p50_ms": lat.get("p50"), "p99_ms": lat.get("p99"), "p999_ms": lat.get("p999"),
        "max_ms": lat.get("max"),
        "lost": lost, "dup": cons.get("dup", 0), "gap_lost": cons.get("gap_lost", 0),
        "dropped_window_full": pubs.get("dropped_window_full", 0),
        "dropped_not_connected": pubs.get("dropped_not_connected", 0),
        "connect_failures": pubs.get("connect_failures"),
        "puback_p99_ms": (pubs.get("puback_latency_ms") or {}).get("p99") if qos else None,
        "rss_mb": (mem.get("VmRSS") or 0) / 1024, "hwm_mb": (mem.get("VmHWM") or 0) / 1024,
        # RssAnon leaves out file-backed pages: the hub maps its LMDB file, whose cached pages count in VmRSS.
        "rss_anon_mb": (mem.get("RssAnon") or 0) / 1024,
        "gen_cpu_pct": pubs.get("gen_cpu_pct"),
        "gen_send_lag_p99_ms": (pubs.get("send_lag_ms") or {}).get("p99"),
        "consumer_cpu_pct": cons.get("cpu_window_pct"),
        "consumer_thread_cpu_s": cons.get("consumer_thread_cpu_s"),
    }
    res["sustained"] = bool(frac >= ok_frac and (lat.get("p99") or 1e9) <= cfg.p99_limit_ms)
    return {"metrics": res, "pub": pubs, "consumer": cons, "broker_timeline": timeline}


def run_idle_cell(broker, cfg) -> dict:
    wd = broker.workdir
    time.sleep(cfg.idle_settle)
    base = proc_mem_kb(broker.pid)
    ready = wd / "idle.ready"
    stats = wd / "idle.json"
    for p in (ready, stats):
        p.unlink(missing_ok=True)
    cmd = taskset(cfg.gen_cpus) + [
        str(cfg.loadgen), "idle", "--port", str(broker.port), "--clients", str(cfg.idle_clients),
        "--connect-rate", str(cfg.connect_rate), "--prefix", cfg.prefix, "--duration", "3600",
        "--ready-file", str(ready), "--stats-file", str(stats), "--no-stdout"]
    if broker.creds:
        cmd += ["--credentials", str(broker.creds)]
    gen = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(wd / "idle.err", "w"))
    wait_file(ready, cfg.idle_clients / cfg.connect_rate + 30, gen)
    time.sleep(cfg.idle_settle)
    cpu0 = proc_cpu_ns(broker.pid)
    time.sleep(1.0)
    cpu1 = proc_cpu_ns(broker.pid)
    loaded = proc_mem_kb(broker.pid)
    terminate(gen)
    gs = json.loads(stats.read_text()) if stats.exists() else {}
    n = (gs.get("connect") or {}).get("connected") or cfg.idle_clients
    delta_kb = loaded["VmRSS"] - base["VmRSS"]
    return {"metrics": {"idle_connections": n, "rss_base_mb": base["VmRSS"] / 1024,
                        "rss_loaded_mb": loaded["VmRSS"] / 1024, "rss_per_conn_kb": delta_kb / n if n else None,
                        "idle_cpu_pct": 100.0 * (cpu1 - cpu0) / 1e9,
                        "connect_failures": gs.get("connect_failures"),
                        "connect_p99_ms": ((gs.get("connect") or {}).get("connect_ms") or {}).get("p99")},
            "gen": gs}


# --------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------
# metric -> (label, format, ratio direction: "hub/mosq" or "mosq/hub" or None)
FANIN_METRICS = [
    ("delivered_per_s", "msgs/s", "{:.0f}", "hub/mosq"),
    ("cpu_us_per_msg", "CPU-us/msg", "{:.2f}", "mosq/hub"),
    ("p50_ms", "p50 ms", "{:.3f}", "mosq/hub"),
    ("p99_ms", "p99 ms", "{:.3f}", "mosq/hub"),
    ("lost", "lost", "{:.0f}", None),
    ("dup", "dups", "{:.0f}", None),
    ("rss_mb", "RSS MB", "{:.1f}", "mosq/hub"),
    ("rss_anon_mb", "RSS anon MB", "{:.1f}", "mosq/hub"),
    ("gen_cpu_pct", "gen CPU%", "{:.0f}", None),
    ("consumer_cpu_pct", "consumer CPU%", "{:.0f}", None),
]
IDLE_METRICS = [
    ("rss_per_conn_kb", "RSS KB/idle conn", "{:.2f}", "mosq/hub"),
    ("rss_base_mb", "RSS base MB", "{:.1f}", None),
]


def fmt(v, f):
    if v is None:
        return "-"
    try:
        return f.format(v)
    except (TypeError, ValueError):
        return str(v)


def ratio(m, h, direction):
    if m is None or h is None or direction is None:
        return None
    num, den = (h, m) if direction == "hub/mosq" else (m, h)
    return num / den if den else None


def summarize(runs, systems):
    """Median over reps of each metric, per (cell, system); ratio of medians."""
    cells = []
    for r in runs:
        if r["cell"] not in cells:
            cells.append(r["cell"])
    summary = []
    for cell in cells:
        metrics = IDLE_METRICS if cell == "idle" else FANIN_METRICS
        row = {"cell": cell, "metrics": {}}
        for key, label, f, direction in metrics:
            entry = {}
            for s in systems:
                entry[s] = spread(runs, key, lambda r: r["cell"] == cell and r["system"] == s)
            if "mosquitto" in systems and "fleethub" in systems:
                entry["ratio"] = ratio(entry["mosquitto"]["median"], entry["fleethub"]["median"], direction)
                entry["ratio_def"] = direction
            row["metrics"][key] = entry
        if cell != "idle":
            for s in systems:
                sus = [r["result"]["metrics"]["sustained"] for r in runs
                       if r["cell"] == cell and r["system"] == s and "error" not in r]
                row.setdefault("sustained", {})[s] = (sum(sus) * 2 > len(sus)) if sus else None
        summary.append(row)
    return summary


def print_table(summary, systems, out=sys.stdout):
    both = "mosquitto" in systems and "fleethub" in systems
    for row in summary:
        cell = row["cell"]
        metrics = IDLE_METRICS if cell == "idle" else FANIN_METRICS
        sus = row.get("sustained")
        extra = ""
        if sus:
            extra = "  sustained: " + ", ".join(f"{s}={'yes' if v else 'no'}" for s, v in sus.items())
        print(f"\n== {cell}{extra}", file=out)
        hdr = f"{'metric':<18}" + "".join(f"{s + ' (med [min-max])':>34}" for s in systems)
        if both:
            hdr += f"{'ratio':>10}  (>1 = hub better)"
        print(hdr, file=out)
        for key, label, f, direction in metrics:
            e = row["metrics"][key]
            line = f"{label:<18}"
            for s in systems:
                d = e[s]
                cellv = f"{fmt(d['median'], f)} [{fmt(d['min'], f)}-{fmt(d['max'], f)}]"
                line += f"{cellv:>34}"
            if both:
                line += f"{fmt(e.get('ratio'), '{:.2f}'):>10}" + (f"  {direction}" if direction else "")
            print(line, file=out)


def max_sustainable(runs, systems, qos_list):
    out = {}
    for s in systems:
        for q in qos_list:
            best = None
            rates = sorted({r["rate"] for r in runs if r.get("qos") == q and r["system"] == s})
            for rate in rates:
                sus = [r["result"]["metrics"]["sustained"] for r in runs
                       if r.get("qos") == q and r["rate"] == rate and r["system"] == s and "error" not in r]
                if sus and sum(sus) * 2 > len(sus):
                    best = rate
            out[f"{s}/qos{q}"] = best
    return out


def host_meta(cfg):
    def sh(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.strip()
        except Exception as e:  # noqa: BLE001
            return f"? ({e})"
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mver = sh([cfg.mosquitto, "-h"]).splitlines()
    return {"time": _dt.datetime.now().isoformat(timespec="seconds"), "kernel": platform.release(),
            "cpu": cpu, "ncpu": os.cpu_count(), "python": sys.version.split()[0],
            "mosquitto": mver[0] if mver else "?", "loadgen": str(cfg.loadgen),
            "loadavg_start": open("/proc/loadavg").read().split()[:3]}


# --------------------------------------------------------------------------------------

# ---- shared by the request/response runners (run_twin_methods.py, run_c2d.py) ----
def add_harness_args(ap: argparse.ArgumentParser) -> None:
    """Run length, pinning, the processes to run, and the noise guard: the options every A/B runner has."""
    ap.add_argument("--duration", type=float, default=15.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--cooldown", type=float, default=1.0)
    ap.add_argument("--drain", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 rep, 4 s windows, 1 s warm-up")
    ap.add_argument("--only", choices=["mosquitto", "fleethub"])
    ap.add_argument("--connect-rate", type=float, default=2000.0)
    ap.add_argument("--prefix", default="bench")
    ap.add_argument("--pin", dest="pin", action="store_true", default=True)
    ap.add_argument("--no-pin", dest="pin", action="store_false")
    ap.add_argument("--broker-cpus", default="1")
    ap.add_argument("--hub-cpus", default=None, help="default: --broker-cpus")
    ap.add_argument("--gen-cpus", default="0")
    ap.add_argument("--mosq-nodelay", action="store_true")
    ap.add_argument("--mosquitto", default="/usr/sbin/mosquitto")
    ap.add_argument("--loadgen", default=None)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--pythonpath", default=str(ROOT / "python"), help="prepended to PYTHONPATH of the hub process")
    ap.add_argument("--durability", default="durable")
    ap.add_argument("--hub-start-timeout", type=float, default=120.0)
    ap.add_argument("--results-dir", default=str(BENCH / "results"))
    ap.add_argument("--keep-workdir", action="store_true")
    ap.add_argument("--noise-limit", type=float, default=25.0,
                    help="repeat a run whose window saw other processes plus VM steal use more than this CPU %%")
    ap.add_argument("--noisy-retries", type=int, default=1)
    ap.add_argument("--quiet-wait", type=float, default=60.0,
                    help="before each run wait up to this long for the box to be < 15%% busy (0 = off)")


def resolve_harness_args(cfg: argparse.Namespace) -> None:
    """--quick shortening, the load generator's path, and the CPU sets (none when pinning is off)."""
    if cfg.quick:
        cfg.duration, cfg.warmup, cfg.reps, cfg.drain = 4.0, 1.0, 1, 2.0
    cfg.loadgen = find_loadgen(cfg.loadgen)
    if not cfg.pin:
        cfg.broker_cpus = cfg.gen_cpus = cfg.hub_cpus = None
    elif cfg.hub_cpus is None:
        cfg.hub_cpus = cfg.broker_cpus

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="10000,20000,40000", help="offered aggregate msg/s, comma separated")
    ap.add_argument("--qos", default="0,1", help="QoS levels to run (0,1)")
    ap.add_argument("--clients", type=int, default=1000, help="publishers (fan-in cells)")
    ap.add_argument("--idle-clients", type=int, default=1000, help="connections for the idle cell")
    ap.add_argument("--no-idle", action="store_true", help="skip the idle-connection memory cell")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--inflight", type=int, default=20, help="QoS1 window per publisher = broker max_inflight")
    ap.add_argument("--max-queued", type=int, default=100000, help="mosquitto max_queued_messages")
    ap.add_argument("--duration", type=float, default=20.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--cooldown", type=float, default=1.0, help="publishing continues this long after the window")
    ap.add_argument("--drain", type=float, default=3.0, help="time allowed for late deliveries/acks")
    ap.add_argument("--reps", type=int, default=3, help="interleaved A/B repetitions")
    ap.add_argument("--connect-rate", type=float, default=2000.0)
    ap.add_argument("--prefix", default="bench")
    ap.add_argument("--topic-filter", default="devices/+/messages/events/#")
    ap.add_argument("--p99-limit-ms", type=float, default=10.0, help="sustainability criterion")
    ap.add_argument("--only", choices=["mosquitto", "fleethub"], help="run one system only")
    ap.add_argument("--quick", action="store_true", help="smoke test: 4 s window, 1 s warm-up, 1 rep")
    ap.add_argument("--pin", dest="pin", action="store_true", default=True,
                    help="pin broker/hub to --broker-cpus and generator to --gen-cpus (default)")
    ap.add_argument("--no-pin", dest="pin", action="store_false")
    ap.add_argument("--broker-cpus", default="1")
    ap.add_argument("--hub-cpus", default=None, help="CPU list for the hub process (default: --broker-cpus; "
                                                     "'0-1' for the per-box measurement)")
    ap.add_argument("--gen-cpus", default="0")
    ap.add_argument("--mosq-nodelay", action="store_true", help="set_tcp_nodelay true on mosquitto")
    ap.add_argument("--sub-quickack", action="store_true",
                    help="mosquitto-side subscriber re-arms TCP_QUICKACK after each read (diagnostic)")
    ap.add_argument("--mosquitto", default="/usr/sbin/mosquitto")
    ap.add_argument("--loadgen", default=None, help="path to fleethub_loadgen (default: newest build/*/bench/)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the hub server process")
    ap.add_argument("--pythonpath", default=None, help="prepended to PYTHONPATH for the hub server process")
    ap.add_argument("--durability", default="durable")
    ap.add_argument("--hub-start-timeout", type=float, default=120.0)
    ap.add_argument("--idle-settle", type=float, default=2.0)
    ap.add_argument("--results-dir", default=str(BENCH / "results"))
    ap.add_argument("--keep-workdir", action="store_true")
    cfg = ap.parse_args()

    if cfg.quick:
        cfg.duration, cfg.warmup, cfg.reps, cfg.drain, cfg.idle_settle = 4.0, 1.0, 1, 2.0, 1.0
    cfg.loadgen = find_loadgen(cfg.loadgen)
    if not cfg.pin:
        cfg.broker_cpus = cfg.gen_cpus = cfg.hub_cpus = None
    elif cfg.hub_cpus is None:
        cfg.hub_cpus = cfg.broker_cpus
    rates = [int(float(x)) for x in cfg.rates.split(",") if x.strip()]
    qos_list = [int(x) for x in cfg.qos.split(",") if x.strip()]
    systems = [cfg.only] if cfg.only else ["mosquitto", "fleethub"]
    if "fleethub" in systems:
        env = dict(os.environ)
        if cfg.pythonpath:
            env["PYTHONPATH"] = cfg.pythonpath + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        chk = subprocess.run([cfg.python, "-c", "import fleethub; fleethub.Hub; fleethub.make_sas_token"],
                             capture_output=True, text=True, env=env)
        if chk.returncode != 0:
            raise SystemExit("fleethub Python API not importable (use --only mosquitto or --pythonpath):\n"
                             + chk.stderr.strip().splitlines()[-1])
    if "mosquitto" in systems and not os.access(cfg.mosquitto, os.X_OK):
        raise SystemExit(f"{cfg.mosquitto} not found")

    cells = [("fanin", q, r) for q in qos_list for r in rates]
    if not cfg.no_idle:
        cells.append(("idle", None, None))
    meta = host_meta(cfg)
    log(f"loadgen={cfg.loadgen} systems={systems} cells={len(cells)} reps={cfg.reps} "
        f"duration={cfg.duration}s warmup={cfg.warmup}s pin={cfg.pin}")
    est = len(cells) * len(systems) * cfg.reps * (cfg.duration + cfg.warmup + cfg.cooldown + cfg.drain + 6
                                                   + cfg.clients / cfg.connect_rate)
    log(f"estimated time: {est / 60:.1f} min (plus hub start-up)")

    base = Path(tempfile.mkdtemp(prefix="fleethub-fanin-"))
    runs = []
    ts = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    results_dir = Path(cfg.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    out_path = results_dir / f"{ts}.json"

    def save():
        doc = {"meta": meta, "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()},
               "runs": runs, "summary": summarize(runs, systems) if runs else [],
               "max_sustainable": max_sustainable([r for r in runs if r["cell"] != "idle"], systems, qos_list)}
        out_path.write_text(json.dumps(doc, indent=1))
        return doc

    try:
        for rep in range(cfg.reps):
            for kind, qos, rate in cells:
                for sysname in systems:
                    cell = "idle" if kind == "idle" else f"qos{qos} @ {rate}/s"
                    wd = base / f"r{rep}-{sysname}-{kind}-{qos}-{rate}"
                    wd.mkdir(parents=True, exist_ok=True)
                    broker = (Mosquitto if sysname == "mosquitto" else Fleethub)(cfg, wd)
                    entry = {"rep": rep, "system": sysname, "cell": cell, "qos": qos, "rate": rate}
                    t0 = time.time()
                    try:
                        broker.start()
                        if kind == "idle":
                            entry["result"] = run_idle_cell(broker, cfg)
                            m = entry["result"]["metrics"]
                            log(f"rep {rep} {sysname:<9} idle: {m['idle_connections']} conns, "
                                f"{fmt(m['rss_per_conn_kb'], '{:.2f}')} KB/conn")
                        else:
                            entry["result"] = run_fanin_cell(broker, cfg, qos, rate)
                            m = entry["result"]["metrics"]
                            log(f"rep {rep} {sysname:<9} {cell}: delivered {fmt(m['delivered_per_s'], '{:.0f}')}/s "
                                f"cpu {fmt(m['cpu_us_per_msg'], '{:.2f}')} us/msg "
                                f"({fmt(m['broker_cpu_pct'], '{:.0f}')}%) p50/p99 "
                                f"{fmt(m['p50_ms'], '{:.3f}')}/{fmt(m['p99_ms'], '{:.3f}')} ms "
                                f"lost {m['lost']} dup {m['dup']} dropwin {m['dropped_window_full']} "
                                f"gen {fmt(m['gen_cpu_pct'], '{:.0f}')}%"
                                + ("" if m["sustained"] else "  [NOT sustained]"))
                    except Exception as e:  # noqa: BLE001 - record and continue the matrix
                        entry["error"] = f"{type(e).__name__}: {e}"
                        log(f"rep {rep} {sysname} {cell}: ERROR {entry['error']} (logs in {wd})")
                    finally:
                        broker.stop()
                    entry["wall_s"] = time.time() - t0
                    runs.append(entry)
                    save()
                    time.sleep(0.5)
    except KeyboardInterrupt:
        log("interrupted; writing partial results")
    doc = save()
    print(f"\nFan-in benchmark, {cfg.clients} publishers, {cfg.size} B payload, window {cfg.duration}s, "
          f"reps {cfg.reps}, pin={'broker ' + str(cfg.broker_cpus) + ' hub ' + str(cfg.hub_cpus) + ' gen ' + str(cfg.gen_cpus) if cfg.pin else 'off'}")
    print(f"host: {meta['cpu']} x{meta['ncpu']}, kernel {meta['kernel']}, {meta['mosquitto']}")
    print_table(doc["summary"], systems)
    print("\nmax sustainable rate (delivered >= 99.9% QoS0 / 100% QoS1 of offered, p99 <= "
          f"{cfg.p99_limit_ms} ms), among the rates tried:")
    for k, v in doc["max_sustainable"].items():
        print(f"  {k}: {v if v is not None else 'none of the rates'}")
    print(f"\nfull results: {out_path}")
    errors = [r for r in runs if "error" in r]
    if errors:
        print(f"{len(errors)} run(s) failed; see 'error' entries in the JSON", file=sys.stderr)
    if not cfg.keep_workdir and not errors:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"work directory kept: {base}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
