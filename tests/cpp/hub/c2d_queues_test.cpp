// Cloud-to-device queues (semantics.md §4), the message side: send validation, depth limit,
// lock/complete/abandon/reject/release, lock expiry, TTL, purge.
#include "c2d_queues_fixture.hpp"

namespace fleethub::hub {
namespace {

// --- send ------------------------------------------------------------------------------------------------

TEST_F(C2dQueuesTest, SendValidation) {
  c2d_options o;
  o.max_message_size = 100;
  open_queues(o);
  auto req = [](std::string dev) {
    c2d_send_request r;
    r.device_id = std::move(dev);
    r.body = to_bytes("x");
    return r;
  };
  auto r = send(req("ghost"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::not_found);
  EXPECT_NE(r.err().message.find("404001"), std::string::npos) << r.err().message;
  r = send(req("off"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::not_found) << "a disabled device is not found";

  // Body + properties (keys and values) over the limit.
  auto big = req("dev1");
  big.body = to_bytes(std::string(89, 'b'));
  big.app_properties.push_back({"k", "0123456789"});  // 89 + 1 + 10 = 100: exactly the limit
  EXPECT_TRUE(send(big)) << "at the limit";
  big.app_properties[0].value += "x";                  // 101
  r = send(big);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::too_large);
  auto big_sys = req("dev1");
  big_sys.body = to_bytes(std::string(90, 'b'));
  big_sys.system_properties.push_back({"message-id", "0123456789"});  // 90 + 10 + 10 > 100
  EXPECT_EQ(send(big_sys).err().code, errc::too_large) << "system properties count too";

  // Expiry: in the past, now, beyond max_ttl -> invalid; at max_ttl -> fine.
  for (std::int64_t bad : {t0 - 1, t0, t0 + o.max_ttl.count() + 1}) {
    auto e = req("dev1");
    e.expiry_ms = bad;
    r = send(e);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.err().code, errc::invalid_argument) << bad;
    EXPECT_NE(r.err().message.find("403009"), std::string::npos) << r.err().message;
  }
  auto e = req("dev1");
  e.expiry_ms = t0 + o.max_ttl.count();
  auto ok = send(e);
  ASSERT_TRUE(ok) << ok.err().message;
  EXPECT_EQ(ok->expiry_ms, t0 + o.max_ttl.count());
  EXPECT_EQ(q_->depth("dev1"), 2u) << "only the two valid sends are queued";
  EXPECT_EQ(q_->depth("ghost"), 0u);
  EXPECT_EQ(q_->depth("off"), 0u);
  EXPECT_EQ(rows(store::table::c2d), 2u);
  EXPECT_EQ(q_->counters().sent, 2u);
}

TEST_F(C2dQueuesTest, SendSetsMessageIdToAndExpiry) {
  open_queues();
  auto gen = send_ok("dev1", "a");
  EXPECT_EQ(gen.message_id.size(), 36u) << "a generated UUID: " << gen.message_id;
  EXPECT_EQ(gen.expiry_ms, t0 + std::chrono::milliseconds(std::chrono::hours(1)).count()) << "default TTL 1 h";
  auto given = send_ok("dev1", "b", c2d_ack::none, "my-id");
  EXPECT_EQ(given.message_id, "my-id");
  auto third = send_ok("dev1", "c");
  EXPECT_NE(third.message_id, gen.message_id) << "generated ids are unique";

  auto d = q_->lock_next("dev1", 10, 0ms);
  ASSERT_EQ(d.size(), 3u);
  for (auto& x : d) {
    SCOPED_TRACE(as_string_view(x.msg.body));
    EXPECT_EQ(x.msg.device_id, "dev1");
    auto* to = find_property(x.msg.system_properties, "to");
    ASSERT_NE(to, nullptr);
    EXPECT_EQ(*to, "/devices/dev1/messages/devicebound");
    auto* exp = find_property(x.msg.system_properties, "absolute-expiry-time");
    ASSERT_NE(exp, nullptr);
    EXPECT_EQ(*exp, format_iso8601(t0 + 3600 * 1000));
    EXPECT_EQ(x.msg.enqueued_time_ms, t0);
  }
  EXPECT_EQ(*find_property(d[0].msg.system_properties, "message-id"), gen.message_id);
  EXPECT_EQ(*find_property(d[1].msg.system_properties, "message-id"), "my-id");
  EXPECT_EQ(d[0].sequence_number, gen.sequence_number);
  EXPECT_LT(gen.sequence_number, given.sequence_number);
  EXPECT_LT(given.sequence_number, third.sequence_number);

  // An explicit expiry is kept as given.
  c2d_send_request r;
  r.device_id = "dev2";
  r.expiry_ms = t0 + 5000;
  auto s = send(r);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->expiry_ms, t0 + 5000);
  auto d2 = lock_one("dev2");
  EXPECT_EQ(*find_property(d2.msg.system_properties, "absolute-expiry-time"), format_iso8601(t0 + 5000));
}

TEST_F(C2dQueuesTest, DepthLimitIs403004) {
  c2d_options o;
  o.max_queue_depth = 3;
  open_queues(o);
  std::uint64_t prev = 0;
  for (int i = 0; i < 3; ++i) {
    auto s = send_ok("dev1", std::to_string(i));
    EXPECT_GT(s.sequence_number, prev) << "sequence numbers increase";
    prev = s.sequence_number;
    EXPECT_EQ(q_->depth("dev1"), static_cast<std::size_t>(i + 1));
  }
  c2d_send_request r;
  r.device_id = "dev1";
  auto full = send(r);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.err().code, errc::forbidden);
  EXPECT_NE(full.err().message.find("403004"), std::string::npos) << full.err().message;
  EXPECT_EQ(q_->depth("dev1"), 3u);
  // Locked messages still count.
  auto d = lock_one("dev1");
  EXPECT_EQ(q_->depth("dev1"), 3u);
  EXPECT_EQ(send(r).err().code, errc::forbidden);
  // Another device's queue is separate.
  EXPECT_GT(send_ok("dev2", "x").sequence_number, prev);
  // Completing one makes room.
  ASSERT_TRUE(q_->complete("dev1", d.lock_token));
  EXPECT_EQ(q_->depth("dev1"), 2u);
  EXPECT_TRUE(send(r));
  EXPECT_EQ(q_->depth("dev1"), 3u);
}

// semantics.md §9.3 limits message-id to 128 characters of ASCII letters, digits and - : . + % _ # * ? ! ( ) , = @ ; $ '.
TEST_F(C2dQueuesTest, SendRefusesAnInvalidMessageId) {
  open_queues();
  for (std::string bad : {std::string(129, 'a'), std::string("has space"), std::string("caf\xc3\xa9")}) {
    c2d_send_request r;
    r.device_id = "dev1";
    r.system_properties.push_back({"message-id", bad});
    auto s = send(r);
    ASSERT_FALSE(s) << bad;
    EXPECT_EQ(s.err().code, errc::invalid_argument) << bad;
  }
  c2d_send_request r;
  r.device_id = "dev1";
  r.system_properties.push_back({"message-id", std::string(128, 'a')});
  EXPECT_TRUE(send(r)) << "128 characters are fine";
  EXPECT_EQ(q_->depth("dev1"), 1u);
}

// --- lock_next and the MQTT topic ------------------------------------------------------------------------

TEST_F(C2dQueuesTest, LockNextOldestFirstSkipsLockedAndRespectsMax) {
  open_queues();
  std::vector<std::uint64_t> seqs;
  for (int i = 0; i < 4; ++i) {
    c2d_send_request r;
    r.device_id = "dev1";
    r.body = to_bytes("body" + std::to_string(i));
    r.app_properties.push_back({"n", std::to_string(i)});
    r.ack = i == 1 ? c2d_ack::positive : c2d_ack::none;
    auto s = send(r);
    ASSERT_TRUE(s);
    seqs.push_back(s->sequence_number);
  }
  EXPECT_TRUE(q_->lock_next("dev1", 0, 0ms).empty()) << "max 0";
  EXPECT_TRUE(q_->lock_next("ghost", 5, 0ms).empty());
  EXPECT_TRUE(q_->lock_next("dev2", 5, 0ms).empty()) << "empty queue";

  auto a = q_->lock_next("dev1", 2, 0ms);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(as_string_view(a[0].msg.body), "body0");
  EXPECT_EQ(as_string_view(a[1].msg.body), "body1");
  EXPECT_EQ(a[0].sequence_number, seqs[0]);
  EXPECT_EQ(a[1].sequence_number, seqs[1]);
  EXPECT_EQ(*find_property(a[1].msg.app_properties, "n"), "1");
  EXPECT_EQ(a[0].ack, c2d_ack::none);
  EXPECT_EQ(a[1].ack, c2d_ack::positive);
  EXPECT_EQ(a[0].delivery_count, 0u);
  EXPECT_FALSE(a[0].lock_token.empty());
  EXPECT_NE(a[0].lock_token, a[1].lock_token);

  auto b = q_->lock_next("dev1", 10, 0ms);
  ASSERT_EQ(b.size(), 2u) << "the locked two are skipped";
  EXPECT_EQ(as_string_view(b[0].msg.body), "body2");
  EXPECT_EQ(as_string_view(b[1].msg.body), "body3");
  EXPECT_TRUE(q_->lock_next("dev1", 10, 0ms).empty()) << "everything is locked";
  EXPECT_EQ(q_->depth("dev1"), 4u);

  // Completing the first leaves the rest locked; releasing the third makes only it visible.
  ASSERT_TRUE(q_->complete("dev1", a[0].lock_token));
  q_->release("dev1", b[0].lock_token);
  auto c = q_->lock_next("dev1", 10, 0ms);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(as_string_view(c[0].msg.body), "body2");
}

TEST_F(C2dQueuesTest, TopicFormat) {
  open_queues();
  c2d_send_request r;
  r.device_id = "dev1";
  r.system_properties.push_back({"message-id", "m1"});
  r.system_properties.push_back({"content-type", "application/json"});
  r.app_properties.push_back({"prop1", "val 1"});
  r.ack = c2d_ack::full;
  ASSERT_TRUE(send(r));
  r.system_properties[0].value = "m2";
  r.ack = c2d_ack::none;
  ASSERT_TRUE(send(r));
  r.system_properties[0].value = "m3";
  r.ack = c2d_ack::positive;
  ASSERT_TRUE(send(r));
  auto d = q_->lock_next("dev1", 3, 0ms);
  ASSERT_EQ(d.size(), 3u);
  for (auto& x : d) {
    auto t = c2d_topic(x);
    SCOPED_TRACE(t);
    EXPECT_EQ(t.rfind("devices/dev1/messages/devicebound/", 0), 0u);
    EXPECT_NE(t.find("%24.to=%2Fdevices%2Fdev1%2Fmessages%2Fdevicebound"), std::string::npos);
    EXPECT_NE(t.find("%24.ct=application%2Fjson"), std::string::npos);
    EXPECT_NE(t.find("prop1=val%201"), std::string::npos);
    EXPECT_EQ(t.find("$.mid"), std::string::npos) << "system keys in the %24. form only";
    EXPECT_EQ(t.find('#'), std::string::npos);
    EXPECT_EQ(t.find('+'), std::string::npos);
  }
  auto t0s = c2d_topic(d[0]), t1s = c2d_topic(d[1]), t2s = c2d_topic(d[2]);
  EXPECT_NE(t0s.find("%24.mid=m1"), std::string::npos) << t0s;
  EXPECT_NE(t0s.find("iothub-ack=full"), std::string::npos) << t0s;
  EXPECT_NE(t1s.find("%24.mid=m2"), std::string::npos) << t1s;
  EXPECT_EQ(t1s.find("iothub-ack"), std::string::npos) << "no ack requested: " << t1s;
  EXPECT_NE(t2s.find("iothub-ack=positive"), std::string::npos) << t2s;
}

// --- complete / abandon / reject / release -----------------------------------------------------------------

TEST_F(C2dQueuesTest, CompleteRemovesAndRefusesStaleTokens) {
  open_queues();
  send_ok("dev1", "a");
  send_ok("dev2", "b");
  auto d = lock_one("dev1");
  EXPECT_EQ(rows(store::table::c2d, prefix_of("dev1")), 1u);

  auto wrong = q_->complete("dev2", d.lock_token);
  ASSERT_FALSE(wrong) << "another device's token";
  EXPECT_EQ(wrong.err().code, errc::precondition_failed);
  EXPECT_NE(wrong.err().message.find("412002"), std::string::npos) << wrong.err().message;
  auto unknown = q_->complete("dev1", "no-such-token");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.err().code, errc::precondition_failed);
  EXPECT_NE(unknown.err().message.find("412002"), std::string::npos);
  EXPECT_EQ(q_->depth("dev1"), 1u) << "the failed completes changed nothing";

  ASSERT_TRUE(q_->complete("dev1", d.lock_token));
  EXPECT_EQ(q_->depth("dev1"), 0u);
  EXPECT_EQ(rows(store::table::c2d, prefix_of("dev1")), 0u) << "erased from the store";
  EXPECT_EQ(rows(store::table::c2d, prefix_of("dev2")), 1u);
  auto again = q_->complete("dev1", d.lock_token);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.err().code, errc::precondition_failed);
  EXPECT_NE(again.err().message.find("412002"), std::string::npos);
  EXPECT_TRUE(q_->lock_next("dev1", 5, 0ms).empty());
  EXPECT_EQ(q_->counters().completed, 1u);
  // Abandon, reject and release of a completed message's token fail (or do nothing) too.
  EXPECT_EQ(q_->abandon("dev1", d.lock_token).err().code, errc::precondition_failed);
  EXPECT_EQ(q_->reject("dev1", d.lock_token).err().code, errc::precondition_failed);
  q_->release("dev1", d.lock_token);
  EXPECT_EQ(q_->depth("dev1"), 0u);
}

TEST_F(C2dQueuesTest, CompleteFeedbackFollowsTheAckRequest) {
  open_queues();
  const std::map<c2d_ack, std::string> ids{{c2d_ack::none, "id-none"},
                                           {c2d_ack::positive, "id-positive"},
                                           {c2d_ack::negative, "id-negative"},
                                           {c2d_ack::full, "id-full"}};
  for (auto& [ack, id] : ids) send_ok("dev1", id, ack, id);
  for (auto& d : q_->lock_next("dev1", 10, 0ms)) ASSERT_TRUE(q_->complete("dev1", d.lock_token));
  EXPECT_EQ(rows(store::table::c2d_feedback_pending), 2u) << "positive and full are recorded durably";
  auto recs = flush_feedback();
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].original_message_id, "id-positive");
  EXPECT_EQ(recs[1].original_message_id, "id-full");
  for (auto& r : recs) {
    EXPECT_EQ(r.status, "Success");
    EXPECT_EQ(r.description, "Success");
    EXPECT_EQ(r.device_id, "dev1");
  }
}

TEST_F(C2dQueuesTest, AbandonCountsAndDeadLettersAtMaxDeliveryCount) {
  c2d_options o;
  o.max_delivery_count = 2;
  open_queues(o);
  send_ok("dev1", "full", c2d_ack::full, "m-full");
  send_ok("dev1", "neg", c2d_ack::negative, "m-neg");
  send_ok("dev1", "pos", c2d_ack::positive, "m-pos");

  auto first = q_->lock_next("dev1", 10, 0ms);
  ASSERT_EQ(first.size(), 3u);
  clear_available();
  for (auto& d : first) {
    EXPECT_EQ(d.delivery_count, 0u);
    ASSERT_TRUE(q_->abandon("dev1", d.lock_token));
  }
  EXPECT_EQ(q_->depth("dev1"), 3u);
  EXPECT_FALSE(available().empty()) << "an abandon makes the queue available";
  EXPECT_EQ(q_->abandon("dev1", first[0].lock_token).err().code, errc::precondition_failed) << "token is spent";

  auto second = q_->lock_next("dev1", 10, 0ms);
  ASSERT_EQ(second.size(), 3u) << "visible again after the abandon";
  for (auto& d : second) EXPECT_EQ(d.delivery_count, 1u) << "count went up by one";
  EXPECT_EQ(as_string_view(second[0].msg.body), "full") << "order kept";
  for (auto& d : second) ASSERT_TRUE(q_->abandon("dev1", d.lock_token));
  EXPECT_EQ(q_->depth("dev1"), 0u) << "dead-lettered at max_delivery_count";
  EXPECT_TRUE(q_->lock_next("dev1", 10, 0ms).empty());
  EXPECT_EQ(rows(store::table::c2d), 0u);
  EXPECT_EQ(q_->counters().dead_lettered, 3u);
  auto recs = flush_feedback();
  ASSERT_EQ(recs.size(), 2u) << "negative and full only";
  EXPECT_EQ(recs[0].original_message_id, "m-full");
  EXPECT_EQ(recs[1].original_message_id, "m-neg");
  for (auto& r : recs) {
    EXPECT_EQ(r.status, "DeliveryCountExceeded");
    EXPECT_EQ(r.description, "DeliveryCountExceeded");
  }
}

TEST_F(C2dQueuesTest, RejectDeadLettersAtOnce) {
  open_queues();
  send_ok("dev1", "a", c2d_ack::negative, "m-neg");
  send_ok("dev1", "b", c2d_ack::positive, "m-pos");
  send_ok("dev1", "c", c2d_ack::full, "m-full");
  send_ok("dev1", "d", c2d_ack::none, "m-none");
  for (auto& d : q_->lock_next("dev1", 10, 0ms)) ASSERT_TRUE(q_->reject("dev1", d.lock_token));
  EXPECT_EQ(q_->depth("dev1"), 0u);
  EXPECT_TRUE(q_->lock_next("dev1", 10, 0ms).empty());
  EXPECT_EQ(rows(store::table::c2d), 0u);
  EXPECT_EQ(q_->counters().dead_lettered, 4u);
  auto recs = flush_feedback();
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].original_message_id, "m-neg");
  EXPECT_EQ(recs[1].original_message_id, "m-full");
  for (auto& r : recs) EXPECT_EQ(r.status, "Rejected");
  EXPECT_EQ(q_->reject("dev1", "nope").err().code, errc::precondition_failed);
}

TEST_F(C2dQueuesTest, ReleaseMakesVisibleWithoutCounting) {
  open_queues();
  send_ok("dev1", "a", c2d_ack::full);
  auto d = lock_one("dev1");
  clear_available();
  q_->release("dev2", d.lock_token);  // wrong device: nothing happens
  EXPECT_TRUE(q_->lock_next("dev1", 10, 0ms).empty()) << "still locked";
  q_->release("dev1", d.lock_token);
  EXPECT_TRUE(available().empty()) << "release does not notify (documented)";
  auto again = lock_one("dev1");
  EXPECT_EQ(again.delivery_count, 0u);
  EXPECT_EQ(again.sequence_number, d.sequence_number);
  EXPECT_NE(again.lock_token, d.lock_token);
  EXPECT_EQ(q_->complete("dev1", d.lock_token).err().code, errc::precondition_failed) << "old token is gone";
  ASSERT_TRUE(q_->complete("dev1", again.lock_token));
  auto recs = flush_feedback();
  ASSERT_EQ(recs.size(), 1u) << "only the completion, nothing for the release";
  EXPECT_EQ(recs[0].status, "Success");
}

// --- lock expiry and TTL -----------------------------------------------------------------------------------

TEST_F(C2dQueuesTest, LockExpiryReturnsTheMessageWithoutCounting) {
  open_queues();
  send_ok("dev1", "a", c2d_ack::full);
  auto d = lock_one("dev1", 1000ms);
  clock_ += 999;
  q_->tick();
  EXPECT_TRUE(q_->lock_next("dev1", 10, 1000ms).empty()) << "lock still held at 999 ms";
  clear_available();
  clock_ += 2;  // 1001 ms
  auto late = q_->complete("dev1", d.lock_token);
  ASSERT_FALSE(late) << "an expired lock cannot complete, even before the tick notices";
  EXPECT_EQ(late.err().code, errc::precondition_failed);
  EXPECT_NE(late.err().message.find("412002"), std::string::npos);
  q_->tick();
  EXPECT_EQ(available(), std::vector<std::string>{"dev1"}) << "the unlock notifies";
  auto again = lock_one("dev1", 1000ms);
  EXPECT_EQ(again.delivery_count, 0u) << "lock expiry does not count a delivery";
  EXPECT_EQ(again.sequence_number, d.sequence_number);
  EXPECT_EQ(q_->complete("dev1", d.lock_token).err().code, errc::precondition_failed);
  EXPECT_EQ(q_->depth("dev1"), 1u);
  ASSERT_TRUE(q_->complete("dev1", again.lock_token));
  EXPECT_EQ(q_->depth("dev1"), 0u);
  auto recs = flush_feedback();
  ASSERT_EQ(recs.size(), 1u) << "no feedback for the lock expiry";
  EXPECT_EQ(recs[0].status, "Success");
}

TEST_F(C2dQueuesTest, LockForZeroNeverExpiresOnItsOwn) {
  c2d_options o;
  o.default_ttl = std::chrono::hours(48);
  open_queues(o);
  send_ok("dev1", "a");
  auto d = lock_one("dev1", 0ms);
  clock_ += 47 * 3600 * 1000;
  q_->tick();
  EXPECT_TRUE(q_->lock_next("dev1", 10, 0ms).empty()) << "still locked after 47 h";
  ASSERT_TRUE(q_->complete("dev1", d.lock_token));
  EXPECT_EQ(q_->depth("dev1"), 0u);
}

TEST_F(C2dQueuesTest, TtlExpiryDeadLettersFromAnyState) {
  open_queues();
  auto with_expiry = [&](std::string id, c2d_ack ack, std::int64_t expiry) {
    c2d_send_request r;
    r.device_id = "dev1";
    r.system_properties.push_back({"message-id", id});
    r.ack = ack;
    r.expiry_ms = expiry;
    ASSERT_TRUE(send(r));
  };
  with_expiry("locked-full", c2d_ack::full, t0 + 5000);
  with_expiry("queued-neg", c2d_ack::negative, t0 + 5000);
  with_expiry("queued-pos", c2d_ack::positive, t0 + 5000);
  with_expiry("later", c2d_ack::full, t0 + 10000);
  auto d = lock_one("dev1", 0ms);
  ASSERT_EQ(*find_property(d.msg.system_properties, "message-id"), "locked-full");

  clock_ = t0 + 4999;
  q_->tick();
  EXPECT_EQ(q_->depth("dev1"), 4u);
  clock_ = t0 + 5000;
  auto visible = q_->lock_next("dev1", 10, 0ms);
  ASSERT_EQ(visible.size(), 1u) << "an expired message is not delivered even before the tick";
  EXPECT_EQ(*find_property(visible[0].msg.system_properties, "message-id"), "later");
  q_->release("dev1", visible[0].lock_token);
  q_->tick();
  EXPECT_EQ(q_->depth("dev1"), 1u) << "the three expired ones are gone, the locked one included";
  EXPECT_EQ(q_->complete("dev1", d.lock_token).err().code, errc::precondition_failed);
  EXPECT_EQ(q_->counters().expired, 3u);
  EXPECT_EQ(rows(store::table::c2d), 1u);
  auto recs = flush_feedback();  // also moves the clock 15 s: "later" expires at that tick too
  std::multiset<std::string> got;
  for (auto& r : recs) {
    EXPECT_EQ(r.status, "Expired");
    got.insert(r.original_message_id);
  }
  EXPECT_EQ(got, (std::multiset<std::string>{"locked-full", "queued-neg", "later"})) << "not the positive one";
  EXPECT_EQ(q_->depth("dev1"), 0u);
}

TEST_F(C2dQueuesTest, AvailabilityListenerAfterCommitAndUnlock) {
  open_queues();
  std::promise<std::pair<bool, std::size_t>> seen;  // (notified before done?, depth visible then)
  c2d_send_request r;
  r.device_id = "dev1";
  q_->send(r, [&](result<c2d_sent> s) {
    EXPECT_TRUE(s);
    auto a = available();
    seen.set_value({a == std::vector<std::string>{"dev1"}, q_->depth("dev1")});
  });
  auto [notified, depth] = seen.get_future().get();
  EXPECT_TRUE(notified) << "on_available runs once the send committed, before done";
  EXPECT_EQ(depth, 1u) << "the message is visible when done runs";
  auto d = lock_one("dev1", 100ms);
  clear_available();
  q_->tick();
  EXPECT_TRUE(available().empty()) << "nothing unlocked yet";
  clock_ += 100;
  q_->tick();
  EXPECT_EQ(available(), std::vector<std::string>{"dev1"});
  clear_available();
  q_->tick();
  EXPECT_TRUE(available().empty()) << "notified once per unlock";
  // A failed send does not notify.
  c2d_send_request bad;
  bad.device_id = "ghost";
  EXPECT_FALSE(send(bad));
  EXPECT_TRUE(available().empty());
}

// --- purge ---------------------------------------------------------------------------------------------

TEST_F(C2dQueuesTest, PurgeRemovesEverythingWithPurgedFeedback) {
  open_queues();
  send_ok("dev1", "a", c2d_ack::none, "p-none");
  send_ok("dev1", "b", c2d_ack::negative, "p-neg");
  send_ok("dev1", "c", c2d_ack::full, "p-full");
  send_ok("dev1", "d", c2d_ack::positive, "p-pos");
  send_ok("dev2", "other", c2d_ack::full, "p-other");
  auto locked = lock_one("dev1");  // locked messages are purged too
  auto n = q_->purge("dev1");
  ASSERT_TRUE(n) << n.err().message;
  EXPECT_EQ(*n, 4u);
  EXPECT_EQ(q_->depth("dev1"), 0u);
  EXPECT_EQ(q_->depth("dev2"), 1u);
  EXPECT_TRUE(q_->lock_next("dev1", 10, 0ms).empty());
  EXPECT_EQ(rows(store::table::c2d, prefix_of("dev1")), 0u);
  EXPECT_EQ(q_->complete("dev1", locked.lock_token).err().code, errc::precondition_failed);
  EXPECT_EQ(q_->counters().purged, 4u);

  auto unknown = q_->purge("ghost");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.err().code, errc::not_found);
  auto empty = q_->purge("dev1");
  ASSERT_TRUE(empty);
  EXPECT_EQ(*empty, 0u);
  auto never = q_->purge("off");  // registered (disabled), never had a queue
  ASSERT_TRUE(never);
  EXPECT_EQ(*never, 0u);

  auto recs = flush_feedback();
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].original_message_id, "p-neg");
  EXPECT_EQ(recs[1].original_message_id, "p-full");
  for (auto& r : recs) EXPECT_EQ(r.status, "Purged");
}

TEST(C2dAck, NamesRoundTrip) {
  for (auto a : {c2d_ack::none, c2d_ack::positive, c2d_ack::negative, c2d_ack::full})
    EXPECT_EQ(c2d_ack_from_string(to_string(a)), a);
  EXPECT_EQ(c2d_ack_from_string(""), c2d_ack::none);
  EXPECT_FALSE(c2d_ack_from_string("Full"));
  EXPECT_STREQ(to_string(feedback_status::delivery_count_exceeded), "DeliveryCountExceeded");
  EXPECT_STREQ(to_string(feedback_status::purged), "Purged");
}

}  // namespace
}  // namespace fleethub::hub
