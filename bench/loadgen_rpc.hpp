// Request/response modes of fleethub_loadgen: twin, methods, rpc-caller.
// Part of fleethub_loadgen (bench/loadgen.cpp includes it once, inside its anonymous namespace,
// after the Engine class). See bench/README.md, "Twin and method benchmark".
//
//   twin        each device keeps --inflight reported-property PATCHes outstanding (QoS 0):
//                 -> $iothub/twin/PATCH/properties/reported/?$rid={n}     {"temp":21.5,"seq":n}
//                 <- $iothub/twin/res/{status}/?$rid={n}&$version={v}     (status >= 300 = error)
//   methods     each device answers every direct-method request at once (QoS 0):
//                 hub:       <- $iothub/methods/POST/{m}/?$rid={rid}  -> $iothub/methods/res/200/?$rid={rid}
//                 mosquitto: <- bench/{id}/methods/POST/{m}/?rid={c}.{n} -> bench/svc/{c}/res/200/?rid={c}.{n}
//               (rid is everything after "rid=", echoed byte for byte)
//   rpc-caller  K service clients relay method calls through a plain broker (the mosquitto reference),
//               --inflight each, round-robin over --targets devices:
//                 -> bench/{target_prefix}{j}/methods/POST/{method}/?rid={i}.{n}   {"x":1}
//                 <- bench/svc/{i}/res/{status}/?rid={i}.{n}
// Timing for the requesters is the pub mode's: --start-at, --warmup, measured --duration,
// --cooldown (requests still sent, not counted), --drain (wait for outstanding responses).
// A completion counts in the window if its response arrives inside it; latency = response
// time - send time (closed loop) or - scheduled time (with --rate).
#pragma once

void Engine::rr_setup_client(Client& c, int i) {
  const std::string& m = o_.mode;
  if (m == "twin") {
    c.sub_filter = "$iothub/twin/res/#";
  } else if (m == "methods") {
    c.sub_filter = o_.topic_style == "hub" ? std::string("$iothub/methods/POST/#")
                                           : "bench/" + c.id + "/methods/POST/#";
  } else {  // rpc-caller
    if (o_.credentials.empty()) c.id = o_.prefix + "svc" + std::to_string(i);
    c.sub_filter = "bench/svc/" + std::to_string(i) + "/res/#";
  }
  if (is_requester()) {
    c.op_n.assign(size_t(o_.inflight), 0);
    c.op_t.assign(size_t(o_.inflight), 0);
    c.op_w.assign(size_t(o_.inflight), 0);
  }
}

bool Engine::rr_send(Client& c, int64_t t_ref, int64_t now) {
  if (c.st != St::Ready || c.inflight >= o_.inflight) return false;
  size_t slot = 0;
  while (slot < c.op_n.size() && c.op_n[slot] != 0) ++slot;
  if (slot == c.op_n.size()) return false;
  uint64_t n = c.next_rid++;
  std::string& topic = scratch_topic_;
  std::string& body = scratch_body_;
  const std::string ns = std::to_string(n);
  if (o_.mode == "twin") {
    topic.assign("$iothub/twin/PATCH/properties/reported/?$rid=");
    topic += ns;
    body.assign("{\"temp\":21.5,\"seq\":");
    body += ns;
    body += '}';
  } else {
    uint64_t j = target_rr_++ % uint64_t(o_.targets);
    topic.assign("bench/");
    topic += o_.target_prefix;
    topic += std::to_string(j);
    topic += "/methods/POST/";
    topic += o_.method_name;
    topic += "/?rid=";
    topic += std::to_string(c.idx);
    topic += '.';
    topic += ns;
    body.assign("{\"x\":1}");
  }
  append_publish_qos0(c.out, topic, body);
  bool w = now >= ws_ && now < we_;
  c.op_n[slot] = n;
  c.op_t[slot] = t_ref;
  c.op_w[slot] = w;
  ++c.inflight;
  ++c_.op_sent;
  if (w) ++c_.op_sent_w;
  mark_dirty(c);
  return true;
}

// --rate: global request k is due at start + k/rate and goes to client k mod N (as in pub).
void Engine::rr_emit(uint64_t k, int64_t t_sched) {
  Client& c = cl_[size_t(k % cl_.size())];
  bool w = t_sched >= ws_ && t_sched < we_;
  ++c_.offered;
  if (w) ++c_.offered_w;
  if (c.st != St::Ready) {
    ++c_.drop_nc;
    if (w) ++c_.drop_nc_w;
    return;
  }
  if (c.inflight >= o_.inflight) {
    ++c_.drop_window;
    if (w) ++c_.drop_window_w;
    return;
  }
  if (c.out.size() - c.out_off > o_.max_outbuf) {
    ++c_.drop_bp;
    if (w) ++c_.drop_bp_w;
    return;
  }
  rr_send(c, t_sched, mono_ns());
}

void Engine::rr_fill(Client& c, int64_t now) {
  while (c.st == St::Ready && c.inflight < o_.inflight)
    if (!rr_send(c, now, now)) break;
}

// Every 200 ms: expire requests older than --op-timeout; closed loop: refill freed windows.
void Engine::rr_scan(int64_t now) {
  const int64_t lim = int64_t(o_.op_timeout * 1e9);
  const bool refill = !o_.rate_set && rr_started_ && !pub_done_ && now < pub_end_;
  for (Client& c : cl_) {
    if (c.inflight > 0) {
      for (size_t s = 0; s < c.op_n.size(); ++s) {
        if (c.op_n[s] != 0 && now - c.op_t[s] > lim) {
          c.op_n[s] = 0;
          --c.inflight;
          ++c_.op_timeout;
          if (c.op_w[s]) ++c_.op_timeout_w;
        }
      }
    }
    if (refill) rr_fill(c, now);
  }
}

void Engine::rr_on_publish(Client& c, std::string_view topic, std::string_view body) {
  (void)body;
  if (o_.mode == "methods") rr_on_request(c, topic);
  else rr_on_response(c, topic);
}

void Engine::rr_on_response(Client& c, std::string_view topic) {
  // twin: $iothub/twin/res/{status}/?$rid={n}&$version={v}; rpc-caller: bench/svc/{i}/res/{status}/?rid={i}.{n}
  size_t p = topic.find("/res/");
  if (p == std::string_view::npos) { ++c_.op_malformed; return; }
  size_t used = 0;
  int status = int(parse_u64_prefix(topic.substr(p + 5), used));
  if (!used) { ++c_.op_malformed; return; }
  size_t r = topic.find("rid=", p + 5 + used);
  if (r == std::string_view::npos) { ++c_.op_malformed; return; }
  std::string_view rid = topic.substr(r + 4);
  if (o_.mode == "rpc-caller") {
    size_t dot = rid.find('.');
    if (dot == std::string_view::npos) { ++c_.op_malformed; return; }
    rid = rid.substr(dot + 1);
  }
  uint64_t n = parse_u64_prefix(rid, used);
  if (!used || n == 0) { ++c_.op_malformed; return; }
  size_t s = 0;
  while (s < c.op_n.size() && c.op_n[s] != n) ++s;
  if (s == c.op_n.size()) { ++c_.op_unexpected; return; }  // late (timed out) or foreign
  const int64_t now = rx_batch_rt_ - rt_off_;
  c.op_n[s] = 0;
  --c.inflight;
  ++c_.op_status[status];
  const bool w = now >= ws_ && now < we_;
  if (status >= 300) {
    ++c_.op_err;
    if (w) ++c_.op_err_w;
  } else {
    ++c_.op_done;
    if (w) {
      ++c_.op_done_w;
      h_op_.add(now - c.op_t[s]);
      size_t sec = size_t((now - ws_) / 1000000000LL);
      if (sec >= op_per_sec_.size()) op_per_sec_.resize(sec + 1, 0);
      ++op_per_sec_[sec];
    }
  }
  if (!o_.rate_set && rr_started_ && !pub_done_ && now < pub_end_) rr_send(c, now, now);
}

void Engine::rr_on_request(Client& c, std::string_view topic) {
  ++c_.m_requests;
  const bool have_window = o_.window_end_ns > o_.window_start_ns;
  const int64_t now_rt = rx_batch_rt_;
  if (have_window && now_rt >= o_.window_start_ns && now_rt < o_.window_end_ns) {
    ++c_.m_requests_w;
    size_t sec = size_t((now_rt - o_.window_start_ns) / 1000000000LL);
    if (sec >= per_sec_.size()) per_sec_.resize(sec + 1, 0);
    ++per_sec_[sec];
  }
  std::string& rt = scratch_topic_;
  if (o_.topic_style == "hub") {
    size_t p = topic.find("?$rid=");
    if (p == std::string_view::npos) { ++c_.m_malformed; return; }
    rt.assign("$iothub/methods/res/200/?$rid=");
    rt.append(topic.substr(p + 6));
  } else {
    size_t p = topic.find("?rid=");
    if (p == std::string_view::npos) { ++c_.m_malformed; return; }
    std::string_view rid = topic.substr(p + 5);
    size_t dot = rid.find('.');
    if (dot == std::string_view::npos) { ++c_.m_malformed; return; }
    rt.assign("bench/svc/");
    rt.append(rid.substr(0, dot));
    rt.append("/res/200/?rid=");
    rt.append(rid);
  }
  append_publish_qos0(c.out, rt, "{\"ok\":true}");
  mark_dirty(c);
  ++c_.m_answered;
}

void Engine::rr_summary(Json& j) {
  j.key("subscribed").num(c_.subscribed);
  j.key("suback_failures").num(c_.suback_fail);
  j.key("waiting_suback_at_exit").num(waiting_suback_);
  if (o_.mode == "methods") {
    const bool have_window = o_.window_end_ns > o_.window_start_ns;
    double dur = have_window ? double(o_.window_end_ns - o_.window_start_ns) / 1e9 : 0.0;
    j.key("topic_style").str(o_.topic_style);
    j.key("window_start_ns").num(o_.window_start_ns);
    j.key("window_end_ns").num(o_.window_end_ns);
    j.key("duration_s").num(dur);
    j.key("requests").num(c_.m_requests);
    j.key("answered").num(c_.m_answered);
    j.key("malformed").num(c_.m_malformed);
    j.key("requests_in_window").num(c_.m_requests_w);
    j.key("requests_per_s").num(dur > 0 ? double(c_.m_requests_w) / dur : 0.0);
    j.key("per_second").open_arr();
    for (auto v : per_sec_) j.num(v);
    j.close_arr();
    if (cpu_ws_ >= 0 && cpu_we_ >= 0 && dur > 0)
      j.key("cpu_window_pct").num(100.0 * double(cpu_we_ - cpu_ws_) / 1e9 / dur);
    return;
  }
  double dur = double(we_ - ws_) / 1e9;
  j.key("closed_loop").boolean(!o_.rate_set);
  if (o_.rate_set) j.key("rate").num(o_.rate);
  j.key("inflight_window").num(o_.inflight);
  if (o_.mode == "rpc-caller") j.key("targets").num(o_.targets);
  j.key("window_start_ns").num(ws_ ? ws_ + rt_off_ : 0);
  j.key("window_end_ns").num(we_ ? we_ + rt_off_ : 0);
  j.key("duration_s").num(dur);
  j.key("late_start").boolean(late_start_);
  j.key("sent").num(c_.op_sent_w);
  j.key("sent_per_s").num(dur > 0 ? double(c_.op_sent_w) / dur : 0.0);
  j.key("completed").num(c_.op_done_w);
  j.key("completed_per_s").num(dur > 0 ? double(c_.op_done_w) / dur : 0.0);
  j.key("errors").num(c_.op_err_w);
  j.key("timeouts").num(c_.op_timeout_w);
  if (o_.rate_set) {
    j.key("offered").num(c_.offered_w);
    j.key("dropped_window_full").num(c_.drop_window_w);
    j.key("dropped_not_connected").num(c_.drop_nc_w);
    j.key("dropped_backpressure").num(c_.drop_bp_w);
  }
  j.key("status_codes").open();
  for (auto& [code, n] : c_.op_status) j.key(std::to_string(code).c_str()).num(n);
  j.close();
  j.hist_ms("latency_ms", h_op_);
  j.key("per_second").open_arr();
  for (auto v : op_per_sec_) j.num(v);
  j.close_arr();
  j.key("total").open();
  j.key("sent").num(c_.op_sent);
  j.key("completed").num(c_.op_done);
  j.key("errors").num(c_.op_err);
  j.key("timeouts").num(c_.op_timeout);
  j.key("unexpected_responses").num(c_.op_unexpected);
  j.key("malformed_responses").num(c_.op_malformed);
  uint64_t out = 0;
  for (auto& c : cl_) out += uint64_t(std::max(0, c.inflight));
  j.key("outstanding_at_exit").num(out);
  j.close();
  if (cpu_ws_ >= 0 && cpu_we_ >= 0 && dur > 0)
    j.key("gen_cpu_pct").num(100.0 * double(cpu_we_ - cpu_ws_) / 1e9 / dur);
}
