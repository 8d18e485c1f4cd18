// Many clients at once through the real binary: no seat is ever in two
// holds, losers get 409, and the seat map and counts agree with the winners.
//
// Every thread has its own keep-alive connection and its own customer,
// prepared before the race. Every loop is bounded by a count and a deadline.

#include "harness.hpp"

#include <algorithm>
#include <atomic>
#include <functional>
#include <iostream>
#include <latch>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

namespace rsv::e2e {
namespace {

using strings = std::vector<std::string>;
using clock_type = std::chrono::steady_clock;

constexpr int price = 4200;

/// One request of the race and its answer.
struct attempt {
  strings asked;    // named seats, or empty
  int quantity = 0; // or a quantity
  unsigned status = 0;
  std::string code;
  strings seats;       // of a 201
  strings unavailable; // of a 409 seats_unavailable
  std::string hold_id;
  json body;
  bool problem_ok = true;
};

struct client_log {
  std::vector<attempt> attempts;
  std::string error; // an exception, if any
  bool saw_sold_out = false;
};

class concurrency_test : public server_test {
protected:
  std::vector<std::string> server_args() const override {
    return {"--io-threads", "2"};
  }

  /// Registers `n` customers, spread over a few threads.
  std::vector<customer> prepare_customers(int n) {
    std::vector<customer> out(static_cast<std::size_t>(n));
    constexpr int workers = 4;
    std::vector<std::thread> threads;
    std::vector<std::string> errors(workers);
    for (int w = 0; w < workers; ++w)
      threads.emplace_back([&, w] {
        try {
          http_connection conn(port(), 20s);
          for (int i = w; i < n; i += workers)
            out[static_cast<std::size_t>(i)] = new_customer(conn, "racer");
        } catch (const std::exception& e) {
          errors[static_cast<std::size_t>(w)] = e.what();
        }
      });
    for (auto& t : threads)
      t.join();
    for (const auto& e : errors)
      if (!e.empty()) throw std::runtime_error("preparing customers: " + e);
    return out;
  }

  /// One connection per client, opened before the race.
  std::vector<std::unique_ptr<http_connection>> open_connections(int n) {
    std::vector<std::unique_ptr<http_connection>> out;
    for (int i = 0; i < n; ++i)
      out.push_back(std::make_unique<http_connection>(port(), 30s));
    return out;
  }

  /// Opens one connection per client, then sends one request on each, all
  /// released at once, and answers the responses in client order. A client
  /// whose request threw fails the test.
  std::vector<http_response>
  race(int clients,
       const std::function<http_response(http_connection&, std::size_t)>&
           request) {
    auto connections = open_connections(clients);
    std::vector<http_response> results(static_cast<std::size_t>(clients));
    std::vector<std::string> errors(static_cast<std::size_t>(clients));
    std::latch go(1);
    std::vector<std::thread> threads;
    for (std::size_t index = 0; index < results.size(); ++index)
      threads.emplace_back([&, index] {
        go.wait();
        try {
          results[index] = request(*connections[index], index);
        } catch (const std::exception& e) {
          errors[index] = e.what();
        }
      });
    go.count_down();
    for (auto& t : threads)
      t.join();
    for (std::size_t index = 0; index < errors.size(); ++index)
      EXPECT_TRUE(errors[index].empty())
          << "client " << index << ": " << errors[index];
    return results;
  }
};

attempt record(const http_response& response, strings asked, int quantity) {
  attempt a;
  a.asked = std::move(asked);
  a.quantity = quantity;
  a.status = response.status;
  auto body = json::parse(response.body, nullptr, false);
  a.body = body.is_discarded() ? json(response.body) : body;
  if (response.status == 201 && body.is_object()) {
    for (const auto& seat : body.value("seats", json::array()))
      a.seats.push_back(seat.get<std::string>());
    a.hold_id = body.value("hold_id", "");
  } else if (body.is_object()) {
    a.code = body.value("code", "");
    a.problem_ok =
        static_cast<bool>(is_problem(response, response.status, a.code));
    for (const auto& seat : body.value("unavailable", json::array()))
      a.unavailable.push_back(seat.get<std::string>());
  }
  return a;
}

TEST_F(concurrency_test, TwoHundredClientsRaceForOneHundredSeats) {
  // The contested section "pit": 4 rows of 25 = 100 seats. "side" is never
  // touched and shows that counts stay per section.
  create_event(
      http(), admin(),
      event_json("race",
                 {section_json("pit", price,
                               {{"A", 25}, {"B", 25}, {"C", 25}, {"D", 25}}),
                  section_json("side", 100, {{"A", 10}})}));
  strings all_seats;
  for (const char* row : {"A", "B", "C", "D"})
    for (int n = 1; n <= 25; ++n)
      all_seats.push_back(std::string{row} + "-" + std::to_string(n));

  constexpr int clients = 200;
  constexpr int random_rounds = 3; // then quantity 1 until sold out
  constexpr int max_rounds = random_rounds + 110;
  auto customers = prepare_customers(clients);
  auto connections = open_connections(clients);
  std::vector<client_log> logs(clients);
  std::latch go(1);
  auto deadline = clock_type::now() + 60s;

  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i)
    threads.emplace_back([&, i] {
      auto& log = logs[static_cast<std::size_t>(i)];
      auto& conn = *connections[static_cast<std::size_t>(i)];
      const auto& who = customers[static_cast<std::size_t>(i)];
      std::mt19937 rng(static_cast<unsigned>(1000 + i));
      go.wait();
      try {
        for (int round = 0; round < max_rounds && clock_type::now() < deadline;
             ++round) {
          strings asked;
          int quantity = 0;
          if (round < random_rounds && rng() % 2 == 0) {
            // 1..4 distinct named seats out of the 100.
            auto k = 1 + static_cast<int>(rng() % 4);
            strings pool = all_seats;
            std::shuffle(pool.begin(), pool.end(), rng);
            asked.assign(pool.begin(), pool.begin() + k);
          } else {
            quantity =
                round < random_rounds ? 1 + static_cast<int>(rng() % 4) : 1;
          }
          auto response =
              asked.empty() ? hold_quantity(conn, who, "race", "pit", quantity)
                            : hold_seats(conn, who, "race", "pit", asked);
          log.attempts.push_back(record(response, asked, quantity));
          const auto& a = log.attempts.back();
          if (a.status == 409 && a.code == "insufficient_seats" &&
              quantity == 1) {
            log.saw_sold_out = true;
            break;
          }
          if (a.status != 201 && a.status != 409)
            break; // recorded as a failure below
        }
      } catch (const std::exception& e) {
        log.error = e.what();
      }
    });
  go.count_down();
  for (auto& t : threads)
    t.join();

  // Every answer is a 201 or the right 409.
  std::map<std::string, std::string> owner; // seat -> hold id
  std::vector<const attempt*> wins;
  int losers = 0;
  for (int i = 0; i < clients; ++i) {
    const auto& log = logs[static_cast<std::size_t>(i)];
    EXPECT_TRUE(log.error.empty()) << "client " << i << ": " << log.error;
    EXPECT_TRUE(log.saw_sold_out)
        << "client " << i << " never saw the section sold out";
    for (const auto& a : log.attempts) {
      if (a.status == 201) {
        wins.push_back(&a);
        if (a.asked.empty()) {
          EXPECT_EQ(a.seats.size(), static_cast<std::size_t>(a.quantity))
              << a.body;
        } else {
          EXPECT_EQ(std::set<std::string>(a.seats.begin(), a.seats.end()),
                    std::set<std::string>(a.asked.begin(), a.asked.end()))
              << a.body;
        }
        EXPECT_EQ(a.body.value("status", ""), "active") << a.body;
        EXPECT_EQ(a.body.value("total_cents", json()),
                  price * static_cast<int>(a.seats.size()))
            << a.body;
        for (const auto& seat : a.seats) {
          auto [it, fresh] = owner.emplace(seat, a.hold_id);
          EXPECT_TRUE(fresh) << "seat " << seat << " is in holds " << it->second
                             << " and " << a.hold_id;
        }
      } else {
        ++losers;
        EXPECT_EQ(a.status, 409u) << a.body;
        EXPECT_TRUE(a.problem_ok) << a.body;
        if (a.asked.empty()) {
          EXPECT_EQ(a.code, "insufficient_seats") << a.body;
        } else {
          EXPECT_EQ(a.code, "seats_unavailable") << a.body;
          EXPECT_FALSE(a.unavailable.empty()) << a.body;
          for (const auto& seat : a.unavailable)
            EXPECT_NE(std::find(a.asked.begin(), a.asked.end(), seat),
                      a.asked.end())
                << seat << " was not asked for: " << a.body;
        }
      }
    }
  }
  std::cout << "[   info   ] " << wins.size() << " holds won, " << losers
            << " answers 409\n";
  // Demand exceeded supply: exactly the 100 seats are held, once each.
  EXPECT_EQ(owner.size(), 100u);
  EXPECT_GE(losers, clients); // at least every client's sold-out answer
  // Nothing is released in this test, so a seat reported unavailable was
  // held by a winner.
  for (const auto& log : logs)
    for (const auto& a : log.attempts)
      for (const auto& seat : a.unavailable)
        EXPECT_TRUE(owner.count(seat))
            << seat << " was unavailable but nobody holds it";

  // The seat map and the counts agree with the union of the winners.
  auto map = get_seat_map(http(), "race", "pit");
  EXPECT_EQ(map.order, all_seats);
  auto held_list = map.with_status("held");
  std::set<std::string> held(held_list.begin(), held_list.end());
  std::set<std::string> won;
  for (const auto& [seat, hold] : owner)
    won.insert(seat);
  EXPECT_EQ(held, won);
  EXPECT_TRUE(map.with_status("free").empty());
  EXPECT_TRUE(map.with_status("booked").empty());
  EXPECT_EQ(section_counts(http(), "race", "pit"), (counts{0, 100, 0}));
  EXPECT_EQ(section_counts(http(), "race", "side"), (counts{10, 0, 0}));
  auto stats = http().get("/v1/events/race/stats", admin());
  ASSERT_EQ(stats.status, 200u);
  EXPECT_EQ(stats.body_json(), json({{"event_id", "race"},
                                     {"free", 10},
                                     {"held", 100},
                                     {"booked", 0},
                                     {"revenue_cents", 0}}));
  auto events = http().get("/v1/events").body_json()["events"];
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["seats_free"], 10);

  // Each winner sees its own hold as it was answered.
  for (int i = 0; i < clients; ++i)
    for (const auto& a : logs[static_cast<std::size_t>(i)].attempts)
      if (a.status == 201) {
        auto got = http().get("/v1/holds/" + a.hold_id,
                              customers[static_cast<std::size_t>(i)].token);
        ASSERT_EQ(got.status, 200u) << got;
        EXPECT_EQ(got.body_json(), a.body);
      }
}

TEST_F(concurrency_test, TwoHundredSingleSeatRequestsForOneHundredSeats) {
  create_event(
      http(), admin(),
      event_json("single", {section_json("s", price, {{"A", 50}, {"B", 50}})}));
  constexpr int clients = 200;
  auto customers = prepare_customers(clients);
  auto responses = race(clients, [&](http_connection& conn, std::size_t index) {
    return hold_quantity(conn, customers[index], "single", "s", 1);
  });
  ASSERT_FALSE(HasFailure());
  std::set<std::string> won;
  int wins = 0, sold_out = 0;
  for (int i = 0; i < clients; ++i) {
    auto index = static_cast<std::size_t>(i);
    auto a = record(responses[index], {}, 1);
    if (a.status == 201) {
      ++wins;
      ASSERT_EQ(a.seats.size(), 1u) << a.body;
      EXPECT_TRUE(won.insert(a.seats[0]).second) << a.seats[0] << " held twice";
    } else {
      EXPECT_EQ(a.status, 409u) << a.body;
      EXPECT_EQ(a.code, "insufficient_seats") << a.body;
      ++sold_out;
    }
  }
  EXPECT_EQ(wins, 100);
  EXPECT_EQ(sold_out, 100);
  EXPECT_EQ(won.size(), 100u);
  auto map = get_seat_map(http(), "single", "s");
  EXPECT_EQ(map.with_status("held").size(), 100u);
  EXPECT_EQ(section_counts(http(), "single", "s"), (counts{0, 100, 0}));
}

TEST_F(concurrency_test, ConcurrentRequestsWithOneIdempotencyKeyMakeOneHold) {
  create_event(http(), admin(),
               event_json("idem", {section_json("s", price, {{"A", 20}})}));
  auto who = new_customer(http());
  constexpr int clients = 20;
  auto results = race(clients, [&](http_connection& conn, std::size_t) {
    return hold_quantity(conn, who, "idem", "s", 2,
                         {{"Idempotency-Key", "one-for-all"}});
  });
  ASSERT_FALSE(HasFailure());
  std::set<std::string> bodies;
  for (int i = 0; i < clients; ++i) {
    auto index = static_cast<std::size_t>(i);
    const auto& r = results[index];
    if (r.status == 201) {
      bodies.insert(r.body);
    } else {
      // Still running elsewhere: 409 idempotency_key_in_use, retry later.
      EXPECT_TRUE(is_problem(r, 409, "idempotency_key_in_use"));
      EXPECT_TRUE(r.header("Retry-After").has_value()) << r;
    }
  }
  std::cout << "[   info   ] "
            << std::count_if(results.begin(), results.end(),
                             [](const auto& r) { return r.status == 201; })
            << " of " << clients << " answered 201\n";
  ASSERT_EQ(bodies.size(), 1u) << "every 201 must carry the same hold";
  EXPECT_EQ(section_counts(http(), "idem", "s"), (counts{18, 2, 0}));
  auto again = hold_quantity(http(), who, "idem", "s", 2,
                             {{"Idempotency-Key", "one-for-all"}});
  EXPECT_EQ(again.status, 201u);
  EXPECT_EQ(again.body, *bodies.begin());
}

TEST_F(concurrency_test, ConcurrentBookingsOfOneHoldMakeOneBooking) {
  create_event(http(), admin(),
               event_json("book", {section_json("s", price, {{"A", 5}})}));
  auto who = new_customer(http());
  auto hold = hold_quantity(http(), who, "book", "s", 3);
  ASSERT_EQ(hold.status, 201u) << hold;
  auto hold_id = hold.body_json()["hold_id"].get<std::string>();
  constexpr int clients = 20;
  auto results = race(clients, [&](http_connection& conn, std::size_t) {
    return conn.post("/v1/bookings", {{"hold_id", hold_id}}, who.token);
  });
  ASSERT_FALSE(HasFailure());
  std::string booking_id;
  int created = 0;
  for (int i = 0; i < clients; ++i) {
    auto index = static_cast<std::size_t>(i);
    const auto& r = results[index];
    if (r.status == 201) {
      ++created;
      booking_id = r.body_json()["booking_id"].get<std::string>();
    }
  }
  ASSERT_EQ(created, 1);
  for (int i = 0; i < clients; ++i) {
    const auto& r = results[static_cast<std::size_t>(i)];
    if (r.status == 201) continue;
    EXPECT_TRUE(is_problem(r, 409, "hold_booked"));
    EXPECT_EQ(r.body_json()["booking_id"], booking_id);
  }
  EXPECT_EQ(
      http().get("/v1/bookings", who.token).body_json()["bookings"].size(), 1u);
  EXPECT_EQ(section_counts(http(), "book", "s"), (counts{2, 0, 3}));
  auto stats = http().get("/v1/events/book/stats", admin()).body_json();
  EXPECT_EQ(stats["revenue_cents"], 3 * price);
}

TEST_F(concurrency_test, PerCustomerLimitHoldsUnderConcurrency) {
  auto body = event_json("limit", {section_json("a", price, {{"A", 30}}),
                                   section_json("b", price, {{"A", 30}})});
  body["max_seats_per_customer"] = 4;
  create_event(http(), admin(), body);
  auto who = new_customer(http());
  constexpr int clients = 24;
  auto results = race(clients, [&](http_connection& conn, std::size_t index) {
    return hold_quantity(conn, who, "limit", index % 2 == 0 ? "a" : "b", 1);
  });
  ASSERT_FALSE(HasFailure());
  int created = 0;
  for (int i = 0; i < clients; ++i) {
    auto index = static_cast<std::size_t>(i);
    const auto& r = results[index];
    if (r.status == 201)
      ++created;
    else
      EXPECT_TRUE(is_problem(r, 422, "limit_exceeded"));
  }
  EXPECT_EQ(created, 4);
  auto a = section_counts(http(), "limit", "a");
  auto b = section_counts(http(), "limit", "b");
  EXPECT_EQ(a.held + b.held, 4);
  EXPECT_EQ(a.free + b.free, 56);
}

TEST_F(concurrency_test, MixedHoldBookReleaseCancelKeepsCountsConsistent) {
  // 50 clients hold, book, release and cancel at random at the same time;
  // afterwards the seat map, the counts and the revenue agree with what the
  // clients were told.
  create_event(
      http(), admin(),
      event_json("mixed", {section_json("s", price,
                                        {{"A", 20}, {"B", 20}, {"C", 20}})}));
  constexpr int clients = 50;
  constexpr int iterations = 12;
  auto customers = prepare_customers(clients);
  auto connections = open_connections(clients);
  struct outcome {
    std::map<std::string, strings> active_holds; // hold id -> seats
    std::map<std::string, json> bookings;        // booking id -> last answer
    std::vector<std::string> unexpected;
    std::string error;
  };
  std::vector<outcome> outcomes(clients);
  std::latch go(1);
  auto deadline = clock_type::now() + 60s;
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i)
    threads.emplace_back([&, i] {
      auto index = static_cast<std::size_t>(i);
      auto& out = outcomes[index];
      auto& conn = *connections[index];
      const auto& who = customers[index];
      std::mt19937 rng(static_cast<unsigned>(7000 + i));
      go.wait();
      try {
        for (int round = 0; round < iterations && clock_type::now() < deadline;
             ++round) {
          auto held = hold_quantity(conn, who, "mixed", "s",
                                    1 + static_cast<int>(rng() % 3));
          if (held.status != 201) {
            if (!(held.status == 409 &&
                  held.body_json().value("code", "") == "insufficient_seats"))
              out.unexpected.push_back("hold: " + held.body);
            continue;
          }
          auto hold = held.body_json();
          auto hold_id = hold["hold_id"].get<std::string>();
          auto choice = rng() % 10;
          if (choice < 6) {
            auto booked =
                conn.post("/v1/bookings", {{"hold_id", hold_id}}, who.token);
            if (booked.status != 201) {
              out.unexpected.push_back("book: " + booked.body);
              continue;
            }
            auto booking = booked.body_json();
            auto booking_id = booking["booking_id"].get<std::string>();
            out.bookings[booking_id] = booking;
            if (rng() % 3 == 0) {
              auto cancelled =
                  conn.del("/v1/bookings/" + booking_id, who.token);
              if (cancelled.status != 200)
                out.unexpected.push_back("cancel: " + cancelled.body);
              else
                out.bookings[booking_id] = cancelled.body_json();
            }
          } else if (choice < 8) {
            auto released = conn.del("/v1/holds/" + hold_id, who.token);
            if (released.status != 204)
              out.unexpected.push_back("release: " +
                                       std::to_string(released.status));
          } else {
            out.active_holds[hold_id] = hold["seats"].get<strings>();
          }
        }
      } catch (const std::exception& e) {
        out.error = e.what();
      }
    });
  go.count_down();
  for (auto& t : threads)
    t.join();

  std::set<std::string> held, booked;
  std::int64_t revenue = 0;
  for (const auto& out : outcomes) {
    EXPECT_TRUE(out.error.empty()) << out.error;
    for (const auto& u : out.unexpected)
      ADD_FAILURE() << "unexpected answer: " << u;
    for (const auto& [id, seats] : out.active_holds)
      for (const auto& seat : seats)
        EXPECT_TRUE(held.insert(seat).second) << seat << " in two active holds";
    for (const auto& [id, booking] : out.bookings) {
      if (booking["status"] != "confirmed") continue;
      revenue += booking["total_cents"].get<std::int64_t>();
      for (const auto& seat : booking["seats"])
        EXPECT_TRUE(booked.insert(seat.get<std::string>()).second)
            << seat << " in two confirmed bookings";
    }
  }
  for (const auto& seat : held)
    EXPECT_FALSE(booked.count(seat)) << seat << " both held and booked";
  auto map = get_seat_map(http(), "mixed", "s");
  auto map_held = map.with_status("held");
  auto map_booked = map.with_status("booked");
  EXPECT_EQ(std::set<std::string>(map_held.begin(), map_held.end()), held);
  EXPECT_EQ(std::set<std::string>(map_booked.begin(), map_booked.end()),
            booked);
  auto expected =
      counts{static_cast<std::int64_t>(60 - held.size() - booked.size()),
             static_cast<std::int64_t>(held.size()),
             static_cast<std::int64_t>(booked.size())};
  EXPECT_EQ(section_counts(http(), "mixed", "s"), expected);
  auto stats = http().get("/v1/events/mixed/stats", admin()).body_json();
  EXPECT_EQ(stats["revenue_cents"], revenue);
  EXPECT_EQ(stats["booked"], booked.size());
  EXPECT_EQ(stats["held"], held.size());
  // Every client's booking list is its bookings, newest first.
  for (int i = 0; i < clients; ++i) {
    auto index = static_cast<std::size_t>(i);
    auto list = http()
                    .get("/v1/bookings", customers[index].token)
                    .body_json()["bookings"];
    EXPECT_EQ(list.size(), outcomes[index].bookings.size());
    for (const auto& booking : list)
      EXPECT_EQ(
          booking,
          outcomes[index].bookings[booking["booking_id"].get<std::string>()]);
  }
}

} // namespace
} // namespace rsv::e2e
