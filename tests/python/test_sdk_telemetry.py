"""The unmodified Azure IoT device SDK for Python (azure-iot-device 2.14.0) against the hub on port 8883."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

pytest.importorskip("azure.iot.device")

from azure.iot.device import IoTHubDeviceClient, Message  # noqa: E402
from azure.iot.device import exceptions as sdk_exceptions  # noqa: E402
from azure.iot.device.aio import IoTHubDeviceClient as AsyncIoTHubDeviceClient  # noqa: E402

pytestmark = [pytest.mark.sdk, pytest.mark.timeout(120)]

N = 1000


def _make_client(hub, dev, cls=IoTHubDeviceClient, **kw):
    kw.setdefault("connection_retry", False)
    return cls.create_from_connection_string(dev.connection_string, server_verification_cert=hub.ca_cert, **kw)


def test_sdk_sends_1000_messages_with_properties(sdk_hub):
    """1,000 messages sent by IoTHubDeviceClient.send_message are all stored with body and properties intact."""
    hub = sdk_hub
    dev = hub.devices.create(f"sdk-{uuid.uuid4().hex[:8]}")
    assert dev.connection_string.startswith("HostName=localhost;")
    client = _make_client(hub, dev)
    run = uuid.uuid4().hex
    try:
        client.connect()
        assert client.connected
        for i in range(N):
            msg = Message(json.dumps({"i": i, "run": run, "text": "héllo wörld"}),
                          message_id=f"{run}-{i}", content_encoding="utf-8", content_type="application/json")
            msg.correlation_id = f"corr-{i}"
            msg.custom_properties["index"] = str(i)
            msg.custom_properties["parity"] = "even" if i % 2 == 0 else "odd"
            msg.custom_properties["with space&amp"] = "a=b&c/d"
            client.send_message(msg)
    finally:
        client.shutdown()

    msgs = list(hub.events.read(device_id=dev.device_id))
    assert len(msgs) == N
    for i, m in enumerate(msgs):
        assert m.json() == {"i": i, "run": run, "text": "héllo wörld"}, i
        assert m.body == json.dumps({"i": i, "run": run, "text": "héllo wörld"}).encode("utf-8")
        sp = m.system_properties
        assert sp["message-id"] == f"{run}-{i}"
        assert sp["correlation-id"] == f"corr-{i}"
        assert sp["content-type"] == "application/json"
        assert sp["content-encoding"] == "utf-8"
        assert sp["iothub-connection-device-id"] == dev.device_id
        assert json.loads(sp["iothub-connection-auth-method"])["type"] == "sas"
        assert sp["iothub-connection-auth-generation-id"] == dev.generation_id
        assert m.properties == {"index": str(i), "parity": "even" if i % 2 == 0 else "odd",
                                "with space&amp": "a=b&c/d"}
        assert m.device_id == dev.device_id


def test_sdk_message_defaults(sdk_hub):
    """A plain string message from the SDK gets a hub-generated message id and no application properties."""
    hub = sdk_hub
    dev = hub.devices.create(f"sdk-{uuid.uuid4().hex[:8]}")
    client = _make_client(hub, dev)
    try:
        client.connect()
        client.send_message("just text")
    finally:
        client.shutdown()
    (m,) = list(hub.events.read(device_id=dev.device_id))
    assert m.text() == "just text"
    assert m.properties == {}
    assert m.message_id


def test_async_sdk_sends_messages(sdk_hub):
    """The asyncio IoTHubDeviceClient sends messages (sequentially and concurrently) that are all stored."""
    hub = sdk_hub
    dev = hub.devices.create(f"sdk-aio-{uuid.uuid4().hex[:8]}")

    async def main():
        client = _make_client(hub, dev, cls=AsyncIoTHubDeviceClient)
        try:
            await client.connect()
            for i in range(5):
                m = Message(f"seq-{i}", message_id=f"aio-{i}", content_type="text/plain", content_encoding="utf-8")
                m.custom_properties["n"] = i
                await asyncio.wait_for(client.send_message(m), timeout=10)
            await asyncio.wait_for(
                asyncio.gather(*(client.send_message(Message(f"par-{i}", message_id=f"par-{i}")) for i in range(10))),
                timeout=20)
        finally:
            await client.shutdown()

    asyncio.run(main())
    msgs = list(hub.events.read(device_id=dev.device_id))
    assert [m.text() for m in msgs[:5]] == [f"seq-{i}" for i in range(5)]
    assert [m.message_id for m in msgs[:5]] == [f"aio-{i}" for i in range(5)]
    assert [m.properties for m in msgs[:5]] == [{"n": str(i)} for i in range(5)]
    assert all(m.content_type == "text/plain" for m in msgs[:5])
    assert sorted(m.text() for m in msgs[5:]) == sorted(f"par-{i}" for i in range(10))
    assert len(msgs) == 15


def test_sdk_wrong_key_raises_credential_error(sdk_hub):
    """A connection string with a wrong key makes connect() raise CredentialError (CONNACK 5)."""
    hub = sdk_hub
    dev = hub.devices.create(f"sdk-bad-{uuid.uuid4().hex[:8]}")
    other = hub.devices.create(f"sdk-other-{uuid.uuid4().hex[:8]}")
    bad_cs = f"HostName=localhost;DeviceId={dev.device_id};SharedAccessKey={other.primary_key}"
    client = IoTHubDeviceClient.create_from_connection_string(
        bad_cs, server_verification_cert=hub.ca_cert, connection_retry=False)
    try:
        with pytest.raises(sdk_exceptions.CredentialError):
            client.connect()
        assert not client.connected
    finally:
        client.shutdown()
    assert list(hub.events.read(device_id=dev.device_id)) == []


def test_sdk_unknown_device_raises_credential_error(sdk_hub):
    """A connection string for an unregistered device makes connect() raise CredentialError."""
    hub = sdk_hub
    key = hub.devices.create(f"sdk-k-{uuid.uuid4().hex[:8]}").primary_key
    client = IoTHubDeviceClient.create_from_connection_string(
        f"HostName=localhost;DeviceId=never-registered;SharedAccessKey={key}",
        server_verification_cert=hub.ca_cert, connection_retry=False)
    try:
        with pytest.raises(sdk_exceptions.CredentialError):
            client.connect()
    finally:
        client.shutdown()


def test_sdk_without_hub_ca_fails_tls(sdk_hub):
    """Without server_verification_cert the SDK does not trust the hub's self-made CA and cannot connect."""
    hub = sdk_hub
    dev = hub.devices.create(f"sdk-notrust-{uuid.uuid4().hex[:8]}")
    client = IoTHubDeviceClient.create_from_connection_string(dev.connection_string, connection_retry=False)
    try:
        with pytest.raises(sdk_exceptions.ClientError):
            client.connect()
    finally:
        client.shutdown()
