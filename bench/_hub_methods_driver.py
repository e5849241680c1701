"""Hub-side process of bench/run_twin_methods.py (not meant to be run by hand).

Starts a fleethub Hub (plain MQTT listener on a free port, TLS off), creates the devices
bench0.. with one symmetric key, writes the MQTT credentials file (client_id TAB username TAB
SAS password), writes a ready file {"pid", "port", "setup_s"} and then obeys stdin lines:

  METHODS <concurrency> <start_ns> <ws_ns> <we_ns> <stop_ns> <timeout_s> <stats_path>
      asyncio, <concurrency> workers each looping `await hub.methods.invoke_async(dev, "ping", {"x": 1})`
      over the devices round-robin, from start_ns until stop_ns (realtime ns). Completions whose
      answer arrives inside [ws, we) are counted; latency = answer time - call time. Writes the
      stats JSON to <stats_path>.
  QUIT
      stops the hub and exits (SIGTERM does the same).

The invoker runs in this process, so the hub's measured CPU includes it (the Python asyncio
loop and the fleethub-methods completion thread); per-thread CPU is reported separately.
Only the ADAPTER block knows the fleethub API.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import sys
import threading
import time
from _bench_io import write_json  # noqa: E402

# ============================ ADAPTER: fleethub API =====================================
import fleethub


def hub_start(data_dir, durability):
    hub = fleethub.Hub(data_dir, hostname="localhost", mqtt_port=None, mqtt_plain_port=0, https_port=None, durability=durability)
    hub.start()
    return hub, hub.ports["mqtt"]


def hub_create_device_credentials(hub, device_id, key_b64, expiry):
    """-> (client_id, username, password) for MQTT CONNECT."""
    hub.devices.create(device_id, primary_key=key_b64)
    token = fleethub.make_sas_token(resource=f"localhost/devices/{device_id}", key=key_b64, expiry=expiry)
    return device_id, f"localhost/{device_id}/?api-version=2021-04-12", token


async def hub_invoke(hub, device_id, timeout):
    """-> integer status of the device's answer (raises on errors)."""
    res = await hub.methods.invoke_async(device_id, "ping", {"x": 1}, timeout=timeout)
    return res.status


def hub_invoker_threads(hub):
    """{native thread id: role} of the Python-side method machinery other than the asyncio loop."""
    pump = getattr(hub.methods, "_pump", None)  # the completion thread of fleethub.methods
    return {pump.native_id: "methods-pump"} if pump is not None and pump.native_id else {}


def hub_stop(hub):
    hub.stop()
    if hasattr(hub, "close"):
        hub.close()
# ========================================================================================


def thread_cpu():
    """{tid: (name, cpu_ns)} for every thread of this process."""
    tck = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                d = f.read()
        except OSError:
            continue
        name = d[d.index("(") + 1:d.rindex(")")]
        fl = d[d.rindex(")") + 2:].split()
        out[int(tid)] = (name, (int(fl[11]) + int(fl[12])) * 1_000_000_000 // tck)
    return out


def pct(sorted_ns, q):
    if not sorted_ns:
        return None
    i = min(len(sorted_ns) - 1, max(0, int(q * len(sorted_ns) + 0.999999) - 1))
    return sorted_ns[i] / 1e6


async def run_methods(hub, devices, conc, start_ns, ws, we, stop_ns, timeout):
    lat = []
    st = {"completed_in_window": 0, "errors_in_window": 0, "completed_total": 0, "errors_total": 0,
          "status_codes": {}, "error_types": {}, "per_second": []}
    counter = [0]
    ndev = len(devices)
    main_tid = threading.get_native_id()
    cpu_marks = {}

    async def worker():
        while True:
            now = time.time_ns()
            if now >= stop_ns:
                return
            i = counter[0]
            counter[0] = i + 1
            dev = devices[i % ndev]
            t0 = time.time_ns()
            try:
                status = await hub_invoke(hub, dev, timeout)
                err = None
            except Exception as e:  # noqa: BLE001 - counted by type
                status, err = None, type(e).__name__
            t1 = time.time_ns()
            inw = ws <= t1 < we
            if err is None and status is not None and status < 300:
                st["completed_total"] += 1
                if inw:
                    st["completed_in_window"] += 1
                    lat.append(t1 - t0)
                    sec = (t1 - ws) // 1_000_000_000
                    ps = st["per_second"]
                    while len(ps) <= sec:
                        ps.append(0)
                    ps[sec] += 1
            else:
                st["errors_total"] += 1
                if inw:
                    st["errors_in_window"] += 1
                k = err or f"status_{status}"
                st["error_types"][k] = st["error_types"].get(k, 0) + 1
                if err is not None:
                    await asyncio.sleep(0.001)  # do not spin on an immediate failure
            if status is not None:
                st["status_codes"][str(status)] = st["status_codes"].get(str(status), 0) + 1

    async def marks():
        for key, t in (("ws", ws), ("we", we)):
            d = (t - time.time_ns()) / 1e9
            if d > 0:
                await asyncio.sleep(d)
            cpu_marks[key] = (time.time_ns(), thread_cpu())

    d = (start_ns - time.time_ns()) / 1e9
    if d > 0:
        await asyncio.sleep(d)
    m = asyncio.ensure_future(marks())
    await asyncio.gather(*(worker() for _ in range(conc)))
    await m
    dur = (we - ws) / 1e9
    lat.sort()
    st.update({"mode": "hub-methods-invoker", "concurrency": conc, "window_start_ns": ws, "window_end_ns": we,
               "duration_s": dur,
               "completed_per_s": st["completed_in_window"] / dur if dur > 0 else 0.0,
               "latency_ms": {"count": len(lat), "mean": (sum(lat) / len(lat) / 1e6) if lat else None,
                              "p50": pct(lat, 0.5), "p90": pct(lat, 0.9), "p99": pct(lat, 0.99),
                              "p999": pct(lat, 0.999), "max": lat[-1] / 1e6 if lat else None}})
    # per-thread CPU over the window (the asyncio loop runs on this process's main thread)
    if "ws" in cpu_marks and "we" in cpu_marks:
        (t0, c0), (t1, c1) = cpu_marks["ws"], cpu_marks["we"]
        win = (t1 - t0) / 1e9
        roles = hub_invoker_threads(hub)
        roles[main_tid] = "asyncio-loop"
        threads = []
        for tid, (name, ns1) in c1.items():
            ns0 = c0.get(tid, (name, 0))[1]
            if ns1 - ns0 > 0:
                threads.append({"tid": tid, "name": name, "role": roles.get(tid, "hub"),
                                "cpu_pct": 100.0 * (ns1 - ns0) / 1e9 / win})
        threads.sort(key=lambda x: -x["cpu_pct"])
        st["threads_cpu_pct"] = threads
        st["invoker_loop_cpu_pct"] = sum(t["cpu_pct"] for t in threads if t["role"] == "asyncio-loop")
        st["methods_pump_cpu_pct"] = sum(t["cpu_pct"] for t in threads if t["role"] == "methods-pump")
        st["hub_threads_cpu_pct"] = sum(t["cpu_pct"] for t in threads if t["role"] == "hub")
    return st




def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--devices", type=int, required=True)
    ap.add_argument("--prefix", default="bench")
    ap.add_argument("--durability", default="durable")
    ap.add_argument("--creds", required=True)
    ap.add_argument("--ready", required=True)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    t0 = time.time()
    hub, port = hub_start(a.data_dir, a.durability)
    key = base64.b64encode(b"fleethub-bench-key-0123456789abc").decode()
    expiry = int(time.time()) + 7 * 86400
    lines = []
    devices = []
    for i in range(a.devices):
        cid, user, pw = hub_create_device_credentials(hub, f"{a.prefix}{i}", key, expiry)
        lines.append(f"{cid}\t{user}\t{pw}\n")
        devices.append(cid)
    with open(a.creds, "w") as f:
        f.writelines(lines)
    write_json(a.ready, {"pid": os.getpid(), "port": port, "setup_s": time.time() - t0})
    try:
        for line in sys.stdin:
            cmd = line.split()
            if not cmd:
                continue
            if cmd[0] == "METHODS":
                conc, start_ns, ws, we, stop_ns = (int(x) for x in cmd[1:6])
                timeout, stats_path = float(cmd[6]), cmd[7]
                try:
                    st = asyncio.run(run_methods(hub, devices, conc, start_ns, ws, we, stop_ns, timeout))
                except Exception as e:  # noqa: BLE001 - reported to the harness
                    st = {"error": f"{type(e).__name__}: {e}"}
                write_json(stats_path, st)
            elif cmd[0] == "QUIT":
                break
    finally:
        hub_stop(hub)


if __name__ == "__main__":
    main()
