// Cloud-to-device queues (semantics.md §4), feedback and persistence: feedback batching and its own
// lock/complete/abandon/TTL, durability across a reopen, drop_device, store write order, concurrency.
#include "c2d_queues_fixture.hpp"

namespace fleethub::hub {
namespace {

// --- feedback --------------------------------------------------------------------------------------------

TEST_F(C2dQueuesTest, FeedbackBatchesOf64AndPartialAfterTheInterval) {
  c2d_options o;
  o.feedback_batch_records = 64;
  o.feedback_interval = 15s;
  o.max_queue_depth = 100;
  open_queues(o);
  for (int i = 0; i < 70; ++i) send_ok("dev1", "b", c2d_ack::positive, "m" + std::to_string(i));
  auto ds = q_->lock_next("dev1", 100, 0ms);
  ASSERT_EQ(ds.size(), 70u);
  for (auto& d : ds) ASSERT_TRUE(q_->complete("dev1", d.lock_token));
  EXPECT_FALSE(q_->receive_feedback(0ms)) << "nothing before a tick";
  q_->tick();
  auto b1 = q_->receive_feedback(0ms);
  ASSERT_TRUE(b1) << "a full batch goes out at once";
  auto r1 = parse_feedback(b1->body);
  ASSERT_EQ(r1.size(), 64u);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(r1[i].original_message_id, "m" + std::to_string(i)) << "in order";
  EXPECT_EQ(b1->delivery_count, 0u);
  EXPECT_EQ(b1->enqueued_ms, t0);
  EXPECT_FALSE(q_->receive_feedback(0ms)) << "the 6 others wait for the interval; the batch is locked";
  EXPECT_EQ(rows(store::table::c2d_feedback_pending), 6u);
  EXPECT_EQ(rows(store::table::c2d_feedback), 1u);

  clock_ = t0 + 14999;
  q_->tick();
  EXPECT_FALSE(q_->receive_feedback(0ms)) << "not yet 15 s";
  clock_ = t0 + 15000;
  q_->tick();
  auto b2 = q_->receive_feedback(0ms);
  ASSERT_TRUE(b2) << "the partial batch after the interval";
  auto r2 = parse_feedback(b2->body);
  ASSERT_EQ(r2.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(r2[i].original_message_id, "m" + std::to_string(64 + i));
  EXPECT_GT(b2->id, b1->id);
  EXPECT_NE(b2->lock_token, b1->lock_token);
  EXPECT_EQ(rows(store::table::c2d_feedback_pending), 0u);
  EXPECT_EQ(rows(store::table::c2d_feedback), 2u);
  ASSERT_TRUE(q_->complete_feedback(b1->lock_token));
  ASSERT_TRUE(q_->complete_feedback(b2->lock_token));
  EXPECT_EQ(rows(store::table::c2d_feedback), 0u);
  EXPECT_FALSE(q_->receive_feedback(0ms));
}

TEST_F(C2dQueuesTest, FeedbackBodyHasTheDocumentedFields) {
  open_queues();
  send_ok("dev1", "x", c2d_ack::positive, "orig-1");
  clock_ = t0 + 1234;  // completed later than enqueued
  ASSERT_TRUE(q_->complete("dev1", lock_one("dev1").lock_token));
  clock_ = t0 + 1234 + 15000;
  q_->tick();
  auto b = q_->receive_feedback(0ms);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->enqueued_ms, t0 + 1234 + 15000);
  auto v = json::parse(b->body);
  ASSERT_TRUE(v.ok()) << b->body;
  ASSERT_TRUE(v->is_array());
  ASSERT_EQ(v->as_array().size(), 1u);
  auto& r = v->as_array()[0];
  EXPECT_EQ(r.find("originalMessageId")->as_string(), "orig-1");
  EXPECT_EQ(r.find("statusCode")->as_string(), "Success");
  EXPECT_EQ(r.find("description")->as_string(), "Success");
  EXPECT_EQ(r.find("deviceId")->as_string(), "dev1");
  EXPECT_EQ(r.find("deviceGenerationId")->as_string(), dev1_.generation_id);
  EXPECT_FALSE(dev1_.generation_id.empty());
  auto when = r.find("enqueuedTimeUtc")->as_string();
  EXPECT_EQ(when, format_iso8601(t0)) << "the original message's enqueue time (c2d_queues.hpp)";
  ASSERT_FALSE(when.empty());
  EXPECT_EQ(when.back(), 'Z');
  EXPECT_EQ(when.rfind("2023-11-14T22:13:20", 0), 0u) << when;
  EXPECT_EQ(parse_iso8601(when), t0);
}

TEST_F(C2dQueuesTest, FeedbackLockCompleteAndAbandon) {
  c2d_options o;
  o.feedback_max_delivery_count = 3;
  o.feedback_batch_records = 1;  // one batch per record
  open_queues(o);
  send_ok("dev1", "a", c2d_ack::positive, "f1");
  send_ok("dev1", "b", c2d_ack::positive, "f2");
  for (auto& d : q_->lock_next("dev1", 10, 0ms)) ASSERT_TRUE(q_->complete("dev1", d.lock_token));
  q_->tick();
  EXPECT_EQ(rows(store::table::c2d_feedback), 2u);

  auto a = q_->receive_feedback(0ms);
  ASSERT_TRUE(a);
  EXPECT_EQ(parse_feedback(a->body).at(0).original_message_id, "f1");
  auto b = q_->receive_feedback(0ms);
  ASSERT_TRUE(b) << "a second receive gets the next batch";
  EXPECT_EQ(parse_feedback(b->body).at(0).original_message_id, "f2");
  EXPECT_FALSE(q_->receive_feedback(0ms)) << "both are locked";

  // Complete b: gone for good; completing twice is refused.
  ASSERT_TRUE(q_->complete_feedback(b->lock_token));
  auto twice = q_->complete_feedback(b->lock_token);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.err().code, errc::precondition_failed);
  EXPECT_EQ(q_->complete_feedback("nope").err().code, errc::precondition_failed);
  EXPECT_EQ(q_->abandon_feedback("nope").err().code, errc::precondition_failed);
  EXPECT_EQ(rows(store::table::c2d_feedback), 1u);

  // Abandon a: receivable again with delivery_count + 1, until feedback_max_delivery_count drops it.
  ASSERT_TRUE(q_->abandon_feedback(a->lock_token));
  EXPECT_EQ(q_->abandon_feedback(a->lock_token).err().code, errc::precondition_failed) << "token spent";
  auto a2 = q_->receive_feedback(0ms);
  ASSERT_TRUE(a2);
  EXPECT_EQ(a2->id, a->id);
  EXPECT_EQ(a2->delivery_count, 1u);
  EXPECT_EQ(a2->body, a->body);
  EXPECT_NE(a2->lock_token, a->lock_token);
  EXPECT_EQ(q_->complete_feedback(a->lock_token).err().code, errc::precondition_failed) << "old token";
  ASSERT_TRUE(q_->abandon_feedback(a2->lock_token));
  auto a3 = q_->receive_feedback(0ms);
  ASSERT_TRUE(a3);
  EXPECT_EQ(a3->delivery_count, 2u);
  ASSERT_TRUE(q_->abandon_feedback(a3->lock_token));
  EXPECT_FALSE(q_->receive_feedback(0ms)) << "dropped after 3 deliveries";
  EXPECT_EQ(rows(store::table::c2d_feedback), 0u);
}

TEST_F(C2dQueuesTest, FeedbackLockExpiresAndTtlDrops) {
  c2d_options o;
  o.feedback_lock = 60s;
  o.feedback_ttl = std::chrono::hours(1);
  open_queues(o);
  send_ok("dev1", "a", c2d_ack::positive, "f1");
  ASSERT_TRUE(q_->complete("dev1", lock_one("dev1").lock_token));
  clock_ += 15000;
  q_->tick();
  const std::int64_t made = clock_.load();
  auto a = q_->receive_feedback(0ms);
  ASSERT_TRUE(a);
  clock_ = made + 59999;
  q_->tick();
  EXPECT_FALSE(q_->receive_feedback(0ms)) << "lock still held";
  clock_ = made + 60000;
  q_->tick();
  auto again = q_->receive_feedback(0ms);
  ASSERT_TRUE(again) << "lock expired: receivable again";
  EXPECT_EQ(again->id, a->id);
  EXPECT_NE(again->lock_token, a->lock_token);
  EXPECT_EQ(q_->complete_feedback(a->lock_token).err().code, errc::precondition_failed) << "expired token";
  ASSERT_TRUE(q_->abandon_feedback(again->lock_token));
  // TTL: an hour after the batch was made it is dropped, from the store too.
  clock_ = made + 3600 * 1000 - 1;
  q_->tick();
  auto still = q_->receive_feedback(0ms);
  ASSERT_TRUE(still);
  ASSERT_TRUE(q_->abandon_feedback(still->lock_token));
  clock_ = made + 3600 * 1000;
  q_->tick();
  EXPECT_FALSE(q_->receive_feedback(0ms)) << "expired";
  EXPECT_EQ(rows(store::table::c2d_feedback), 0u);
}

TEST_F(C2dQueuesTest, FeedbackTtlDropsALockedBatchToo) {
  open_queues();
  send_ok("dev1", "a", c2d_ack::positive);
  ASSERT_TRUE(q_->complete("dev1", lock_one("dev1").lock_token));
  clock_ += 15000;
  q_->tick();
  auto a = q_->receive_feedback(0ms);
  ASSERT_TRUE(a);
  clock_ += 3600 * 1000;
  q_->tick();
  EXPECT_EQ(q_->complete_feedback(a->lock_token).err().code, errc::precondition_failed);
  EXPECT_FALSE(q_->receive_feedback(0ms));
  EXPECT_EQ(rows(store::table::c2d_feedback), 0u);
}

TEST_F(C2dQueuesTest, ReceiveFeedbackWaitsAndCloseWakes) {
  open_queues();
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(q_->receive_feedback(100ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 90ms) << "waited for the given time";

  // A waiter is woken by a batch made by tick().
  std::promise<std::optional<feedback_batch>> got;
  std::thread waiter([&] { got.set_value(q_->receive_feedback(30s)); });
  send_ok("dev1", "a", c2d_ack::positive, "w1");
  ASSERT_TRUE(q_->complete("dev1", lock_one("dev1").lock_token));
  clock_ += 15000;
  q_->tick();
  auto f = got.get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready) << "tick wakes the waiter";
  waiter.join();
  auto b = f.get();
  ASSERT_TRUE(b);
  EXPECT_EQ(parse_feedback(b->body).at(0).original_message_id, "w1");

  // close() wakes a waiter with nothing.
  std::promise<std::optional<feedback_batch>> none;
  std::atomic<bool> started{false};
  std::thread closer_waiter([&] {
    started = true;
    none.set_value(q_->receive_feedback(60s));
  });
  while (!started) std::this_thread::yield();
  std::this_thread::sleep_for(20ms);
  start = std::chrono::steady_clock::now();
  q_->close();
  auto nf = none.get_future();
  ASSERT_EQ(nf.wait_for(10s), std::future_status::ready) << "close wakes the waiter";
  closer_waiter.join();
  EXPECT_FALSE(nf.get());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_FALSE(q_->receive_feedback(1s)) << "after close, receive returns at once";
}

// --- durability ------------------------------------------------------------------------------------------

TEST_F(C2dQueuesTest, StateSurvivesAReopen) {
  c2d_options o;
  o.feedback_batch_records = 2;
  open_queues(o);
  std::vector<c2d_sent> sent;
  for (int i = 0; i < 5; ++i) sent.push_back(send_ok("dev1", "m" + std::to_string(i), c2d_ack::full, "m" + std::to_string(i)));
  auto ds = q_->lock_next("dev1", 10, 0ms);
  ASSERT_EQ(ds.size(), 5u);
  ASSERT_TRUE(q_->complete("dev1", ds[0].lock_token));  // Success record
  ASSERT_TRUE(q_->abandon("dev1", ds[1].lock_token));   // delivery count 1, persisted
  // ds[2..4] stay locked: the locks do not survive.
  send_ok("dev2", "x", c2d_ack::positive, "d2-a");
  send_ok("dev2", "y", c2d_ack::positive, "d2-b");
  for (auto& d : q_->lock_next("dev2", 10, 0ms)) ASSERT_TRUE(q_->complete("dev2", d.lock_token));
  q_->tick();  // 3 pending records: one batch of 2 is made, one record stays pending
  EXPECT_EQ(rows(store::table::c2d_feedback), 1u);
  EXPECT_EQ(rows(store::table::c2d_feedback_pending), 1u);
  std::uint64_t max_seq = 0;
  for (auto& s : sent) max_seq = std::max(max_seq, s.sequence_number);

  reopen(o);
  EXPECT_EQ(q_->depth("dev1"), 4u);
  EXPECT_EQ(q_->depth("dev2"), 0u);
  auto after = q_->lock_next("dev1", 10, 0ms);
  ASSERT_EQ(after.size(), 4u) << "every lock is gone: all visible";
  for (std::size_t i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(after[i].sequence_number, sent[i + 1].sequence_number) << "same sequence numbers, in order";
    EXPECT_EQ(as_string_view(after[i].msg.body), "m" + std::to_string(i + 1));
    EXPECT_EQ(*find_property(after[i].msg.system_properties, "message-id"), "m" + std::to_string(i + 1));
    EXPECT_EQ(after[i].ack, c2d_ack::full);
    EXPECT_EQ(after[i].delivery_count, i == 0 ? 1u : 0u) << "the abandon's count survived";
  }
  // The batch made before the reopen is receivable; the pending record becomes a batch after the interval.
  auto b1 = q_->receive_feedback(0ms);
  ASSERT_TRUE(b1);
  auto r1 = parse_feedback(b1->body);
  ASSERT_EQ(r1.size(), 2u);
  EXPECT_EQ(r1[0].original_message_id, "m0");
  EXPECT_EQ(r1[1].original_message_id, "d2-a");
  EXPECT_FALSE(q_->receive_feedback(0ms));
  clock_ += 15000;
  q_->tick();
  auto b2 = q_->receive_feedback(0ms);
  ASSERT_TRUE(b2) << "the pending record survived";
  auto r2 = parse_feedback(b2->body);
  ASSERT_EQ(r2.size(), 1u);
  EXPECT_EQ(r2[0].original_message_id, "d2-b");
  EXPECT_EQ(r2[0].generation_id, dev2_.generation_id);
  EXPECT_GT(b2->id, b1->id) << "feedback ids keep increasing";
  // New sends get larger sequence numbers than the old ones.
  auto fresh = send_ok("dev1", "new");
  EXPECT_GT(fresh.sequence_number, max_seq);
  auto fresh2 = send_ok("dev2", "new");
  EXPECT_GT(fresh2.sequence_number, fresh.sequence_number);
}

TEST_F(C2dQueuesTest, AbandonCountPersistsUpToDeadLetterAcrossReopens) {
  c2d_options o;
  o.max_delivery_count = 3;
  open_queues(o);
  send_ok("dev1", "a", c2d_ack::negative, "dl");
  for (int i = 0; i < 2; ++i) {
    auto d = lock_one("dev1");
    EXPECT_EQ(d.delivery_count, static_cast<std::uint32_t>(i));
    ASSERT_TRUE(q_->abandon("dev1", d.lock_token));
    reopen(o);
  }
  auto d = lock_one("dev1");
  EXPECT_EQ(d.delivery_count, 2u);
  ASSERT_TRUE(q_->abandon("dev1", d.lock_token));
  EXPECT_EQ(q_->depth("dev1"), 0u);
  reopen(o);
  EXPECT_EQ(q_->depth("dev1"), 0u) << "the dead-lettered message stays gone";
  auto recs = flush_feedback();
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].status, "DeliveryCountExceeded");
}

// --- drop_device -------------------------------------------------------------------------------------------

TEST_F(C2dQueuesTest, DropDeviceForgetsQueueAndPendingFeedback) {
  open_queues();
  for (int i = 0; i < 3; ++i) send_ok("dev1", "a", c2d_ack::full, "d1-" + std::to_string(i));
  for (int i = 0; i < 2; ++i) send_ok("dev2", "b", c2d_ack::full, "d2-" + std::to_string(i));
  ASSERT_TRUE(q_->complete("dev1", lock_one("dev1").lock_token));
  ASSERT_TRUE(q_->complete("dev2", lock_one("dev2").lock_token));
  auto locked = lock_one("dev1");
  EXPECT_EQ(rows(store::table::c2d_feedback_pending), 2u);

  store::write_batch b;
  q_->drop_device("dev1", b);
  EXPECT_EQ(q_->depth("dev1"), 0u) << "forgotten at once";
  ASSERT_TRUE(store_->submit_and_wait(std::move(b)).ok());
  EXPECT_EQ(q_->depth("dev2"), 1u) << "other devices untouched";
  EXPECT_TRUE(q_->lock_next("dev1", 10, 0ms).empty());
  EXPECT_EQ(q_->complete("dev1", locked.lock_token).err().code, errc::precondition_failed);
  EXPECT_EQ(rows(store::table::c2d, prefix_of("dev1")), 0u);
  EXPECT_EQ(rows(store::table::c2d, prefix_of("dev2")), 1u);
  EXPECT_EQ(rows(store::table::c2d_feedback_pending), 1u);
  auto recs = flush_feedback();
  ASSERT_EQ(recs.size(), 1u) << "dev1's pending feedback is dropped";
  EXPECT_EQ(recs[0].device_id, "dev2");
  EXPECT_EQ(recs[0].original_message_id, "d2-0");

  reopen();
  EXPECT_EQ(q_->depth("dev1"), 0u);
  EXPECT_EQ(q_->depth("dev2"), 1u);
  // The device id can be used again.
  EXPECT_EQ(send_ok("dev1", "again").message_id.size(), 36u);
  EXPECT_EQ(q_->depth("dev1"), 1u);
}

// A send submitted (not yet committed) when drop_device runs: its commit callback re-adds the message to the
// in-memory index after the drop, although the drop batch erased the row from the store.
// The drop bumps the device's epoch, so the in-flight send's commit neither re-adds the entry nor leaves its
// row behind (no phantom that counts against the limit or later "expires").
TEST_F(C2dQueuesTest, DropDeviceWhileASendIsInFlightLeavesNoPhantom) {
  open_queues();
  // Hold the writer thread inside a commit callback so the send and the drop queue up behind it.
  std::promise<void> entered, go;
  store_->submit({}, [&](const store::commit_result&) {
    entered.set_value();
    go.get_future().wait();
  });
  entered.get_future().wait();
  std::promise<result<c2d_sent>> sent;
  c2d_send_request r;
  r.device_id = "dev1";
  q_->send(r, [&](result<c2d_sent> s) { sent.set_value(std::move(s)); });
  store::write_batch b;
  q_->drop_device("dev1", b);
  store_->submit(std::move(b), {});
  go.set_value();
  auto s = sent.get_future().get();
  store_->submit_and_wait({});
  EXPECT_EQ(rows(store::table::c2d, prefix_of("dev1")), 0u) << "the store has nothing for dev1";
  EXPECT_EQ(q_->depth("dev1"), 0u) << "and neither should the index";
}

// --- store write order under concurrency --------------------------------------

// abandon() persists the new delivery count with a put; a complete racing it must not be overtaken in the
// store by that put (the completed message would come back after a restart). Submits happen under the
// queues' lock, so the competing complete waits until the abandon's put is queued.
TEST_F(C2dQueuesTest, AbandonRacingACompleteDoesNotResurrectTheMessage) {
  gated_store gs(*store_);
  open_queues({}, &gs);
  send_ok("dev1", "a");
  auto d = lock_one("dev1");
  std::promise<void> start;
  std::thread abandoner([&, go = start.get_future()]() mutable {
    go.wait();
    EXPECT_TRUE(q_->abandon("dev1", d.lock_token));
  });
  gs.gate(abandoner.get_id());
  start.set_value();
  if (!gs.wait_entered()) {
    gs.release();
    abandoner.join();
    FAIL() << "abandon never submitted";
  }
  // The competitor runs on its own thread: it must wait for the gated submit, not overtake it.
  std::thread competitor([&] {
    auto again = lock_one("dev1");
    EXPECT_TRUE(q_->complete("dev1", again.lock_token));
  });
  std::this_thread::sleep_for(100ms);
  gs.release();
  abandoner.join();
  competitor.join();
  store_->submit_and_wait({});
  EXPECT_EQ(q_->depth("dev1"), 0u);
  EXPECT_EQ(rows(store::table::c2d), 0u) << "the completed message's row is back in the store";
  reopen();
  EXPECT_EQ(q_->depth("dev1"), 0u) << "a completed message is delivered again after a restart";
}

// complete() adds a feedback record and submits its pending-row put; a tick() batching that record must
// not have its erase of the pending row overtaken by the put (the record would be delivered twice after a
// restart). The tick waits for the queues' lock, which the complete holds until its submit is queued.
TEST_F(C2dQueuesTest, CompleteRacingATickDoesNotDuplicateFeedback) {
  gated_store gs(*store_);
  open_queues({}, &gs);
  send_ok("dev1", "a", c2d_ack::positive, "once");
  auto d = lock_one("dev1");
  std::promise<void> start;
  std::thread completer([&, go = start.get_future()]() mutable {
    go.wait();
    EXPECT_TRUE(q_->complete("dev1", d.lock_token));
  });
  gs.gate(completer.get_id());
  start.set_value();
  if (!gs.wait_entered()) {
    gs.release();
    completer.join();
    FAIL() << "complete never submitted";
  }
  clock_ += 15000;
  std::thread ticker([&] { q_->tick(); });  // batches the record once it can
  std::this_thread::sleep_for(100ms);
  gs.release();
  completer.join();
  ticker.join();
  store_->submit_and_wait({});
  auto b = q_->receive_feedback(0ms);
  ASSERT_TRUE(b);
  ASSERT_TRUE(q_->complete_feedback(b->lock_token));
  EXPECT_EQ(rows(store::table::c2d_feedback_pending), 0u) << "a batched record's pending row is back";
  reopen();
  EXPECT_TRUE(flush_feedback().empty()) << "the record is delivered twice";
}

// Records left over after full batches keep their own waiting time: a partial batch goes out one interval
// after its oldest record, not one interval after the last full batch.
TEST_F(C2dQueuesTest, FeedbackPartialBatchWaitsNoLongerThanTheInterval) {
  c2d_options o;
  o.max_queue_depth = 100;
  open_queues(o);
  for (int i = 0; i < 70; ++i) send_ok("dev1", "b", c2d_ack::positive, "m" + std::to_string(i));
  for (auto& d : q_->lock_next("dev1", 100, 0ms)) ASSERT_TRUE(q_->complete("dev1", d.lock_token));
  clock_ = t0 + 10000;  // the first tick after the completions comes 10 s later
  q_->tick();
  auto b1 = q_->receive_feedback(0ms);
  ASSERT_TRUE(b1);
  EXPECT_EQ(parse_feedback(b1->body).size(), 64u);
  clock_ = t0 + 15000;  // the 6 others have waited 15 s now
  q_->tick();
  auto b2 = q_->receive_feedback(0ms);
  ASSERT_TRUE(b2) << "the partial batch is due 15 s after its records";
  EXPECT_EQ(parse_feedback(b2->body).size(), 6u);
}

// --- concurrency -------------------------------------------------------------------------------------------

TEST_F(C2dQueuesTest, ConcurrentSendersAndAConsumer) {
  for (int d = 0; d < 4; ++d) ASSERT_TRUE(reg_->create({.device_id = "c" + std::to_string(d)}));
  c2d_options o;
  o.max_queue_depth = 50;
  open_queues(o);
  constexpr int per_device = 50;
  std::atomic<int> sent_ok{0}, sent_failed{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> senders;
  for (int d = 0; d < 4; ++d)
    senders.emplace_back([&, d] {
      for (int i = 0; i < per_device; ++i) {
        c2d_send_request r;
        r.device_id = "c" + std::to_string(d);
        r.body = to_bytes(std::to_string(i));
        r.ack = c2d_ack::positive;
        q_->send(std::move(r), [&](result<c2d_sent> s) { (s ? sent_ok : sent_failed)++; });
      }
    });
  std::thread ticker([&] {
    while (!stop) {
      q_->tick();
      std::this_thread::sleep_for(1ms);
    }
  });
  std::map<std::string, std::vector<int>> seen;
  int completed = 0, complete_errors = 0;
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (completed < 4 * per_device && std::chrono::steady_clock::now() < deadline) {
    bool any = false;
    for (int d = 0; d < 4; ++d) {
      auto dev = "c" + std::to_string(d);
      for (auto& x : q_->lock_next(dev, 7, 0ms)) {
        any = true;
        seen[dev].push_back(std::stoi(std::string(as_string_view(x.msg.body))));
        if (q_->complete(dev, x.lock_token)) ++completed; else ++complete_errors;
      }
    }
    if (!any) std::this_thread::yield();
  }
  for (auto& t : senders) t.join();
  stop = true;
  ticker.join();
  store_->submit_and_wait({});
  EXPECT_EQ(sent_failed.load(), 0) << "never more than 50 queued per device";
  EXPECT_EQ(sent_ok.load(), 4 * per_device);
  EXPECT_EQ(completed, 4 * per_device);
  EXPECT_EQ(complete_errors, 0);
  for (int d = 0; d < 4; ++d) {
    auto dev = "c" + std::to_string(d);
    SCOPED_TRACE(dev);
    std::vector<int> want(per_device);
    for (int i = 0; i < per_device; ++i) want[i] = i;
    EXPECT_EQ(seen[dev], want) << "each message exactly once, in send order";
    EXPECT_EQ(q_->depth(dev), 0u);
  }
  auto c = q_->counters();
  EXPECT_EQ(c.sent, 4u * per_device);
  EXPECT_EQ(c.completed, 4u * per_device);
  EXPECT_EQ(rows(store::table::c2d), 0u);
  // Every completion left exactly one Success record.
  auto recs = flush_feedback();
  EXPECT_EQ(recs.size(), 4u * per_device);
  std::set<std::string> ids;
  for (auto& r : recs) ids.insert(r.original_message_id);
  EXPECT_EQ(ids.size(), 4u * per_device);
}

}  // namespace
}  // namespace fleethub::hub
