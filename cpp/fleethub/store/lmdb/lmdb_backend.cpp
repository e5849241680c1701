// LMDB backend: one environment, named DBs per table and per event partition, one writer thread doing
// group commits, short read transactions from any thread (MDB_NOTLS), retention trimming on the writer.
#include "fleethub/store/lmdb/lmdb_backend.hpp"

#include <fcntl.h>
#include <lmdb.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <thread>

namespace fleethub::store {
namespace {

constexpr std::size_t event_header_size = 9;         // [u8 format][i64 BE commit ms]
constexpr std::size_t entry_overhead = 8 + 8;        // key + LMDB node header, for the byte estimate
constexpr std::size_t max_group_bytes = 64u << 20;   // stay well below LMDB's dirty-page limit per txn
constexpr std::size_t trim_chunk = 10000;            // deletes per retention txn, so appends never stall long
constexpr std::size_t read_pool_cap = 32;            // reset read txns kept for reuse
constexpr unsigned max_readers = 510;
constexpr unsigned spare_dbs = 8;

void put_be64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<std::uint8_t>(v);
    v >>= 8;
  }
}
std::uint64_t get_be64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}
void put_be32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 3; i >= 0; --i) {
    p[i] = static_cast<std::uint8_t>(v);
    v >>= 8;
  }
}
std::uint32_t get_be32(const std::uint8_t* p) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | p[i];
  return v;
}

MDB_val to_val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
MDB_val to_val(const bytes& b) { return MDB_val{b.size(), const_cast<std::uint8_t*>(b.data())}; }
std::string_view as_sv(const MDB_val& v) { return {static_cast<const char*>(v.mv_data), v.mv_size}; }
bytes as_bytes_copy(const MDB_val& v) {
  auto* p = static_cast<const std::uint8_t*>(v.mv_data);
  return bytes(p, p + v.mv_size);
}

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

error lmdb_error(int rc, const char* what, std::uint64_t map_size) {
  switch (rc) {
    case MDB_MAP_FULL:
      return make_error(errc::storage, "storage full: raise map_size (--map-size); current map_size is " +
                                           std::to_string(map_size) + " bytes");
    case MDB_BAD_VALSIZE:
      return make_error(errc::invalid_argument, std::string(what) + ": key is empty or too long");
    case MDB_TXN_FULL:
      return make_error(errc::storage, std::string(what) + ": batch too large for one transaction");
    default:
      return make_error(errc::storage, std::string(what) + ": " + mdb_strerror(rc));
  }
}

error closed_error() { return make_error(errc::unavailable, "store is closed"); }

std::string events_db_name(std::uint32_t p) { return "events." + std::to_string(p); }
std::string events_begin_key(std::uint32_t p) {
  return std::string(meta_events_begin_prefix) + std::to_string(p);
}

struct pending {
  write_batch batch;
  commit_callback cb;
  std::size_t nops = 0;
  std::size_t nbytes = 0;
  commit_result result;
  bool done = false;  // result is final for this round
};

class lmdb_backend_impl final : public lmdb_backend {
 public:
  explicit lmdb_backend_impl(const lmdb_options& o) : opts_(o) {}
  ~lmdb_backend_impl() override { close(); }

  result<void> open();

  std::uint32_t partition_count() const override { return partitions_; }
  void submit(write_batch batch, commit_callback cb) override;
  result<std::optional<bytes>> get(table t, std::string_view key) const override;
  result<std::vector<key_value>> scan(table t, std::string_view prefix, std::string_view after,
                                      std::size_t limit) const override;
  result<std::vector<event_record>> read_events(std::uint32_t partition, std::uint64_t from,
                                                std::size_t max) const override;
  std::uint64_t end_sequence(std::uint32_t partition) const override {
    check_partition(partition);
    return end_[partition].load(std::memory_order_acquire);
  }
  std::uint64_t begin_sequence(std::uint32_t partition) const override {
    check_partition(partition);
    return begin_[partition].load(std::memory_order_acquire);
  }
  bool wait_for_events(const std::vector<std::uint64_t>& known_ends,
                       std::chrono::milliseconds timeout) const override;
  void close() override;
  lmdb_stats stats() const override;

 private:
  // RAII read transaction from the pool; holds the env shared lock so close() cannot pull the env away.
  class read_txn {
   public:
    explicit read_txn(const lmdb_backend_impl& b) : b_(b), lock_(b.env_mu_) {
      if (!b_.env_open_) {
        err_ = closed_error();
        return;
      }
      int rc = b_.acquire_read(&txn_);
      if (rc != 0) err_ = lmdb_error(rc, "begin read transaction", b_.opts_.map_size);
    }
    ~read_txn() {
      if (txn_) b_.release_read(txn_);
    }
    read_txn(const read_txn&) = delete;
    read_txn& operator=(const read_txn&) = delete;
    bool ok() const { return txn_ != nullptr; }
    const error& err() const { return err_; }
    MDB_txn* get() const { return txn_; }

   private:
    const lmdb_backend_impl& b_;
    std::shared_lock<std::shared_mutex> lock_;
    MDB_txn* txn_ = nullptr;
    error err_;
  };

  // RAII cursor.
  struct cursor {
    MDB_cursor* c = nullptr;
    ~cursor() {
      if (c) mdb_cursor_close(c);
    }
  };

  void check_partition(std::uint32_t p) const {
    if (p >= partitions_) throw std::out_of_range("fleethub store: partition out of range");
  }
  int open_env(unsigned maxdbs);
  result<void> take_lock_file();
  result<void> init_dbs(bool* need_more_dbs);
  int acquire_read(MDB_txn** out) const;
  void release_read(MDB_txn* txn) const;

  // Writer thread.
  void writer_main();
  void take_locked();
  void commit_group();
  int commit_txn(pending* only, std::int64_t now_ms);
  int apply(MDB_txn* txn, pending& p, std::int64_t now_ms);
  error validate(const write_batch& b) const;
  bool trim_once();
  int trim_partition(std::uint32_t p, std::int64_t now_ms, bool* more);

  lmdb_options opts_;
  std::size_t max_ops_ = 1;
  std::chrono::milliseconds trim_interval_{1000};
  bool trim_enabled_ = false;

  int lock_fd_ = -1;
  MDB_env* env_ = nullptr;
  MDB_dbi tables_[table_count]{};
  std::vector<MDB_dbi> events_;
  std::uint32_t partitions_ = 0;
  std::size_t max_key_ = 511;
  unsigned maxdbs_ = 0;

  mutable std::shared_mutex env_mu_;  // readers shared, close() exclusive
  bool env_open_ = false;             // guarded by env_mu_
  mutable std::mutex pool_mu_;
  mutable std::vector<MDB_txn*> pool_;

  std::mutex close_mu_;
  bool closed_ = false;

  mutable std::mutex mu_;  // submit queue
  std::condition_variable cv_;
  std::deque<pending> queue_;
  std::size_t queued_ops_ = 0;
  bool stopping_ = false;
  std::thread writer_;
  std::thread::id writer_id_;  // set once in open(), before any callback can run

  std::unique_ptr<std::atomic<std::uint64_t>[]> end_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> begin_;
  mutable std::mutex ev_mu_;
  mutable std::condition_variable ev_cv_;
  bool ev_closed_ = false;

  // Owned by the writer thread (and open() before it starts).
  std::vector<std::uint64_t> w_end_;
  std::vector<std::uint64_t> w_bytes_;  // approximate bytes per partition
  std::vector<std::uint64_t> t_end_;    // in-transaction copies
  std::vector<std::uint64_t> t_bytes_;
  std::vector<pending> work_;
  std::size_t work_ops_ = 0;
  std::size_t work_bytes_ = 0;
  bool appended_ = false;

  std::atomic<std::uint64_t> st_commits_{0}, st_batches_{0}, st_failed_{0}, st_ops_{0}, st_trim_commits_{0},
      st_trimmed_{0};
};

// ---- open ------------------------------------------------------------------------------------------------

result<void> lmdb_backend_impl::take_lock_file() {
  const std::string lock_path = (std::filesystem::path(opts_.path) / "fleethub.lock").string();
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) {
    return make_error(errc::storage, "cannot open " + lock_path + ": " + std::strerror(errno));
  }
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    std::string pid = "unknown";
    char buf[32] = {};
    ssize_t n = ::pread(lock_fd_, buf, sizeof(buf) - 1, 0);
    if (n > 0) {
      std::string s(buf, static_cast<std::size_t>(n));
      while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
      if (!s.empty()) pid = s;
    }
    ::close(lock_fd_);
    lock_fd_ = -1;
    if (e == EWOULDBLOCK) {
      return make_error(errc::storage, "data dir " + opts_.path + " is in use by another fleethub process (pid " +
                                           pid + ")");
    }
    return make_error(errc::storage, "cannot lock " + lock_path + ": " + std::strerror(e));
  }
  const std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd_, 0) != 0 || ::pwrite(lock_fd_, me.data(), me.size(), 0) < 0) {
    // The pid is informational only; the lock itself is held.
  }
  return {};
}

int lmdb_backend_impl::open_env(unsigned maxdbs) {
  maxdbs_ = maxdbs;
  int rc = mdb_env_create(&env_);
  if (rc != 0) {
    env_ = nullptr;
    return rc;
  }
  if ((rc = mdb_env_set_mapsize(env_, opts_.map_size)) == 0 && (rc = mdb_env_set_maxdbs(env_, maxdbs)) == 0 &&
      (rc = mdb_env_set_maxreaders(env_, max_readers)) == 0) {
    unsigned flags = MDB_NOTLS;
    if (!opts_.durable) flags |= MDB_NOSYNC;
    rc = mdb_env_open(env_, opts_.path.c_str(), flags, 0600);
  }
  if (rc != 0) {
    mdb_env_close(env_);
    env_ = nullptr;
    return rc;
  }
  max_key_ = static_cast<std::size_t>(mdb_env_get_maxkeysize(env_));
  MDB_envinfo info;
  if (mdb_env_info(env_, &info) == 0) opts_.map_size = info.me_mapsize;  // an existing bigger file wins
  return 0;
}

// Opens every named DB, checks/writes meta and restores the sequence state, in one write txn.
result<void> lmdb_backend_impl::init_dbs(bool* need_more_dbs) {
  *need_more_dbs = false;
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  if (rc != 0) return lmdb_error(rc, "begin transaction", opts_.map_size);
  struct guard {
    MDB_txn*& t;
    ~guard() {
      if (t) mdb_txn_abort(t);
    }
  } g{txn};

  for (std::size_t i = 0; i < table_count; ++i) {
    rc = mdb_dbi_open(txn, table_name(static_cast<table>(i)), MDB_CREATE, &tables_[i]);
    if (rc != 0) return lmdb_error(rc, "open table", opts_.map_size);
  }
  const MDB_dbi meta = tables_[static_cast<std::size_t>(table::meta)];

  MDB_val k = to_val(meta_schema_version_key), v;
  rc = mdb_get(txn, meta, &k, &v);
  if (rc == 0) {
    if (v.mv_size != 4) return make_error(errc::storage, "data dir " + opts_.path + ": corrupt schema version");
    const std::uint32_t found = get_be32(static_cast<const std::uint8_t*>(v.mv_data));
    if (found != schema_version) {
      return make_error(errc::schema_mismatch, "data dir " + opts_.path + " written by schema version " +
                                                   std::to_string(found) + ", this fleethub reads version " +
                                                   std::to_string(schema_version) +
                                                   "; migrate or use a new --data-dir");
    }
    k = to_val(meta_partitions_key);
    rc = mdb_get(txn, meta, &k, &v);
    if (rc != 0 || v.mv_size != 4) {
      return make_error(errc::storage, "data dir " + opts_.path + ": missing or corrupt partition count");
    }
    partitions_ = get_be32(static_cast<const std::uint8_t*>(v.mv_data));
    if (partitions_ == 0) return make_error(errc::storage, "data dir " + opts_.path + ": partition count 0");
  } else if (rc == MDB_NOTFOUND) {
    partitions_ = opts_.partitions;
    std::uint8_t buf[4];
    put_be32(buf, schema_version);
    k = to_val(meta_schema_version_key);
    v = MDB_val{4, buf};
    if ((rc = mdb_put(txn, meta, &k, &v, 0)) != 0) return lmdb_error(rc, "write meta", opts_.map_size);
    put_be32(buf, partitions_);
    k = to_val(meta_partitions_key);
    v = MDB_val{4, buf};
    if ((rc = mdb_put(txn, meta, &k, &v, 0)) != 0) return lmdb_error(rc, "write meta", opts_.map_size);
  } else {
    return lmdb_error(rc, "read meta", opts_.map_size);
  }

  if (table_count + partitions_ > maxdbs_) {
    *need_more_dbs = true;
    return {};
  }

  events_.assign(partitions_, 0);
  end_ = std::make_unique<std::atomic<std::uint64_t>[]>(partitions_);
  begin_ = std::make_unique<std::atomic<std::uint64_t>[]>(partitions_);
  w_end_.assign(partitions_, 0);
  w_bytes_.assign(partitions_, 0);
  for (std::uint32_t p = 0; p < partitions_; ++p) {
    rc = mdb_dbi_open(txn, events_db_name(p).c_str(), MDB_CREATE, &events_[p]);
    if (rc != 0) return lmdb_error(rc, "open event partition", opts_.map_size);

    std::uint64_t floor = 0;
    const std::string bk = events_begin_key(p);
    k = to_val(bk);
    if (mdb_get(txn, meta, &k, &v) == 0 && v.mv_size == 8) {
      floor = get_be64(static_cast<const std::uint8_t*>(v.mv_data));
    }
    cursor c;
    if ((rc = mdb_cursor_open(txn, events_[p], &c.c)) != 0) return lmdb_error(rc, "cursor", opts_.map_size);
    std::uint64_t first = floor, end = floor;
    rc = mdb_cursor_get(c.c, &k, &v, MDB_FIRST);
    if (rc == 0) {
      if (k.mv_size != 8) return make_error(errc::storage, "corrupt event key in " + events_db_name(p));
      first = get_be64(static_cast<const std::uint8_t*>(k.mv_data));
      rc = mdb_cursor_get(c.c, &k, &v, MDB_LAST);
      if (rc != 0 || k.mv_size != 8) return make_error(errc::storage, "corrupt event key in " + events_db_name(p));
      end = get_be64(static_cast<const std::uint8_t*>(k.mv_data)) + 1;
    } else if (rc != MDB_NOTFOUND) {
      return lmdb_error(rc, "read event partition", opts_.map_size);
    }
    begin_[p].store(first);
    end_[p].store(end);
    w_end_[p] = end;
    // Approximate: pages in use, O(1) at open; kept up to date per entry afterwards.
    MDB_stat st;
    if (mdb_stat(txn, events_[p], &st) == 0) {
      w_bytes_[p] = (st.ms_leaf_pages + st.ms_overflow_pages) * static_cast<std::uint64_t>(st.ms_psize);
    }
  }
  rc = mdb_txn_commit(txn);
  txn = nullptr;
  if (rc != 0) return lmdb_error(rc, "commit", opts_.map_size);
  return {};
}

result<void> lmdb_backend_impl::open() {
  if (opts_.path.empty()) return make_error(errc::invalid_argument, "lmdb: empty data dir path");
  if (opts_.partitions == 0) return make_error(errc::invalid_argument, "lmdb: partitions must be >= 1");
  max_ops_ = std::max<std::size_t>(opts_.max_batch_ops, 1);
  trim_interval_ = std::chrono::duration_cast<std::chrono::milliseconds>(opts_.retention.trim_interval);
  if (trim_interval_.count() <= 0) trim_interval_ = std::chrono::milliseconds(1000);
  trim_enabled_ = opts_.retention.max_age.count() > 0 || opts_.retention.max_bytes_per_partition > 0;

  std::error_code ec;
  std::filesystem::create_directories(opts_.path, ec);
  if (ec) return make_error(errc::storage, "cannot create data dir " + opts_.path + ": " + ec.message());
  if (auto r = take_lock_file(); !r) return r;

  unsigned maxdbs = static_cast<unsigned>(table_count + std::max<std::uint32_t>(opts_.partitions, 64) + spare_dbs);
  for (int attempt = 0; attempt < 2; ++attempt) {
    int rc = open_env(maxdbs);
    if (rc != 0) return lmdb_error(rc, ("cannot open data dir " + opts_.path).c_str(), opts_.map_size);
    bool more = false;
    auto r = init_dbs(&more);
    if (!r) return r;
    if (!more) break;
    // An existing store with more partitions than we reserved DB slots for: reopen with enough.
    mdb_env_close(env_);
    env_ = nullptr;
    maxdbs = static_cast<unsigned>(table_count + partitions_ + spare_dbs);
    opts_.partitions = partitions_;
  }
  {
    std::unique_lock lk(env_mu_);
    env_open_ = true;
  }
  t_end_ = w_end_;
  t_bytes_ = w_bytes_;
  work_.reserve(64);
  writer_ = std::thread([this] { writer_main(); });
  writer_id_ = writer_.get_id();
  return {};
}

// ---- reads -----------------------------------------------------------------------------------------------

int lmdb_backend_impl::acquire_read(MDB_txn** out) const {
  MDB_txn* t = nullptr;
  {
    std::lock_guard lk(pool_mu_);
    if (!pool_.empty()) {
      t = pool_.back();
      pool_.pop_back();
    }
  }
  if (t) {
    if (mdb_txn_renew(t) == 0) {
      *out = t;
      return 0;
    }
    mdb_txn_abort(t);
  }
  return mdb_txn_begin(env_, nullptr, MDB_RDONLY, out);
}

void lmdb_backend_impl::release_read(MDB_txn* txn) const {
  mdb_txn_reset(txn);  // releases the snapshot; keeps the reader slot and the allocation
  {
    std::lock_guard lk(pool_mu_);
    if (pool_.size() < read_pool_cap) {
      pool_.push_back(txn);
      return;
    }
  }
  mdb_txn_abort(txn);
}

result<std::optional<bytes>> lmdb_backend_impl::get(table t, std::string_view key) const {
  const auto ti = static_cast<std::size_t>(t);
  if (ti >= table_count) return make_error(errc::invalid_argument, "lmdb: bad table");
  read_txn txn(*this);
  if (!txn.ok()) return txn.err();
  if (key.empty() || key.size() > max_key_) return std::optional<bytes>{};
  MDB_val k = to_val(key), v;
  int rc = mdb_get(txn.get(), tables_[ti], &k, &v);
  if (rc == MDB_NOTFOUND) return std::optional<bytes>{};
  if (rc != 0) return lmdb_error(rc, "get", opts_.map_size);
  return std::optional<bytes>{as_bytes_copy(v)};
}

result<std::vector<key_value>> lmdb_backend_impl::scan(table t, std::string_view prefix, std::string_view after,
                                                       std::size_t limit) const {
  const auto ti = static_cast<std::size_t>(t);
  if (ti >= table_count) return make_error(errc::invalid_argument, "lmdb: bad table");
  read_txn txn(*this);
  if (!txn.ok()) return txn.err();
  std::vector<key_value> out;
  if (limit == 0 || prefix.size() > max_key_) return out;
  cursor c;
  int rc = mdb_cursor_open(txn.get(), tables_[ti], &c.c);
  if (rc != 0) return lmdb_error(rc, "scan", opts_.map_size);

  // Start at max(prefix, after), clipped to the longest legal key, then skip keys <= after.
  std::string_view start = after > prefix ? after : prefix;
  if (start.size() > max_key_) start = start.substr(0, max_key_);
  MDB_val k, v;
  if (start.empty()) {
    rc = mdb_cursor_get(c.c, &k, &v, MDB_FIRST);
  } else {
    k = to_val(start);
    rc = mdb_cursor_get(c.c, &k, &v, MDB_SET_RANGE);
  }
  out.reserve(std::min<std::size_t>(limit, 256));
  for (; rc == 0 && out.size() < limit; rc = mdb_cursor_get(c.c, &k, &v, MDB_NEXT)) {
    std::string_view key = as_sv(k);
    if (!key.starts_with(prefix)) break;
    if (!after.empty() && key <= after) continue;
    out.push_back(key_value{std::string(key), as_bytes_copy(v)});
  }
  if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "scan", opts_.map_size);
  return out;
}

result<std::vector<event_record>> lmdb_backend_impl::read_events(std::uint32_t partition, std::uint64_t from,
                                                                 std::size_t max) const {
  if (partition >= partitions_) return make_error(errc::invalid_argument, "lmdb: partition out of range");
  read_txn txn(*this);
  if (!txn.ok()) return txn.err();
  std::vector<event_record> out;
  if (max == 0) return out;
  cursor c;
  int rc = mdb_cursor_open(txn.get(), events_[partition], &c.c);
  if (rc != 0) return lmdb_error(rc, "read events", opts_.map_size);
  std::uint8_t kb[8];
  put_be64(kb, from);
  MDB_val k{8, kb}, v;
  out.reserve(std::min<std::size_t>(max, 256));
  for (rc = mdb_cursor_get(c.c, &k, &v, MDB_SET_RANGE); rc == 0 && out.size() < max;
       rc = mdb_cursor_get(c.c, &k, &v, MDB_NEXT)) {
    const auto* val = static_cast<const std::uint8_t*>(v.mv_data);
    if (k.mv_size != 8 || v.mv_size < event_header_size || val[0] != event_value_format) {
      return make_error(errc::storage, "corrupt event record in " + events_db_name(partition));
    }
    out.push_back(event_record{partition, get_be64(static_cast<const std::uint8_t*>(k.mv_data)),
                               bytes(val + event_header_size, val + v.mv_size)});
  }
  if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "read events", opts_.map_size);
  return out;
}

bool lmdb_backend_impl::wait_for_events(const std::vector<std::uint64_t>& known_ends,
                                        std::chrono::milliseconds timeout) const {
  if (known_ends.size() != partitions_) {
    throw std::invalid_argument("fleethub store: wait_for_events needs one known end per partition");
  }
  auto changed = [&] {
    for (std::uint32_t p = 0; p < partitions_; ++p) {
      if (end_[p].load(std::memory_order_acquire) != known_ends[p]) return true;
    }
    return false;
  };
  std::unique_lock lk(ev_mu_);
  ev_cv_.wait_for(lk, timeout, [&] { return ev_closed_ || changed(); });
  return changed();
}

// ---- writes ----------------------------------------------------------------------------------------------

void lmdb_backend_impl::submit(write_batch batch, commit_callback cb) {
  pending p;
  p.nops = std::max<std::size_t>(batch.ops.size(), 1);
  for (const auto& op : batch.ops) {
    if (const auto* o = std::get_if<put_op>(&op)) {
      p.nbytes += o->key.size() + o->value.size();
    } else if (const auto* o = std::get_if<append_op>(&op)) {
      p.nbytes += o->record.size() + event_header_size + 8;
    }
  }
  p.batch = std::move(batch);
  p.cb = std::move(cb);
  {
    std::unique_lock lk(mu_);
    if (!stopping_) {
      queued_ops_ += p.nops;
      queue_.push_back(std::move(p));
      lk.unlock();
      cv_.notify_one();
      return;
    }
  }
  // Closed: answer at once rather than lose the callback.
  if (p.cb) p.cb(commit_result{closed_error(), {}});
}

void lmdb_backend_impl::take_locked() {
  while (!queue_.empty()) {
    pending& f = queue_.front();
    if (!work_.empty() && (work_ops_ + f.nops > max_ops_ || work_bytes_ + f.nbytes > max_group_bytes)) break;
    work_ops_ += f.nops;
    work_bytes_ += f.nbytes;
    queued_ops_ -= f.nops;
    work_.push_back(std::move(f));
    queue_.pop_front();
  }
}

void lmdb_backend_impl::writer_main() {
  using clock = std::chrono::steady_clock;
  auto next_trim = clock::now() + trim_interval_;
  std::unique_lock lk(mu_);
  for (;;) {
    if (queue_.empty()) {
      if (stopping_) break;
      auto ready = [&] { return !queue_.empty() || stopping_; };
      if (trim_enabled_) {
        cv_.wait_until(lk, next_trim, ready);
      } else {
        cv_.wait(lk, ready);
      }
    }
    if (!queue_.empty()) {
      take_locked();
      if (opts_.linger.count() > 0 && work_ops_ < max_ops_ && !stopping_) {
        cv_.wait_for(lk, opts_.linger, [&] { return stopping_ || work_ops_ + queued_ops_ >= max_ops_; });
        take_locked();
      }
      lk.unlock();
      commit_group();
      lk.lock();
    }
    if (trim_enabled_ && !stopping_ && clock::now() >= next_trim) {
      lk.unlock();
      const bool more = trim_once();
      lk.lock();
      next_trim = clock::now() + (more ? std::chrono::milliseconds(0) : trim_interval_);
    }
  }
}

error lmdb_backend_impl::validate(const write_batch& b) const {
  auto bad_table = [](table t) { return static_cast<std::size_t>(t) >= table_count; };
  for (const auto& op : b.ops) {
    if (const auto* o = std::get_if<put_op>(&op)) {
      if (bad_table(o->t)) return make_error(errc::invalid_argument, "put: bad table");
      if (o->key.empty() || o->key.size() > max_key_) {
        return make_error(errc::invalid_argument,
                          "put: key must be 1.." + std::to_string(max_key_) + " bytes");
      }
    } else if (const auto* o = std::get_if<erase_op>(&op)) {
      if (bad_table(o->t)) return make_error(errc::invalid_argument, "erase: bad table");
    } else if (const auto* o = std::get_if<erase_prefix_op>(&op)) {
      if (bad_table(o->t)) return make_error(errc::invalid_argument, "erase_prefix: bad table");
    } else if (const auto* o = std::get_if<append_op>(&op)) {
      if (o->partition >= partitions_) {
        return make_error(errc::invalid_argument, "append: partition " + std::to_string(o->partition) +
                                                      " out of range (" + std::to_string(partitions_) + ")");
      }
    }
  }
  return {};
}

int lmdb_backend_impl::apply(MDB_txn* txn, pending& p, std::int64_t now_ms) {
  auto& seqs = p.result.sequence_numbers;
  seqs.clear();
  for (auto& op : p.batch.ops) {
    int rc = 0;
    if (auto* o = std::get_if<put_op>(&op)) {
      MDB_val k = to_val(o->key), v = to_val(o->value);
      rc = mdb_put(txn, tables_[static_cast<std::size_t>(o->t)], &k, &v, 0);
    } else if (auto* o = std::get_if<append_op>(&op)) {
      const std::uint32_t part = o->partition;
      const std::uint64_t seq = t_end_[part];
      std::uint8_t kb[8];
      put_be64(kb, seq);
      MDB_val k{8, kb}, v{event_header_size + o->record.size(), nullptr};
      // The hot path: a pure append, value written in place.
      rc = mdb_put(txn, events_[part], &k, &v, MDB_APPEND | MDB_RESERVE);
      if (rc == 0) {
        auto* d = static_cast<std::uint8_t*>(v.mv_data);
        d[0] = event_value_format;
        put_be64(d + 1, static_cast<std::uint64_t>(now_ms));
        if (!o->record.empty()) std::memcpy(d + event_header_size, o->record.data(), o->record.size());
        t_end_[part] = seq + 1;
        t_bytes_[part] += event_header_size + o->record.size() + entry_overhead;
        seqs.push_back(seq);
        appended_ = true;
      }
    } else if (auto* o = std::get_if<erase_op>(&op)) {
      if (!o->key.empty() && o->key.size() <= max_key_) {
        MDB_val k = to_val(o->key);
        rc = mdb_del(txn, tables_[static_cast<std::size_t>(o->t)], &k, nullptr);
        if (rc == MDB_NOTFOUND) rc = 0;
      }
    } else if (auto* o = std::get_if<erase_prefix_op>(&op)) {
      const MDB_dbi dbi = tables_[static_cast<std::size_t>(o->t)];
      if (o->prefix.empty()) {
        rc = mdb_drop(txn, dbi, 0);
      } else if (o->prefix.size() <= max_key_) {
        cursor c;
        rc = mdb_cursor_open(txn, dbi, &c.c);
        if (rc == 0) {
          MDB_val k = to_val(o->prefix), v;
          rc = mdb_cursor_get(c.c, &k, &v, MDB_SET_RANGE);
          while (rc == 0 && as_sv(k).starts_with(o->prefix)) {
            if ((rc = mdb_cursor_del(c.c, 0)) != 0) break;
            rc = mdb_cursor_get(c.c, &k, &v, MDB_NEXT);  // after a delete, NEXT yields the following key
          }
          if (rc == MDB_NOTFOUND) rc = 0;
        }
      }
    }
    if (rc != 0) return rc;
  }
  return 0;
}

// One write txn over `only`, or over every not-yet-done batch of work_ when only == nullptr.
int lmdb_backend_impl::commit_txn(pending* only, std::int64_t now_ms) {
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  if (rc != 0) return rc;
  std::copy(w_end_.begin(), w_end_.end(), t_end_.begin());
  std::copy(w_bytes_.begin(), w_bytes_.end(), t_bytes_.begin());
  const bool was_appended = appended_;
  std::uint64_t ops = 0, batches = 0;
  auto run = [&](pending& p) {
    if (rc == 0 && !p.done) {
      rc = apply(txn, p, now_ms);
      ops += p.batch.ops.size();
      ++batches;
    }
  };
  if (only) {
    run(*only);
  } else {
    for (auto& p : work_) run(p);
  }
  if (rc != 0) {
    mdb_txn_abort(txn);
    appended_ = was_appended;
    return rc;
  }
  if ((rc = mdb_txn_commit(txn)) != 0) {
    appended_ = was_appended;
    return rc;
  }
  // Durable now: publish the new ends.
  for (std::uint32_t p = 0; p < partitions_; ++p) {
    if (t_end_[p] != w_end_[p]) end_[p].store(t_end_[p], std::memory_order_release);
  }
  w_end_ = t_end_;  // same size: no allocation
  w_bytes_ = t_bytes_;
  if (only) {
    only->done = true;
  } else {
    for (auto& p : work_) p.done = true;
  }
  st_commits_.fetch_add(1, std::memory_order_relaxed);
  st_batches_.fetch_add(batches, std::memory_order_relaxed);
  st_ops_.fetch_add(ops, std::memory_order_relaxed);
  return 0;
}

void lmdb_backend_impl::commit_group() {
  const std::int64_t now_ms = wall_ms();
  std::size_t valid = 0;
  for (auto& p : work_) {
    p.result.err = validate(p.batch);
    p.done = p.result.err.code != errc::ok;
    if (!p.done) ++valid;
  }
  if (valid > 0) {
    int rc = commit_txn(nullptr, now_ms);
    if (rc != 0 && valid > 1) {
      // One bad batch must not fail the others: retry each on its own.
      for (auto& p : work_) {
        if (p.done) continue;
        int one = commit_txn(&p, now_ms);
        if (one != 0) {
          p.result.err = lmdb_error(one, "commit", opts_.map_size);
          p.result.sequence_numbers.clear();
          p.done = true;
        }
      }
    } else if (rc != 0) {
      for (auto& p : work_) {
        if (p.done) continue;
        p.result.err = lmdb_error(rc, "commit", opts_.map_size);
        p.result.sequence_numbers.clear();
        p.done = true;
      }
    }
  }
  if (appended_) {
    appended_ = false;
    { std::lock_guard lk(ev_mu_); }
    ev_cv_.notify_all();
  }
  std::uint64_t failed = 0;
  for (auto& p : work_) failed += p.result.ok() ? 0 : 1;
  if (failed) st_failed_.fetch_add(failed, std::memory_order_relaxed);  // before callbacks: they may read stats
  for (auto& p : work_) {
    if (!p.cb) continue;
    try {
      p.cb(p.result);
    } catch (...) {
      // A throwing callback must not take the writer (and every later commit) down with it.
    }
    // Release what the callback captured before the next one runs: a later callback may be a barrier
    // (submit_and_wait) whose caller then destroys what those captures point into.
    p.cb = nullptr;
  }
  work_.clear();
  work_ops_ = 0;
  work_bytes_ = 0;
}

// ---- retention -------------------------------------------------------------------------------------------

int lmdb_backend_impl::trim_partition(std::uint32_t p, std::int64_t now_ms, bool* more) {
  const auto& rp = opts_.retention;
  const std::int64_t max_age_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(rp.max_age).count();
  const std::int64_t cutoff = max_age_ms > 0 ? now_ms - max_age_ms : INT64_MIN;
  const std::uint64_t max_bytes = rp.max_bytes_per_partition;

  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  if (rc != 0) return rc;
  std::uint64_t bytes_left = w_bytes_[p];
  std::uint64_t new_begin = 0;
  std::size_t n = 0;
  bool empty = false;
  {
    cursor c;
    rc = mdb_cursor_open(txn, events_[p], &c.c);
    MDB_val k, v;
    if (rc == 0) rc = mdb_cursor_get(c.c, &k, &v, MDB_FIRST);
    while (rc == 0 && n < trim_chunk) {
      const auto* val = static_cast<const std::uint8_t*>(v.mv_data);
      const std::int64_t ts = v.mv_size >= event_header_size
                                  ? static_cast<std::int64_t>(get_be64(val + 1))
                                  : INT64_MIN;
      const bool old = ts < cutoff;
      const bool big = max_bytes > 0 && bytes_left > max_bytes;
      if (!old && !big) break;
      const std::uint64_t seq = get_be64(static_cast<const std::uint8_t*>(k.mv_data));
      const std::uint64_t sz = v.mv_size + entry_overhead;
      if ((rc = mdb_cursor_del(c.c, 0)) != 0) break;
      bytes_left = bytes_left > sz ? bytes_left - sz : 0;
      new_begin = seq + 1;
      ++n;
      rc = mdb_cursor_get(c.c, &k, &v, MDB_NEXT);
    }
    if (rc == MDB_NOTFOUND) {
      empty = true;
      rc = 0;
    }
  }
  if (rc == 0 && n > 0) {
    // Remember where the partition begins, so an emptied partition keeps its numbering after a restart.
    std::uint8_t vb[8];
    put_be64(vb, new_begin);
    const std::string key = events_begin_key(p);
    MDB_val k = to_val(key), v{8, vb};
    rc = mdb_put(txn, tables_[static_cast<std::size_t>(table::meta)], &k, &v, 0);
  }
  if (rc != 0 || n == 0) {
    mdb_txn_abort(txn);
    return rc;
  }
  if ((rc = mdb_txn_commit(txn)) != 0) return rc;
  w_bytes_[p] = empty ? 0 : bytes_left;
  begin_[p].store(new_begin, std::memory_order_release);
  st_trim_commits_.fetch_add(1, std::memory_order_relaxed);
  st_trimmed_.fetch_add(n, std::memory_order_relaxed);
  *more = *more || n == trim_chunk;
  return 0;
}

bool lmdb_backend_impl::trim_once() {
  const std::int64_t now_ms = wall_ms();
  bool more = false;
  for (std::uint32_t p = 0; p < partitions_; ++p) {
    if (begin_[p].load(std::memory_order_relaxed) == w_end_[p]) continue;  // empty
    // A failed trim (e.g. map full) is retried at the next interval; appends are unaffected.
    (void)trim_partition(p, now_ms, &more);
  }
  return more;
}

// ---- lifecycle -------------------------------------------------------------------------------------------

void lmdb_backend_impl::close() {
  if (std::this_thread::get_id() == writer_id_) {
    // Called from a commit callback: the writer cannot join itself. Stop taking work; the writer drains
    // and exits, and a later close() (or the destructor) from another thread finishes the job.
    {
      std::lock_guard lk(mu_);
      stopping_ = true;
    }
    return;
  }
  std::lock_guard cl(close_mu_);
  if (closed_) return;
  closed_ = true;
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (writer_.joinable()) writer_.join();  // drains the queue first
  {
    std::lock_guard lk(ev_mu_);
    ev_closed_ = true;
  }
  ev_cv_.notify_all();
  {
    std::unique_lock lk(env_mu_);
    env_open_ = false;
    std::lock_guard pl(pool_mu_);
    for (MDB_txn* t : pool_) mdb_txn_abort(t);
    pool_.clear();
    if (env_) mdb_env_close(env_);
    env_ = nullptr;
  }
  if (lock_fd_ >= 0) {
    ::close(lock_fd_);  // releases the flock
    lock_fd_ = -1;
  }
}

lmdb_stats lmdb_backend_impl::stats() const {
  lmdb_stats s;
  s.commits = st_commits_.load(std::memory_order_relaxed);
  s.batches = st_batches_.load(std::memory_order_relaxed);
  s.failed_batches = st_failed_.load(std::memory_order_relaxed);
  s.ops = st_ops_.load(std::memory_order_relaxed);
  s.trim_commits = st_trim_commits_.load(std::memory_order_relaxed);
  s.trimmed_events = st_trimmed_.load(std::memory_order_relaxed);
  {
    std::lock_guard lk(mu_);
    s.queued_batches = queue_.size();
  }
  return s;
}

}  // namespace

result<std::unique_ptr<lmdb_backend>> open_lmdb_backend(const lmdb_options& options) {
  auto b = std::make_unique<lmdb_backend_impl>(options);
  if (auto r = b->open(); !r) return r.err();  // the destructor releases whatever open() took
  return std::unique_ptr<lmdb_backend>(std::move(b));
}

result<std::unique_ptr<backend>> open_lmdb(const lmdb_options& options) {
  auto r = open_lmdb_backend(options);
  if (!r) return r.err();
  return std::unique_ptr<backend>(std::move(r).value());
}

}  // namespace fleethub::store
