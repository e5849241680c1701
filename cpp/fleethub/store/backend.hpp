// The storage port: the narrow interface the hub uses for everything durable (architecture.md §5, §9).
// The embedded LMDB backend implements it today; a distributed backend could later.
//
// Error strategy: expected misses (no key) come back as empty optionals; storage failures as
// result errors with errc::storage; programming errors throw.
// Thread safety: every method may be called from any thread. Writes are applied by one writer thread in
// group commits; a commit_callback runs on that writer thread and must not block.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "fleethub/core/bytes.hpp"
#include "fleethub/core/result.hpp"

namespace fleethub::store {

// Named key-value tables (one LMDB named database each). Keys are opaque byte strings ordered bytewise.
enum class table : std::uint8_t {
  devices,           // device id -> device record
  modules,           // device id + '\0' + module id -> module record
  policies,          // policy name -> shared access policy record
  sessions,          // MQTT client id -> persistent session record
  session_outbound,  // client id + '\0' + 8-byte big-endian seq -> queued outbound message
  meta,              // schema version, partition count, hub settings
  twins,             // device id [+ '\0' + module id] -> twin document (JSON text)
  c2d,               // device id + '\0' + 8-byte big-endian sequence -> queued cloud-to-device message
  c2d_feedback_pending,  // 8-byte big-endian id -> one feedback record waiting to be batched
  c2d_feedback,      // 8-byte big-endian id -> one feedback message (a batch of records)
};
inline constexpr std::size_t table_count = 10;
const char* table_name(table t);

struct put_op { table t; std::string key; bytes value; };
struct erase_op { table t; std::string key; };
struct erase_prefix_op { table t; std::string prefix; };
// Appends `record` to the event log partition; the store assigns the sequence number.
struct append_op { std::uint32_t partition; bytes record; };
using write_op = std::variant<put_op, erase_op, erase_prefix_op, append_op>;

struct write_batch {
  std::vector<write_op> ops;
};

struct commit_result {
  error err;                                  // err.code == errc::ok on success
  std::vector<std::uint64_t> sequence_numbers;  // one per append_op, in batch order
  bool ok() const { return err.code == errc::ok; }
};
using commit_callback = std::function<void(const commit_result&)>;

struct event_record {
  std::uint32_t partition = 0;
  std::uint64_t sequence_number = 0;
  bytes record;
};

struct key_value {
  std::string key;
  bytes value;
};

class backend {
 public:
  virtual ~backend() = default;

  virtual std::uint32_t partition_count() const = 0;

  // Queues a batch for the next group commit. All ops of one batch commit atomically together.
  // `cb` runs on the writer thread after the commit reached disk (or failed). May be empty.
  virtual void submit(write_batch batch, commit_callback cb) = 0;
  // Convenience: submit and wait for the commit.
  commit_result submit_and_wait(write_batch batch);

  virtual result<std::optional<bytes>> get(table t, std::string_view key) const = 0;
  // Up to `limit` entries whose key starts with `prefix` and is > `after` (empty `after`: from the start).
  virtual result<std::vector<key_value>> scan(table t, std::string_view prefix, std::string_view after,
                                              std::size_t limit) const = 0;

  // Event log: records with sequence_number >= from, at most `max`, in order.
  virtual result<std::vector<event_record>> read_events(std::uint32_t partition, std::uint64_t from,
                                                        std::size_t max) const = 0;
  // One past the newest committed sequence number (0 when the partition was never written).
  virtual std::uint64_t end_sequence(std::uint32_t partition) const = 0;
  // Oldest retained sequence number (== end_sequence when empty).
  virtual std::uint64_t begin_sequence(std::uint32_t partition) const = 0;
  // Blocks until some partition's end_sequence differs from `known_ends` (size == partition_count()),
  // or until `timeout`, or close(). Returns true when there is new data.
  virtual bool wait_for_events(const std::vector<std::uint64_t>& known_ends,
                               std::chrono::milliseconds timeout) const = 0;

  // Drains pending writes, stops the writer thread and closes the environment. Idempotent.
  virtual void close() = 0;
};

struct retention_policy {
  std::chrono::seconds max_age{std::chrono::hours(24)};  // IoT Hub's default built-in endpoint retention
  std::uint64_t max_bytes_per_partition = 0;              // 0: unlimited
  std::chrono::seconds trim_interval{std::chrono::seconds(10)};
};

struct lmdb_options {
  std::string path;                        // directory; created if missing
  std::uint32_t partitions = 4;            // used at creation; an existing store keeps its own count
  std::uint64_t map_size = 64ull << 30;    // address space reservation; the file grows as used
  bool durable = true;                     // false: MDB_NOSYNC ("relaxed" durability, explicit opt-in)
  std::size_t max_batch_ops = 8192;        // most ops in one group commit
  std::chrono::microseconds linger{0};     // wait this long for more work before committing
  retention_policy retention;
};

// Opens (or creates) the LMDB store. Errors: storage (cannot open, locked by another process),
// schema_mismatch (written by an incompatible fleethub; the message says which version).
result<std::unique_ptr<backend>> open_lmdb(const lmdb_options& options);

inline constexpr std::uint32_t schema_version = 1;

}  // namespace fleethub::store
