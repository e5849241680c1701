"""Start a hub, register a device, send telemetry with the unmodified Azure IoT device SDK, read it back.

Run: python examples/python/quickstart.py [data_dir]   (uses port 8883, as the Azure SDK requires)
"""

import sys
import tempfile

from azure.iot.device import IoTHubDeviceClient, Message

import fleethub

data_dir = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="fleethub-quickstart-")

with fleethub.Hub(data_dir, hostname="localhost") as hub:
    device = hub.devices.create("thermostat-1")
    client = IoTHubDeviceClient.create_from_connection_string(
        device.connection_string, server_verification_cert=hub.ca_cert
    )
    client.connect()
    for i in range(5):
        msg = Message(f'{{"temperature": {20 + i}}}', content_type="application/json", content_encoding="utf-8")
        msg.custom_properties["room"] = "kitchen"
        client.send_message(msg)
    client.shutdown()

    readings = list(hub.events.read(device_id="thermostat-1"))
    for m in readings:
        print(m.enqueued_time.isoformat(), m.json(), dict(m.properties))
    assert [m.json()["temperature"] for m in readings] == [20, 21, 22, 23, 24]
