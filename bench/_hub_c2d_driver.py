"""Hub-side process of bench/run_c2d.py (not meant to be run by hand).

Starts a fleethub Hub (plain MQTT listener on a free port, TLS off), creates the devices bench0..
with one symmetric key, writes the MQTT credentials file (client_id TAB username TAB SAS password),
writes a ready file {"pid", "port", "setup_s", ...} and then obeys stdin lines:

  C2D <rate> <inflight> <size> <start_ns> <ws_ns> <we_ns> <stop_ns> <drain_s> <stats_path>
      [<mode> <tick_ms> <max_batches>]
      Open-loop cloud-to-device sender on this process's asyncio loop: message k is due at
      start + k/rate (realtime ns) and goes to device k mod N. Body: the standard benchmark payload
      (bench/README.md) with pub = device index, seq = per-device counter, ts = scheduled time.
      mode "single": one hub.c2d.send_async() per message as it falls due; at most <inflight> sends
        outstanding (not yet durable); a due message that finds them all busy is not sent and counts
        as dropped_window_full.
      mode "batch" (default): the loop wakes every <tick_ms> ms and hands every message due by then
        to ONE hub.c2d.send_batch_async() call (one write batch / one commit); at most <max_batches>
        batches and <inflight> messages outstanding. Due messages that find no free batch slot, or
        that exceed the message window, are not sent (dropped_window_full); items the batch refuses
        (QueueFullError, ...) count as rejected_queue_full / errors.
      Messages scheduled in [ws, we) are counted; after stop it waits up to <drain_s> for
      outstanding sends. Writes the stats JSON to <stats_path> (with "batch": batch counts and sizes,
      and "gc": this process's cyclic-GC collections and pause times over the run).
  QUIT
      stops the hub and exits (SIGTERM does the same).

The sender runs in this process, so the hub's measured CPU includes it (the Python asyncio loop and
any c2d completion thread); per-thread CPU is reported separately. Only the ADAPTER block knows the
fleethub API.
"""
from __future__ import annotations

import argparse
import array
import asyncio
import base64
import gc
import inspect
import json
import os
import signal
import sys
import threading
import time
from _bench_io import write_json  # noqa: E402

# ============================ ADAPTER: fleethub API =====================================
import fleethub


def hub_start(data_dir, durability, max_queue_depth=None):
    kw = {}
    params = inspect.signature(fleethub.Hub).parameters
    if max_queue_depth:
        if "c2d_max_queue_depth" in params:
            kw["c2d_max_queue_depth"] = int(max_queue_depth)
        else:
            print("Hub() has no c2d_max_queue_depth; using the default depth", file=sys.stderr)
    hub = fleethub.Hub(data_dir, hostname="localhost", mqtt_port=None, mqtt_plain_port=0, https_port=None, durability=durability,
                       **kw)
    hub.start()
    return hub, hub.ports["mqtt"], kw


def hub_create_device_credentials(hub, device_id, key_b64, expiry):
    """-> (client_id, username, password) for MQTT CONNECT."""
    hub.devices.create(device_id, primary_key=key_b64)
    token = fleethub.make_sas_token(resource=f"localhost/devices/{device_id}", key=key_b64, expiry=expiry)
    return device_id, f"localhost/{device_id}/?api-version=2021-04-12", token


def hub_send_async(hub, device_id, body):
    """-> awaitable that completes once the message is durable (raises QueueFullError, ...)."""
    return hub.c2d.send_async(device_id, body)


def hub_send_batch_async(hub, messages):
    """messages: [(device_id, body), ...] -> awaitable of a list, in order, of C2DMessageInfo or the
    exception instance that refused that message (QueueFullError, ...); one commit per call."""
    return hub.c2d.send_batch_async(messages)


def is_refusal(result):
    """True if one send_batch result is an exception (the message was not queued)."""
    return isinstance(result, BaseException)


def is_queue_full(exc):
    """Queue depth limit (IoT Hub 403004): QueueFullError, or a ForbiddenError mentioning 403004."""
    name = type(exc).__name__
    qf = getattr(fleethub, "QueueFullError", None)
    return (qf is not None and isinstance(exc, qf)) or name == "QueueFullError" or (
        name == "ForbiddenError" and ("403004" in str(exc) or "queue" in str(exc).lower()))


def hub_sender_threads(hub):
    """{native thread id: role} of the Python-side c2d machinery other than the asyncio loop."""
    out = {}
    # fleethub._completions.CompletionPump: one "fleethub-completions" thread per hub resolves the futures
    for owner in (getattr(hub, "_completions", None), getattr(hub, "c2d", None)):
        for attr in ("_thread", "_pump"):
            t = getattr(owner, attr, None)
            if isinstance(t, threading.Thread) and t.native_id:
                out[t.native_id] = "c2d-pump"
    return out


def hub_depths(hub, devices):
    """Total queue depth over the devices (None if the API has no depth())."""
    try:
        return sum(hub.c2d.depth(d) for d in devices)
    except Exception:  # noqa: BLE001
        return None


def hub_stop(hub):
    hub.stop()
    if hasattr(hub, "close"):
        hub.close()
# ========================================================================================


def encoder(size):
    """The standard payload (bench/loadgen_wire.hpp): fixed offsets, numbers right-aligned with spaces."""
    if size < 79:
        raise ValueError("size must be >= 79")
    pad = b"x" * (size - 79)
    fmt = b'{"pub":%10d,"seq":%20d,"ts":%19d,"pad":"' + pad + b'"}'

    def enc(pub, seq, ts):
        return fmt % (pub, seq, ts)
    return enc


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


def hist(vals):
    vals = sorted(vals)
    return {"count": len(vals), "mean": (sum(vals) / len(vals) / 1e6) if vals else None,
            "p50": pct(vals, 0.5), "p90": pct(vals, 0.9), "p99": pct(vals, 0.99), "p999": pct(vals, 0.999),
            "max": vals[-1] / 1e6 if vals else None}


async def run_c2d(hub, devices, rate, window, size, start_ns, ws, we, stop_ns, drain_s,
                  mode="batch", tick_ms=5.0, max_batches=8):
    if mode not in ("single", "batch"):
        raise ValueError(f"unknown send mode {mode!r}")
    enc = encoder(size)
    ndev = len(devices)
    seq = [0] * ndev
    period = 1e9 / rate
    tick_ns = int(tick_ms * 1e6)
    st = {"offered": 0, "sent": 0, "accepted": 0, "rejected_queue_full": 0, "errors": 0,
          "dropped_window_full": 0, "total": {"offered": 0, "sent": 0, "accepted": 0, "rejected_queue_full": 0,
                                              "errors": 0, "dropped_window_full": 0},
          "error_types": {}, "inflight_max": 0}
    bst = {"batches": 0, "batch_items": 0, "batch_size_max": 0, "batches_inflight_max": 0,
           "dropped_no_batch_slot": 0, "batch_failures": 0}
    # int64 arrays, not lists: a list of ~1M ints is traversed by every full GC collection (tens of ms
    # of pause on this VM, stalling the sender loop); an array is not GC-tracked
    lat, lag = array.array("q"), array.array("q")
    state = {"inflight": 0, "batches": 0}
    main_tid = threading.get_native_id()
    cpu_marks = {}
    tot = st["total"]
    gcs = {"collections": [0, 0, 0], "pause_ms_total": 0.0, "pause_ms_max": 0.0, "t0": 0}

    def gc_cb(phase, info):  # cyclic-GC pauses of this process (they stop the sender loop and the pump)
        if phase == "start":
            gcs["t0"] = time.perf_counter_ns()
        else:
            ms = (time.perf_counter_ns() - gcs["t0"]) / 1e6
            gcs["collections"][info["generation"]] += 1
            gcs["pause_ms_total"] += ms
            gcs["pause_ms_max"] = max(gcs["pause_ms_max"], ms)
    gc.callbacks.append(gc_cb)

    def record_error(exc, w):
        k = "queue_full" if is_queue_full(exc) else type(exc).__name__
        st["error_types"][k] = st["error_types"].get(k, 0) + 1
        if k == "queue_full":
            tot["rejected_queue_full"] += 1
            if w:
                st["rejected_queue_full"] += 1
        else:
            tot["errors"] += 1
            if w:
                st["errors"] += 1

    def done(fut, t_sched, w):
        state["inflight"] -= 1
        now = time.time_ns()
        if fut.cancelled():
            exc = asyncio.CancelledError()
        else:
            exc = fut.exception()
        if exc is None:
            tot["accepted"] += 1
            if w:
                st["accepted"] += 1
                lat.append(now - t_sched)
        else:
            record_error(exc, w)

    def batch_done(fut, ts, n):
        """ts: the batch's scheduled times, negated for messages outside the window."""
        state["inflight"] -= n
        state["batches"] -= 1
        now = time.time_ns()
        exc = asyncio.CancelledError() if fut.cancelled() else fut.exception()
        if exc is not None:  # the whole call failed
            bst["batch_failures"] += 1
            for t in ts:
                record_error(exc, t > 0)
            return
        res = fut.result()
        acc = acc_w = 0
        for t, r in zip(ts, res):
            if is_refusal(r):
                record_error(r, t > 0)
                continue
            acc += 1
            if t > 0:
                acc_w += 1
                lat.append(now - t)
        tot["accepted"] += acc
        st["accepted"] += acc_w

    def mark(now):
        if "ws" not in cpu_marks and now >= ws:
            cpu_marks["ws"] = (now, thread_cpu())
        if "we" not in cpu_marks and now >= we:
            cpu_marks["we"] = (now, thread_cpu())

    def next_wake(nxt):
        if "ws" not in cpu_marks:
            nxt = min(nxt, ws)
        elif "we" not in cpu_marks:
            nxt = min(nxt, we)
        return nxt

    d = (start_ns - time.time_ns()) / 1e9
    if d > 0:
        await asyncio.sleep(d)
    k = 0
    finished = False
    if mode == "single":
        while not finished:
            now = time.time_ns()
            mark(now)
            while True:
                t = start_ns + int(k * period)
                if t > now:
                    break
                if t >= stop_ns:
                    finished = True
                    break
                j = k % ndev
                k += 1
                w = ws <= t < we
                tot["offered"] += 1
                if w:
                    st["offered"] += 1
                if state["inflight"] >= window:
                    tot["dropped_window_full"] += 1
                    if w:
                        st["dropped_window_full"] += 1
                    continue
                body = enc(j, seq[j], t)
                seq[j] += 1
                tot["sent"] += 1
                if w:
                    st["sent"] += 1
                    lag.append(time.time_ns() - t)
                try:
                    fut = asyncio.ensure_future(hub_send_async(hub, devices[j], body))
                except Exception as e:  # noqa: BLE001 - raised at once (queue full, ...)
                    record_error(e, w)
                    continue
                state["inflight"] += 1
                if state["inflight"] > st["inflight_max"]:
                    st["inflight_max"] = state["inflight"]
                fut.add_done_callback(lambda f, t=t, w=w: done(f, t, w))
            if finished:
                break
            nxt = next_wake(start_ns + int(k * period))
            await asyncio.sleep(max(0.0, (nxt - time.time_ns()) / 1e9))
    else:
        while not finished:
            now = time.time_ns()
            mark(now)
            # every message due by now: one batch (or dropped if no batch slot / message window is free)
            room = 0 if state["batches"] >= max_batches else window - state["inflight"]
            msgs, ts = [], []
            while True:
                t = start_ns + int(k * period)
                if t > now:
                    break
                if t >= stop_ns:
                    finished = True
                    break
                j = k % ndev
                k += 1
                w = ws <= t < we
                tot["offered"] += 1
                if w:
                    st["offered"] += 1
                if len(msgs) >= room:
                    tot["dropped_window_full"] += 1
                    if w:
                        st["dropped_window_full"] += 1
                    if state["batches"] >= max_batches:
                        bst["dropped_no_batch_slot"] += 1
                    continue
                msgs.append((devices[j], enc(j, seq[j], t)))
                seq[j] += 1
                ts.append(t if w else -t)
            if msgs:
                n = len(msgs)
                issued = time.time_ns()
                nw = 0
                for t in ts:
                    if t > 0:
                        nw += 1
                        lag.append(issued - t)
                tot["sent"] += n
                st["sent"] += nw
                bst["batches"] += 1
                bst["batch_items"] += n
                if n > bst["batch_size_max"]:
                    bst["batch_size_max"] = n
                try:
                    fut = asyncio.ensure_future(hub_send_batch_async(hub, msgs))
                except Exception as e:  # noqa: BLE001 - the whole call refused at once
                    bst["batch_failures"] += 1
                    for t in ts:
                        record_error(e, t > 0)
                else:
                    state["inflight"] += n
                    state["batches"] += 1
                    st["inflight_max"] = max(st["inflight_max"], state["inflight"])
                    bst["batches_inflight_max"] = max(bst["batches_inflight_max"], state["batches"])
                    fut.add_done_callback(lambda f, ts=ts, n=n: batch_done(f, ts, n))
            if finished:
                break
            nxt = next_wake(max(now + tick_ns, start_ns + int(k * period)))
            await asyncio.sleep(max(0.0, (nxt - time.time_ns()) / 1e9))
    if "we" not in cpu_marks:  # rate so low that the loop never woke after we
        cpu_marks["we"] = (time.time_ns(), thread_cpu())
    deadline = time.time() + drain_s
    while state["inflight"] > 0 and time.time() < deadline:
        await asyncio.sleep(0.01)
    st["outstanding_at_exit"] = state["inflight"]
    dur = (we - ws) / 1e9
    st.update({"mode": "hub-c2d-sender", "send_mode": mode, "rate": rate, "inflight_window": window, "size": size,
               "devices": ndev, "window_start_ns": ws, "window_end_ns": we, "duration_s": dur,
               "offered_per_s": st["offered"] / dur if dur > 0 else 0.0,
               "sent_per_s": st["sent"] / dur if dur > 0 else 0.0,
               "accepted_per_s": st["accepted"] / dur if dur > 0 else 0.0,
               "send_latency_ms": hist(lat),  # durable (send done) - scheduled time
               "send_lag_ms": hist(lag)})     # issued - scheduled time
    if mode == "batch":
        bst.update({"tick_ms": tick_ms, "max_batches": max_batches,
                    "batch_size_mean": bst["batch_items"] / bst["batches"] if bst["batches"] else None})
        st["batch"] = bst  # totals over the whole run (warm-up and cool-down included)
    if "ws" in cpu_marks and "we" in cpu_marks:
        (t0, c0), (t1, c1) = cpu_marks["ws"], cpu_marks["we"]
        win = (t1 - t0) / 1e9
        roles = hub_sender_threads(hub)
        roles[main_tid] = "asyncio-loop"
        threads = []
        for tid, (name, ns1) in c1.items():
            ns0 = c0.get(tid, (name, 0))[1]
            if ns1 - ns0 > 0:
                threads.append({"tid": tid, "name": name, "role": roles.get(tid, "hub"),
                                "cpu_pct": 100.0 * (ns1 - ns0) / 1e9 / win})
        threads.sort(key=lambda x: -x["cpu_pct"])
        st["threads_cpu_pct"] = threads
        st["sender_loop_cpu_pct"] = sum(t["cpu_pct"] for t in threads if t["role"] == "asyncio-loop")
        st["c2d_pump_cpu_pct"] = sum(t["cpu_pct"] for t in threads if t["role"] == "c2d-pump")
        st["hub_threads_cpu_pct"] = sum(t["cpu_pct"] for t in threads if t["role"] == "hub")
    gc.callbacks.remove(gc_cb)
    del gcs["t0"]
    st["gc"] = gcs  # whole run
    st["queue_depth_at_exit"] = hub_depths(hub, devices)
    return st




def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--devices", type=int, required=True)
    ap.add_argument("--prefix", default="bench")
    ap.add_argument("--durability", default="durable")
    ap.add_argument("--max-queue-depth", type=int, default=0, help="Hub(c2d_max_queue_depth=...) if supported")
    ap.add_argument("--creds", required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--sender-cpus", default="",
                    help="pin the Python sender (this main thread, and the completion thread it starts) to these "
                         "CPUs, e.g. '0': the load generator's side, as mosquitto's sender is; the hub's C++ "
                         "threads keep the process's CPUs")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    t0 = time.time()
    hub, port, hub_kw = hub_start(a.data_dir, a.durability, a.max_queue_depth)
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
    if a.sender_cpus:
        # Linux affinity is per thread: only this thread (and threads it starts later) move.
        cpus = {int(c) for part in a.sender_cpus.split(",") for c in
                (range(int(part.split("-")[0]), int(part.split("-")[-1]) + 1))}
        os.sched_setaffinity(0, cpus)
    gc.freeze()  # the devices and the hub's objects live for the whole run: keep them out of GC passes
    write_json(a.ready, {"pid": os.getpid(), "port": port, "setup_s": time.time() - t0,
                         "hub_kwargs": hub_kw, "fleethub_version": getattr(fleethub, "__version__", None)})
    try:
        for line in sys.stdin:
            cmd = line.split()
            if not cmd:
                continue
            if cmd[0] == "C2D":
                rate = float(cmd[1])
                window, size = int(cmd[2]), int(cmd[3])
                start_ns, ws, we, stop_ns = (int(x) for x in cmd[4:8])
                drain_s, stats_path = float(cmd[8]), cmd[9]
                mode = cmd[10] if len(cmd) > 10 else "batch"
                tick_ms = float(cmd[11]) if len(cmd) > 11 else 5.0
                max_batches = int(cmd[12]) if len(cmd) > 12 else 8
                try:
                    st = asyncio.run(run_c2d(hub, devices, rate, window, size, start_ns, ws, we, stop_ns, drain_s,
                                             mode, tick_ms, max_batches))
                except Exception as e:  # noqa: BLE001 - reported to the harness
                    st = {"error": f"{type(e).__name__}: {e}"}
                write_json(stats_path, st)
            elif cmd[0] == "QUIT":
                break
    finally:
        hub_stop(hub)


if __name__ == "__main__":
    main()
