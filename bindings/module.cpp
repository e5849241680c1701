// fleethub._core: the C++ hub as a Python extension. Long calls release the GIL; C++ threads never call
// Python (log records are queued and pulled by a Python thread in batches).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

#include "errors.hpp"
#include "fleethub/app/hub_server.hpp"
#include "fleethub/hub/rest_views.hpp"
#include "fleethub/core/json.hpp"
#include "fleethub/core/message_codec.hpp"
#include "fleethub/hub/sas.hpp"

namespace py = pybind11;
using namespace fleethub;

namespace {

// Items pushed from any C++ thread and drained by one Python thread in batches (the GIL is taken once per
// batch). `max` bounds it by dropping the oldest (log records: never block an I/O thread on a slow
// consumer); 0 means unbounded (completions must never be lost).
template <class T>
class batch_queue {
 public:
  explicit batch_queue(std::size_t max = 0) : max_(max) {}
  void push(T&& v) {
    {
      std::lock_guard lk(mu_);
      if (max_ && q_.size() >= max_) {
        q_.pop_front();
        ++dropped_;
      }
      q_.push_back(std::move(v));
    }
    cv_.notify_one();
  }
  std::vector<T> pop_all(int timeout_ms) {
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [&] { return !q_.empty() || closed_; });
    std::vector<T> out(std::make_move_iterator(q_.begin()), std::make_move_iterator(q_.end()));
    q_.clear();
    return out;
  }
  void close() {
    {
      std::lock_guard lk(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }
  std::uint64_t dropped() const {
    std::lock_guard lk(mu_);
    return dropped_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<T> q_;
  std::size_t max_;
  std::uint64_t dropped_ = 0;
  bool closed_ = false;
};

// C++ log records for the Python log pump.
using log_queue = batch_queue<log_record>;

// Completions of async calls (direct methods, C2D sends), resolved into asyncio futures by one Python thread.
struct completion {
  std::uint64_t token = 0;
  int status = 0;
  std::string payload;
  errc code = errc::ok;
  std::string message;
};
using completion_queue = batch_queue<completion>;

// Runs `start(callback)` with the GIL released and waits for the callback's value (core calls that complete
// on a hub thread). The promise is shared: the completing thread may still be inside set_value() when this
// frame is gone.
template <class T, class Start>
T wait_for_callback(Start start) {
  py::gil_scoped_release nogil;
  auto done = std::make_shared<std::promise<T>>();
  auto fut = done->get_future();
  start([done](T v) { done->set_value(std::move(v)); });
  return fut.get();
}

// A completion for an asyncio caller: `payload` on success, the error's class and message otherwise. The
// queue is weak: a hub closed meanwhile has no one left to tell.
template <class T, class Payload>
void push_completion(const std::weak_ptr<completion_queue>& q, std::uint64_t token, const result<T>& r,
                     Payload payload) {
  auto queue = q.lock();
  if (!queue) return;
  completion it;
  it.token = token;
  if (r) {
    payload(*r, it);
  } else {
    it.code = r.err().code;
    it.message = r.err().message;
  }
  queue->push(std::move(it));
}

py::dict device_to_dict(const hub::device_record& d, const hub::engine::connection_info& ci) {
  py::dict o;
  o["device_id"] = d.device_id;
  o["module_id"] = d.module_id;
  o["generation_id"] = d.generation_id;
  o["etag"] = d.etag;
  o["enabled"] = d.enabled;
  o["status_reason"] = d.status_reason;
  o["status_updated_ms"] = d.status_updated_ms;
  o["created_ms"] = d.created_ms;
  o["auth_type"] = std::string(hub::to_string(d.auth));
  o["primary_key"] = d.primary_key;
  o["secondary_key"] = d.secondary_key;
  o["primary_thumbprint"] = d.primary_thumbprint;
  o["secondary_thumbprint"] = d.secondary_thumbprint;
  o["iot_edge"] = d.iot_edge;
  o["managed_by"] = d.managed_by;
  o["connected"] = ci.connected;
  o["connection_state_updated_ms"] = ci.updated_ms;
  return o;
}

hub::device_spec spec_from_kwargs(const std::string& device_id, const std::string& module_id, py::dict kw) {
  hub::device_spec s;
  s.device_id = device_id;
  s.module_id = module_id;
  auto opt_str = [&](const char* k, std::optional<std::string>& out) {
    if (kw.contains(k) && !kw[k].is_none()) out = kw[k].cast<std::string>();
  };
  auto opt_bool = [&](const char* k, std::optional<bool>& out) {
    if (kw.contains(k) && !kw[k].is_none()) out = kw[k].cast<bool>();
  };
  opt_bool("enabled", s.enabled);
  opt_str("status_reason", s.status_reason);
  opt_str("primary_key", s.primary_key);
  opt_str("secondary_key", s.secondary_key);
  opt_str("primary_thumbprint", s.primary_thumbprint);
  opt_str("secondary_thumbprint", s.secondary_thumbprint);
  opt_bool("iot_edge", s.iot_edge);
  opt_str("managed_by", s.managed_by);
  if (kw.contains("auth_type") && !kw["auth_type"].is_none()) {
    auto a = hub::auth_type_from_string(kw["auth_type"].cast<std::string>());
    if (!a) bindings::raise(make_error(errc::invalid_argument,
                                       "auth_type must be one of 'sas', 'selfSigned', 'certificateAuthority', 'none'"));
    s.auth = *a;
  }
  return s;
}

py::tuple event_to_tuple(const store::event_record& e) {
  auto m = decode_message(e.record);
  if (!m) bindings::raise(m.err());
  py::list sys, app;
  for (auto& p : full_system_properties(*m)) sys.append(py::make_tuple(p.key, p.value));
  for (auto& p : m->app_properties) app.append(py::make_tuple(p.key, p.value));
  return py::make_tuple(e.partition, e.sequence_number, m->device_id, m->module_id, m->enqueued_time_ms,
                        py::bytes(reinterpret_cast<const char*>(m->body.data()), m->body.size()), sys, app);
}

// Reads one partition's records with the GIL released; an unknown partition is an InvalidArgumentError.
std::vector<store::event_record> read_partition(store::backend& st, std::uint32_t partition, std::uint64_t from,
                                                std::size_t max) {
  if (partition >= st.partition_count())
    bindings::raise(make_error(errc::invalid_argument, "partition " + std::to_string(partition) +
                                                           " does not exist (the hub has " +
                                                           std::to_string(st.partition_count()) + ")"));
  result<std::vector<store::event_record>> r = [&] {
    py::gil_scoped_release nogil;
    return st.read_events(partition, from, max);
  }();
  return bindings::unwrap(std::move(r));
}

// Records of one partition from `from`, keeping those whose source bit is set in `sources`; also returns the
// position after the last record scanned (filtered-out records still advance a reader).
std::pair<std::vector<store::event_record>, std::uint64_t> read_filtered(store::backend& st, std::uint32_t partition,
                                                                         std::uint64_t from, std::size_t max,
                                                                         unsigned sources) {
  auto rows = read_partition(st, partition, from, max);
  std::uint64_t next = rows.empty() ? from : rows.back().sequence_number + 1;
  constexpr unsigned all = (1u << message_source_count) - 1;
  if ((sources & all) != all) {
    std::erase_if(rows, [&](const store::event_record& e) {
      auto src = peek_message_source(e.record);
      return !src || !(sources & (1u << static_cast<unsigned>(*src)));
    });
  }
  return {std::move(rows), next};
}

// The REST-shaped twin (semantics.md §1.1) with the identity's registry and connection facts.
std::string twin_json(app::hub_server& s, const hub::twin_document& t) {
  return json::serialize(hub::service_twin_json(s.engine(), s.registry(), t));
}

hub::method_request method_request_from(const std::string& device, const std::string& module, const std::string& name,
                                        const std::optional<std::string>& payload, double timeout,
                                        double connect_timeout) {
  hub::method_request r;
  r.device_id = device;
  r.module_id = module;
  r.method_name = name;
  if (payload) r.payload.assign(payload->begin(), payload->end());
  // IoT Hub takes whole seconds; round a fraction up so a call never waits less than asked.
  r.response_timeout = std::chrono::seconds(static_cast<std::int64_t>(std::ceil(timeout)));
  r.connect_timeout = std::chrono::seconds(static_cast<std::int64_t>(std::ceil(connect_timeout)));
  return r;
}

using prop_pairs = std::vector<std::pair<std::string, std::string>>;

hub::c2d_send_request c2d_request_from(const std::string& device, py::bytes body, const prop_pairs& sys,
                                       const prop_pairs& app, std::optional<std::int64_t> expiry_ms,
                                       const std::string& ack) {
  hub::c2d_send_request r;
  r.device_id = device;
  std::string b = body;
  r.body.assign(b.begin(), b.end());
  for (auto& [k, v] : sys) r.system_properties.push_back({k, v});
  for (auto& [k, v] : app) r.app_properties.push_back({k, v});
  r.expiry_ms = expiry_ms;
  auto a = hub::c2d_ack_from_string(ack);
  if (!a) bindings::raise(make_error(errc::invalid_argument, "ack must be 'none', 'positive', 'negative' or 'full'"));
  r.ack = *a;
  return r;
}

struct py_hub {
  std::unique_ptr<app::hub_server> server;
  std::atomic<int> waiters{0};  // Python threads blocked inside the core (close() waits for them)
  std::shared_ptr<log_queue> logs = std::make_shared<log_queue>(100000);
  std::shared_ptr<completion_queue> completions = std::make_shared<completion_queue>();

  app::hub_server& s() {
    if (!server) bindings::raise(make_error(errc::unavailable, "the hub is closed; create a new fleethub.Hub"));
    return *server;
  }
};

app::hub_config config_from_dict(py::dict d, std::shared_ptr<log_queue> logs) {
  app::hub_config c;
  auto get = [&](const char* k) -> py::object { return d.contains(k) ? py::object(d[k]) : py::object(py::none()); };
  if (auto v = get("data_dir"); !v.is_none()) c.data_dir = py::str(v);
  if (auto v = get("hostname"); !v.is_none()) c.hostname = v.cast<std::string>();
  if (auto v = get("bind_address"); !v.is_none()) c.bind_address = v.cast<std::string>();
  if (d.contains("mqtt_tls_port")) {
    auto v = get("mqtt_tls_port");
    c.mqtt_tls_port = v.is_none() ? std::nullopt : std::optional<std::uint16_t>(v.cast<std::uint16_t>());
  }
  if (d.contains("mqtt_plain_port")) {
    auto v = get("mqtt_plain_port");
    c.mqtt_plain_port = v.is_none() ? std::nullopt : std::optional<std::uint16_t>(v.cast<std::uint16_t>());
  }
  if (d.contains("https_port")) {
    auto v = get("https_port");
    c.https_port = v.is_none() ? std::nullopt : std::optional<std::uint16_t>(v.cast<std::uint16_t>());
  }
  if (auto v = get("max_page_items"); !v.is_none()) c.max_page_items = v.cast<std::size_t>();
  if (auto v = get("tls_cert"); !v.is_none()) c.tls_cert = py::str(v);
  if (auto v = get("tls_key"); !v.is_none()) c.tls_key = py::str(v);
  if (auto v = get("durable"); !v.is_none()) c.durable = v.cast<bool>();
  if (auto v = get("partitions"); !v.is_none()) c.partitions = v.cast<std::uint32_t>();
  if (auto v = get("io_threads"); !v.is_none()) c.io_threads = v.cast<std::size_t>();
  if (auto v = get("map_size"); !v.is_none()) c.map_size = v.cast<std::uint64_t>();
  if (auto v = get("retention_s"); !v.is_none()) c.retention = std::chrono::seconds(v.cast<std::int64_t>());
  if (auto v = get("retention_bytes"); !v.is_none()) c.retention_bytes = v.cast<std::uint64_t>();
  if (auto v = get("max_message_size"); !v.is_none()) c.max_message_size = v.cast<std::size_t>();
  if (auto v = get("log_level"); !v.is_none()) c.min_level = static_cast<log_level>(v.cast<int>());
  if (auto v = get("c2d_max_queue_depth"); !v.is_none()) c.c2d.max_queue_depth = v.cast<std::size_t>();
  if (auto v = get("c2d_default_ttl_ms"); !v.is_none()) c.c2d.default_ttl = std::chrono::milliseconds(v.cast<std::int64_t>());
  if (auto v = get("c2d_max_delivery_count"); !v.is_none()) c.c2d.max_delivery_count = v.cast<std::uint32_t>();
  if (auto v = get("c2d_feedback_interval_ms"); !v.is_none())
    c.c2d.feedback_interval = std::chrono::milliseconds(v.cast<std::int64_t>());
  if (auto v = get("c2d_feedback_lock_ms"); !v.is_none())
    c.c2d.feedback_lock = std::chrono::milliseconds(v.cast<std::int64_t>());
  c.sink = [logs](log_record&& r) { logs->push(std::move(r)); };
  return c;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fleethub C++ core (private: use the fleethub package)";
  m.attr("__version__") = FLEETHUB_VERSION;

  py::class_<py_hub>(m, "HubServer")
      .def(py::init([](py::dict cfg) {
             auto h = std::make_unique<py_hub>();
             auto c = config_from_dict(cfg, h->logs);
             result<std::unique_ptr<app::hub_server>> r = [&] {
               py::gil_scoped_release nogil;
               return app::hub_server::open(std::move(c));
             }();
             h->server = bindings::unwrap(std::move(r));
             return h;
           }),
           py::arg("config"))
      .def("start",
           [](py_hub& h) {
             auto& s = h.s();
             result<void> r = [&] {
               py::gil_scoped_release nogil;
               return s.start();
             }();
             bindings::unwrap(std::move(r));
           })
      .def("stop",
           [](py_hub& h) {
             if (!h.server) return;
             py::gil_scoped_release nogil;
             h.server->stop();
           })
      .def("close",
           [](py_hub& h) {
             {
               py::gil_scoped_release nogil;
               if (h.server) {
                 // Wake threads blocked in a feedback receive, and let them leave before the hub goes.
                 h.server->engine().c2d().close();
                 while (h.waiters.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
               }
               h.server.reset();  // stops, drains the store's writer, closes LMDB
             }
             h.logs->close();
             h.completions->close();
           })
      .def_property_readonly("running", [](py_hub& h) { return h.server && h.server->running(); })
      .def_property_readonly("closed", [](py_hub& h) { return !h.server; })
      .def("ports",
           [](py_hub& h) {
             auto p = h.s().ports();
             py::dict d;
             d["mqtts"] = p.mqtt_tls ? py::object(py::int_(*p.mqtt_tls)) : py::object(py::none());
             d["mqtt"] = p.mqtt_plain ? py::object(py::int_(*p.mqtt_plain)) : py::object(py::none());
             d["https"] = p.https ? py::object(py::int_(*p.https)) : py::object(py::none());
             return d;
           })
      .def_property_readonly("ca_cert_path", [](py_hub& h) { return h.s().ca_cert_path(); })
      .def_property_readonly("hostname", [](py_hub& h) { return h.s().config().hostname; })
      .def("poll_logs",
           [](py_hub& h, int timeout_ms) {
             std::vector<log_record> recs;
             {
               py::gil_scoped_release nogil;
               recs = h.logs->pop_all(timeout_ms);
             }
             py::list out;
             for (auto& r : recs) {
               py::dict f;
               for (auto& [k, v] : r.fields) f[py::str(k)] = v;
               out.append(py::make_tuple(static_cast<int>(r.level), r.component, r.event, r.message, f));
             }
             return out;
           },
           py::arg("timeout_ms"))
      .def_property_readonly("logs_dropped", [](py_hub& h) { return h.logs->dropped(); })
      // ---- registry ----
      .def("device_create",
           [](py_hub& h, const std::string& id, const std::string& module, py::dict kw) {
             auto& s = h.s();
             auto spec = spec_from_kwargs(id, module, kw);
             result<hub::device_record> r = [&] {
               py::gil_scoped_release nogil;
               return s.registry().create(spec);
             }();
             auto d = bindings::unwrap(std::move(r));
             return device_to_dict(d, s.engine().connection_state(d.device_id, d.module_id));
           })
      .def("device_update",
           [](py_hub& h, const std::string& id, const std::string& module, py::dict kw, const std::string& if_match) {
             auto& s = h.s();
             auto spec = spec_from_kwargs(id, module, kw);
             result<hub::device_record> r = [&] {
               py::gil_scoped_release nogil;
               return s.registry().update(spec, if_match);
             }();
             auto d = bindings::unwrap(std::move(r));
             return device_to_dict(d, s.engine().connection_state(d.device_id, d.module_id));
           })
      .def("device_get",
           [](py_hub& h, const std::string& id, const std::string& module) {
             auto& s = h.s();
             auto d = bindings::unwrap(s.registry().get(id, module));
             return device_to_dict(d, s.engine().connection_state(d.device_id, d.module_id));
           })
      .def("device_delete",
           [](py_hub& h, const std::string& id, const std::string& module, const std::string& if_match) {
             auto& s = h.s();
             result<void> r = [&] {
               py::gil_scoped_release nogil;
               return s.registry().remove(id, module, if_match);
             }();
             bindings::unwrap(std::move(r));
           })
      .def("device_list",
           [](py_hub& h, const std::string& after, std::size_t limit) {
             auto& s = h.s();
             auto rows = bindings::unwrap(s.registry().list(after, limit));
             py::list out;
             for (auto& d : rows) out.append(device_to_dict(d, s.engine().connection_state(d.device_id)));
             return out;
           })
      .def("module_list",
           [](py_hub& h, const std::string& id) {
             auto& s = h.s();
             auto rows = bindings::unwrap(s.registry().list_modules(id));
             py::list out;
             for (auto& d : rows) out.append(device_to_dict(d, s.engine().connection_state(d.device_id, d.module_id)));
             return out;
           })
      .def("device_stats",
           [](py_hub& h) {
             auto st = bindings::unwrap(h.s().registry().stats());
             py::dict d;
             d["total"] = st.total;
             d["enabled"] = st.enabled;
             d["disabled"] = st.disabled;
             d["connected"] = h.s().engine().connected_count();
             return d;
           })
      .def("policy_list",
           [](py_hub& h) {
             auto rows = bindings::unwrap(h.s().registry().list_policies());
             py::list out;
             for (auto& p : rows)
               out.append(py::make_tuple(p.name, hub::rights_to_string(p.rights), p.primary_key, p.secondary_key));
             return out;
           })
      .def("policy_put",
           [](py_hub& h, const std::string& name, const std::string& rights, const std::string& primary,
              const std::string& secondary) {
             auto r = hub::rights_from_string(rights);
             if (!r)
               bindings::raise(make_error(errc::invalid_argument,
                                          "rights must be a comma-separated list of RegistryRead, RegistryWrite, "
                                          "ServiceConnect, DeviceConnect"));
             auto p = bindings::unwrap(h.s().registry().put_policy({name, *r, primary, secondary}));
             return py::make_tuple(p.name, hub::rights_to_string(p.rights), p.primary_key, p.secondary_key);
           })
      .def("policy_delete", [](py_hub& h, const std::string& name) { bindings::unwrap(h.s().registry().remove_policy(name)); })
      // ---- event log ----
      .def_property_readonly("partition_count", [](py_hub& h) { return h.s().store().partition_count(); })
      .def("events_read",
           [](py_hub& h, std::uint32_t partition, std::uint64_t from, std::size_t max, unsigned sources) {
             auto [rows, next] = read_filtered(h.s().store(), partition, from, max, sources);
             py::list out;
             for (auto& e : rows) out.append(event_to_tuple(e));
             return py::make_tuple(out, next);
           },
           py::arg("partition"), py::arg("from"), py::arg("max"), py::arg("sources") = 0xffffffffu)
      .def("events_read_columns",
           [](py_hub& h, std::uint32_t partition, std::uint64_t from, std::size_t max, bool with_properties,
              unsigned sources) {
             // Columnar read for batch consumers: one list per field, no per-message Python object beyond
             // the values themselves (pandas/Arrow-friendly, and cheap for high-rate tails).
             auto [rows, next] = read_filtered(h.s().store(), partition, from, max, sources);
             py::list seqs, devices, modules, times, bodies, sys, app;
             for (auto& e : rows) {
               auto m = with_properties ? decode_message(e.record) : decode_message_without_properties(e.record);
               if (!m) bindings::raise(m.err());
               seqs.append(e.sequence_number);
               devices.append(py::str(m->device_id));
               modules.append(py::str(m->module_id));
               times.append(m->enqueued_time_ms);
               bodies.append(py::bytes(reinterpret_cast<const char*>(m->body.data()), m->body.size()));
               if (with_properties) {
                 py::list sp, ap;
                 for (auto& p : full_system_properties(*m)) sp.append(py::make_tuple(p.key, p.value));
                 for (auto& p : m->app_properties) ap.append(py::make_tuple(p.key, p.value));
                 sys.append(std::move(sp));
                 app.append(std::move(ap));
               }
             }
             return py::make_tuple(seqs, devices, modules, times, bodies,
                                   with_properties ? py::object(sys) : py::object(py::none()),
                                   with_properties ? py::object(app) : py::object(py::none()), next);
           },
           py::arg("partition"), py::arg("from"), py::arg("max"), py::arg("with_properties"),
           py::arg("sources") = 0xffffffffu)
      .def("events_bounds",
           [](py_hub& h) {
             auto& st = h.s().store();
             py::list out;
             for (std::uint32_t p = 0; p < st.partition_count(); ++p)
               out.append(py::make_tuple(st.begin_sequence(p), st.end_sequence(p)));
             return out;
           })
      .def("events_wait",
           [](py_hub& h, std::vector<std::uint64_t> known_ends, int timeout_ms) {
             auto& st = h.s().store();
             py::gil_scoped_release nogil;
             return st.wait_for_events(known_ends, std::chrono::milliseconds(timeout_ms));
           })
      // ---- twins ----
      .def("twin_get",
           [](py_hub& h, const std::string& device, const std::string& module) {
             auto& s = h.s();
             result<hub::twin_document> r = [&] {
               py::gil_scoped_release nogil;
               return s.engine().twins().get(device, module);
             }();
             return twin_json(s, bindings::unwrap(std::move(r)));
           })
      .def("twin_update",
           [](py_hub& h, const std::string& device, const std::string& module, const std::string& body, bool replace,
              const std::string& if_match) {
             auto& s = h.s();
             auto parsed = json::parse(body);
             if (!parsed) bindings::raise(make_error(errc::invalid_argument, "twin update: " + parsed.err().message));
             auto u = bindings::unwrap(hub::parse_twin_update(*parsed, replace));
             u.if_match = if_match;
             auto r = wait_for_callback<result<hub::twin_document>>(
                 [&](auto cb) { s.engine().twins().update(device, module, std::move(u), std::move(cb)); });
             return twin_json(s, bindings::unwrap(std::move(r)));
           })
      // ---- queries (the IoT Hub query language over committed twins) ----
      // -> (item_type, JSON array text of the page, continuation token or "" on the last page)
      .def("query",
           [](py_hub& h, const std::string& text, const std::string& continuation, std::size_t max_items) {
             auto& s = h.s();
             result<hub::query_page> r = [&] {
               py::gil_scoped_release nogil;
               return s.queries().run(text, continuation, max_items);
             }();
             auto page = bindings::unwrap(std::move(r));
             auto items = json::serialize(json::value(std::move(page.items)));
             return py::make_tuple(page.item_type, items, page.continuation);
           },
           py::arg("text"), py::arg("continuation") = "", py::arg("max_items") = 100)
      // ---- direct methods ----
      .def("method_invoke",
           [](py_hub& h, const std::string& device, const std::string& module, const std::string& name,
              std::optional<std::string> payload, double timeout, double connect_timeout) {
             auto& s = h.s();
             if (!s.running()) bindings::raise(make_error(errc::unavailable, "the hub is not running: call hub.start()"));
             auto req = method_request_from(device, module, name, payload, timeout, connect_timeout);
             auto r = wait_for_callback<result<hub::method_response>>(
                 [&](auto cb) { s.engine().invoke_method(std::move(req), std::move(cb)); });
             auto resp = bindings::unwrap(std::move(r));
             return py::make_tuple(resp.status, py::bytes(reinterpret_cast<const char*>(resp.payload.data()),
                                                          resp.payload.size()));
           })
      .def("method_invoke_async",
           [](py_hub& h, std::uint64_t token, const std::string& device, const std::string& module,
              const std::string& name, std::optional<std::string> payload, double timeout, double connect_timeout) {
             auto& s = h.s();
             if (!s.running()) bindings::raise(make_error(errc::unavailable, "the hub is not running: call hub.start()"));
             auto req = method_request_from(device, module, name, payload, timeout, connect_timeout);
             std::weak_ptr<completion_queue> q = h.completions;
             py::gil_scoped_release nogil;
             s.engine().invoke_method(std::move(req), [q, token](result<hub::method_response> x) {
               push_completion(q, token, x, [](const hub::method_response& m, completion& it) {
                 it.status = m.status;
                 it.payload.assign(m.payload.begin(), m.payload.end());
               });
             });
           })
      .def("method_completions",
           [](py_hub& h, int timeout_ms) {
             std::vector<completion> items;
             {
               py::gil_scoped_release nogil;
               items = h.completions->pop_all(timeout_ms);
             }
             py::list out;
             for (auto& it : items) {
               if (it.code == errc::ok)
                 out.append(py::make_tuple(it.token, it.status, py::bytes(it.payload), py::none(), py::none()));
               else
                 out.append(py::make_tuple(it.token, 0, py::none(), bindings::error_class_name(it.code), it.message));
             }
             return out;
           })
      // ---- cloud-to-device ----
      .def("c2d_send",
           [](py_hub& h, const std::string& device, py::bytes body, const prop_pairs& sys, const prop_pairs& app,
              std::optional<std::int64_t> expiry_ms, const std::string& ack) {
             auto& s = h.s();
             auto req = c2d_request_from(device, body, sys, app, expiry_ms, ack);
             auto r = wait_for_callback<result<hub::c2d_sent>>(
                 [&](auto cb) { s.engine().c2d().send(std::move(req), std::move(cb)); });
             auto sent = bindings::unwrap(std::move(r));
             return py::make_tuple(sent.sequence_number, sent.message_id, sent.expiry_ms);
           })
      .def("c2d_send_async",
           [](py_hub& h, std::uint64_t token, const std::string& device, py::bytes body, const prop_pairs& sys,
              const prop_pairs& app, std::optional<std::int64_t> expiry_ms, const std::string& ack) {
             auto& s = h.s();
             auto req = c2d_request_from(device, body, sys, app, expiry_ms, ack);
             std::weak_ptr<completion_queue> q = h.completions;
             py::gil_scoped_release nogil;
             s.engine().c2d().send(std::move(req), [q, token](result<hub::c2d_sent> x) {
               push_completion(q, token, x, [](const hub::c2d_sent& c, completion& it) {
                 // "seq\nmessage id\nexpiry": decoded by python/fleethub/c2d.py
                 it.payload = std::to_string(c.sequence_number) + "\n" + c.message_id + "\n" + std::to_string(c.expiry_ms);
               });
             });
           })
      .def("c2d_send_batch",
           [](py_hub& h, py::list items, py::object token) {
             // items: (device, body, sys, app, expiry_ms|None, ack) tuples. With a token the call returns at
             // once and completes through the completion queue (payload: JSON array of results); without,
             // it waits and returns the results.
             auto& s = h.s();
             std::vector<hub::c2d_send_request> reqs;
             reqs.reserve(items.size());
             for (auto it : items) {
               auto t = it.cast<py::tuple>();
               reqs.push_back(c2d_request_from(t[0].cast<std::string>(), t[1].cast<py::bytes>(), t[2].cast<prop_pairs>(),
                                               t[3].cast<prop_pairs>(), t[4].cast<std::optional<std::int64_t>>(),
                                               t[5].cast<std::string>()));
             }
             auto to_json = [](const std::vector<result<hub::c2d_sent>>& rs) {
               json::array a;
               a.reserve(rs.size());
               for (auto& r : rs) {
                 json::object o;
                 if (r) {
                   o.set("seq", json::value(static_cast<std::int64_t>(r->sequence_number)));
                   o.set("mid", json::value(r->message_id));
                   o.set("exp", json::value(r->expiry_ms));
                 } else {
                   o.set("error", json::value(bindings::error_class_name(r.err().code)));
                   o.set("message", json::value(r.err().message));
                 }
                 a.emplace_back(std::move(o));
               }
               return json::serialize(json::value(std::move(a)));
             };
             if (!token.is_none()) {
               std::weak_ptr<completion_queue> q = h.completions;
               auto tok = token.cast<std::uint64_t>();
               py::gil_scoped_release nogil;
               s.engine().c2d().send_batch(std::move(reqs), [q, tok, to_json](std::vector<result<hub::c2d_sent>> rs) {
                 // Per-message errors are inside the JSON: the call itself always succeeds.
                 push_completion(q, tok, result<std::string>(to_json(rs)),
                                 [](const std::string& text, completion& it) { it.payload = text; });
               });
               return std::string();
             }
             auto rs = wait_for_callback<std::vector<result<hub::c2d_sent>>>(
                 [&](auto cb) { s.engine().c2d().send_batch(std::move(reqs), std::move(cb)); });
             return to_json(rs);
           },
           py::arg("items"), py::arg("token") = py::none())
      .def("c2d_purge",
           [](py_hub& h, const std::string& device) {
             auto& s = h.s();
             result<std::size_t> r = [&] {
               py::gil_scoped_release nogil;
               return s.engine().c2d().purge(device);
             }();
             return bindings::unwrap(std::move(r));
           })
      .def("c2d_depth", [](py_hub& h, const std::string& device) { return h.s().engine().c2d().depth(device); })
      .def("c2d_receive_feedback",
           [](py_hub& h, int timeout_ms) -> py::object {
             auto& s = h.s();
             std::optional<hub::feedback_batch> b;
             {
               py::gil_scoped_release nogil;
               ++h.waiters;
               b = s.engine().c2d().receive_feedback(std::chrono::milliseconds(timeout_ms));
               --h.waiters;
             }
             if (!b) return py::none();
             return py::make_tuple(b->id, b->lock_token, b->enqueued_ms, b->delivery_count, b->body, b->user_id);
           })
      .def("c2d_complete_feedback",
           [](py_hub& h, const std::string& token) {
             auto& s = h.s();
             result<void> r = [&] {
               py::gil_scoped_release nogil;
               return s.engine().c2d().complete_feedback(token);
             }();
             bindings::unwrap(std::move(r));
           })
      .def("c2d_abandon_feedback",
           [](py_hub& h, const std::string& token) { bindings::unwrap(h.s().engine().c2d().abandon_feedback(token)); })
      .def("c2d_stats",
           [](py_hub& h) {
             auto c = h.s().engine().c2d().counters();
             py::dict d;
             d["sent"] = c.sent;
             d["completed"] = c.completed;
             d["expired"] = c.expired;
             d["dead_lettered"] = c.dead_lettered;
             d["purged"] = c.purged;
             return d;
           })
      .def_property_readonly("pending_methods", [](py_hub& h) { return h.s().engine().pending_methods(); })
      .def("publish_to_client",
           [](py_hub& h, const std::string& client_id, const std::string& topic, py::bytes payload, int qos) {
             std::string p = payload;
             bindings::unwrap(h.s().engine().publish_to_client(client_id, topic, bytes(p.begin(), p.end()),
                                                               static_cast<std::uint8_t>(qos)));
           });

  m.def(
      "make_sas_token",
      [](const std::string& resource, const std::string& key, std::int64_t expiry, const std::string& key_name) {
        return hub::make_sas_token(resource, key, expiry, key_name);
      },
      py::arg("resource"), py::arg("key"), py::arg("expiry"), py::arg("key_name") = "");
}
