// The embedded LMDB implementation of the storage port (backend.hpp). The app opens it through open_lmdb();
// tests and diagnostics that want its counters use open_lmdb_backend() and stats().
//
// On-disk layout (one LMDB environment in lmdb_options::path, plus a `fleethub.lock` flock file):
//   named DB per table     "devices", "modules", ... (table_name()): key/value stored exactly as given.
//   named DB per partition "events.0" .. "events.{P-1}": key = 8-byte big-endian sequence number,
//                          value = [u8 event_value_format][i64 BE commit time, unix ms][record].
//   meta keys owned by the store (reserved prefix "store."), see below.
// Thread safety: every method may be called from any thread; writes go through one writer thread.
// lmdb.h stays out of this header: only lmdb_backend.cpp includes it.
#pragma once
#include <cstdint>
#include <memory>
#include <string_view>

#include "fleethub/store/backend.hpp"

namespace fleethub::store {

// Meta keys written by the store (table::meta). Values are big-endian unsigned integers.
inline constexpr std::string_view meta_schema_version_key = "store.schema_version";  // u32 BE
inline constexpr std::string_view meta_partitions_key = "store.partitions";          // u32 BE
// + decimal partition number: the begin sequence after a trim, so an emptied partition keeps its numbering
// across restarts. u64 BE.
inline constexpr std::string_view meta_events_begin_prefix = "store.events_begin.";
inline constexpr std::uint8_t event_value_format = 1;

// Counters of the writer thread, for tests and diagnostics. Plain snapshot values.
struct lmdb_stats {
  std::uint64_t commits = 0;         // write transactions committed for submitted batches (group commits)
  std::uint64_t batches = 0;         // batches committed successfully
  std::uint64_t failed_batches = 0;  // batches whose callback got an error
  std::uint64_t ops = 0;             // ops committed successfully
  std::uint64_t trim_commits = 0;    // retention transactions committed
  std::uint64_t trimmed_events = 0;  // events removed by retention
  std::uint64_t queued_batches = 0;  // batches waiting for the writer at the time of the call
};

// The LMDB backend. Created by open_lmdb_backend()/open_lmdb(); owned by the app (one per data dir).
// Thread safety: as backend; stats() may be called from any thread.
class lmdb_backend : public backend {
 public:
  virtual lmdb_stats stats() const = 0;
};

// Same as open_lmdb(), typed to expose stats().
result<std::unique_ptr<lmdb_backend>> open_lmdb_backend(const lmdb_options& options);

}  // namespace fleethub::store
