"""Cloud-to-device commands with delivery feedback, received by the unmodified Azure IoT device SDK.

Messages sent while the device is offline wait in its durable queue and arrive when it connects.

Run: python examples/python/c2d_commands.py [data_dir]   (uses port 8883, as the Azure SDK requires)
"""

import queue
import sys
import tempfile

from azure.iot.device import IoTHubDeviceClient

import fleethub

data_dir = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="fleethub-c2d-")

with fleethub.Hub(data_dir, hostname="localhost", c2d_feedback_interval=1.0) as hub:
    device = hub.devices.create("valve-7")

    # Queued while the device is offline.
    for position in (10, 50, 90):
        hub.c2d.send("valve-7", {"open": position}, properties={"unit": "percent"}, ack="full",
                     message_id=f"open-{position}")
    print("queued:", hub.c2d.depth("valve-7"))

    client = IoTHubDeviceClient.create_from_connection_string(
        device.connection_string, server_verification_cert=hub.ca_cert
    )
    received: "queue.Queue" = queue.Queue()
    client.on_message_received = received.put
    client.connect()
    for _ in range(3):
        msg = received.get(timeout=10)
        print("device got:", msg.message_id, msg.data.decode(), dict(msg.custom_properties))
    client.shutdown()

    outcomes = []
    for batch in hub.c2d.feedback(timeout=10):
        outcomes += [(r.original_message_id, r.status_code) for r in batch]
        batch.complete()
        if len(outcomes) == 3:
            break
    print("feedback:", sorted(outcomes))
