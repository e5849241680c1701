"""Follow telemetry live from asyncio while a device publishes (plain MQTT on a free port, paho client).

Run: python examples/python/live_tail_asyncio.py
"""

import asyncio
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

import fleethub


def device_loop(hub: fleethub.Hub, device: fleethub.Device, count: int) -> None:
    client = mqtt.Client(client_id=device.device_id, clean_session=False)
    token = fleethub.make_sas_token(f"{hub.hostname}/devices/{device.device_id}", device.primary_key)
    client.username_pw_set(f"{hub.hostname}/{device.device_id}/?api-version=2021-04-12", token)
    client.connect("127.0.0.1", hub.ports["mqtt"])
    client.loop_start()
    for i in range(count):
        client.publish(f"devices/{device.device_id}/messages/events/unit=C", f'{{"t": {i}}}', qos=1).wait_for_publish(5)
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()


async def main() -> None:
    with fleethub.Hub(tempfile.mkdtemp(), mqtt_port=None, mqtt_plain_port=0, https_port=None) as hub:
        device = hub.devices.create("sensor-7")
        tail = hub.events.tail()
        threading.Thread(target=device_loop, args=(hub, device, 20), daemon=True).start()
        seen = 0
        async for msg in tail:
            print(msg.sequence_number, msg.json(), msg.properties)
            seen += 1
            if seen == 20:
                break
        tail.close()


asyncio.run(main())
