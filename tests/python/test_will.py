"""MQTT Will messages the IoT Hub way: a Will on the device's events topic becomes telemetry marked
iothub-MessageType=Will when the connection drops without DISCONNECT; a clean DISCONNECT discards it."""

import socket
import time

from conftest import telemetry_topic, wait_until


def _events(hub, device_id):
    return [m for m in hub.events.read(device_id=device_id)]


def test_will_published_as_telemetry_on_abrupt_close(hub, device, paho_clients):
    """Closing the socket without DISCONNECT stores the Will as a message with iothub-MessageType=Will."""
    c = paho_clients(hub, device.device_id, device.primary_key)
    c.client.will_set(telemetry_topic(device.device_id) + "reason=lost", b'{"state":"gone"}', qos=1)
    assert c.connect() == 0
    c.client.socket().shutdown(socket.SHUT_RDWR)  # no DISCONNECT packet
    assert wait_until(lambda: len(_events(hub, device.device_id)) == 1, 10)
    m = _events(hub, device.device_id)[0]
    assert m.body == b'{"state":"gone"}'
    assert m.properties["iothub-MessageType"] == "Will"
    assert m.properties["reason"] == "lost"
    assert m.system_properties["iothub-connection-device-id"] == device.device_id


def test_will_discarded_on_clean_disconnect(hub, device, paho_clients):
    """A DISCONNECT packet discards the Will: nothing is stored."""
    c = paho_clients(hub, device.device_id, device.primary_key)
    c.client.will_set(telemetry_topic(device.device_id), b"will", qos=1)
    assert c.connect() == 0
    c.disconnect()
    assert wait_until(lambda: hub.devices.get(device.device_id).connection_state == "Disconnected", 10)
    time.sleep(0.3)
    assert _events(hub, device.device_id) == []


def test_will_outside_the_events_topic_is_dropped(hub, device, paho_clients):
    """A Will on any other topic is not published anywhere, and the hub keeps serving."""
    c = paho_clients(hub, device.device_id, device.primary_key)
    c.client.will_set("devices/someone-else/messages/events/", b"x", qos=1)
    assert c.connect() == 0
    c.client.socket().shutdown(socket.SHUT_RDWR)
    assert wait_until(lambda: hub.devices.get(device.device_id).connection_state == "Disconnected", 10)
    time.sleep(0.3)
    assert _events(hub, device.device_id) == []
    c2 = paho_clients(hub, device.device_id, device.primary_key)
    assert c2.connect() == 0
