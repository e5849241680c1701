// Embedding the hub from C++ without Python: open a data dir, register a device, listen, run for a while.
// Build: part of the CMake tree (target fleethub_embed_example). Run: ./fleethub_embed_example [seconds]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "fleethub/app/hub_server.hpp"

int main(int argc, char** argv) {
  fleethub::app::hub_config cfg;
  cfg.data_dir = "./fleethub-embed-data";
  cfg.mqtt_tls_port = 0;    // any free port (devices using the Azure SDK need 8883)
  cfg.mqtt_plain_port = 0;
  cfg.https_port = 0;       // any free port (WebSocket devices using the Azure SDK need 443)
  auto hub = fleethub::app::hub_server::open(cfg);
  if (!hub) {
    std::fprintf(stderr, "open failed: %s\n", hub.err().message.c_str());
    return 1;
  }
  auto& server = **hub;
  auto dev = server.registry().get("dev1");
  if (!dev) dev = server.registry().create({.device_id = "dev1"});
  if (!dev) {
    std::fprintf(stderr, "device: %s\n", dev.err().message.c_str());
    return 1;
  }
  if (auto r = server.start(); !r) {
    std::fprintf(stderr, "start failed: %s\n", r.err().message.c_str());
    return 1;
  }
  auto ports = server.ports();
  std::printf("HostName=%s;DeviceId=dev1;SharedAccessKey=%s\nmqtts port %u, mqtt port %u, CA %s\n",
              server.config().hostname.c_str(), dev->primary_key.c_str(), unsigned(*ports.mqtt_tls),
              unsigned(*ports.mqtt_plain), server.ca_cert_path().c_str());
  std::this_thread::sleep_for(std::chrono::seconds(argc > 1 ? std::atoi(argv[1]) : 1));
  server.stop();
  return 0;
}
