"""Device twins and direct methods with the unmodified Azure IoT device SDK, plus Python handlers.

The back end (this script, through fleethub's Python API) sets desired properties and calls a method; the
device (azure-iot-device) reports properties, receives the desired patch and answers the method.

Run: python examples/python/twins_and_methods.py [data_dir]   (uses port 8883, as the Azure SDK requires)
"""

import queue
import sys
import tempfile

from azure.iot.device import IoTHubDeviceClient, MethodResponse

import fleethub

data_dir = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="fleethub-twins-")

with fleethub.Hub(data_dir, hostname="localhost") as hub:
    changes: "queue.Queue[fleethub.TwinChangeEvent]" = queue.Queue()

    @hub.on_twin_change
    def log_change(event: fleethub.TwinChangeEvent) -> None:
        # Runs on the hub's Python dispatcher thread for every committed twin change.
        changes.put(event)

    @hub.on_connection_state
    def log_connection(event: fleethub.ConnectionStateEvent) -> None:
        print("connection:", event.device_id, "connected" if event.connected else "disconnected")

    device = hub.devices.create("thermostat-1")
    hub.twins.update("thermostat-1", tags={"building": "43"}, desired={"target": 21.5})

    # --- the device side: the official SDK, unchanged ---
    client = IoTHubDeviceClient.create_from_connection_string(
        device.connection_string, server_verification_cert=hub.ca_cert
    )
    desired_patches: "queue.Queue[dict]" = queue.Queue()
    client.on_twin_desired_properties_patch_received = desired_patches.put

    def on_method(request):
        if request.name == "setTarget":
            client.patch_twin_reported_properties({"target": request.payload["value"]})
            client.send_method_response(MethodResponse.create_from_method_request(request, 200, {"ok": True}))
        else:
            client.send_method_response(MethodResponse.create_from_method_request(request, 404, None))

    client.on_method_request_received = on_method
    client.connect()
    twin = client.get_twin()
    print("device sees desired:", twin["desired"])
    client.patch_twin_reported_properties({"firmware": "1.4.2", "target": twin["desired"]["target"]})

    # --- the back end: desired properties and a direct method ---
    hub.twins.update("thermostat-1", desired={"target": 22.0})
    print("device got patch:", desired_patches.get(timeout=10))
    result = hub.methods.invoke("thermostat-1", "setTarget", {"value": 23.0}, timeout=10)
    print("method answered:", result.status, result.payload)
    client.shutdown()

    t = hub.twins.get("thermostat-1")
    print("twin:", t)
    print("reported:", t.reported)
    assert t.reported == {"firmware": "1.4.2", "target": 23.0}
    seen = [changes.get(timeout=10) for _ in range(4)]  # desired, reported x2, desired
    print("twin change events:", [(e.op_type, e.version) for e in seen])
