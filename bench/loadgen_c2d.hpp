// Cloud-to-device (fan-out) modes of fleethub_loadgen: c2d-sink, c2d-sender.
// Part of fleethub_loadgen (bench/loadgen.cpp includes it once, inside its anonymous namespace,
// after the Engine class). See bench/README.md, "C2D fan-out benchmark".
//
//   c2d-sink    N devices, each subscribed (QoS --qos, default 1) to its own filter:
//                 hub:       devices/{client_id}/messages/devicebound/#
//                 mosquitto: bench/{client_id}/c2d/#
//               Every QoS 1 PUBLISH is PUBACKed at once (flushed after the read batch; for the hub
//               that PUBACK completes the C2D message). Accounting is the sub mode's (payload `pub`
//               = target index, `seq` = per-target sequence, `ts` = scheduled send time), plus
//               per-client counts and `misrouted` (payload `pub` != the receiving client's index).
//               Window: --window WS:WE, or --warmup/--duration after the last SUBACK.
//   c2d-sender  K clients (default 1) publishing an open-loop --rate over --targets topics
//                 bench/{target_prefix}{j}/c2d/x        (j = k mod targets, client k mod K)
//               QoS --qos (default 1) with --inflight W (default 100) unacknowledged PUBLISHes per
//               client; a due message that finds the window full counts as dropped_window_full.
//               Payload: standard format with pub = j and seq = per-target counter (incremented only
//               for messages actually sent). Phases and JSON are the pub mode's, plus `targets`.
#pragma once

void Engine::c2d_setup_client(Client& c) {
  c.sub_filter = o_.topic_style == "hub" ? "devices/" + c.id + "/messages/devicebound/#"
                                         : "bench/" + c.id + "/c2d/#";
}

// One PUBLISH template per target: fixed header, topic, packet id placeholder, payload (pub = j).
void Engine::c2d_build_templates() {
  c2d_tmpl_.resize(size_t(o_.targets));
  c2d_pid_off_.resize(size_t(o_.targets));
  c2d_pay_off_.resize(size_t(o_.targets));
  c2d_seq_.assign(size_t(o_.targets), 0);
  for (int j = 0; j < o_.targets; ++j) {
    std::string topic = "bench/" + o_.target_prefix + std::to_string(j) + "/c2d/x";
    size_t rem = 2 + topic.size() + (o_.qos ? 2 : 0) + size_t(o_.size);
    std::string& t = c2d_tmpl_[size_t(j)];
    t += char(0x30 | (o_.qos << 1));
    put_remlen(t, rem);
    put_str(t, topic);
    c2d_pid_off_[size_t(j)] = uint32_t(t.size());
    if (o_.qos) put_u16(t, 0);
    c2d_pay_off_[size_t(j)] = uint32_t(t.size());
    t += make_payload(uint32_t(j), size_t(o_.size));
  }
}

// Global message k, scheduled at t_sched (monotonic): target k mod targets, client k mod clients.
void Engine::c2d_emit(uint64_t k, int64_t t_sched) {
  Client& c = cl_[size_t(k % cl_.size())];
  const size_t j = size_t(k % uint64_t(o_.targets));
  if (admit(c, t_sched)) emit_into(c, c2d_tmpl_[j], c2d_pid_off_[j], c2d_pay_off_[j], c2d_seq_[j], t_sched);
}

// Sink: a parsed message (after the duplicate check) for client c.
void Engine::c2d_on_sink_message(Client& c, uint64_t pub, bool dup) {
  if (pub != c.idx) ++c2d_misrouted_;
  if (c2d_per_client_.size() < cl_.size()) c2d_per_client_.resize(cl_.size(), 0);
  if (!dup) ++c2d_per_client_[c.idx];
}

// The sink's window from --warmup/--duration, once every client has its SUBACK (no --window given).
void Engine::c2d_sink_on_ready(int64_t now_rt) {
  if (o_.window_end_ns > o_.window_start_ns || o_.duration <= 0) return;
  o_.window_start_ns = now_rt + int64_t(o_.warmup * 1e9);
  o_.window_end_ns = o_.window_start_ns + int64_t(o_.duration * 1e9);
  c2d_window_derived_ = true;
}

void Engine::c2d_sink_summary(Json& j) {
  const bool have_window = o_.window_end_ns > o_.window_start_ns;
  const double dur = have_window ? double(o_.window_end_ns - o_.window_start_ns) / 1e9
                                 : double(last_rx_rt_ - first_rx_rt_) / 1e9;
  j.key("topic_style").str(o_.topic_style);
  j.key("subscribed").num(c_.subscribed);
  j.key("suback_failures").num(c_.suback_fail);
  j.key("waiting_suback_at_exit").num(waiting_suback_);
  j.key("window_from_duration").boolean(c2d_window_derived_);
  j.key("received_per_s").num(dur > 0 ? double(recv_w_rt_) / dur : 0.0);
  j.key("misrouted").num(c2d_misrouted_);
  uint64_t with = 0, mn = UINT64_MAX, mx = 0;
  for (size_t i = 0; i < cl_.size(); ++i) {
    uint64_t v = i < c2d_per_client_.size() ? c2d_per_client_[i] : 0;
    if (v) ++with;
    mn = std::min(mn, v);
    mx = std::max(mx, v);
  }
  j.key("clients_with_messages").num(with);
  j.key("per_client_unique_min").num(cl_.empty() ? 0 : mn);
  j.key("per_client_unique_max").num(mx);
  // gaps per target stream (= per client): sequences missing between first and last in-window seq
  uint64_t gap_clients = 0, gap_max = 0;
  for (auto& t : tracks_) {
    if (!t.uniq_w) continue;
    uint64_t g = (t.max_w - t.min_w + 1) - t.uniq_w;
    if (g) ++gap_clients;
    gap_max = std::max(gap_max, g);
  }
  j.key("clients_with_gaps").num(gap_clients);
  j.key("max_gap_per_client").num(gap_max);
}
