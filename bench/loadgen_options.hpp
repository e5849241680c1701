// Command-line options of fleethub_loadgen.
// Part of fleethub_loadgen (bench/loadgen.cpp includes it once, inside its anonymous namespace).
#pragma once

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------
struct Options {
  std::string mode;  // pub | sub | idle | twin | methods | rpc-caller | c2d-sink | c2d-sender
  std::string host = "127.0.0.1";
  int port = 1883;
  std::string bind_addr;
  int clients = 1000;
  double connect_rate = 1000;
  int max_pending_connects = 256;
  double connect_timeout = 15;
  double rate = 1000;
  double duration = 10;
  double warmup = 2;
  double cooldown = 1;
  double drain = 3;
  int qos = 0;
  int inflight = 20;
  int size = 256;
  std::string prefix = "bench";
  std::string topic_template = "devices/{id}/messages/events/";
  std::string credentials;
  int clean_session = 1;
  int keepalive = 60;
  bool tls = false;
  std::string cafile, certfile, keyfile, sni;
  bool verify_host = false;
  std::string topic_filter = "devices/+/messages/events/#";
  std::string client_id;
  std::string username, password;
  std::string stats_file, ready_file;
  int64_t start_at_ns = 0;  // realtime ns; pub: publishing starts here
  int64_t window_start_ns = 0, window_end_ns = 0;  // sub: measured window (payload ts)
  int64_t exit_at_ns = 0;                          // sub: realtime ns to stop
  double tick_us = 50;
  size_t max_outbuf = 1 << 20;
  bool progress = false;
  bool quiet_json = false;
  bool quickack = false;  // sub: re-arm TCP_QUICKACK after every read (defeats delayed ACK)
  // twin / methods / rpc-caller (request/response modes, bench/README.md)
  bool rate_set = false;             // twin/rpc-caller: --rate given -> open-loop cap, else closed loop
  bool inflight_set = false;
  std::string topic_style = "hub";   // methods: hub ($iothub/methods/...) | mosquitto (bench/...)
  int targets = 1000;                // rpc-caller: devices addressed round-robin
  std::string target_prefix = "bench";  // rpc-caller: device client ids are target_prefix + j
  std::string method_name = "ping";  // rpc-caller
  double op_timeout = 10;            // twin/rpc-caller: a request unanswered this long counts as a timeout
  bool clients_set = false;          // c2d-sender: --clients defaults to 1
};

void usage() {
  std::fputs(
      "usage: fleethub_loadgen pub|sub|idle|twin|methods|rpc-caller|c2d-sink|c2d-sender [options]\n"
      "common:  --host H (127.0.0.1) --port P (1883) --tls --cafile F --cert F --key F --sni NAME\n"
      "         --verify-host --keepalive S (60) --clean-session 0|1 (1) --stats-file F\n"
      "         --ready-file F --progress --bind ADDR --no-stdout\n"
      "pub:     --clients N (1000) --connect-rate R/s (1000) --max-pending N (256)\n"
      "         --connect-timeout S (15) --rate MSG/s aggregate (1000) --warmup S (2)\n"
      "         --duration S (10) --cooldown S (1) --drain S (3) --qos 0|1 --inflight W (20)\n"
      "         --size BYTES (256, >=79) --prefix P (bench) --topic-template T\n"
      "         ('devices/{id}/messages/events/') --credentials FILE (id<TAB>user<TAB>pass)\n"
      "         --start-at NS (realtime ns, default: 0.5 s after all connected)\n"
      "         --tick-us US (50) --max-outbuf BYTES (1048576)\n"
      "sub:     --topic FILTER ('devices/+/messages/events/#') --qos 0|1 --client-id ID\n"
      "         --username U --password P --window START_NS:END_NS --exit-at NS\n"
      "         --duration S (sub: total run time if no --exit-at; 0 = until SIGTERM)\n"
      "         --quickack (re-arm TCP_QUICKACK after each read; default off = like common clients)\n"
      "idle:    --clients N --connect-rate R --duration S (hold time after all connected)\n"
      "         --credentials FILE --prefix P\n"
      "twin:    --clients N --credentials FILE --inflight W (1) [--rate R aggregate cap; default\n"
      "         closed loop] --start-at NS --warmup S --duration S --cooldown S --drain S\n"
      "         --op-timeout S (10). PUBLISH QoS0 $iothub/twin/PATCH/properties/reported/?$rid=n,\n"
      "         response $iothub/twin/res/{status}/?$rid=n&$version=v (status >= 300 = error)\n"
      "methods: --clients N --credentials FILE --topic-style hub|mosquitto [--window WS:WE]\n"
      "         [--exit-at NS | --duration S (0 = until SIGTERM)]. Answers every method request\n"
      "         at once: hub $iothub/methods/POST/{m}/?$rid=R -> $iothub/methods/res/200/?$rid=R;\n"
      "         mosquitto bench/{id}/methods/POST/{m}/?rid=C.n -> bench/svc/C/res/200/?rid=C.n\n"
      "rpc-caller: --clients K --inflight W (1) --targets D (1000) --target-prefix P (bench)\n"
      "         --method NAME (ping) [--rate R] --start-at/--warmup/--duration/... as twin.\n"
      "         Requests bench/{P}{j}/methods/POST/{NAME}/?rid=i.n, responses on bench/svc/i/res/#\n"
      "c2d-sink: --clients N [--credentials FILE] --topic-style hub|mosquitto --qos 1 (default 1)\n"
      "         [--window WS:WE | --warmup S --duration S (window after all SUBACKs)] [--exit-at NS]\n"
      "         --drain S. Subscribes devices/{id}/messages/devicebound/# (hub) or bench/{id}/c2d/#\n"
      "         (mosquitto); PUBACKs at once; sub-mode accounting per target (payload pub = device index)\n"
      "c2d-sender: --clients K (1) --rate R --targets D (1000) --target-prefix P (bench) --qos 0|1 (1)\n"
      "         --inflight W (100) --size B; message k -> bench/{P}{k mod D}/c2d/x on client k mod K;\n"
      "         payload pub = target index, seq = per-target counter; phases as pub\n",
      stderr);
}

Options parse_args(int argc, char** argv) {
  Options o;
  if (argc < 2) { usage(); std::exit(2); }
  std::vector<std::string> args(argv + 1, argv + argc);
  size_t i = 0;
  if (args[0] == "pub" || args[0] == "sub" || args[0] == "idle" || args[0] == "twin" || args[0] == "methods" ||
      args[0] == "rpc-caller" || args[0] == "c2d-sink" || args[0] == "c2d-sender") {
    o.mode = args[0];
    i = 1;
  }
  bool sub_duration_set = false, qos_set = false;
  for (; i < args.size(); ++i) {
    std::string a = args[i], v;
    auto eq = a.find('=');
    bool has_eq = a.rfind("--", 0) == 0 && eq != std::string::npos;
    if (has_eq) { v = a.substr(eq + 1); a = a.substr(0, eq); }
    auto val = [&]() -> std::string {
      if (has_eq) return v;
      if (i + 1 >= args.size()) die("missing value for " + a);
      return args[++i];
    };
    if (a == "--help" || a == "-h") { usage(); std::exit(0); }
    else if (a == "--idle") o.mode = "idle";
    else if (a == "--mode") o.mode = val();
    else if (a == "--host") o.host = val();
    else if (a == "--port") o.port = std::stoi(val());
    else if (a == "--bind") o.bind_addr = val();
    else if (a == "--clients") { o.clients = std::stoi(val()); o.clients_set = true; }
    else if (a == "--connect-rate") o.connect_rate = std::stod(val());
    else if (a == "--max-pending") o.max_pending_connects = std::stoi(val());
    else if (a == "--connect-timeout") o.connect_timeout = std::stod(val());
    else if (a == "--rate") { o.rate = std::stod(val()); o.rate_set = true; }
    else if (a == "--duration") { o.duration = std::stod(val()); sub_duration_set = true; }
    else if (a == "--warmup") o.warmup = std::stod(val());
    else if (a == "--cooldown") o.cooldown = std::stod(val());
    else if (a == "--drain") o.drain = std::stod(val());
    else if (a == "--qos") { o.qos = std::stoi(val()); qos_set = true; }
    else if (a == "--inflight") { o.inflight = std::stoi(val()); o.inflight_set = true; }
    else if (a == "--topic-style") o.topic_style = val();
    else if (a == "--targets") o.targets = std::stoi(val());
    else if (a == "--target-prefix") o.target_prefix = val();
    else if (a == "--method") o.method_name = val();
    else if (a == "--op-timeout") o.op_timeout = std::stod(val());
    else if (a == "--size") o.size = std::stoi(val());
    else if (a == "--prefix") o.prefix = val();
    else if (a == "--topic-template") o.topic_template = val();
    else if (a == "--credentials") o.credentials = val();
    else if (a == "--clean-session") o.clean_session = std::stoi(val());
    else if (a == "--keepalive") o.keepalive = std::stoi(val());
    else if (a == "--tls") o.tls = true;
    else if (a == "--cafile") o.cafile = val();
    else if (a == "--cert") o.certfile = val();
    else if (a == "--key") o.keyfile = val();
    else if (a == "--sni") o.sni = val();
    else if (a == "--verify-host") o.verify_host = true;
    else if (a == "--topic") o.topic_filter = val();
    else if (a == "--client-id") o.client_id = val();
    else if (a == "--username") o.username = val();
    else if (a == "--password") o.password = val();
    else if (a == "--stats-file") o.stats_file = val();
    else if (a == "--ready-file") o.ready_file = val();
    else if (a == "--start-at") o.start_at_ns = std::stoll(val());
    else if (a == "--exit-at") o.exit_at_ns = std::stoll(val());
    else if (a == "--window") {
      std::string w = val();
      auto c = w.find(':');
      if (c == std::string::npos) die("--window wants START_NS:END_NS");
      o.window_start_ns = std::stoll(w.substr(0, c));
      o.window_end_ns = std::stoll(w.substr(c + 1));
    }
    else if (a == "--tick-us") o.tick_us = std::stod(val());
    else if (a == "--max-outbuf") o.max_outbuf = size_t(std::stoull(val()));
    else if (a == "--progress") o.progress = true;
    else if (a == "--quickack") o.quickack = true;
    else if (a == "--no-stdout") o.quiet_json = true;
    else die("unknown option " + a + " (try --help)");
  }
  if (o.mode.empty()) die("mode pub|sub|idle|twin|methods|rpc-caller|c2d-sink|c2d-sender required");
  if (o.mode != "pub" && o.mode != "sub" && o.mode != "idle" && o.mode != "twin" && o.mode != "methods" &&
      o.mode != "rpc-caller" && o.mode != "c2d-sink" && o.mode != "c2d-sender")
    die("unknown mode " + o.mode);
  if ((o.mode == "sub" || o.mode == "methods" || o.mode == "c2d-sink") && !sub_duration_set) o.duration = 0;
  if (o.mode == "c2d-sink" || o.mode == "c2d-sender") {
    if (!qos_set) o.qos = 1;
    if (o.mode == "c2d-sender" && !o.clients_set) o.clients = 1;
    if (o.mode == "c2d-sender" && !o.inflight_set) o.inflight = 100;
  }
  if ((o.mode == "twin" || o.mode == "rpc-caller") && !o.inflight_set) o.inflight = 1;
  if (o.topic_style != "hub" && o.topic_style != "mosquitto") die("--topic-style must be hub or mosquitto");
  if (o.targets < 1) die("--targets must be >= 1");
  if (o.method_name.empty() || o.method_name.find_first_of("/#+?") != std::string::npos)
    die("--method must be a non-empty name without / # + ?");
  if (o.qos < 0 || o.qos > 1) die("--qos must be 0 or 1");
  if (o.inflight < 1 || o.inflight > 65000) die("--inflight out of range");
  if (o.size < 79) die("--size must be >= 79 (payload header)");
  if (o.clients < 1) die("--clients must be >= 1");
  if (o.rate <= 0) die("--rate must be > 0");
  if (o.connect_rate <= 0) die("--connect-rate must be > 0");
  if (o.sni.empty() && o.tls) {
    in6_addr tmp6; in_addr tmp4;
    if (inet_pton(AF_INET, o.host.c_str(), &tmp4) != 1 && inet_pton(AF_INET6, o.host.c_str(), &tmp6) != 1)
      o.sni = o.host;
  }
  return o;
}
