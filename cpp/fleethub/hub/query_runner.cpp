#include "fleethub/hub/query_runner.hpp"

#include <algorithm>
#include <optional>
#include <limits>
#include <utility>
#include <vector>

#include "fleethub/core/encoding.hpp"
#include "fleethub/hub/engine.hpp"
#include "fleethub/hub/registry.hpp"
#include "fleethub/hub/rest_views.hpp"
#include "fleethub/hub/twin.hpp"
#include "fleethub/query/query.hpp"
#include "fleethub/store/backend.hpp"

namespace fleethub::hub {

namespace {

constexpr std::size_t scan_chunk = 1024;

// Walks one identity table (devices or modules) in key order and pairs each record with its twin, read by a
// second cursor over the twins table that advances in step: two batched scans instead of a point lookup
// per identity. Both tables use the same keys (device id; device id + NUL + module id), so a merge join
// works; twin rows of the other kind (module twins while scanning devices and the reverse) are skipped.
class twin_scan {
 public:
  twin_scan(const store::backend& s, bool modules, std::string after)
      : s_(s), ident_(modules ? store::table::modules : store::table::devices), ids_after_(after),
        twins_after_(std::move(after)) {}

  // Advances to the next identity. false at the end. Errors: storage (read failure, corrupt record).
  result<bool> next() {
    if (ipos_ == ids_.size()) {
      if (ids_done_) return false;
      if (auto r = refill(ident_, ids_, ipos_, ids_after_, ids_done_); !r) return r.err();
      if (ids_.empty()) return false;
    }
    auto& kv = ids_[ipos_++];
    key_ = std::move(kv.key);
    auto rec = decode_device_record(kv.value);
    if (!rec) return make_error(errc::storage, "identity '" + printable(key_) + "': " + rec.err().message);
    rec_ = std::move(*rec);
    const bytes* twin = nullptr;
    for (;;) {
      if (tpos_ == twins_.size()) {
        if (twins_done_) break;
        if (auto r = refill(store::table::twins, twins_, tpos_, twins_after_, twins_done_); !r) return r.err();
        if (twins_.empty()) break;
      }
      const auto& t = twins_[tpos_];
      if (t.key < key_) {
        ++tpos_;
        continue;
      }
      if (t.key == key_) {
        twin = &t.value;
        ++tpos_;
      }
      break;
    }
    if (twin) {
      auto doc = decode_twin(*twin);
      if (!doc) return make_error(errc::storage, "twin of '" + printable(key_) + "': " + doc.err().message);
      twin_ = std::move(*doc);
    } else {
      // An identity without a stored twin (created before twins were kept): its twin is a fresh one, as
      // twin_manager::get answers.
      twin_ = new_twin(rec_.device_id, rec_.module_id, rec_.created_ms);
    }
    return true;
  }

  const std::string& key() const { return key_; }
  const device_record& record() const { return rec_; }
  const twin_document& twin() const { return twin_; }

 private:
  result<void> refill(store::table t, std::vector<store::key_value>& buf, std::size_t& pos, std::string& after,
                      bool& done) {
    auto r = s_.scan(t, {}, after, scan_chunk);
    if (!r) return r.err();
    buf = std::move(*r);
    pos = 0;
    if (buf.size() < scan_chunk) done = true;
    if (!buf.empty()) after = buf.back().key;
    return {};
  }
  static std::string printable(std::string k) {
    std::replace(k.begin(), k.end(), '\0', '/');
    return k;
  }

  const store::backend& s_;
  store::table ident_;
  std::vector<store::key_value> ids_, twins_;
  std::size_t ipos_ = 0, tpos_ = 0;
  std::string ids_after_, twins_after_;
  bool ids_done_ = false, twins_done_ = false;
  std::string key_;
  device_record rec_;
  twin_document twin_;
};


// Resolves WHERE paths against one scanned identity without building its service twin when it can: tags and
// user properties are read from the twin document itself, deviceId/moduleId from the record. Anything else
// (identity fields, $metadata, $version, whole sections) builds the service twin once and reads it there, so
// every path sees exactly what GET /twins returns. Most rows of a selective query never build it.
class twin_resolver final : public query::resolver {
 public:
  twin_resolver(engine& eng, const device_record& rec, const twin_document& twin)
      : eng_(eng), rec_(rec), twin_(twin) {}

  const json::value* resolve(const query::path& p) const override {
    if (!p.empty() && p[0].index < 0) {
      const std::string& top = p[0].name;
      if (iequals(top, "tags")) return query::resolve_in(twin_.tags, p, 1);
      if (iequals(top, "properties") && p.size() >= 3 && p[1].index < 0 && p[2].index < 0 &&
          !p[2].name.empty() && p[2].name[0] != '$') {
        // User property names never start with '$' (twin key rules), so this is exactly the service view.
        if (iequals(p[1].name, "desired")) return query::resolve_in(twin_.desired, p, 2);
        if (iequals(p[1].name, "reported")) return query::resolve_in(twin_.reported, p, 2);
      }
      if (p.size() == 1 && iequals(top, "deviceId")) return id(device_id_, rec_.device_id);
      if (p.size() == 1 && iequals(top, "moduleId") && !rec_.module_id.empty()) return id(module_id_, rec_.module_id);
    }
    return query::resolve_in(full(), p);
  }

  // The service twin (the same JSON as GET /twins), built at most once.
  const json::value& full() const {
    if (!full_) full_ = service_twin_json(eng_, rec_, twin_);
    return *full_;
  }
  json::value take_full() {
    full();
    return std::move(*full_);
  }

 private:
  static const json::value* id(std::optional<json::value>& slot, const std::string& v) {
    if (!slot) slot = json::value(v);
    return &*slot;
  }
  engine& eng_;
  const device_record& rec_;
  const twin_document& twin_;
  mutable std::optional<json::value> full_, device_id_, module_id_;
};


}  // namespace

query_runner::query_runner(engine& eng, registry& reg, std::chrono::seconds continuation_ttl)
    : eng_(eng), reg_(reg), ttl_(continuation_ttl) {}

result<query_page> query_runner::run(std::string_view text, std::string_view continuation, std::size_t max_items) {
  auto q = query::compile_query(text);
  if (!q) return q.err();
  const auto now_s = unix_now_s();
  const auto hash = query_hash(text);
  query_cursor cur;
  if (!continuation.empty()) {
    auto c = codec_.decode(continuation, hash, now_s);
    if (!c) return c.err();
    cur = std::move(*c);
  }
  const std::uint64_t page = max_items ? max_items : default_page_size;
  const std::uint64_t cap = q->top() ? *q->top() : std::numeric_limits<std::uint64_t>::max();
  query_page out;
  out.item_type = q->item_type();
  if (q->from() == query::collection::jobs) return out;  // no jobs are kept yet
  const bool modules = q->from() == query::collection::modules;
  auto issue = [&](std::uint64_t emitted, std::string last_key) {
    out.continuation = codec_.encode(query_cursor{hash, now_s + ttl_.count(), emitted, std::move(last_key)});
  };
  const store::backend& store = eng_.store();

  if (q->aggregate()) {
    // Groups need every matching twin: aggregate the whole collection, then hand out rows by offset.
    auto agg = q->start_aggregation();
    twin_scan scan(store, modules, {});
    for (;;) {
      auto more = scan.next();
      if (!more) return more.err();
      if (!*more) break;
      twin_resolver r(eng_, scan.record(), scan.twin());
      if (q->where().matches(r)) agg.add(r.full());
    }
    auto rows = agg.finish();
    const std::uint64_t total = std::min<std::uint64_t>(rows.size(), cap);
    const std::uint64_t from = std::min<std::uint64_t>(cur.emitted, total);
    const std::uint64_t to = std::min<std::uint64_t>(from + page, total);
    for (auto i = from; i < to; ++i) out.items.push_back(std::move(rows[i]));
    if (to < total) issue(to, {});
    return out;
  }

  if (cur.emitted >= cap) return out;
  const std::uint64_t limit = std::min<std::uint64_t>(page, cap - cur.emitted);
  twin_scan scan(store, modules, cur.last_key);
  std::string last;
  for (;;) {
    auto more = scan.next();
    if (!more) return more.err();
    if (!*more) break;
    twin_resolver r(eng_, scan.record(), scan.twin());
    if (!q->where().matches(r)) continue;
    auto doc = r.take_full();
    if (out.items.size() == limit) {
      // One more match exists: the page is full and another follows. It resumes after the last one returned.
      issue(cur.emitted + out.items.size(), std::move(last));
      break;
    }
    out.items.push_back(q->select_star() ? std::move(doc) : q->project(doc));
    last = scan.key();
    if (cur.emitted + out.items.size() >= cap) break;  // TOP reached: no further pages
  }
  return out;
}

}  // namespace fleethub::hub
