// Twin patch fuzz target: any JSON body applied as a patch (and as a replacement) to each section of a twin
// with nested state must either be refused leaving the document untouched, or leave a document whose
// section is still valid, whose metadata mirrors its properties, which survives the storage round trip, and
// whose wire views serialize to JSON that parses back to the same value.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fleethub/core/json.hpp"
#include "fleethub/hub/twin.hpp"

using namespace fleethub;
using namespace fleethub::hub;

namespace {

constexpr std::int64_t t0 = 1700000000000;

void check(bool ok) {
  if (!ok) std::abort();
}

twin_document base_twin() {
  twin_document t = new_twin("dev1", "", t0);
  auto p = [&](twin_section s, std::string_view text) {
    auto v = json::parse(text);
    check(v.ok() && apply_patch(t, s, *v, t0 + 1).ok());
  };
  p(twin_section::tags, R"({"site":{"building":"b1","floor":3},"labels":["a","b"]})");
  p(twin_section::desired, R"({"cfg":{"rate":5,"mode":{"name":"fast","opts":{"x":true}}},"fw":"1.0"})");
  p(twin_section::reported, R"({"cfg":{"rate":4},"temps":[1.5,null,{"c":1}],"ok":true})");
  return t;
}

// Every property has a metadata node with $lastUpdated; every non-$ metadata child names a property.
void check_meta(const json::value& props, const json::value& meta, bool desired) {
  check(meta.is_object());
  const json::value* lu = meta.find("$lastUpdated");
  check(lu && lu->is_string());
  check(!desired || (meta.find("$lastUpdatedVersion") && meta.find("$lastUpdatedVersion")->is_int()));
  if (!props.is_object()) return;
  for (const auto& [k, v] : props.as_object()) {
    const json::value* child = meta.find(k);
    check(child != nullptr);
    check_meta(v, *child, desired);
  }
  for (const auto& [k, _] : meta.as_object())
    check(k.starts_with("$") || props.find(k) != nullptr);
}

void check_round_trips(const twin_document& t) {
  auto back = decode_twin(encode_twin(t));
  check(back.ok() && *back == t);
  for (const json::value& view : {device_view(t), service_view(t, twin_identity{}), twin_change_replace_body(t)}) {
    auto parsed = json::parse(json::serialize(view));
    check(parsed.ok() && *parsed == view);
  }
  check_meta(t.desired, t.desired_meta, true);
  check_meta(t.reported, t.reported_meta, false);
}

const json::value& section_of(const twin_document& t, twin_section s) {
  return s == twin_section::tags ? t.tags : s == twin_section::desired ? t.desired : t.reported;
}

void exercise(const twin_document& base, twin_section s, const json::value& patch, const twin_limits& lim) {
  twin_document t = base;
  auto r = apply_patch(t, s, patch, t0 + 2, lim);
  if (!r) {
    check(r.err().code == errc::invalid_argument && !r.err().message.empty());
    check(t == base);
  } else {
    check(t.version == base.version + 1);
    check(t.desired_version == base.desired_version + (s == twin_section::desired));
    check(t.reported_version == base.reported_version + (s == twin_section::reported));
    check(*r == patch);
    check_round_trips(t);
    // What the merge produced must itself pass validation (sizes, depth, keys).
    twin_document again = t;
    check(replace_section(again, s, section_of(t, s), t0 + 3, lim).ok());
    auto event = json::parse(json::serialize(twin_change_update_body(t, s, *r)));
    check(event.ok());
    if (s == twin_section::desired) check(json::parse(json::serialize(desired_notification(*r, t.desired_version))).ok());
  }
  twin_document u = base;
  if (!replace_section(u, s, patch, t0 + 2, lim)) check(u == base);
  else check_round_trips(u);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto patch = json::parse(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!patch) return 0;
  static const twin_document base = base_twin();
  twin_limits tight;  // legacy-style limits so that refusals are reachable with small inputs
  tight.max_depth = 3;
  tight.max_key_bytes = 8;
  tight.max_string_bytes = 16;
  tight.max_tags_bytes = 160;
  tight.max_section_bytes = 200;
  for (auto s : {twin_section::tags, twin_section::desired, twin_section::reported}) {
    exercise(base, s, *patch, twin_limits{});
    exercise(base, s, *patch, tight);
  }
  return 0;
}
