"""The HTTPS listener with raw HTTP (real TLS sockets, no SDK): authentication and permissions, IoT Hub
error bodies, etags, the device HTTPS API (telemetry, C2D receive/complete/reject/abandon), keep-alive,
pipelining and parser limits, and WebSocket upgrade refusals."""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import ssl
import time
import uuid
from typing import Dict, Optional, Tuple

import pytest

import fleethub

pytestmark = pytest.mark.timeout(60)


def _ctx(hub: fleethub.Hub) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=hub.ca_cert_path)
    return ctx


def _conn(hub: fleethub.Hub) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("localhost", hub.ports["https"], context=_ctx(hub), timeout=15)


def _policy_token(hub: fleethub.Hub, policy: str = "iothubowner", ttl: float = 3600) -> str:
    key = hub.policies()[policy]["primary_key"]
    return fleethub.make_sas_token(hub.hostname, key, ttl=ttl, key_name=policy)


def _device_token(hub: fleethub.Hub, dev: fleethub.Device) -> str:
    assert dev.primary_key
    return fleethub.make_sas_token(f"{hub.hostname}/devices/{dev.device_id}", dev.primary_key)


def _req(hub: fleethub.Hub, method: str, path: str, body: Optional[bytes | str] = None,
         headers: Optional[Dict[str, str]] = None, token: Optional[str] = "owner",
         conn: Optional[http.client.HTTPSConnection] = None) -> Tuple[int, Dict[str, str], bytes]:
    h = {"Content-Type": "application/json; charset=utf-8"}
    if token == "owner":
        token = _policy_token(hub)
    if token is not None:
        h["Authorization"] = token
    h.update(headers or {})
    c = conn or _conn(hub)
    sep = "&" if "?" in path else "?"
    c.request(method, f"{path}{sep}api-version=2021-04-12", body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    if conn is None:
        c.close()
    return r.status, hdrs, data


def _assert_error(status: int, hdrs: Dict[str, str], body: bytes, want_status: int, want_code: Optional[str] = None):
    assert status == want_status, body
    doc = json.loads(body)
    assert isinstance(doc["errorCode"], int) and str(doc["errorCode"]).startswith(str(want_status))
    assert doc["message"]
    assert "iothub-errorcode" in hdrs
    if want_code:
        assert hdrs["iothub-errorcode"] == want_code


# ---- authentication and permissions ---------------------------------------------------------------------
def test_missing_bad_expired_token_and_wrong_permission_are_401(hub):
    hub.devices.create("d1")
    s, h, b = _req(hub, "GET", "/devices/d1", token=None)
    _assert_error(s, h, b, 401, "IotHubUnauthorized")
    good = _policy_token(hub)
    s, h, b = _req(hub, "GET", "/devices/d1", token=good.replace("sig=", "sig=AAAA"))
    _assert_error(s, h, b, 401, "IotHubUnauthorized")
    s, h, b = _req(hub, "GET", "/devices/d1", token=_policy_token(hub, ttl=-60))
    _assert_error(s, h, b, 401, "IotHubUnauthorized")
    # registryRead may read the registry but not write it, and may not invoke methods.
    ro = _policy_token(hub, "registryRead")
    s, _, b = _req(hub, "GET", "/devices/d1", token=ro)
    assert s == 200 and json.loads(b)["deviceId"] == "d1"
    s, h, b = _req(hub, "PUT", "/devices/d2", body=json.dumps({"deviceId": "d2"}), token=ro)
    _assert_error(s, h, b, 401, "IotHubUnauthorized")
    assert "d2" not in hub.devices
    s, h, b = _req(hub, "POST", "/twins/d1/methods", body=json.dumps({"methodName": "x"}), token=ro)
    _assert_error(s, h, b, 401, "IotHubUnauthorized")
    # The service policy (ServiceConnect) reads twins but cannot create devices.
    svc = _policy_token(hub, "service")
    s, _, _ = _req(hub, "GET", "/twins/d1", token=svc)
    assert s == 200
    s, h, b = _req(hub, "PUT", "/devices/d3", body=json.dumps({"deviceId": "d3"}), token=svc)
    _assert_error(s, h, b, 401)


def test_bad_json_404_and_stale_etag(hub):
    s, h, b = _req(hub, "PUT", "/devices/d1", body="{not json")
    _assert_error(s, h, b, 400)
    s, h, b = _req(hub, "GET", "/devices/nope")
    _assert_error(s, h, b, 404, "DeviceNotFound")
    s, h, b = _req(hub, "GET", "/twins/nope")
    _assert_error(s, h, b, 404)
    s, h, b = _req(hub, "PATCH", "/twins/nope", body=json.dumps({"tags": {"a": 1}}))
    _assert_error(s, h, b, 404)

    s, _, b = _req(hub, "PUT", "/devices/d1", body=json.dumps({"deviceId": "d1"}))
    assert s == 200  # PUT answers 200 even when it creates
    dev = json.loads(b)
    assert dev["deviceId"] == "d1" and dev["authentication"]["symmetricKey"]["primaryKey"]
    etag = dev["etag"]
    s, _, b = _req(hub, "PUT", "/devices/d1", body=json.dumps({"deviceId": "d1", "status": "disabled"}),
                   headers={"If-Match": f'"{etag}"'})
    assert s == 200 and json.loads(b)["status"] == "disabled"
    s, h, b = _req(hub, "PUT", "/devices/d1", body=json.dumps({"deviceId": "d1", "status": "enabled"}),
                   headers={"If-Match": f'"{etag}"'})
    _assert_error(s, h, b, 412)
    assert not hub.devices.get("d1").enabled

    s, _, b = _req(hub, "GET", "/twins/d1")
    twin = json.loads(b)
    s, _, b = _req(hub, "PATCH", "/twins/d1", body=json.dumps({"tags": {"x": 1}}),
                   headers={"If-Match": f'"{twin["etag"]}"'})
    assert s == 200 and json.loads(b)["tags"] == {"x": 1}
    s, h, b = _req(hub, "PATCH", "/twins/d1", body=json.dumps({"tags": {"x": 2}}),
                   headers={"If-Match": f'"{twin["etag"]}"'})
    _assert_error(s, h, b, 412)
    s, h, b = _req(hub, "PATCH", "/twins/d1", body=json.dumps({"properties": {"desired": {"bad.key": 1}}}))
    _assert_error(s, h, b, 400)
    assert hub.twins.get("d1").tags == {"x": 1}

    s, _, _ = _req(hub, "DELETE", "/devices/d1", headers={"If-Match": '"*"'})
    assert s == 204
    assert "d1" not in hub.devices


def test_unknown_route_and_wrong_method(hub):
    s, h, b = _req(hub, "GET", "/no/such/thing")
    assert s == 404
    s, h, b = _req(hub, "PATCH", "/statistics/devices")
    assert s in (404, 405)


def test_query_over_rest_with_paging_headers(hub):
    for i in range(5):
        hub.devices.create(f"q{i}")
        hub.twins.update(f"q{i}", tags={"n": i})
    items, token, pages = [], None, 0
    while True:
        hdrs = {"x-ms-max-item-count": "2"}
        if token:
            hdrs["x-ms-continuation"] = token
        s, h, b = _req(hub, "POST", "/devices/query",
                       body=json.dumps({"query": "SELECT * FROM devices WHERE tags.n >= 1"}), headers=hdrs)
        assert s == 200
        assert h["x-ms-item-type"] == "twin"
        page = json.loads(b)
        assert len(page) <= 2
        items += page
        pages += 1
        token = h.get("x-ms-continuation")
        if not token:
            break
    assert sorted(t["deviceId"] for t in items) == ["q1", "q2", "q3", "q4"]
    assert pages >= 2
    s, h, b = _req(hub, "POST", "/devices/query", body=json.dumps({"query": "SELECT * FROM devices"}),
                   headers={"x-ms-continuation": "bm90IGEgdG9rZW4"})
    _assert_error(s, h, b, 400)
    s, h, b = _req(hub, "POST", "/devices/query", body=json.dumps({"query": "SELECT * FROM devices WHERE"}))
    _assert_error(s, h, b, 400)
    assert "position" in json.loads(b)["message"]


# ---- device HTTPS API -----------------------------------------------------------------------------------
def test_device_telemetry_post_is_durable_with_properties(hub):
    dev = hub.devices.create("dh1")
    tok = _device_token(hub, dev)
    s, _, b = _req(hub, "POST", "/devices/dh1/messages/events", body=b'{"t":1}', token=tok,
                   headers={"Content-Type": "application/octet-stream", "iothub-messageid": "m-1",
                            "iothub-correlationid": "c-1", "iothub-contenttype": "application/json",
                            "iothub-contentencoding": "utf-8", "iothub-app-severity": "high"})
    assert s == 204, b
    (m,) = list(hub.events.read(device_id="dh1"))
    assert m.body == b'{"t":1}'
    assert m.message_id == "m-1" and m.correlation_id == "c-1"
    assert m.content_type == "application/json" and m.content_encoding == "utf-8"
    assert m.properties["severity"] == "high"
    # Batch form.
    batch = [{"body": base64.b64encode(b"one").decode(), "base64Encoded": True, "properties": {"k": "1"}},
             {"body": base64.b64encode(b"two").decode(), "base64Encoded": True, "properties": {"k": "2"}}]
    s, _, b = _req(hub, "POST", "/devices/dh1/messages/events", body=json.dumps(batch), token=tok,
                   headers={"Content-Type": "application/vnd.microsoft.iothub.json"})
    assert s == 204, b
    msgs = list(hub.events.read(device_id="dh1"))
    assert [x.body for x in msgs[1:]] == [b"one", b"two"]
    assert [x.properties["k"] for x in msgs[1:]] == ["1", "2"]
    # Another device's token may not post as dh1.
    other = hub.devices.create("dh2")
    s, h, b = _req(hub, "POST", "/devices/dh1/messages/events", body=b"x", token=_device_token(hub, other))
    _assert_error(s, h, b, 401)


def test_device_c2d_receive_complete_reject_abandon(hub):
    dev = hub.devices.create("dc1")
    tok = _device_token(hub, dev)
    s, _, _ = _req(hub, "GET", "/devices/dc1/messages/devicebound", token=tok)
    assert s == 204
    hub.c2d.send("dc1", b"first", properties={"color": "red"}, message_id="mid-1")
    hub.c2d.send("dc1", b"second")
    s, h, b = _req(hub, "GET", "/devices/dc1/messages/deviceBound", token=tok)
    assert s == 200 and b == b"first"
    assert h["etag"].startswith('"') and h["etag"].endswith('"')
    assert h["iothub-messageid"] == "mid-1"
    assert h["iothub-app-color"] == "red"
    assert h["iothub-deliverycount"] in ("0", "1")
    lock = h["etag"].strip('"')
    # Abandon puts it back; it comes again with a new lock.
    s, _, _ = _req(hub, "POST", f"/devices/dc1/messages/devicebound/{lock}/abandon", token=tok)
    assert s == 204
    s, h, b = _req(hub, "GET", "/devices/dc1/messages/devicebound", token=tok)
    assert s == 200 and b == b"first"
    lock2 = h["etag"].strip('"')
    s, _, _ = _req(hub, "DELETE", f"/devices/dc1/messages/devicebound/{lock2}", token=tok,
                   headers={"If-Match": f'"{lock2}"'})
    assert s == 204
    # Completing again: the lock is gone.
    s, h, b = _req(hub, "DELETE", f"/devices/dc1/messages/devicebound/{lock2}", token=tok)
    _assert_error(s, h, b, 412)
    s, h, b = _req(hub, "GET", "/devices/dc1/messages/devicebound", token=tok)
    assert s == 200 and b == b"second"
    s, _, _ = _req(hub, "DELETE", f"/devices/dc1/messages/devicebound/{h['etag'].strip(chr(34))}?reject", token=tok)
    assert s == 204
    assert hub.c2d.depth("dc1") == 0


# ---- connection handling --------------------------------------------------------------------------------
def test_keep_alive_serves_many_requests_on_one_connection(hub):
    hub.devices.create("ka")
    c = _conn(hub)
    tok = _policy_token(hub)
    for _ in range(20):
        s, _, b = _req(hub, "GET", "/devices/ka", token=tok, conn=c)
        assert s == 200 and json.loads(b)["deviceId"] == "ka"
    c.close()


def _raw_tls(hub: fleethub.Hub) -> ssl.SSLSocket:
    sock = socket.create_connection(("localhost", hub.ports["https"]), timeout=10)
    return _ctx(hub).wrap_socket(sock, server_hostname="localhost")


def _read_until_closed(s: ssl.SSLSocket, timeout: float = 10) -> bytes:
    """Everything the hub sends until it closes the connection."""
    data = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            chunk = s.recv(65536)
        except (socket.timeout, ssl.SSLError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return data


def test_pipelined_requests_answer_in_order(hub):
    hub.devices.create("p1")
    hub.devices.create("p2")
    tok = _policy_token(hub)
    s = _raw_tls(hub)
    reqs = b"".join(
        f"GET /devices/{d}?api-version=2021-04-12 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {tok}\r\n"
        f"{'Connection: close' if d == 'p2' else 'X-A: b'}\r\n\r\n".encode() for d in ("p1", "nope", "p2"))
    s.sendall(reqs)
    data = _read_until_closed(s)
    s.close()
    statuses = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
    assert statuses == [200, 404, 200]
    assert data.index(b'"p1"') < data.index(b"DeviceNotFound") < data.index(b'"p2"')


def test_parser_limits_answer_with_status_and_close(hub):
    s = _raw_tls(hub)
    s.sendall(b"GET /devices HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    data = _read_until_closed(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 431")
    s = _raw_tls(hub)
    s.sendall(b"POST /devices/query HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n")
    data = _read_until_closed(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 413")
    s = _raw_tls(hub)
    s.sendall(b"this is not http\r\n\r\n")
    data = _read_until_closed(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 400")


def test_websocket_upgrade_refusals(hub):
    s = _raw_tls(hub)
    s.sendall(b"GET /$iothub/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
              b"Sec-WebSocket-Protocol: amqp\r\n\r\n")
    data = _read_until_closed(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 400")
    s = _raw_tls(hub)
    s.sendall(b"GET /$iothub/websocket HTTP/1.1\r\nHost: x\r\n\r\n")
    data = _read_until_closed(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 400")
    # An unsupported WebSocket version: 426 naming the one the hub speaks (RFC 6455 4.4).
    s = _raw_tls(hub)
    s.sendall(b"GET /$iothub/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n"
              b"Sec-WebSocket-Protocol: mqtt\r\n\r\n")
    data = _read_until_closed(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 426")
    assert b"Sec-WebSocket-Version: 13" in data


def test_websocket_mqtt_connect_with_raw_frames(hub):
    """A hand-made WebSocket client: 101 with the accept key, then an MQTT CONNECT in a masked binary frame
    gets a CONNACK (return code 0) in an unmasked binary frame."""
    dev = hub.devices.create("wsraw")
    s = _raw_tls(hub)
    s.sendall(b"GET /$iothub/websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
              b"Sec-WebSocket-Protocol: mqtt\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101")
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    assert b"mqtt" in head.lower()
    user = f"localhost/wsraw/?api-version=2021-04-12".encode()
    pw = _device_token(hub, dev).encode()
    var = b"\x00\x04MQTT\x04\xc2\x00\x3c"
    payload = b"".join(len(x).to_bytes(2, "big") + x for x in (b"wsraw", user, pw))
    body = var + payload
    rem = len(body)
    enc = b""
    while True:
        d, rem = rem % 128, rem // 128
        enc += bytes([d | (0x80 if rem else 0)])
        if not rem:
            break
    pkt = b"\x10" + enc + body
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(pkt))
    assert 126 <= len(pkt) < 65536  # the 16-bit extended length form
    # Split across two TCP writes in the middle of the frame header: the decoder is incremental.
    frame = bytes([0x82, 0x80 | 126]) + len(pkt).to_bytes(2, "big") + mask + masked
    s.sendall(frame[:3])
    time.sleep(0.05)
    s.sendall(frame[3:])
    frame = b""
    while len(frame) < 6:
        frame += s.recv(4096)
    assert frame[0] == 0x82 and frame[1] == 4  # FIN + binary, unmasked, 4 bytes
    assert frame[2:6] == b"\x20\x02\x00\x00"   # CONNACK, accepted
    s.close()


# ---- hub.query from Python ------------------------------------------------------------------------------
def test_python_query_iterator_pages_and_dataframe(hub):
    for i in range(12):
        hub.devices.create(f"pq{i:02d}")
        hub.twins.update(f"pq{i:02d}", tags={"site": "b1" if i % 3 else "b2", "n": i})
    res = hub.query("SELECT * FROM devices WHERE tags.site = 'b1'", page_size=4)
    assert res.item_type == "twin"
    pages = list(res.pages())
    assert [len(p.items) for p in pages] == [4, 4]
    assert pages[-1].continuation is None
    ids = sorted(t["deviceId"] for p in pages for t in p.items)
    assert ids == sorted(f"pq{i:02d}" for i in range(12) if i % 3)
    rows = list(hub.query("SELECT tags.site AS site, COUNT() AS n FROM devices GROUP BY tags.site"))
    assert sorted((r["site"], r["n"]) for r in rows) == [("b1", 8), ("b2", 4)]
    with pytest.raises(fleethub.InvalidArgumentError, match="position"):
        hub.query("SELECT * FROM devices WHERE tags.site = ")
    pd = pytest.importorskip("pandas")
    df = hub.query("SELECT deviceId, tags.n AS n FROM devices WHERE tags.n < 3").to_pandas()
    assert isinstance(df, pd.DataFrame)
    assert sorted(df["n"].tolist()) == [0, 1, 2]


def test_expect_100_continue_is_answered_before_the_body(hub):
    """A client that sends `Expect: 100-continue` (curl does for larger bodies) gets `100 Continue` at once
    and then the final answer, without waiting for its own timeout."""
    dev = hub.devices.create("cont")
    s = _raw_tls(hub)
    body = b'{"t":1}'
    s.sendall(f"POST /devices/cont/messages/events?api-version=2020-03-13 HTTP/1.1\r\nHost: localhost\r\n"
              f"Authorization: {_device_token(hub, dev)}\r\nExpect: 100-continue\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode())
    s.settimeout(5)
    interim = b""
    while b"\r\n\r\n" not in interim:
        interim += s.recv(4096)
    assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    s.sendall(body)
    final = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
    while b"\r\n\r\n" not in final:
        final += s.recv(4096)
    s.close()
    assert final.startswith(b"HTTP/1.1 204")
    assert [m.body for m in hub.events.read(device_id="cont")] == [body]
