// The waiting room end to end: the real binary on a real redis-server (a
// child process per test). Positions, admission order and pace, admission
// tokens, and what happens while Redis is gone.

#include "harness.hpp"
#include "redis_support.hpp"

#include <algorithm>
#include <atomic>
#include <iostream>
#include <map>
#include <mutex>
#include <numeric>
#include <sstream>
#include <thread>

namespace rsv::e2e {
namespace {

json queued_event(const std::string& id, int admit_per_second, int rows = 4) {
  std::vector<std::pair<std::string, int>> layout;
  for (int r = 0; r < rows; ++r)
    layout.emplace_back(std::string(1, static_cast<char>('A' + r)), 50);
  auto body = event_json(id, {section_json("floor", 1000, layout)});
  body["waiting_room"] = {{"enabled", true},
                          {"admit_per_second", admit_per_second}};
  return body;
}

/// `count` customers, registered from `threads` connections at once.
std::vector<customer> many_customers(unsigned short port, int count,
                                     int threads) {
  std::vector<customer> out(static_cast<std::size_t>(count));
  std::vector<std::thread> workers;
  std::atomic<bool> failed{false};
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      try {
        http_connection http{port};
        for (int i = t; i < count; i += threads)
          out[static_cast<std::size_t>(i)] = new_customer(http, "queue");
      } catch (const std::exception&) {
        failed = true;
      }
    });
  for (auto& w : workers)
    w.join();
  if (failed) throw std::runtime_error("registering customers failed");
  return out;
}

http_response join(http_connection& http, const customer& who,
                   const std::string& event_id) {
  return http.request("POST", "/v1/events/" + event_id + "/queue",
                      bearer(who.token));
}

/// Polls the ticket until it is admitted (deadline 15 s); its body.
json wait_admitted(http_connection& http, const customer& who,
                   const std::string& ticket) {
  json last;
  bool admitted = eventually(
      [&] {
        auto polled = http.get("/v1/queue/" + ticket, who.token);
        if (polled.status != 200) return false;
        last = polled.body_json();
        return last.value("admitted", false);
      },
      15s, 50ms);
  if (!admitted)
    throw std::runtime_error("not admitted within 15 s: " + last.dump());
  return last;
}

/// `count` new customers, each queued for `event_id` and admitted; their
/// admission tokens in `tokens`, in the same order. Throws on failure.
std::vector<customer> admitted_customers(http_connection& http,
                                         const std::string& event_id, int count,
                                         std::vector<std::string>& tokens) {
  std::vector<customer> out;
  for (int i = 0; i < count; ++i) {
    out.push_back(new_customer(http, "admitted"));
    auto joined_now = join(http, out.back(), event_id);
    if (joined_now.status != 201)
      throw std::runtime_error("join answered " +
                               std::to_string(joined_now.status));
    tokens.push_back(wait_admitted(http, out.back(),
                                   joined_now.body_json()["ticket"]
                                       .get<std::string>())["admission_token"]
                         .get<std::string>());
  }
  return out;
}

/// Booking load: one thread per admitted customer holds a seat of the
/// event's "floor", books it and cancels it (so the seats come back), round
/// after round until `stop` (at most 20,000 rounds and 60 s). A round that
/// does not succeed at every step is a failure.
class booking_cycles {
public:
  booking_cycles(unsigned short port, std::string event_id,
                 const std::vector<customer>& who,
                 const std::vector<std::string>& tokens) {
    for (std::size_t i = 0; i < who.size(); ++i)
      workers_.emplace_back([this, port, event_id, customer = who[i],
                             token = tokens[i]] {
        http_connection http{port};
        auto until = std::chrono::steady_clock::now() + 60s;
        for (int round = 0; round < 20'000 && !stop_ &&
                            std::chrono::steady_clock::now() < until;
             ++round) {
          auto step = hold_quantity(http, customer, event_id, "floor", 1,
                                    {{"X-Admission-Token", token}});
          if (step.status == 201) {
            step = http.post("/v1/bookings",
                             {{"hold_id", step.body_json()["hold_id"]}},
                             customer.token);
            if (step.status == 201) {
              step = http.del(
                  "/v1/bookings/" +
                      step.body_json()["booking_id"].get<std::string>(),
                  customer.token);
              if (step.status == 200) {
                ++ok_;
                continue;
              }
            }
          }
          std::lock_guard lock{mutex_};
          failures_.push_back(std::to_string(step.status) + " " + step.body);
        }
      });
  }
  ~booking_cycles() { stop(); }

  /// Rounds that succeeded so far.
  int ok() const { return ok_.load(); }

  /// Stops and joins the threads; the failed rounds' last answers.
  std::vector<std::string> stop() {
    stop_ = true;
    for (auto& w : workers_)
      if (w.joinable()) w.join();
    std::lock_guard lock{mutex_};
    return failures_;
  }

private:
  std::atomic<bool> stop_{false};
  std::atomic<int> ok_{0};
  std::mutex mutex_;
  std::vector<std::string> failures_;
  std::vector<std::thread> workers_;
};

class redis_test : public ::testing::Test {
protected:
  void SetUp() override {
    redis_ = std::make_unique<redis_server>();
    node_ = std::make_unique<server_process>(redis_->server_args());
    http_ = std::make_unique<http_connection>(node_->port());
    ASSERT_TRUE(
        eventually([&] { return http_->get("/health").status == 200; }, 10s))
        << node_->log();
  }

  void TearDown() override {
    http_.reset();
    if (node_) {
      EXPECT_EQ(node_->stop(), 0) << "no exit 0 on SIGTERM";
      if (HasFailure())
        std::cerr << "---- server log ----\n"
                  << node_->log() << "---- end of server log ----\n";
    }
  }

  std::unique_ptr<redis_server> redis_;
  std::unique_ptr<server_process> node_;
  std::unique_ptr<http_connection> http_;
};

struct joined {
  std::string customer_id;
  std::string ticket;
  int64_t position = 0;
  std::chrono::steady_clock::time_point sent, answered;
};

TEST_F(redis_test, PositionsFollowJoinOrderAndAdmissionsKeepThePace) {
  constexpr int customers = 1000;
  constexpr int rate = 400; // admit_per_second
  // A dead node holds the event's admission lease, so nobody is admitted
  // while the customers join; when it expires this node takes over.
  const std::string lease = "rsv:wr:{onsale}:lease";
  ASSERT_EQ(redis_->cli({"SET", lease, "dead-node", "PX", "600000"}), "OK");
  create_event(*http_, node_->admin_token(), queued_event("onsale", rate));
  auto people = many_customers(node_->port(), customers, 8);

  std::vector<joined> joins(customers);
  std::atomic<int> bad{0};
  std::vector<std::thread> workers;
  constexpr int threads = 20;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      try {
        http_connection http{node_->port()};
        for (int i = t; i < customers; i += threads) {
          auto& j = joins[static_cast<std::size_t>(i)];
          j.customer_id = people[static_cast<std::size_t>(i)].id;
          j.sent = std::chrono::steady_clock::now();
          auto response =
              join(http, people[static_cast<std::size_t>(i)], "onsale");
          j.answered = std::chrono::steady_clock::now();
          if (response.status != 201) {
            ++bad;
            continue;
          }
          auto body = response.body_json();
          j.ticket = body.at("ticket").get<std::string>();
          j.position = body.at("position").get<int64_t>();
        }
      } catch (const std::exception&) {
        ++bad;
      }
    });
  for (auto& w : workers)
    w.join();
  ASSERT_EQ(bad.load(), 0);

  // A permutation of 1..1000.
  std::vector<joined> by_position = joins;
  std::sort(
      by_position.begin(), by_position.end(),
      [](const joined& a, const joined& b) { return a.position < b.position; });
  for (int i = 0; i < customers; ++i)
    ASSERT_EQ(by_position[static_cast<std::size_t>(i)].position, i + 1);
  // Consistent with join order: a join answered before another was sent
  // has the lower position.
  auto latest_sent = std::chrono::steady_clock::time_point::min();
  for (const auto& j : by_position) {
    EXPECT_LE(latest_sent, j.answered)
        << "position " << j.position << " was answered before a join with a "
        << "lower position was sent";
    latest_sent = std::max(latest_sent, j.sent);
  }
  // Joining again: the same ticket and position; polling agrees.
  auto again = join(*http_, people[7], "onsale");
  ASSERT_EQ(again.status, 201u) << again;
  EXPECT_EQ(again.body_json()["ticket"], joins[7].ticket);
  EXPECT_EQ(again.body_json()["position"], joins[7].position);
  auto polled = http_->get("/v1/queue/" + joins[7].ticket, people[7].token);
  ASSERT_EQ(polled.status, 200u) << polled;
  EXPECT_EQ(polled.body_json(), json({{"ticket", joins[7].ticket},
                                      {"position", joins[7].position},
                                      {"admitted", false}}));

  // The dead node's lease runs out; this node's loop takes over and admits
  // everybody, in join order, at the pace.
  ASSERT_EQ(redis_->cli({"PEXPIRE", lease, "1"}), "1");
  const std::string admitted_key = "rsv:wr:{onsale}:adm";
  ASSERT_TRUE(eventually(
      [&] {
        return redis_->cli({"HLEN", admitted_key}) == std::to_string(customers);
      },
      30s, 100ms))
      << redis_->cli({"HLEN", admitted_key}) << " admitted";
  EXPECT_EQ(redis_->cli({"ZCARD", "rsv:wr:{onsale}:q"}), "0");

  std::map<std::string, int64_t> admitted_at;
  {
    auto all = redis_->cli({"HGETALL", admitted_key});
    std::istringstream in{all};
    std::string name, at;
    while (std::getline(in, name) && std::getline(in, at))
      admitted_at[name] = std::stoll(at);
  }
  ASSERT_EQ(admitted_at.size(), static_cast<std::size_t>(customers));
  int64_t previous = 0;
  std::vector<int64_t> times;
  for (const auto& j : by_position) {
    auto at = admitted_at.at(j.customer_id);
    EXPECT_GE(at, previous)
        << "position " << j.position << " admitted before an earlier position";
    previous = at;
    times.push_back(at);
  }
  // The pace: a new lease holder starts counting at its first tick, so by
  // d ms after the first admission at most rate * (d + one tick, bounded by
  // the script's 1 s cap) / 1000 + 1 are in. Checked at every admission.
  auto first = times.front();
  for (std::size_t i = 0; i < times.size(); ++i) {
    double bound =
        rate * static_cast<double>(times[i] - first + 1000) / 1000 + 1;
    ASSERT_LE(static_cast<double>(i + 1), bound)
        << "admitted " << i + 1 << " within " << times[i] - first << " ms";
  }
  EXPECT_GE(times.back() - first, (customers - rate - 1) * 1000 / rate);

  // Admitted customers see their token.
  auto admitted = wait_admitted(*http_, people[7], joins[7].ticket);
  EXPECT_EQ(admitted["position"], 0);
  EXPECT_TRUE(admitted["admission_token"].is_string());
  EXPECT_TRUE(parse_time(admitted["expires_at"].get<std::string>()));
}

TEST_F(redis_test, AdmissionTokensAreBoundToCustomerEventAndTime) {
  create_event(*http_, node_->admin_token(), queued_event("gate", 1000));
  create_event(*http_, node_->admin_token(), queued_event("other-gate", 1000));
  create_event(*http_, node_->admin_token(),
               event_json("open", {section_json("floor", 1000, {{"A", 10}})}));
  auto alice = new_customer(*http_, "alice");
  auto bob = new_customer(*http_, "bob");

  auto joined_alice = join(*http_, alice, "gate");
  ASSERT_EQ(joined_alice.status, 201u) << joined_alice;
  auto ticket = joined_alice.body_json()["ticket"].get<std::string>();
  EXPECT_EQ(joined_alice.header("Location"), "/v1/queue/" + ticket);
  // Nobody else can read the ticket; an event without a waiting room has
  // no queue.
  EXPECT_TRUE(is_problem(http_->get("/v1/queue/" + ticket, bob.token), 404,
                         "not_found"));
  EXPECT_TRUE(is_problem(http_->get("/v1/queue/qtk_bm9wZQ", alice.token), 404,
                         "not_found"));
  EXPECT_TRUE(is_problem(join(*http_, alice, "open"), 404, "not_found"));
  EXPECT_TRUE(is_problem(http_->request("POST", "/v1/events/gate/queue"), 401,
                         "unauthorized"));

  auto admitted = wait_admitted(*http_, alice, ticket);
  auto token = admitted["admission_token"].get<std::string>();
  auto with = [](const std::string& t) {
    return headers_t{{"X-Admission-Token", t}};
  };

  EXPECT_TRUE(is_problem(hold_quantity(*http_, alice, "gate", "floor", 1), 403,
                         "admission_required"));
  auto held = hold_quantity(*http_, alice, "gate", "floor", 2, with(token));
  ASSERT_EQ(held.status, 201u) << held;
  EXPECT_EQ(held.body_json()["seats"], json({"A-1", "A-2"}));
  // Borrowed: another customer's token, another event's token.
  EXPECT_TRUE(
      is_problem(hold_quantity(*http_, bob, "gate", "floor", 1, with(token)),
                 403, "admission_required"));
  auto joined_other = join(*http_, alice, "other-gate");
  ASSERT_EQ(joined_other.status, 201u) << joined_other;
  auto other_token = wait_admitted(*http_, alice,
                                   joined_other.body_json()["ticket"]
                                       .get<std::string>())["admission_token"]
                         .get<std::string>();
  EXPECT_TRUE(is_problem(
      hold_quantity(*http_, alice, "gate", "floor", 1, with(other_token)), 403,
      "admission_required"));
  // Forged: a flipped signature character; a later expiry with the old
  // signature; a token for bob made from alice's by renaming.
  auto flipped = token;
  flipped.back() = flipped.back() == 'A' ? 'B' : 'A';
  EXPECT_TRUE(is_problem(
      hold_quantity(*http_, alice, "gate", "floor", 1, with(flipped)), 403,
      "admission_required"));
  auto signature_at = token.rfind('.');
  auto expiry_at = token.rfind('.', signature_at - 1);
  auto extended = token.substr(0, expiry_at + 1) + "99999999999999" +
                  token.substr(signature_at);
  EXPECT_TRUE(is_problem(
      hold_quantity(*http_, alice, "gate", "floor", 1, with(extended)), 403,
      "admission_required"));
  auto renamed = token;
  renamed.replace(renamed.find(alice.id), alice.id.size(), bob.id);
  EXPECT_TRUE(
      is_problem(hold_quantity(*http_, bob, "gate", "floor", 1, with(renamed)),
                 403, "admission_required"));
  EXPECT_TRUE(
      is_problem(hold_quantity(*http_, alice, "gate", "floor", 1, with("junk")),
                 403, "admission_required"));

  // Expired: move alice's admission back in Redis so that it ends in a
  // second (the admission time is Redis's; the default lifetime is 600 s).
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  redis_->cli({"HSET", "rsv:wr:{gate}:adm", alice.id,
               std::to_string(now_ms - 600'000 + 1000)});
  auto short_lived = wait_admitted(*http_, alice, ticket);
  auto expiring = short_lived["admission_token"].get<std::string>();
  ASSERT_TRUE(eventually(
      [&] {
        return hold_quantity(*http_, alice, "gate", "floor", 1, with(expiring))
                   .status == 403;
      },
      10s, 100ms));
  EXPECT_TRUE(is_problem(
      hold_quantity(*http_, alice, "gate", "floor", 1, with(expiring)), 403,
      "admission_required"));
  // The ticket is over; joining again queues anew and admits again.
  EXPECT_TRUE(is_problem(http_->get("/v1/queue/" + ticket, alice.token), 404,
                         "not_found"));
  auto rejoined = join(*http_, alice, "gate");
  ASSERT_EQ(rejoined.status, 201u) << rejoined;
  EXPECT_EQ(rejoined.body_json()["ticket"], ticket);
  auto fresh = wait_admitted(*http_, alice, ticket);
  EXPECT_EQ(hold_quantity(*http_, alice, "gate", "floor", 1,
                          with(fresh["admission_token"].get<std::string>()))
                .status,
            201u);
}

TEST_F(redis_test, WithoutRedisJoinsAnswer503AndAdmittedCustomersBookOn) {
  create_event(*http_, node_->admin_token(), queued_event("show", 1000, 20));
  std::vector<std::string> tokens;
  auto admitted = admitted_customers(*http_, "show", 4, tokens);
  auto late = new_customer(*http_, "late");

  // Booking load from the admitted customers while Redis is killed and
  // started again: every hold and booking succeeds.
  booking_cycles load{node_->port(), "show", admitted, tokens};
  ASSERT_TRUE(eventually([&] { return load.ok() >= 5; }, 10s));
  redis_->kill();
  EXPECT_TRUE(eventually(
      [&] {
        auto health = http_->get("/health");
        return health.status == 503 &&
               health.body_json()["services"]["redis"] == "down";
      },
      10s));
  auto refused = join(*http_, late, "show");
  EXPECT_TRUE(is_problem(refused, 503, "unavailable")) << refused;
  EXPECT_TRUE(refused.header("Retry-After").has_value());
  auto during = load.ok();
  ASSERT_TRUE(eventually([&] { return load.ok() >= during + 5; }, 10s));

  redis_->restart();
  EXPECT_TRUE(eventually(
      [&] {
        auto health = http_->get("/health");
        return health.status == 200 &&
               health.body_json()["services"]["redis"] == "ok";
      },
      10s));
  auto failures = load.stop();
  EXPECT_TRUE(failures.empty())
      << failures.size() << " failed, first: " << failures.front();
  // The new Redis is empty: the late customer is first in line.
  auto joined_late = join(*http_, late, "show");
  ASSERT_EQ(joined_late.status, 201u) << joined_late;
  EXPECT_EQ(joined_late.body_json()["position"], 1);
}

TEST(redis_rate_limits, TwoNodesShareOneLimitAndFailOpenWithoutRedis) {
  redis_server redis;
  auto args = redis.server_args();
  for (const char* flag :
       {"--rate-limit-customer", "6", "--rate-limit-window-seconds", "600"})
    args.emplace_back(flag);
  server_process first{args};
  server_process second{args};
  http_connection a{first.port()};
  http_connection b{second.port()};
  // The same event on both (memory stores): what is shared is the limit.
  for (auto* http : {&a, &b}) {
    auto& node = http == &a ? first : second;
    create_event(*http, node.admin_token(),
                 event_json("limited", {section_json("s", 100, {{"A", 50}})}));
  }
  // Sessions are valid on both nodes (the same token secret).
  auto who = new_customer(a, "limited");
  auto other = new_customer(b, "unlimited");

  // Six write requests in the window, alternating nodes; the seventh, on
  // either node, is refused.
  for (int i = 0; i < 6; ++i) {
    auto& http = i % 2 == 0 ? a : b;
    auto held = hold_quantity(http, who, "limited", "s", 1);
    ASSERT_EQ(held.status, 201u) << "request " << i + 1 << ": " << held;
    auto remaining = held.header("RateLimit");
    ASSERT_TRUE(remaining) << held;
    EXPECT_EQ(
        remaining->rfind("\"customer\";r=" + std::to_string(5 - i) + ";t=", 0),
        0u)
        << *remaining;
    EXPECT_EQ(held.header("RateLimit-Policy"), "\"customer\";q=6;w=600");
  }
  for (auto* http : {&a, &b}) {
    auto refused = hold_quantity(*http, who, "limited", "s", 1);
    EXPECT_TRUE(is_problem(refused, 429, "rate_limited")) << refused;
    auto retry = refused.header("Retry-After");
    ASSERT_TRUE(retry) << refused;
    EXPECT_GE(std::stoi(*retry), 1);
    EXPECT_LE(std::stoi(*retry), 600);
    EXPECT_EQ(refused.header("RateLimit"), "\"customer\";r=0;t=" + *retry);
    EXPECT_EQ(refused.header("RateLimit-Policy"), "\"customer\";q=6;w=600");
  }
  // Reads are not limited; other customers have their own quota.
  EXPECT_EQ(a.get("/v1/events/limited").status, 200u);
  EXPECT_EQ(hold_quantity(b, other, "limited", "s", 1).status, 201u);

  // Redis gone: the limit fails open, counted in a metric.
  auto before =
      metric(a, "rsv_rate_limit_requests_total{outcome=\"fail_open\"}");
  ASSERT_TRUE(before);
  redis.kill();
  auto held = hold_quantity(a, who, "limited", "s", 1);
  EXPECT_EQ(held.status, 201u) << held;
  EXPECT_FALSE(held.header("RateLimit"));
  auto after =
      metric(a, "rsv_rate_limit_requests_total{outcome=\"fail_open\"}");
  ASSERT_TRUE(after);
  EXPECT_GE(*after, *before + 1);

  // Redis back (empty): both nodes reconnect by themselves, every
  // connection of theirs (the I/O threads' own ones included, which /health
  // counts), and the shared limit holds again.
  redis.restart();
  for (auto* http : {&a, &b})
    EXPECT_TRUE(eventually(
        [&] {
          auto health = http->get("/health");
          return health.status == 200u &&
                 health.body_json()["services"]["redis"] == "ok";
        },
        10s))
        << http->get("/health");
  auto later = new_customer(a, "later");
  for (int i = 0; i < 6; ++i) {
    auto again = hold_quantity(i % 2 == 0 ? a : b, later, "limited", "s", 1);
    ASSERT_EQ(again.status, 201u) << "request " << i + 1 << ": " << again;
    EXPECT_TRUE(again.header("RateLimit")) << again;
  }
  for (auto* http : {&a, &b})
    EXPECT_TRUE(is_problem(hold_quantity(*http, later, "limited", "s", 1), 429,
                           "rate_limited"));
  EXPECT_EQ(first.stop(), 0);
  EXPECT_EQ(second.stop(), 0);
}

/// What a burst of counted requests of one customer got back.
struct burst_answers {
  std::vector<int> remaining; // of the allowed requests, r= of RateLimit
  int refused = 0;
  std::vector<std::string> unexpected;
};

/// `threads` connections, thread t to ports[t % ports.size()], each sending
/// `per_thread` requests of a write route that changes nothing (releasing a
/// hold that does not exist: 404 when allowed, 429 when refused).
burst_answers burst(const std::vector<unsigned short>& ports,
                    const std::string& token, int threads, int per_thread) {
  burst_answers out;
  std::mutex mutex;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      try {
        http_connection mine{ports[static_cast<std::size_t>(t) % ports.size()]};
        for (int i = 0; i < per_thread; ++i) {
          auto answer = mine.del("/v1/holds/hld_none", token);
          std::lock_guard lock{mutex};
          auto header = answer.header("RateLimit");
          if (answer.status == 429) {
            ++out.refused;
          } else if (answer.status == 404 && header &&
                     header->rfind("\"customer\";r=", 0) == 0) {
            out.remaining.push_back(std::stoi(header->substr(13)));
          } else {
            out.unexpected.push_back(std::to_string(answer.status) + " " +
                                     header.value_or("(no RateLimit)"));
          }
        }
      } catch (const std::exception& e) {
        std::lock_guard lock{mutex};
        out.unexpected.push_back(e.what());
      }
    });
  for (auto& w : workers)
    w.join();
  return out;
}

TEST(redis_rate_limits, ConcurrentRequestsOfOneCustomerGetExactlyTheQuota) {
  // Checks that arrive together share one script call (the limiter batches
  // them); each must still be counted once, in a distinct place.
  constexpr int quota = 40;
  constexpr int threads = 8;
  constexpr int per_thread = 15;
  redis_server redis;
  auto args = redis.server_args();
  for (const char* flag :
       {"--rate-limit-customer", "40", "--rate-limit-window-seconds", "600"})
    args.emplace_back(flag);
  server_process node{args};
  http_connection http{node.port()};
  auto who = new_customer(http, "burst");

  auto [remaining, refused, unexpected] =
      burst({node.port()}, who.token, threads, per_thread);
  ASSERT_TRUE(unexpected.empty()) << unexpected.front();
  EXPECT_EQ(refused, threads * per_thread - quota);
  // Every allowed request had its own place in the window: r= counts down
  // from quota - 1 to 0 without a gap or a repeat.
  std::sort(remaining.begin(), remaining.end());
  std::vector<int> expected(quota);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(remaining, expected);
  EXPECT_EQ(metric(http, "rsv_rate_limit_requests_total{outcome=\"refused\"}"),
            threads * per_thread - quota);
  EXPECT_EQ(node.stop(), 0);
}

TEST(redis_rate_limits, LeasedNumbersNeverAllowMoreThanTheQuotaAcrossNodes) {
  // A customer far from its quota that keeps coming: each I/O thread
  // reserves request numbers ahead in Redis and counts most requests
  // itself. Two nodes together still allow at most the quota, each number
  // once, and leave unused at most what their leases held when the quota
  // ran out (at most 1/128 of what was left, per I/O thread).
  constexpr int quota = 3000;
  constexpr int threads = 8;
  constexpr int per_thread = 500;
  redis_server redis;
  auto args = redis.server_args();
  for (const char* flag :
       {"--rate-limit-customer", "3000", "--rate-limit-window-seconds", "600",
        "--io-threads", "2"})
    args.emplace_back(flag);
  server_process first{args};
  server_process second{args};
  http_connection a{first.port()};
  auto who = new_customer(a, "hot");

  auto [remaining, refused, unexpected] =
      burst({first.port(), second.port()}, who.token, threads, per_thread);
  ASSERT_TRUE(unexpected.empty()) << unexpected.front();
  auto allowed = static_cast<int>(remaining.size());
  EXPECT_EQ(allowed + refused, threads * per_thread);
  EXPECT_LE(allowed, quota);
  constexpr int lanes = 2 * 2; // nodes times I/O threads
  EXPECT_GE(allowed, quota - lanes * (quota / 128)) << refused << " refused";
  // Each allowed request had a number of its own.
  std::sort(remaining.begin(), remaining.end());
  EXPECT_EQ(std::adjacent_find(remaining.begin(), remaining.end()),
            remaining.end());
  EXPECT_GE(remaining.front(), 0);
  EXPECT_LT(remaining.back(), quota);
  // And most of them needed no round trip of their own, on both nodes.
  http_connection b{second.port()};
  for (auto* http : {&a, &b}) {
    auto leased = metric(*http, "rsv_rate_limit_leased_total");
    ASSERT_TRUE(leased);
    EXPECT_GT(*leased, quota / 4);
  }
  EXPECT_EQ(first.stop(), 0);
  EXPECT_EQ(second.stop(), 0);
}

TEST(redis_read_model, SeatStatusesReachRedisAndSurviveItsRestart) {
  redis_server redis;
  auto args = redis.server_args();
  args.emplace_back("--read-model");
  args.emplace_back("serve");
  server_process node{args};
  http_connection http{node.port()};
  create_event(http, node.admin_token(),
               event_json("mapped", {section_json("s", 100, {{"A", 10}})}));
  auto who = new_customer(http, "mapped");
  auto held = hold_seats(http, who, "mapped", "s", {"A-1", "A-2"});
  ASSERT_EQ(held.status, 201u) << held;
  auto booked = hold_seats(http, who, "mapped", "s", {"A-5"});
  ASSERT_EQ(booked.status, 201u) << booked;
  ASSERT_EQ(http.post("/v1/bookings",
                      {{"hold_id", booked.body_json()["hold_id"]}}, who.token)
                .status,
            201u);

  const std::string counts_key = "rsv:rm:{mapped}:s:counts";
  auto redis_counts = [&] {
    return redis.cli({"HMGET", counts_key, "free", "held", "booked"});
  };
  EXPECT_TRUE(eventually([&] { return redis_counts() == "7\n2\n1"; }, 10s))
      << redis_counts();
  // Answered from Redis (--read-model serve): the same as the actor says.
  auto map = get_seat_map(http, "mapped", "s");
  EXPECT_EQ(map.with_status("held"), (std::vector<std::string>{"A-1", "A-2"}));
  EXPECT_EQ(map.with_status("booked"), std::vector<std::string>{"A-5"});
  EXPECT_EQ(section_counts(http, "mapped", "s"), (counts{7, 2, 1}));

  // A release is published too.
  ASSERT_EQ(
      http.del("/v1/holds/" + held.body_json()["hold_id"].get<std::string>(),
               who.token)
          .status,
      204u);
  EXPECT_TRUE(eventually([&] { return redis_counts() == "9\n0\n1"; }, 10s))
      << redis_counts();

  // Without Redis the actors answer; after its restart (empty) every section
  // is published again, with what happened meanwhile.
  redis.kill();
  auto again = hold_seats(http, who, "mapped", "s", {"A-9"});
  ASSERT_EQ(again.status, 201u) << again;
  EXPECT_EQ(get_seat_map(http, "mapped", "s").status("A-9"), "held");
  EXPECT_EQ(section_counts(http, "mapped", "s"), (counts{8, 1, 1}));
  redis.restart();
  EXPECT_TRUE(eventually([&] { return redis_counts() == "8\n1\n1"; }, 10s))
      << redis_counts();
  EXPECT_EQ(get_seat_map(http, "mapped", "s").status("A-9"), "held");
  EXPECT_EQ(node.stop(), 0);
}

// The chaos facility's crashes of the Redis threads (a connection thread,
// the read model's, the admission thread) under booking load: no booking
// fails, and rate limits, the waiting room and the read model work again
// once the supervisors restarted them.
TEST(redis_chaos, CrashedRedisThreadsRestartAndNoBookingFails) {
  redis_server redis;
  auto args = redis.server_args();
  for (const char* flag :
       {"--chaos", "--read-model", "serve", "--rate-limit-customer", "1000000",
        "--rate-limit-window-seconds", "600"})
    args.emplace_back(flag);
  server_process node{args};
  http_connection http{node.port()};
  const auto& admin = node.admin_token();
  ASSERT_TRUE(
      eventually([&] { return http.get("/health").status == 200; }, 10s))
      << node.log();
  create_event(http, admin, queued_event("crashy", 1000, 20));

  // The routes check what they are given.
  for (const json& bad :
       {json{{"connection_crashes", -1}}, json{{"read_model_crashes", 101}},
        json{{"waiting_room_crashes", "2"}}, json{{"connection_crash", 1}}}) {
    auto refused = http.post("/v1/admin/chaos/redis", bad, admin);
    EXPECT_TRUE(is_problem(refused, 422, "validation_failed")) << refused;
  }
  EXPECT_TRUE(
      is_problem(http.post("/v1/admin/chaos/relay", {{"crashes", 1}}, admin),
                 409, "chaos_unsupported"));
  auto state = http.get("/v1/admin/chaos", admin).body_json();
  EXPECT_EQ(state["relay"], nullptr);
  EXPECT_EQ(state["redis"], (json{{"connection_crashes", 0},
                                  {"read_model_crashes", 0},
                                  {"waiting_room_crashes", 0}}));

  std::vector<std::string> tokens;
  auto admitted = admitted_customers(http, "crashy", 4, tokens);
  // Every round of the booking load must succeed.
  booking_cycles load{node.port(), "crashy", admitted, tokens};

  ASSERT_TRUE(eventually([&] { return load.ok() >= 20; }, 10s));
  constexpr int connection_crashes = 3, read_model_crashes = 2,
                waiting_room_crashes = 2;
  auto set = http.post("/v1/admin/chaos/redis",
                       {{"connection_crashes", connection_crashes},
                        {"read_model_crashes", read_model_crashes},
                        {"waiting_room_crashes", waiting_room_crashes}},
                       admin);
  ASSERT_EQ(set.status, 200u) << set;
  // Each thread takes its crashes at the top of its loop rounds, after the
  // backoffs of the restarts before.
  EXPECT_TRUE(eventually(
      [&] {
        return http.get("/v1/admin/chaos", admin).body_json()["redis"] ==
               json{{"connection_crashes", 0},
                    {"read_model_crashes", 0},
                    {"waiting_room_crashes", 0}};
      },
      15s, 50ms))
      << http.get("/v1/admin/chaos", admin);
  auto after_crashes = load.ok();
  ASSERT_TRUE(eventually([&] { return load.ok() >= after_crashes + 20; }, 10s))
      << "the booking load stalled after the crashes";
  auto failures = load.stop();
  EXPECT_TRUE(failures.empty())
      << failures.size() << " failed, first: " << failures.front();

  auto metrics = http.get("/metrics").body;
  for (auto [kind, crashes] :
       {std::pair<std::string, int>{"redis_connection", connection_crashes},
        {"read_model", read_model_crashes},
        {"waiting_room", waiting_room_crashes}}) {
    EXPECT_EQ(metric_value(metrics, "rsv_chaos_faults_total",
                           "kind=\"" + kind + "_crash\""),
              crashes)
        << kind;
    EXPECT_EQ(metric_value(metrics, "rsv_actor_restarts_total",
                           "kind=\"" + kind + "\""),
              crashes)
        << kind;
  }

  // Everything works again. Redis is up.
  EXPECT_TRUE(eventually(
      [&] {
        auto health = http.get("/health");
        return health.status == 200 &&
               health.body_json()["services"]["redis"] == "ok";
      },
      10s));
  // The rate limits: counted in Redis again (a RateLimit header), not failed
  // open.
  auto limited = hold_quantity(http, admitted[0], "crashy", "floor", 1,
                               {{"X-Admission-Token", tokens[0]}});
  ASSERT_EQ(limited.status, 201u) << limited;
  EXPECT_TRUE(limited.header("RateLimit")) << limited;
  auto late = new_customer(http, "late");
  // The waiting room admits a new customer.
  auto joined_late = join(http, late, "crashy");
  ASSERT_EQ(joined_late.status, 201u) << joined_late;
  auto late_token = wait_admitted(http, late,
                                  joined_late.body_json()["ticket"]
                                      .get<std::string>())["admission_token"]
                        .get<std::string>();
  // The read model shows a new hold.
  auto held = hold_seats(http, late, "crashy", "floor", {"T-50"},
                         {{"X-Admission-Token", late_token}});
  ASSERT_EQ(held.status, 201u) << held;
  const std::string counts_key = "rsv:rm:{crashy}:floor:counts";
  EXPECT_TRUE(eventually(
      [&] {
        return redis.cli({"HMGET", counts_key, "free", "held", "booked"}) ==
               "998\n2\n0";
      },
      10s))
      << redis.cli({"HMGET", counts_key, "free", "held", "booked"});
  EXPECT_EQ(get_seat_map(http, "crashy", "floor").status("T-50"), "held");

  // DELETE clears crashes still to come.
  ASSERT_EQ(
      http.post("/v1/admin/chaos/redis", {{"waiting_room_crashes", 100}}, admin)
          .status,
      200u);
  auto cleared = http.del("/v1/admin/chaos", admin);
  ASSERT_EQ(cleared.status, 200u) << cleared;
  EXPECT_EQ(cleared.body_json()["redis"]["waiting_room_crashes"], 0);
  EXPECT_EQ(node.stop(), 0);
}

} // namespace
} // namespace rsv::e2e
