// Open-loop publishing of fleethub_loadgen (pub mode, and the c2d-sender mode through emit_into): admission
// of each scheduled message (not connected / QoS 1 window full / output buffer over the limit count as
// drops, never block) and writing it from a pre-encoded PUBLISH template.
// Part of fleethub_loadgen (bench/loadgen.cpp includes it once, inside its anonymous namespace, after the
// Engine class).
#pragma once

// Counts a scheduled message and says whether it may be sent: not when its client is not connected, its
// QoS 1 window is full, or its output buffer is over the limit (each counted as a drop, never blocking).
bool Engine::admit(Client& c, int64_t t_sched) {
  bool w = t_sched >= ws_ && t_sched < we_;
  ++c_.offered;
  if (w) ++c_.offered_w;
  if (c.st != St::Ready) {
    ++c_.drop_nc;
    if (w) ++c_.drop_nc_w;
    return false;
  }
  if (o_.qos && c.inflight >= o_.inflight) {
    ++c_.drop_window;
    if (w) ++c_.drop_window_w;
    return false;
  }
  if (c.out.size() - c.out_off > o_.max_outbuf) {
    ++c_.drop_bp;
    if (w) ++c_.drop_bp_w;
    return false;
  }
  return true;
}

void Engine::emit(uint64_t k, int64_t t_sched) {
  if (c2d_sender_) { c2d_emit(k, t_sched); return; }
  Client& c = cl_[size_t(k % cl_.size())];
  if (admit(c, t_sched)) emit_into(c, c.tmpl, c.pid_off, c.pay_off, c.seq, t_sched);
}

// Appends one PUBLISH from `tmpl` to the client's output: packet id (QoS 1, tracked for PUBACK latency from
// the scheduled time), sequence number and scheduled time written at their fixed offsets.
void Engine::emit_into(Client& c, const std::string& tmpl, uint32_t pid_off, uint32_t pay_off, uint64_t& seq,
                       int64_t t_sched) {
  const bool w = t_sched >= ws_ && t_sched < we_;
  size_t at = c.out.size();
  c.out += tmpl;
  char* base = &c.out[at];
  if (o_.qos) {
    uint16_t pid = c.next_pid++;
    if (c.next_pid == 0) c.next_pid = 1;
    base[pid_off] = char(pid >> 8);
    base[pid_off + 1] = char(pid & 0xff);
    for (size_t s = 0; s < c.inf_pid.size(); ++s) {
      if (c.inf_pid[s] == 0) {
        c.inf_pid[s] = pid;
        c.inf_t[s] = t_sched;
        c.inf_w[s] = w;
        break;
      }
    }
    ++c.inflight;
  }
  put_num(base + pay_off + kSeqOff, kSeqW, seq++);
  put_num(base + pay_off + kTsOff, kTsW, uint64_t(t_sched + rt_off_));
  ++c_.sent;
  if (w) {
    ++c_.sent_w;
    h_lag_.add(mono_ns() - t_sched);
  }
  mark_dirty(c);
}
