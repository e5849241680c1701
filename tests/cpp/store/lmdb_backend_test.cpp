// Tests of the LMDB backend against a real environment in a temp dir under /tmp.
#include "fleethub/store/lmdb/lmdb_backend.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <mutex>
#include <thread>

namespace fs = std::filesystem;
using namespace fleethub;
using namespace fleethub::store;
using namespace std::chrono_literals;

namespace {

class temp_dir {
 public:
  temp_dir() {
    std::string tmpl = "/tmp/fleethub-store-test-XXXXXX";
    char* p = ::mkdtemp(tmpl.data());
    if (!p) throw std::runtime_error("mkdtemp failed");
    path_ = p;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

lmdb_options small_options(const std::string& path) {
  lmdb_options o;
  o.path = path;
  o.map_size = 256ull << 20;
  o.durable = false;  // tests don't need fsync; durability is LMDB's job
  return o;
}

std::unique_ptr<lmdb_backend> must_open(const lmdb_options& o) {
  auto r = open_lmdb_backend(o);
  if (!r) ADD_FAILURE() << "open failed: " << r.err().message;
  return r ? std::move(r).value() : nullptr;
}

write_batch put(table t, std::string k, std::string v) {
  write_batch b;
  b.ops.emplace_back(put_op{t, std::move(k), to_bytes(v)});
  return b;
}

write_batch append(std::uint32_t p, std::string rec) {
  write_batch b;
  b.ops.emplace_back(append_op{p, to_bytes(rec)});
  return b;
}

std::string str(const bytes& b) { return std::string(as_string_view(b)); }

std::vector<std::string> keys(const std::vector<key_value>& kvs) {
  std::vector<std::string> out;
  for (const auto& kv : kvs) out.push_back(kv.key);
  return out;
}

}  // namespace

TEST(lmdb, PutGetEraseScan) {
  temp_dir dir;
  auto db = must_open(small_options(dir.path()));
  ASSERT_TRUE(db);

  write_batch b;
  for (const char* k : {"a", "ab", "abc", "abd", "b", "ba"}) {
    b.ops.emplace_back(put_op{table::devices, k, to_bytes(std::string("v-") + k)});
  }
  ASSERT_TRUE(db->submit_and_wait(std::move(b)).ok());

  auto g = db->get(table::devices, "abc");
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE(g->has_value());
  EXPECT_EQ(str(**g), "v-abc");
  EXPECT_FALSE(db->get(table::devices, "zzz")->has_value());
  EXPECT_FALSE(db->get(table::modules, "abc")->has_value());  // tables are separate
  EXPECT_FALSE(db->get(table::devices, "")->has_value());

  EXPECT_EQ(keys(*db->scan(table::devices, "ab", "", 100)), (std::vector<std::string>{"ab", "abc", "abd"}));
  EXPECT_EQ(keys(*db->scan(table::devices, "ab", "ab", 100)), (std::vector<std::string>{"abc", "abd"}));
  EXPECT_EQ(keys(*db->scan(table::devices, "ab", "abc", 100)), (std::vector<std::string>{"abd"}));
  EXPECT_EQ(keys(*db->scan(table::devices, "ab", "abd", 100)), (std::vector<std::string>{}));
  EXPECT_EQ(keys(*db->scan(table::devices, "ab", "a", 100)), (std::vector<std::string>{"ab", "abc", "abd"}));
  EXPECT_EQ(keys(*db->scan(table::devices, "", "", 2)), (std::vector<std::string>{"a", "ab"}));
  EXPECT_EQ(keys(*db->scan(table::devices, "", "abd", 10)), (std::vector<std::string>{"b", "ba"}));
  EXPECT_EQ(keys(*db->scan(table::devices, "c", "", 10)), (std::vector<std::string>{}));
  EXPECT_EQ(keys(*db->scan(table::devices, "a", "", 0)), (std::vector<std::string>{}));
  auto s = db->scan(table::devices, "b", "", 10);
  ASSERT_EQ(s->size(), 2u);
  EXPECT_EQ(str((*s)[1].value), "v-ba");

  // Overwrite, erase (also of a missing key), erase_prefix.
  write_batch b2;
  b2.ops.emplace_back(put_op{table::devices, "a", to_bytes("new")});
  b2.ops.emplace_back(erase_op{table::devices, "b"});
  b2.ops.emplace_back(erase_op{table::devices, "missing"});
  b2.ops.emplace_back(erase_prefix_op{table::devices, "ab"});
  ASSERT_TRUE(db->submit_and_wait(std::move(b2)).ok());
  EXPECT_EQ(keys(*db->scan(table::devices, "", "", 100)), (std::vector<std::string>{"a", "ba"}));
  EXPECT_EQ(str(**db->get(table::devices, "a")), "new");

  // Empty prefix clears the table; other tables are untouched.
  ASSERT_TRUE(db->submit_and_wait(put(table::modules, "m", "x")).ok());
  write_batch b3;
  b3.ops.emplace_back(erase_prefix_op{table::devices, ""});
  ASSERT_TRUE(db->submit_and_wait(std::move(b3)).ok());
  EXPECT_TRUE(db->scan(table::devices, "", "", 100)->empty());
  EXPECT_TRUE(db->get(table::modules, "m")->has_value());
}

TEST(lmdb, ErasePrefixAcrossManyPages) {
  temp_dir dir;
  auto db = must_open(small_options(dir.path()));
  write_batch b;
  for (int i = 0; i < 5000; ++i) {
    b.ops.emplace_back(put_op{table::session_outbound, "c1" + std::string(1, '\0') + std::to_string(100000 + i),
                              bytes(100, 1)});
    b.ops.emplace_back(put_op{table::session_outbound, "c2" + std::string(1, '\0') + std::to_string(i), bytes(10, 2)});
  }
  ASSERT_TRUE(db->submit_and_wait(std::move(b)).ok());
  write_batch e;
  e.ops.emplace_back(erase_prefix_op{table::session_outbound, "c1" + std::string(1, '\0')});
  ASSERT_TRUE(db->submit_and_wait(std::move(e)).ok());
  EXPECT_TRUE(db->scan(table::session_outbound, "c1", "", 10)->empty());
  EXPECT_EQ(db->scan(table::session_outbound, "c2", "", 100000)->size(), 5000u);
}

TEST(lmdb, InvalidOpsFailOnlyTheirBatch) {
  temp_dir dir;
  auto db = must_open(small_options(dir.path()));
  std::mutex m;
  std::condition_variable cv;
  int done = 0;
  commit_result r_bad, r_good, r_badpart;
  auto cb = [&](commit_result* out) {
    return [&, out](const commit_result& r) {
      std::lock_guard lk(m);
      *out = r;
      ++done;
      cv.notify_all();
    };
  };
  db->submit(put(table::devices, "", "empty key"), cb(&r_bad));
  db->submit(append(99, "x"), cb(&r_badpart));
  db->submit(put(table::devices, "ok", "v"), cb(&r_good));
  std::unique_lock lk(m);
  ASSERT_TRUE(cv.wait_for(lk, 5s, [&] { return done == 3; }));
  EXPECT_EQ(r_bad.err.code, errc::invalid_argument);
  EXPECT_EQ(r_badpart.err.code, errc::invalid_argument);
  EXPECT_TRUE(r_good.ok());
  EXPECT_TRUE(db->get(table::devices, "ok")->has_value());
  EXPECT_EQ(db->stats().failed_batches, 2u);
}

TEST(lmdb, AppendSequencesAndReadEvents) {
  temp_dir dir;
  auto o = small_options(dir.path());
  o.partitions = 3;
  auto db = must_open(o);
  ASSERT_EQ(db->partition_count(), 3u);
  for (std::uint32_t p = 0; p < 3; ++p) {
    EXPECT_EQ(db->end_sequence(p), 0u);
    EXPECT_EQ(db->begin_sequence(p), 0u);
  }

  // A mixed batch: sequence numbers per append op, in order, contiguous per partition.
  write_batch b;
  b.ops.emplace_back(append_op{0, to_bytes("p0-0")});
  b.ops.emplace_back(append_op{1, to_bytes("p1-0")});
  b.ops.emplace_back(put_op{table::sessions, "s", to_bytes("x")});
  b.ops.emplace_back(append_op{0, to_bytes("p0-1")});
  b.ops.emplace_back(append_op{0, bytes{}});  // empty record is allowed
  auto r = db->submit_and_wait(std::move(b));
  ASSERT_TRUE(r.ok()) << r.err.message;
  EXPECT_EQ(r.sequence_numbers, (std::vector<std::uint64_t>{0, 0, 1, 2}));
  EXPECT_EQ(db->end_sequence(0), 3u);
  EXPECT_EQ(db->end_sequence(1), 1u);
  EXPECT_EQ(db->end_sequence(2), 0u);

  // Callbacks run in submission order and see increasing sequence numbers.
  std::mutex m;
  std::vector<std::uint64_t> seen;
  std::atomic<int> n{0};
  for (int i = 0; i < 100; ++i) {
    db->submit(append(2, "e" + std::to_string(i)), [&](const commit_result& cr) {
      ASSERT_TRUE(cr.ok());
      ASSERT_EQ(cr.sequence_numbers.size(), 1u);
      std::lock_guard lk(m);
      seen.push_back(cr.sequence_numbers[0]);
      ++n;
    });
  }
  std::vector<std::uint64_t> known(3);
  for (std::uint32_t p = 0; p < 3; ++p) known[p] = db->end_sequence(p);
  while (n.load() < 100) db->wait_for_events(known, 100ms);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(seen[i], static_cast<std::uint64_t>(i));
  EXPECT_EQ(db->end_sequence(2), 100u);

  auto ev = db->read_events(0, 0, 10);
  ASSERT_TRUE(ev.ok());
  ASSERT_EQ(ev->size(), 3u);
  EXPECT_EQ((*ev)[0].sequence_number, 0u);
  EXPECT_EQ(str((*ev)[0].record), "p0-0");
  EXPECT_EQ(str((*ev)[1].record), "p0-1");
  EXPECT_TRUE((*ev)[2].record.empty());
  EXPECT_EQ((*ev)[2].partition, 0u);

  auto mid = db->read_events(2, 40, 5);
  ASSERT_EQ(mid->size(), 5u);
  EXPECT_EQ(mid->front().sequence_number, 40u);
  EXPECT_EQ(str(mid->back().record), "e44");
  EXPECT_EQ(db->read_events(2, 98, 10)->size(), 2u);
  EXPECT_TRUE(db->read_events(2, 100, 10)->empty());
  EXPECT_TRUE(db->read_events(2, 0, 0)->empty());
  EXPECT_EQ(db->read_events(3, 0, 10).err().code, errc::invalid_argument);
}

TEST(lmdb, ReopenRestoresDataSequencesAndPartitionCount) {
  temp_dir dir;
  auto o = small_options(dir.path());
  o.partitions = 4;
  o.durable = true;
  {
    auto db = must_open(o);
    ASSERT_TRUE(db->submit_and_wait(put(table::policies, "iothubowner", "key")).ok());
    for (int i = 0; i < 7; ++i) ASSERT_TRUE(db->submit_and_wait(append(1, "r" + std::to_string(i))).ok());
    ASSERT_TRUE(db->submit_and_wait(append(3, "z")).ok());
  }
  o.partitions = 2;  // ignored: the store keeps its own count
  auto db = must_open(o);
  ASSERT_TRUE(db);
  EXPECT_EQ(db->partition_count(), 4u);
  EXPECT_EQ(str(**db->get(table::policies, "iothubowner")), "key");
  EXPECT_EQ(db->end_sequence(1), 7u);
  EXPECT_EQ(db->begin_sequence(1), 0u);
  EXPECT_EQ(db->end_sequence(3), 1u);
  EXPECT_EQ(db->end_sequence(0), 0u);
  auto r = db->submit_and_wait(append(1, "r7"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.sequence_numbers, (std::vector<std::uint64_t>{7}));
  auto ev = db->read_events(1, 6, 10);
  ASSERT_EQ(ev->size(), 2u);
  EXPECT_EQ(str((*ev)[0].record), "r6");
  EXPECT_EQ(str((*ev)[1].record), "r7");

  // The meta layout documented in lmdb_backend.hpp.
  auto sv = db->get(table::meta, meta_schema_version_key);
  ASSERT_TRUE(sv->has_value());
  EXPECT_EQ(**sv, (bytes{0, 0, 0, static_cast<std::uint8_t>(schema_version)}));
  EXPECT_EQ(**db->get(table::meta, meta_partitions_key), (bytes{0, 0, 0, 4}));
}

TEST(lmdb, ManyPartitionsReopenWithFewerRequested) {
  temp_dir dir;
  auto o = small_options(dir.path());
  o.partitions = 100;  // more DB slots than the default reservation for a 1-partition request
  {
    auto db = must_open(o);
    ASSERT_TRUE(db->submit_and_wait(append(99, "last")).ok());
  }
  o.partitions = 1;
  auto db = must_open(o);
  ASSERT_TRUE(db);
  EXPECT_EQ(db->partition_count(), 100u);
  EXPECT_EQ(db->end_sequence(99), 1u);
}

TEST(lmdb, SchemaMismatchIsAClearError) {
  temp_dir dir;
  auto o = small_options(dir.path());
  {
    auto db = must_open(o);
    write_batch b;
    b.ops.emplace_back(put_op{table::meta, std::string(meta_schema_version_key), bytes{0, 0, 0, 42}});
    ASSERT_TRUE(db->submit_and_wait(std::move(b)).ok());
  }
  auto r = open_lmdb(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.err().code, errc::schema_mismatch);
  EXPECT_NE(r.err().message.find("schema version 42"), std::string::npos) << r.err().message;
  EXPECT_NE(r.err().message.find("reads version " + std::to_string(schema_version)), std::string::npos);
  EXPECT_NE(r.err().message.find("--data-dir"), std::string::npos);
  // The failed open released the lock: the dir can be opened again (and still mismatches).
  EXPECT_EQ(open_lmdb(o).err().code, errc::schema_mismatch);
}

TEST(lmdb, GroupCommitGroups) {
  temp_dir dir;
  auto o = small_options(dir.path());
  o.durable = true;  // real fsyncs, so submitters outrun the writer
  o.partitions = 4;
  auto db = must_open(o);
  constexpr int threads = 4, per_thread = 2500;
  std::atomic<int> done{0}, failed{0};
  std::vector<std::vector<std::uint64_t>> seqs(threads);
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        write_batch b;
        b.ops.emplace_back(append_op{static_cast<std::uint32_t>(t), to_bytes("m" + std::to_string(i))});
        if (i % 10 == 0) b.ops.emplace_back(put_op{table::sessions, "t" + std::to_string(t), to_bytes("x")});
        // Callbacks run on the single writer thread, in order: no lock needed per thread's vector.
        db->submit(std::move(b), [&, t](const commit_result& r) {
          if (!r.ok() || r.sequence_numbers.size() != 1) {
            ++failed;
          } else {
            seqs[t].push_back(r.sequence_numbers[0]);
          }
          ++done;
        });
      }
    });
  }
  for (auto& th : ts) th.join();
  db->close();  // drains
  EXPECT_EQ(done.load(), threads * per_thread);
  EXPECT_EQ(failed.load(), 0);
  auto st = db->stats();
  EXPECT_EQ(st.batches, static_cast<std::uint64_t>(threads * per_thread));
  EXPECT_LT(st.commits, st.batches);
  EXPECT_GT(st.commits, 0u);
  std::cout << "[ info ] " << st.batches << " batches in " << st.commits << " commits\n";
  for (int t = 0; t < threads; ++t) {
    ASSERT_EQ(seqs[t].size(), static_cast<std::size_t>(per_thread));
    for (int i = 0; i < per_thread; ++i) ASSERT_EQ(seqs[t][i], static_cast<std::uint64_t>(i));
    EXPECT_EQ(db->end_sequence(t), static_cast<std::uint64_t>(per_thread));
  }
}

TEST(lmdb, MaxBatchOpsNeverSplitsABatch) {
  temp_dir dir;
  auto o = small_options(dir.path());
  o.max_batch_ops = 3;
  o.linger = std::chrono::microseconds(2000);
  auto db = must_open(o);
  std::atomic<int> done{0};
  std::atomic<bool> ok{true};
  for (int i = 0; i < 50; ++i) {
    write_batch b;
    for (int j = 0; j < 5; ++j) b.ops.emplace_back(append_op{0, to_bytes("x")});  // bigger than max_batch_ops
    db->submit(std::move(b), [&](const commit_result& r) {
      if (!r.ok() || r.sequence_numbers.size() != 5 || r.sequence_numbers[0] % 5 != 0) ok = false;
      ++done;
    });
  }
  db->close();
  EXPECT_EQ(done.load(), 50);
  EXPECT_TRUE(ok.load());
  EXPECT_EQ(db->end_sequence(0), 250u);
  EXPECT_EQ(db->stats().commits, 50u);  // each batch alone exceeds the limit
}

TEST(lmdb, WaitForEventsWakesAndTimesOut) {
  temp_dir dir;
  auto o = small_options(dir.path());
  o.partitions = 2;
  auto db = must_open(o);
  std::vector<std::uint64_t> known{0, 0};

  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(db->wait_for_events(known, 100ms));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 90ms);

  // Puts don't wake event waiters.
  ASSERT_TRUE(db->submit_and_wait(put(table::devices, "d", "x")).ok());
  EXPECT_FALSE(db->wait_for_events(known, 20ms));

  std::thread writer([&] {
    std::this_thread::sleep_for(50ms);
    db->submit(append(1, "hello"), nullptr);
  });
  t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(db->wait_for_events(known, 5s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);
  writer.join();
  EXPECT_EQ(db->end_sequence(1), 1u);
  // Stale known ends return at once.
  EXPECT_TRUE(db->wait_for_events(known, 5s));
  EXPECT_FALSE(db->wait_for_events({0, 1}, 10ms));

  // close() wakes waiters.
  std::thread closer([&] {
    std::this_thread::sleep_for(50ms);
    db->close();
  });
  t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(db->wait_for_events({0, 1}, 10s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  closer.join();
}

TEST(lmdb, RetentionByAge) {
  temp_dir dir;
  auto o = small_options(dir.path());
  o.partitions = 2;
  o.retention.max_age = 1s;
  o.retention.trim_interval = 1s;
  {
    auto db = must_open(o);
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(db->submit_and_wait(append(0, "old" + std::to_string(i))).ok());
    ASSERT_TRUE(db->submit_and_wait(append(1, "old")).ok());
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while ((db->begin_sequence(0) < 10 || db->begin_sequence(1) < 1) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(50ms);
    }
    EXPECT_EQ(db->begin_sequence(0), 10u);
    EXPECT_EQ(db->end_sequence(0), 10u);
    EXPECT_EQ(db->begin_sequence(1), 1u);
    EXPECT_TRUE(db->read_events(0, 0, 100)->empty());
    EXPECT_GE(db->stats().trimmed_events, 11u);

    // New events are kept until they age out; numbering continues.
    auto r = db->submit_and_wait(append(0, "new"));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.sequence_numbers, (std::vector<std::uint64_t>{10}));
    auto ev = db->read_events(0, 0, 100);
    ASSERT_EQ(ev->size(), 1u);
    EXPECT_EQ((*ev)[0].sequence_number, 10u);
  }
  // An emptied partition keeps its numbering across a restart.
  o.retention.max_age = std::chrono::hours(24);
  auto db = must_open(o);
  EXPECT_EQ(db->begin_sequence(1), 1u);
  EXPECT_EQ(db->end_sequence(1), 1u);
  EXPECT_EQ(db->submit_and_wait(append(1, "again")).sequence_numbers, (std::vector<std::uint64_t>{1}));
  EXPECT_EQ(db->begin_sequence(0), 10u);
  EXPECT_EQ(db->end_sequence(0), 11u);
}

TEST(lmdb, RetentionByBytes) {
  temp_dir dir;
  auto o = small_options(dir.path());
  o.partitions = 1;
  o.retention.max_age = std::chrono::hours(24);
  o.retention.max_bytes_per_partition = 20000;
  o.retention.trim_interval = 1s;
  auto db = must_open(o);
  write_batch b;
  for (int i = 0; i < 100; ++i) b.ops.emplace_back(append_op{0, bytes(1000, static_cast<std::uint8_t>(i))});
  ASSERT_TRUE(db->submit_and_wait(std::move(b)).ok());
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (db->begin_sequence(0) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  const auto kept = db->end_sequence(0) - db->begin_sequence(0);
  EXPECT_LE(kept, 20u);
  EXPECT_GE(kept, 10u);
  auto ev = db->read_events(0, 0, 1000);
  ASSERT_EQ(ev->size(), kept);
  EXPECT_EQ(ev->front().sequence_number, db->begin_sequence(0));
  EXPECT_EQ(ev->back().sequence_number, 99u);
  EXPECT_EQ(ev->back().record, bytes(1000, 99));
}

TEST(lmdb, ConcurrentReadersWhileWriting) {
  temp_dir dir;
  auto o = small_options(dir.path());
  o.partitions = 1;
  auto db = must_open(o);
  std::atomic<int> errors{0};
  std::atomic<long> reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      std::uint64_t next = 0;
      // Each reader follows the log to the end, so reads overlap the writes.
      const auto give_up = std::chrono::steady_clock::now() + 20s;
      while (next < 2000 && std::chrono::steady_clock::now() < give_up) {
        auto ev = db->read_events(0, next, 64);
        if (!ev.ok()) {
          ++errors;
          continue;
        }
        for (const auto& e : *ev) {
          if (e.sequence_number != next || str(e.record) != "ev" + std::to_string(next)) ++errors;
          next = e.sequence_number + 1;
        }
        auto s = db->scan(table::devices, "dev", "", 10);
        if (!s.ok()) ++errors;
        ++reads;
      }
    });
  }
  for (int i = 0; i < 2000; ++i) {
    write_batch b;
    b.ops.emplace_back(append_op{0, to_bytes("ev" + std::to_string(i))});
    b.ops.emplace_back(put_op{table::devices, "dev" + std::to_string(i % 50), to_bytes(std::to_string(i))});
    if (i % 100 == 99) {
      EXPECT_TRUE(db->submit_and_wait(std::move(b)).ok());
    } else {
      db->submit(std::move(b), nullptr);
    }
  }
  for (auto& r : readers) r.join();  // each ends after seeing event 1999
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(db->end_sequence(0), 2000u);
}

TEST(lmdb, SecondOpenOfSameDirFails) {
  temp_dir dir;
  auto o = small_options(dir.path());
  auto db = must_open(o);
  auto again = open_lmdb(o);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.err().code, errc::storage);
  EXPECT_NE(again.err().message.find("in use by another fleethub process (pid " + std::to_string(::getpid()) + ")"),
            std::string::npos)
      << again.err().message;
  // The first one still works.
  EXPECT_TRUE(db->submit_and_wait(put(table::devices, "a", "b")).ok());

  // Another process is refused too.
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto r = open_lmdb(o);
    ::_exit(!r.ok() && r.err().code == errc::storage ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);

  db->close();
  EXPECT_TRUE(open_lmdb(o).ok());  // released by close()
}

TEST(lmdb, OpenErrorsAreResults) {
  temp_dir dir;
  const std::string file = dir.path() + "/not-a-dir";
  { std::ofstream(file) << "x"; }
  auto r = open_lmdb(small_options(file + "/sub"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.err().code, errc::storage);
  auto o = small_options(dir.path());
  o.partitions = 0;
  EXPECT_EQ(open_lmdb(o).err().code, errc::invalid_argument);
}

TEST(lmdb, CallbackAlwaysInvokedAtClose) {
  temp_dir dir;
  auto db = must_open(small_options(dir.path()));
  std::atomic<int> ok{0}, called{0};
  for (int i = 0; i < 1000; ++i) {
    db->submit(append(0, "x"), [&](const commit_result& r) {
      ++called;
      if (r.ok()) ++ok;
    });
  }
  db->close();
  EXPECT_EQ(called.load(), 1000);
  EXPECT_EQ(ok.load(), 1000);  // pending work is committed, not dropped

  // After close: the callback still runs, with an error.
  commit_result late;
  bool late_called = false;
  db->submit(append(0, "y"), [&](const commit_result& r) {
    late = r;
    late_called = true;
  });
  EXPECT_TRUE(late_called);
  EXPECT_EQ(late.err.code, errc::unavailable);
  EXPECT_EQ(db->get(table::devices, "a").err().code, errc::unavailable);
  EXPECT_EQ(db->read_events(0, 0, 1).err().code, errc::unavailable);
  db->close();  // idempotent
}

TEST(lmdb, MapFullIsAStorageErrorAndOthersSurvive) {
  temp_dir dir;
  auto o = small_options(dir.path());
  o.map_size = 1ull << 20;  // 1 MiB
  o.durable = true;
  o.linger = std::chrono::microseconds(200000);  // the three batches below form one group
  auto db = must_open(o);

  std::mutex m;
  std::condition_variable cv;
  int done = 0;
  commit_result r_small1, r_big, r_small2;
  auto cb = [&](commit_result* out) {
    return [&, out](const commit_result& r) {
      std::lock_guard lk(m);
      *out = r;
      ++done;
      cv.notify_all();
    };
  };
  // Keep the writer busy so the three land in one group, and the big one must not fail its neighbours.
  write_batch big;
  big.ops.emplace_back(put_op{table::devices, "big", bytes(4u << 20, 7)});
  db->submit(put(table::devices, "s1", "one"), cb(&r_small1));
  db->submit(std::move(big), cb(&r_big));
  db->submit(put(table::devices, "s2", "two"), cb(&r_small2));
  {
    std::unique_lock lk(m);
    ASSERT_TRUE(cv.wait_for(lk, 10s, [&] { return done == 3; }));
  }
  EXPECT_TRUE(r_small1.ok()) << r_small1.err.message;
  EXPECT_TRUE(r_small2.ok()) << r_small2.err.message;
  EXPECT_EQ(r_big.err.code, errc::storage);
  EXPECT_NE(r_big.err.message.find("storage full: raise map_size (--map-size)"), std::string::npos)
      << r_big.err.message;
  EXPECT_FALSE(db->get(table::devices, "big")->has_value());
  // The group txn failed, then each batch was retried alone: two commits, one failure.
  EXPECT_EQ(db->stats().commits, 2u);
  EXPECT_EQ(db->stats().failed_batches, 1u);

  // Later small writes still work, in this store and after a reopen.
  EXPECT_TRUE(db->submit_and_wait(put(table::devices, "s3", "three")).ok());
  EXPECT_TRUE(db->submit_and_wait(append(0, "e")).ok());
  db->close();
  auto db2 = must_open(o);
  EXPECT_EQ(str(**db2->get(table::devices, "s3")), "three");
  EXPECT_EQ(db2->end_sequence(0), 1u);
  EXPECT_TRUE(db2->submit_and_wait(put(table::devices, "s4", "four")).ok());
}

TEST(lmdb, CloseFromACallbackStopsTheWriter) {
  temp_dir dir;
  auto db = must_open(small_options(dir.path()));
  std::atomic<int> called{0};
  std::promise<void> first;
  db->submit(append(0, "a"), [&](const commit_result&) {
    db->close();  // must not deadlock; the writer drains and stops
    ++called;
    first.set_value();
  });
  first.get_future().wait();
  // New work is refused (callback runs at once) but never lost.
  commit_result late;
  db->submit(append(0, "b"), [&](const commit_result& r) {
    late = r;
    ++called;
  });
  EXPECT_EQ(late.err.code, errc::unavailable);
  db->close();  // joins and closes from this thread
  EXPECT_EQ(called.load(), 2);
  EXPECT_EQ(db->end_sequence(0), 1u);
}

TEST(lmdb, CallbackCapturesAreReleasedBeforeALaterBarrierReturns) {
  // A caller uses submit_and_wait({}) as a barrier before destroying what earlier callbacks captured: by the
  // time the barrier returns, those captures must be gone (not merely the callbacks run).
  temp_dir dir;
  auto db = must_open(small_options(dir.path()));
  for (int round = 0; round < 50; ++round) {
    auto token = std::make_shared<int>(round);
    std::weak_ptr<int> watch = token;
    db->submit(append(0, "x"), [token = std::move(token)](const commit_result&) {});
    EXPECT_TRUE(db->submit_and_wait({}).ok());
    EXPECT_TRUE(watch.expired()) << "round " << round;
  }
}
