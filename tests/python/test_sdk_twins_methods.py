"""Twins and direct methods with the unmodified Azure IoT device SDK (azure-iot-device) on port 8883."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid

import pytest

pytest.importorskip("azure.iot.device")

from azure.iot.device import IoTHubDeviceClient, IoTHubModuleClient, MethodResponse  # noqa: E402
from azure.iot.device import exceptions as sdk_exceptions  # noqa: E402
from azure.iot.device.aio import IoTHubDeviceClient as AsyncIoTHubDeviceClient  # noqa: E402

import fleethub  # noqa: E402

pytestmark = [pytest.mark.sdk, pytest.mark.timeout(180)]


def _client(hub, dev, cls=IoTHubDeviceClient, **kw):
    kw.setdefault("connection_retry", False)
    return cls.create_from_connection_string(dev.connection_string, server_verification_cert=hub.ca_cert, **kw)


def _wait(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_sdk_gets_twin_patches_reported_and_receives_desired(sdk_hub):
    """get_twin, patch_twin_reported_properties and desired patches made by hub.twins.update, in order,
    each with its $version; the hub's twin and TwinChangeEvents reflect every step."""
    hub = sdk_hub
    dev = hub.devices.create(f"tw-{uuid.uuid4().hex[:8]}")
    hub.twins.update(dev.device_id, desired={"interval": 5, "mode": {"a": 1}}, tags={"site": "lab"})
    patches: "queue.Queue[dict]" = queue.Queue()
    client = _client(hub, dev)
    client.on_twin_desired_properties_patch_received = patches.put
    try:
        client.connect()
        twin = client.get_twin()
        assert twin["desired"]["interval"] == 5 and twin["desired"]["mode"] == {"a": 1}
        assert twin["desired"]["$version"] == 2
        assert twin["reported"] == {"$version": 1}
        assert "tags" not in twin  # devices do not see tags

        client.patch_twin_reported_properties({"temp": 21.5, "fw": {"v": "1.0"}})
        client.patch_twin_reported_properties({"fw": {"v": "1.1"}, "temp": None})
        t = hub.twins.get(dev.device_id)
        assert t.reported == {"fw": {"v": "1.1"}}
        assert t.reported_version == 3
        assert t.metadata("reported")["fw"]["v"]["$lastUpdated"].endswith("Z")

        # Desired patches from the back end arrive in order, each with its $version.
        for i in range(5):
            hub.twins.update(dev.device_id, desired={"interval": 10 + i, "mode": None if i == 4 else {"b": i}})
        got = [patches.get(timeout=10) for _ in range(5)]
        assert [p["$version"] for p in got] == [3, 4, 5, 6, 7]
        assert got[0] == {"interval": 10, "mode": {"b": 0}, "$version": 3}
        assert got[4] == {"interval": 14, "mode": None, "$version": 7}
        twin = client.get_twin()
        assert twin["desired"] == {"interval": 14, "$version": 7}
        assert twin["reported"] == {"fw": {"v": "1.1"}, "$version": 3}
    finally:
        client.shutdown()
    events = list(hub.events.read(device_id=dev.device_id, source="TwinChangeEvents"))
    ops = [(m.properties["opType"], m.json().get("properties", {}).keys()) for m in events]
    assert len(ops) == 1 + 2 + 5
    assert all(op == "updateTwin" for op, _ in ops)
    assert list(ops[1][1]) == ["reported"]
    assert events[1].system_properties["iothub-message-source"] == "twinChangeEvents"
    assert events[1].properties["iothub-message-schema"] == "twinChangeNotification"


def test_sdk_keeps_desired_patches_after_reconnect(sdk_hub):
    """A device that drops and reconnects (persistent session) still receives desired patches."""
    hub = sdk_hub
    dev = hub.devices.create(f"twr-{uuid.uuid4().hex[:8]}")
    patches: "queue.Queue[dict]" = queue.Queue()
    client = _client(hub, dev)
    client.on_twin_desired_properties_patch_received = patches.put
    try:
        client.connect()
        hub.twins.update(dev.device_id, desired={"x": 1})
        assert patches.get(timeout=10) == {"x": 1, "$version": 2}
        client.disconnect()
        hub.twins.update(dev.device_id, desired={"x": 2})  # offline: not queued (IoT Hub keeps none)
        client.connect()
        # The SDK re-reads the twin after reconnecting (ensure_desired_properties); then patches flow again.
        time.sleep(1.0)
        hub.twins.update(dev.device_id, desired={"x": 3})
        seen = []
        while True:
            p = patches.get(timeout=10)
            seen.append(p)
            if p.get("$version") == 4:
                break
        assert seen[-1] == {"x": 3, "$version": 4}
        assert client.get_twin()["desired"] == {"x": 3, "$version": 4}
    finally:
        client.shutdown()


def test_sdk_answers_direct_methods(sdk_hub):
    """hub.methods.invoke reaches on_method_request_received; the device's status and JSON payload come back.
    Several calls run in flight at once; a device without a handler gets DeviceNotOnlineError at once."""
    hub = sdk_hub
    dev = hub.devices.create(f"m-{uuid.uuid4().hex[:8]}")
    client = _client(hub, dev)
    seen = []

    def handler(req):
        seen.append((req.name, req.payload))
        if req.name == "slow":
            time.sleep(0.5)
        status = 200 if req.name != "fail" else 500
        client.send_method_response(MethodResponse.create_from_method_request(
            req, status, {"echo": req.payload, "name": req.name}))

    try:
        client.connect()
        with pytest.raises(fleethub.DeviceNotOnlineError):
            hub.methods.invoke(dev.device_id, "reboot", {"delay": 1})  # not subscribed yet
        client.on_method_request_received = handler
        time.sleep(0.5)
        r = hub.methods.invoke(dev.device_id, "reboot", {"delay": 1}, timeout=10)
        assert r == fleethub.MethodResult(200, {"echo": {"delay": 1}, "name": "reboot"})
        r = hub.methods.invoke(dev.device_id, "fail", None, timeout=10)
        assert r.status == 500 and r.payload == {"echo": None, "name": "fail"}
        r = hub.methods.invoke(dev.device_id, "text", "héllo", timeout=10)
        assert r.payload["echo"] == "héllo"

        async def many():
            return await asyncio.gather(*(hub.methods.invoke_async(dev.device_id, "slow", {"i": i}, timeout=20)
                                          for i in range(5)))
        t0 = time.monotonic()
        results = asyncio.run(many())
        assert sorted(r.payload["echo"]["i"] for r in results) == [0, 1, 2, 3, 4]
        assert all(r.status == 200 for r in results)
        assert time.monotonic() - t0 < 20
    finally:
        client.shutdown()
    with pytest.raises(fleethub.DeviceNotOnlineError):
        hub.methods.invoke(dev.device_id, "reboot")  # offline
    with pytest.raises(fleethub.DeviceNotFoundError):
        hub.methods.invoke("no-such-device", "reboot")


def test_sdk_method_waits_for_device_with_connect_timeout(sdk_hub):
    """connect_timeout lets a call wait for the device to connect and subscribe."""
    hub = sdk_hub
    dev = hub.devices.create(f"mc-{uuid.uuid4().hex[:8]}")
    client = _client(hub, dev)
    client.on_method_request_received = lambda req: client.send_method_response(
        MethodResponse.create_from_method_request(req, 201, {"late": True}))
    out = {}

    def call():
        try:
            out["r"] = hub.methods.invoke(dev.device_id, "wake", {}, timeout=10, connect_timeout=20)
        except Exception as e:  # noqa: BLE001
            out["e"] = e

    t = threading.Thread(target=call)
    t.start()
    time.sleep(1.0)
    try:
        client.connect()
        t.join(30)
    finally:
        client.shutdown()
    assert out.get("r") == fleethub.MethodResult(201, {"late": True}), out


def test_sdk_async_client_twin_and_method(sdk_hub):
    """The asyncio device client: twin get/patch and a method handler."""
    hub = sdk_hub
    dev = hub.devices.create(f"a-{uuid.uuid4().hex[:8]}")

    async def scenario():
        client = _client(hub, dev, cls=AsyncIoTHubDeviceClient)
        got = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def on_method(req):
            await client.send_method_response(MethodResponse.create_from_method_request(req, 200, {"ok": req.name}))

        client.on_method_request_received = on_method
        client.on_twin_desired_properties_patch_received = lambda p: loop.call_soon_threadsafe(got.put_nowait, p)
        await client.connect()
        try:
            await client.patch_twin_reported_properties({"battery": 88})
            twin = await client.get_twin()
            assert twin["reported"]["battery"] == 88
            await asyncio.sleep(0.3)
            r = await hub.methods.invoke_async(dev.device_id, "ping", timeout=10)
            assert r == fleethub.MethodResult(200, {"ok": "ping"})
            await hub.twins.update_async(dev.device_id, desired={"led": "on"})
            assert await asyncio.wait_for(got.get(), 10) == {"led": "on", "$version": 2}
        finally:
            await client.shutdown()

    asyncio.run(scenario())


def test_sdk_module_twin_and_method(sdk_hub):
    """A module identity gets its own twin and methods (IoTHubModuleClient)."""
    hub = sdk_hub
    dev = hub.devices.create(f"mod-{uuid.uuid4().hex[:8]}")
    mod = hub.devices.create_module(dev.device_id, "m1")
    client = IoTHubModuleClient.create_from_connection_string(
        mod.connection_string, server_verification_cert=hub.ca_cert, connection_retry=False)
    client.on_method_request_received = lambda req: client.send_method_response(
        MethodResponse.create_from_method_request(req, 200, {"module": True}))
    try:
        client.connect()
        client.patch_twin_reported_properties({"m": 1})
        time.sleep(0.3)
        assert hub.twins.get(dev.device_id, module_id="m1").reported == {"m": 1}
        assert hub.twins.get(dev.device_id).reported == {}
        r = hub.methods.invoke(dev.device_id, "hello", module_id="m1", timeout=10)
        assert r.payload == {"module": True}
        with pytest.raises(fleethub.DeviceNotOnlineError):
            hub.methods.invoke(dev.device_id, "hello", timeout=10)  # the device itself is not connected
    finally:
        client.shutdown()
