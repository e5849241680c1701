"""Hub-side process of bench/run_https_ingest.py (not meant to be run by hand).

Starts a fleethub Hub (durable by default) with its HTTPS listener on a free port (and, with --mqtt, its
MQTT-over-TLS listener too), creates the devices {prefix}0.. with generated keys, writes

  --creds       one `device_id<TAB>SAS token` line per device (fleethub_https_loadgen https)
  --mqtt-creds  one `client_id<TAB>username<TAB>SAS password` line per device (loadgen mqtt, with --mqtt)

and a ready file {"pid", "https_port", "mqtts_port", "ca", "setup_s"}, then obeys stdin lines:

  COUNT <path>   reads the whole event log (DeviceMessages only) and writes {"messages", "unique",
                 "foreign", "per_partition", "read_s"} to <path>: the run's sanity check (every
                 acknowledged request must be in the log; unique = distinct (device, seq) pairs).
  QUIT           closes the hub and exits (SIGTERM does the same).

Only the ADAPTER block knows the fleethub API.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from _bench_io import write_json  # noqa: E402

# ============================ ADAPTER: fleethub API =====================================
import fleethub


def hub_start(data_dir, durability, mqtt):
    hub = fleethub.Hub(data_dir, hostname="localhost", mqtt_port=0 if mqtt else None, mqtt_plain_port=None,
                       https_port=0, durability=durability)
    hub.start()
    return hub


def hub_ports(hub):
    p = hub.ports
    return p["https"], p.get("mqtts")


def hub_device_credentials(hub, device_id, ttl):
    """-> (SAS token for the HTTPS Authorization header, (client_id, username, password) for MQTT)."""
    dev = hub.devices.create(device_id)
    token = fleethub.make_sas_token(f"localhost/devices/{device_id}", dev.primary_key, ttl=ttl)
    return token, (device_id, f"localhost/{device_id}/?api-version=2021-04-12", token)


def hub_log_rows(hub):
    """Yields (device_id, body bytes) of every telemetry message in the log."""
    for p in range(hub.events.partition_count):
        for m in hub.events.read(partition=p, source="DeviceMessages", batch_size=5000):
            yield p, m.device_id, bytes(m.body)


def hub_close(hub):
    hub.close()
# ========================================================================================


def count_log(hub):
    t0 = time.time()
    seen: dict[str, bytearray] = {}
    n = uniq = foreign = 0
    per_part: dict[int, int] = {}
    for p, dev, body in hub_log_rows(hub):
        n += 1
        per_part[p] = per_part.get(p, 0) + 1
        if body[:7] != b'{"pub":':
            foreign += 1
            continue
        seq = int(body[24:44])
        bm = seen.get(dev)
        if bm is None:
            bm = seen[dev] = bytearray(1024)
        i = seq >> 3
        if i >= len(bm):
            bm.extend(bytes(i + 1024 - len(bm)))
        bit = 1 << (seq & 7)
        if not bm[i] & bit:
            bm[i] |= bit
            uniq += 1
    return {"messages": n, "unique": uniq, "foreign": foreign, "devices_seen": len(seen),
            "per_partition": per_part, "read_s": round(time.time() - t0, 3)}




def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--devices", type=int, required=True)
    ap.add_argument("--prefix", default="bench")
    ap.add_argument("--durability", default="durable")
    ap.add_argument("--mqtt", action="store_true", help="also open the MQTT-over-TLS listener")
    ap.add_argument("--creds", required=True)
    ap.add_argument("--mqtt-creds", default=None)
    ap.add_argument("--ready", required=True)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    t0 = time.time()
    hub = hub_start(a.data_dir, a.durability, a.mqtt)
    https_port, mqtts_port = hub_ports(hub)
    lines, mlines = [], []
    for i in range(a.devices):
        token, (cid, user, pw) = hub_device_credentials(hub, f"{a.prefix}{i}", 7 * 86400)
        lines.append(f"{cid}\t{token}\n")
        mlines.append(f"{cid}\t{user}\t{pw}\n")
    with open(a.creds, "w") as f:
        f.writelines(lines)
    if a.mqtt_creds:
        with open(a.mqtt_creds, "w") as f:
            f.writelines(mlines)
    write_json(a.ready, {"pid": os.getpid(), "https_port": https_port, "mqtts_port": mqtts_port,
                         "ca": hub.ca_cert_path, "setup_s": time.time() - t0})
    try:
        for line in sys.stdin:
            cmd = line.split()
            if not cmd:
                continue
            if cmd[0] == "COUNT":
                try:
                    res = count_log(hub)
                except Exception as e:  # noqa: BLE001 - reported to the harness
                    res = {"error": f"{type(e).__name__}: {e}"}
                write_json(cmd[1], res)
            elif cmd[0] == "QUIT":
                break
    finally:
        hub_close(hub)


if __name__ == "__main__":
    main()
