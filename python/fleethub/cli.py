"""The ``fleethub`` command: ``fleethub serve`` and ``fleethub device create|list|show|delete``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, List, Optional

from .errors import Error


def _env(name: str, default: Any = None) -> Any:
    return os.environ.get(name, default)


def _port(v: str) -> Optional[int]:
    if v.lower() in ("off", "none", ""):
        return None
    p = int(v)
    if not 0 <= p <= 65535:
        raise argparse.ArgumentTypeError("port must be 0..65535, or 'off'")
    return p


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=_env("FLEETHUB_DATA_DIR", "./fleethub-data"),
                   help="data directory (env FLEETHUB_DATA_DIR; default ./fleethub-data)")
    p.add_argument("--hostname", default=_env("FLEETHUB_HOSTNAME", "localhost"),
                   help="the HostName devices use (env FLEETHUB_HOSTNAME; default localhost)")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="fleethub", description="Self-hosted IoT hub for the Azure IoT SDKs.")
    sub = ap.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the hub until Ctrl-C")
    _common(s)
    s.add_argument("--bind", default=_env("FLEETHUB_BIND", "0.0.0.0"), help="listen address (env FLEETHUB_BIND)")
    s.add_argument("--mqtt-port", type=_port, default=_port(_env("FLEETHUB_MQTT_PORT", "8883")),
                   help="MQTT over TLS port, or 'off' (env FLEETHUB_MQTT_PORT; default 8883)")
    s.add_argument("--mqtt-plain-port", type=_port, default=_port(_env("FLEETHUB_MQTT_PLAIN_PORT", "off")),
                   help="plain MQTT port for local development (env FLEETHUB_MQTT_PLAIN_PORT; default off)")
    s.add_argument("--https-port", type=_port, default=_port(_env("FLEETHUB_HTTPS_PORT", "443")),
                   help="HTTPS port: service REST API, device HTTPS, MQTT over WebSockets; or 'off' "
                        "(env FLEETHUB_HTTPS_PORT; default 443, which the device SDK needs for WebSockets)")
    s.add_argument("--tls-cert", default=_env("FLEETHUB_TLS_CERT"), help="PEM certificate chain (env FLEETHUB_TLS_CERT)")
    s.add_argument("--tls-key", default=_env("FLEETHUB_TLS_KEY"), help="PEM private key (env FLEETHUB_TLS_KEY)")
    s.add_argument("--durability", choices=["durable", "relaxed"], default=_env("FLEETHUB_DURABILITY", "durable"))
    s.add_argument("--partitions", type=int, default=int(_env("FLEETHUB_PARTITIONS", "4")))
    s.add_argument("--log-level", default=_env("FLEETHUB_LOG_LEVEL", "info"),
                   choices=["debug", "info", "warning", "error"])
    s.add_argument("--create-device", action="append", default=[], metavar="ID",
                   help="register this device at start if missing (repeatable) and print its connection string")

    d = sub.add_parser("device", help="manage device identities")
    dsub = d.add_subparsers(dest="action", required=True)
    c = dsub.add_parser("create", help="register a device")
    _common(c)
    c.add_argument("device_id")
    c.add_argument("--primary-key")
    c.add_argument("--secondary-key")
    c.add_argument("--disabled", action="store_true")
    for name in ("list", "show", "delete"):
        x = dsub.add_parser(name)
        _common(x)
        if name != "list":
            x.add_argument("device_id")
    t = sub.add_parser("twin", help="read or change device twins (on a data dir no hub process holds)")
    tsub = t.add_subparsers(dest="action", required=True)
    x = tsub.add_parser("show", help="print the twin as IoT Hub's service API returns it")
    _common(x)
    x.add_argument("device_id")
    x.add_argument("--module-id")
    u = tsub.add_parser("update", help="merge tags and/or desired properties (JSON objects)")
    _common(u)
    u.add_argument("device_id")
    u.add_argument("--module-id")
    u.add_argument("--tags", type=json.loads, help='JSON object, e.g. \'{"site": "lab"}\'')
    u.add_argument("--desired", type=json.loads, help="JSON object; null deletes a property")
    u.add_argument("--etag", help="apply only if the twin still has this etag")
    q = sub.add_parser("query", help="run an IoT Hub query (on a data dir no hub process holds)")
    _common(q)
    q.add_argument("text", help="e.g. \"SELECT * FROM devices WHERE tags.site = 'lab'\"")
    q.add_argument("--format", choices=["json", "table"], default="json")
    return ap


def _query(a: argparse.Namespace) -> int:
    from .hub import Hub

    hub = Hub(a.data_dir, hostname=a.hostname, mqtt_port=None, https_port=None, log_level="warning")
    try:
        rows = hub.query(a.text).to_list()
        if a.format == "json":
            print(json.dumps(rows, indent=2))
        else:
            for r in rows:
                print(json.dumps(r, separators=(",", ":")))
    finally:
        hub.close()
    return 0


def _twin(a: argparse.Namespace) -> int:
    from .hub import Hub

    hub = Hub(a.data_dir, hostname=a.hostname, mqtt_port=None, https_port=None, log_level="warning")
    try:
        if a.action == "show":
            twin = hub.twins.get(a.device_id, module_id=a.module_id)
        else:
            twin = hub.twins.update(a.device_id, tags=a.tags, desired=a.desired, etag=a.etag, module_id=a.module_id)
        print(json.dumps(twin.to_dict(), indent=2))
    finally:
        hub.close()
    return 0


def _device_json(dev: Any) -> str:
    d = dev.to_iothub_json()
    d["connectionString"] = dev.connection_string
    return json.dumps(d, indent=2)


def _serve(a: argparse.Namespace) -> int:
    from .hub import Hub

    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s",
                        stream=sys.stderr)
    hub = Hub(a.data_dir, hostname=a.hostname, mqtt_port=a.mqtt_port, mqtt_plain_port=a.mqtt_plain_port,
              https_port=a.https_port, bind=a.bind, tls_cert=a.tls_cert, tls_key=a.tls_key, durability=a.durability,
              partitions=a.partitions, log_level=a.log_level)
    hub.install_stop_signals()  # before the banner: a supervisor may signal as soon as it sees it
    hub.start()
    ports = hub.ports
    print(f"fleethub is running (data dir {os.path.abspath(a.data_dir)})", flush=True)
    print(f"  hostname     {hub.hostname}")
    print(f"  MQTT/TLS     {ports['mqtts'] if ports['mqtts'] is not None else 'off'}")
    print(f"  MQTT plain   {ports['mqtt'] if ports['mqtt'] is not None else 'off'}")
    print(f"  HTTPS        {ports['https'] if ports['https'] is not None else 'off'}"
          "  (service REST API, device HTTPS, MQTT over WebSockets)")
    if hub.ca_cert_path:
        print(f"  CA cert      {os.path.abspath(hub.ca_cert_path)}  (pass its text as server_verification_cert)")
    print(f"  service      {hub.service_connection_string()}")
    for dev_id in a.create_device:
        dev = hub.devices.get(dev_id) if dev_id in hub.devices else hub.devices.create(dev_id)
        print(f"  device       {dev.connection_string}")
    print("Register a device: fleethub device create <id>   (stop: Ctrl-C)", flush=True)
    hub.serve_forever()
    return 0


def _device(a: argparse.Namespace) -> int:
    from .hub import Hub

    hub = Hub(a.data_dir, hostname=a.hostname, mqtt_port=None, https_port=None, log_level="warning")
    try:
        if a.action == "create":
            dev = hub.devices.create(a.device_id, primary_key=a.primary_key, secondary_key=a.secondary_key,
                                     enabled=not a.disabled)
            print(_device_json(dev))
        elif a.action == "show":
            print(_device_json(hub.devices.get(a.device_id)))
        elif a.action == "delete":
            hub.devices.delete(a.device_id)
            print(f"deleted {a.device_id}")
        else:
            for dev in hub.devices:
                print(f"{dev.device_id}\t{dev.status}\t{dev.connection_state}")
    finally:
        hub.close()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    a = _parser().parse_args(argv)
    try:
        if a.command == "serve":
            return _serve(a)
        if a.command == "query":
            return _query(a)
        return _twin(a) if a.command == "twin" else _device(a)
    except Error as e:
        print(f"fleethub: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
