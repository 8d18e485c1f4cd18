#include "load.hpp"

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <sstream>

namespace rsv::e2e {

namespace {

using clock_type = std::chrono::steady_clock;
using strings = std::vector<std::string>;

strings string_list(const json& array) {
  strings out;
  if (!array.is_array()) return out;
  for (const auto& item : array)
    if (item.is_string()) out.push_back(item.get<std::string>());
  return out;
}

std::set<std::string> as_set(const strings& list) {
  return {list.begin(), list.end()};
}

std::string joined(const strings& list) {
  std::string out;
  for (const auto& item : list)
    out += (out.empty() ? "" : ",") + item;
  return out;
}

} // namespace

std::string_view to_string(op_kind kind) {
  switch (kind) {
  case op_kind::hold_seats:
    return "hold seats";
  case op_kind::hold_quantity:
    return "hold quantity";
  case op_kind::book:
    return "book";
  case op_kind::release:
    return "release";
  case op_kind::cancel:
    return "cancel";
  }
  return "?";
}

std::string_view to_string(outcome result) {
  switch (result) {
  case outcome::acknowledged:
    return "acknowledged";
  case outcome::rejected:
    return "rejected";
  case outcome::indeterminate:
    return "indeterminate";
  }
  return "?";
}

std::chrono::milliseconds operation::latency() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(answered - sent);
}

std::string operation::describe() const {
  std::ostringstream out;
  out << "client " << client << (retry ? " retry " : " ") << to_string(kind);
  switch (kind) {
  case op_kind::hold_seats:
    out << ' ' << section_id << " [" << joined(seats) << ']';
    break;
  case op_kind::hold_quantity:
    out << ' ' << section_id << " x" << quantity;
    break;
  case op_kind::book:
  case op_kind::release:
    out << ' ' << hold_id;
    break;
  case op_kind::cancel:
    out << ' ' << booking_id;
    break;
  }
  out << ": ";
  if (status == 0)
    out << "no answer (" << error << ")";
  else
    out << status << (code.empty() ? "" : " " + code);
  if (result == outcome::acknowledged &&
      (kind == op_kind::hold_seats || kind == op_kind::hold_quantity))
    out << " " << hold_id;
  out << " after " << latency().count() << " ms";
  return out.str();
}

// -- one request --------------------------------------------------------------

operation perform(http_connection& http, const load_config& config,
                  operation op) {
  const auto& who = config.customers.at(static_cast<std::size_t>(op.client));
  headers_t key;
  if (!op.idempotency_key.empty())
    key.emplace_back("Idempotency-Key", op.idempotency_key);
  // A retry reuses the operation: nothing of the earlier answer stays.
  op.status = 0;
  op.body = json();
  op.code.clear();
  op.problem_shape = false;
  op.retry_after = false;
  op.error.clear();
  op.result = outcome::indeterminate;
  op.sent = clock_type::now();
  try {
    http_response response;
    switch (op.kind) {
    case op_kind::hold_seats:
      response =
          hold_seats(http, who, config.event_id, op.section_id, op.seats, key);
      break;
    case op_kind::hold_quantity:
      response = hold_quantity(http, who, config.event_id, op.section_id,
                               op.quantity, key);
      break;
    case op_kind::book:
      response =
          http.post("/v1/bookings", {{"hold_id", op.hold_id}}, who.token, key);
      break;
    case op_kind::release:
      response = http.del("/v1/holds/" + op.hold_id, who.token);
      break;
    case op_kind::cancel:
      response = http.del("/v1/bookings/" + op.booking_id, who.token);
      break;
    }
    op.answered = clock_type::now();
    op.status = response.status;
    auto body = json::parse(response.body, nullptr, false);
    op.body = body.is_discarded() ? json() : body;
    if (response.status >= 400 && op.body.is_object())
      op.code = op.body.value("code", "");
    if (response.status >= 400)
      op.problem_shape =
          static_cast<bool>(is_problem(response, response.status, op.code));
    op.retry_after = response.header("Retry-After").has_value();
    op.result = response.status >= 200 && response.status < 300
                    ? outcome::acknowledged
                : response.status >= 400 && response.status < 500
                    ? outcome::rejected
                    : outcome::indeterminate;
    // The key's first request is still running (on this node, waiting for
    // an owner that does not answer, say): what it does is not known yet.
    if (response.status == 409 && op.code == "idempotency_key_in_use")
      op.result = outcome::indeterminate;
    if (op.result == outcome::acknowledged && op.body.is_object()) {
      if (op.kind == op_kind::hold_seats || op.kind == op_kind::hold_quantity)
        op.hold_id = op.body.value("hold_id", "");
      if (op.kind == op_kind::book)
        op.booking_id = op.body.value("booking_id", "");
    }
  } catch (const std::exception& e) {
    op.answered = clock_type::now();
    op.error = e.what();
    op.result = outcome::indeterminate;
  }
  return op;
}

// -- the clients --------------------------------------------------------------

load_generator::load_generator(unsigned short port, load_config config)
    : port_(port), config_(std::move(config)), logs_(config_.customers.size()),
      burst_(static_cast<std::ptrdiff_t>(config_.customers.size())) {}

load_generator::~load_generator() {
  request_stop();
  join();
}

void load_generator::start() {
  deadline_ = clock_type::now() + config_.duration_max;
  for (std::size_t i = 0; i < config_.customers.size(); ++i)
    threads_.emplace_back([this, i] { run_client(static_cast<int>(i)); });
}

void load_generator::request_stop() {
  stop_ = true;
  std::lock_guard<std::mutex> guard{mutex_};
  changed_.notify_all();
}

void load_generator::join() {
  for (auto& thread : threads_)
    if (thread.joinable()) thread.join();
}

load_progress load_generator::progress() const {
  std::lock_guard<std::mutex> guard{mutex_};
  return progress_;
}

bool load_generator::wait_for(
    const std::function<bool(const load_progress&)>& condition,
    std::chrono::milliseconds deadline) const {
  auto clients = static_cast<int>(config_.customers.size());
  std::unique_lock<std::mutex> lock{mutex_};
  changed_.wait_for(lock, deadline, [&] {
    return condition(progress_) || progress_.clients_done == clients;
  });
  return condition(progress_);
}

std::vector<operation> load_generator::operations() const {
  std::vector<operation> out;
  for (const auto& log : logs_)
    out.insert(out.end(), log.begin(), log.end());
  return out;
}

void load_generator::record(const operation& op) {
  logs_[static_cast<std::size_t>(op.client)].push_back(op);
  std::lock_guard<std::mutex> guard{mutex_};
  ++progress_.sent;
  if (op.status != 0) ++progress_.answered;
  if (op.result == outcome::acknowledged) {
    ++progress_.acknowledged;
    if (op.kind == op_kind::book) ++progress_.bookings_acknowledged;
  }
  changed_.notify_all();
}

bool load_generator::pause(std::chrono::milliseconds how_long) {
  // Pacing, not synchronisation: a stop request ends it at once.
  std::unique_lock<std::mutex> lock{mutex_};
  return !changed_.wait_for(lock, how_long, [this] { return stop_.load(); });
}

void load_generator::run_client(int index) {
  const auto seed = config_.seed * 7919u + static_cast<unsigned>(index);
  std::mt19937 rng(seed);
  // This client's view: holds acknowledged and not yet booked or released,
  // and bookings acknowledged and not yet cancelled (booking id, hold id).
  // A hold or booking leaves the view at its first request whatever the
  // answer: after an indeterminate answer its state is unknown.
  strings active;
  std::vector<std::pair<std::string, std::string>> confirmed;
  int sent = 0;
  bool in_burst_plan = config_.what == load_config::plan::hold_then_book;
  bool arrived = !in_burst_plan;
  std::unique_ptr<http_connection> http;
  try {
    http = std::make_unique<http_connection>(port_, config_.request_timeout);
  } catch (const std::exception&) {
    http.reset(); // the server is gone already: nothing to send
  }
  // A cluster's nodes, round robin: one connection each, made again after
  // a loss (the node was killed or frozen, or comes back).
  std::vector<unsigned short> ports{port_};
  ports.insert(ports.end(), config_.more_ports.begin(),
               config_.more_ports.end());
  const bool round_robin = ports.size() > 1;
  std::vector<std::unique_ptr<http_connection>> nodes(ports.size());
  std::size_t turn = static_cast<std::size_t>(index);
  if (round_robin) http.reset();
  auto next_node = [&]() -> http_connection* {
    auto i = turn++ % ports.size();
    if (!nodes[i]) {
      try {
        nodes[i] = std::make_unique<http_connection>(ports[i],
                                                     config_.request_timeout);
      } catch (const std::exception&) {
        return nullptr;
      }
    }
    return nodes[i].get();
  };
  auto may_send = [&] {
    return (http || round_robin) && sent < config_.requests_max && !stop_ &&
           clock_type::now() < deadline_;
  };
  auto pick = [&](std::size_t size) {
    return static_cast<std::size_t>(rng() % size);
  };

  // Sends one request, updates the view, records it; false to stop.
  auto send = [&](operation op) {
    op.client = index;
    if (op.kind == op_kind::hold_seats || op.kind == op_kind::hold_quantity ||
        op.kind == op_kind::book)
      op.idempotency_key = "c" + std::to_string(index) + "-r" +
                           std::to_string(sent) + "-s" +
                           std::to_string(config_.seed);
    http_connection* to = http.get();
    if (round_robin) {
      to = next_node();
      if (to == nullptr) {
        // That node refuses connections: try the next one after a pause.
        ++sent;
        return pause(config_.pause_after_failure);
      }
    }
    auto done = perform(*to, config_, std::move(op));
    ++sent;
    // A client that keeps its holds: an indeterminate answer is asked again
    // (same request, same key), through the next node, until it is definite
    // or the retries run out; every attempt goes into the history.
    for (int r = 0; r < config_.retries_after_failure &&
                    done.result == outcome::indeterminate && may_send();
         ++r) {
      record(done);
      if (done.status == 0 && round_robin)
        for (auto& node : nodes)
          if (node.get() == to) node.reset();
      if (!pause(config_.pause_after_failure)) return false;
      to = round_robin ? next_node() : http.get();
      if (to == nullptr) return pause(config_.pause_after_failure);
      auto again = done;
      again.retry = true;
      done = perform(*to, config_, std::move(again));
      ++sent;
    }
    switch (done.kind) {
    case op_kind::hold_seats:
    case op_kind::hold_quantity:
      if (done.result == outcome::acknowledged) active.push_back(done.hold_id);
      break;
    case op_kind::book:
      std::erase(active, done.hold_id);
      if (done.result == outcome::acknowledged)
        confirmed.emplace_back(done.booking_id, done.hold_id);
      break;
    case op_kind::release:
      std::erase(active, done.hold_id);
      break;
    case op_kind::cancel:
      std::erase_if(confirmed,
                    [&](const auto& b) { return b.first == done.booking_id; });
      break;
    }
    bool connection_lost = done.status == 0;
    bool failed = done.result == outcome::indeterminate;
    record(done);
    if (connection_lost && round_robin) {
      for (auto& node : nodes)
        if (node.get() == to) node.reset();
      return pause(config_.pause_after_failure);
    }
    if (connection_lost) return false;
    if (failed) return pause(config_.pause_after_failure);
    if (config_.pause_between_requests.count() > 0)
      return pause(config_.pause_between_requests);
    return true;
  };

  auto random_hold = [&] {
    operation op;
    auto section = config_.sections.begin();
    std::advance(section, static_cast<long>(pick(config_.sections.size())));
    op.section_id = section->first;
    if (rng() % 2 == 0) {
      op.kind = op_kind::hold_seats;
      auto pool = section->second;
      std::shuffle(pool.begin(), pool.end(), rng);
      pool.resize(std::min<std::size_t>(pool.size(), 1 + rng() % 3));
      op.seats = std::move(pool);
    } else {
      op.kind = op_kind::hold_quantity;
      op.quantity = 1 + static_cast<int>(rng() % 4);
    }
    return op;
  };

  auto next_mixed = [&] {
    auto roll = rng() % 100;
    // At its bound a client gives seats back instead of taking more: it
    // releases where it would have held, or cancels when it has bookings.
    bool full =
        config_.live_max > 0 && active.size() + confirmed.size() >=
                                    static_cast<std::size_t>(config_.live_max);
    operation op;
    if (!active.empty() && roll < 25) {
      op.kind = op_kind::book;
      op.hold_id = active[pick(active.size())];
    } else if (!active.empty() && (roll < 40 || (full && confirmed.empty()))) {
      op.kind = op_kind::release;
      op.hold_id = active[pick(active.size())];
    } else if (!confirmed.empty() && (roll < 50 || full)) {
      op.kind = op_kind::cancel;
      const auto& booking = confirmed[pick(confirmed.size())];
      op.booking_id = booking.first;
      op.hold_id = booking.second;
    } else {
      op = random_hold();
    }
    return op;
  };

  bool going = true;
  if (in_burst_plan) {
    // Holds of two best-available seats; then, once every client has its
    // holds, all book at once.
    for (int tries = 0; going && may_send() &&
                        static_cast<int>(active.size()) < config_.burst_holds &&
                        tries < 4 * config_.burst_holds;
         ++tries) {
      operation op;
      op.kind = op_kind::hold_quantity;
      op.section_id =
          std::next(config_.sections.begin(),
                    static_cast<long>(pick(config_.sections.size())))
              ->first;
      op.quantity = 2;
      going = send(std::move(op));
    }
    arrived = true;
    if (going && (http || round_robin)) {
      burst_.arrive_and_wait();
    } else {
      burst_.count_down();
    }
    auto to_book = active;
    for (const auto& hold_id : to_book) {
      if (!going || !may_send()) break;
      operation op;
      op.kind = op_kind::book;
      op.hold_id = hold_id;
      going = send(std::move(op));
    }
  }
  if (!arrived) burst_.count_down();
  while (going && may_send())
    going = send(next_mixed());

  std::lock_guard<std::mutex> guard{mutex_};
  ++progress_.clients_done;
  changed_.notify_all();
}

// -- observing and checking ---------------------------------------------------

observed_state observe(http_connection& http, const load_config& config,
                       const std::vector<operation>& operations) {
  observed_state state;
  auto event = http.get("/v1/events/" + config.event_id);
  if (event.status != 200)
    throw std::runtime_error("GET event: " + std::to_string(event.status) +
                             " " + event.body);
  auto event_body = event.body_json();
  for (const auto& section : event_body.at("sections"))
    state.sections[section.at("id").get<std::string>()] = section;
  for (const auto& [section, seats] : config.sections)
    state.seat_maps[section] =
        get_seat_map(http, config.event_id, section).seats;
  for (const auto& op : operations) {
    if (op.hold_id.empty() || state.holds.count(op.hold_id)) continue;
    const auto& who = config.customers.at(static_cast<std::size_t>(op.client));
    auto hold = http.get("/v1/holds/" + op.hold_id, who.token);
    state.holds[op.hold_id] =
        hold.status == 200 ? hold.body_json()
                           : json{{"answer", hold.status}, {"body", hold.body}};
  }
  // Bookings by id, each read as its client: the ids the clients were told
  // (a 201, a cancellation, a 409 hold_booked) and the ids in their lists.
  std::map<std::string, int> booking_ids;
  for (const auto& op : operations) {
    if (!op.booking_id.empty()) booking_ids.emplace(op.booking_id, op.client);
    if (op.code == "hold_booked" && op.body.contains("booking_id"))
      booking_ids.emplace(op.body["booking_id"].get<std::string>(), op.client);
  }
  for (std::size_t client = 0; client < config.customers.size(); ++client) {
    auto bookings = http.get("/v1/bookings", config.customers[client].token);
    auto& list = state.bookings[static_cast<int>(client)];
    list = bookings.status == 200
               ? bookings.body_json()
               : json{{"answer", bookings.status}, {"body", bookings.body}};
    if (list.contains("bookings"))
      for (const auto& b : list.at("bookings"))
        booking_ids.emplace(b.value("booking_id", ""),
                            static_cast<int>(client));
  }
  for (const auto& [id, client] : booking_ids) {
    const auto& who = config.customers.at(static_cast<std::size_t>(client));
    auto booking = http.get("/v1/bookings/" + id, who.token);
    state.booking_reads[id] =
        booking.status == 200
            ? booking.body_json()
            : json{{"answer", booking.status}, {"body", booking.body}};
  }
  return state;
}

std::vector<std::string> differences(const observed_state& before,
                                     const observed_state& after) {
  std::vector<std::string> out;
  for (const auto& [section, seats] : before.seat_maps) {
    auto other = after.seat_maps.find(section);
    if (other == after.seat_maps.end()) {
      out.push_back("section " + section + " has no seat map any more");
      continue;
    }
    std::map<std::string, std::string> then(seats.begin(), seats.end());
    for (const auto& [seat, status] : other->second)
      if (then[seat] != status)
        out.push_back("seat " + section + "/" + seat + ": " + then[seat] +
                      " -> " + status);
  }
  for (const auto& [section, item] : before.sections) {
    auto other = after.sections.find(section);
    auto now = other == after.sections.end() ? json() : other->second;
    if (item != now)
      out.push_back("section " + section + ": " + item.dump() + " -> " +
                    now.dump());
  }
  for (const auto& [id, hold] : before.holds) {
    auto other = after.holds.find(id);
    auto now = other == after.holds.end() ? json() : other->second;
    if (hold != now)
      out.push_back("hold " + id + ": " + hold.dump() + " -> " + now.dump());
  }
  for (const auto& [client, list] : before.bookings) {
    auto other = after.bookings.find(client);
    auto now = other == after.bookings.end() ? json() : other->second;
    if (list != now)
      out.push_back("bookings of client " + std::to_string(client) + ": " +
                    list.dump() + " -> " + now.dump());
  }
  return out;
}

namespace {

// The states a hold can be in, as a set of bits.
enum : unsigned {
  st_active = 1,
  st_released = 2,
  st_confirmed = 4, // booked, the booking confirmed
  st_cancelled = 8, // booked, the booking cancelled
  st_booked = st_confirmed | st_cancelled,
};

std::string states_text(unsigned states) {
  strings names;
  if (states & st_active) names.push_back("active");
  if (states & st_released) names.push_back("released");
  if (states & st_confirmed) names.push_back("booked (confirmed)");
  if (states & st_cancelled) names.push_back("booked (cancelled)");
  return "{" + joined(names) + "}";
}

/// What the clients' answers say about one hold they know.
struct hold_model {
  int client = 0;
  std::string section;
  strings seats;
  unsigned possible = st_active;
  bool booking_tried = false;
  strings history; // its requests, for messages
};

/// Hold requests of a section with an indeterminate outcome: their seats
/// may be held by a hold nobody knows.
struct unknown_holds {
  std::set<std::string> named;
  int quantity = 0;
};

} // namespace

std::vector<std::string> check_consistent(const std::vector<operation>& ops,
                                          const observed_state& state) {
  std::vector<std::string> out;
  std::map<std::string, hold_model> holds;
  std::map<std::string, unknown_holds> unknown;

  auto history_of = [](const hold_model& m) {
    std::string text;
    for (const auto& line : m.history)
      text += "\n      " + line;
    return text;
  };
  // A rejection that says what state the hold is in.
  auto narrow = [&](hold_model& m, unsigned to, const operation& op) {
    if ((m.possible & to) == 0)
      out.push_back(op.describe() + " contradicts the earlier answers " +
                    states_text(m.possible) + ":" + history_of(m));
    m.possible = (m.possible & to) != 0 ? m.possible & to : to;
  };
  auto unexpected = [&](const operation& op) {
    out.push_back("unexpected answer: " + op.describe() + " " + op.body.dump());
  };

  // The answers, client by client in order: each client alone acts on its
  // holds, so its order is the order of the changes to them.
  for (const auto& op : ops) {
    if (op.kind == op_kind::hold_seats || op.kind == op_kind::hold_quantity) {
      if (op.result == outcome::indeterminate) {
        auto& section = unknown[op.section_id];
        section.named.insert(op.seats.begin(), op.seats.end());
        section.quantity += op.quantity;
      } else if (op.result == outcome::rejected) {
        bool expected =
            op.status == 409 &&
            (op.kind == op_kind::hold_seats ? op.code == "seats_unavailable"
                                            : op.code == "insufficient_seats");
        if (!expected) unexpected(op);
      } else {
        auto seats = string_list(op.body.value("seats", json()));
        bool shape_ok =
            op.status == 201 && !op.hold_id.empty() &&
            op.body.value("section_id", "") == op.section_id &&
            op.body.value("status", "") == "active" &&
            (op.kind == op_kind::hold_seats
                 ? as_set(seats) == as_set(op.seats)
                 : seats.size() == static_cast<std::size_t>(op.quantity));
        if (!shape_ok) unexpected(op);
        if (holds.count(op.hold_id)) {
          out.push_back(op.describe() + " answered hold id " + op.hold_id +
                        " a second time");
          continue;
        }
        holds[op.hold_id] = {op.client, op.section_id, seats,
                             st_active, false,         {op.describe()}};
      }
      continue;
    }
    auto found = holds.find(op.hold_id);
    if (found == holds.end()) {
      out.push_back("test error: " + op.describe() + " of an unknown hold");
      continue;
    }
    auto& m = found->second;
    m.history.push_back(op.describe());
    switch (op.kind) {
    case op_kind::book:
      m.booking_tried = true;
      if (op.result == outcome::acknowledged) {
        if ((m.possible & st_active) == 0)
          out.push_back(op.describe() + " booked a hold that was " +
                        states_text(m.possible) + ":" + history_of(m));
        if (op.status != 201 || op.body.value("hold_id", "") != op.hold_id ||
            string_list(op.body.value("seats", json())) != m.seats ||
            op.body.value("status", "") != "confirmed")
          unexpected(op);
        m.possible = st_confirmed;
      } else if (op.result == outcome::rejected) {
        if (op.status == 409 && op.code == "hold_booked")
          narrow(m, st_booked, op);
        else if (op.status == 410 && op.code == "hold_expired")
          narrow(m, st_released, op);
        else
          unexpected(op);
      } else if (m.possible & st_active) {
        m.possible |= st_confirmed;
      }
      break;
    case op_kind::release:
      if (op.result == outcome::acknowledged) {
        if ((m.possible & (st_active | st_released)) == 0)
          out.push_back(op.describe() + " released a hold that was " +
                        states_text(m.possible) + ":" + history_of(m));
        m.possible = st_released;
      } else if (op.result == outcome::rejected) {
        if (op.status == 409 && op.code == "hold_booked")
          narrow(m, st_booked, op);
        else
          unexpected(op);
      } else if (m.possible & st_active) {
        m.possible |= st_released;
      }
      break;
    case op_kind::cancel:
      if (op.result == outcome::acknowledged) {
        if ((m.possible & st_booked) == 0)
          out.push_back(op.describe() +
                        " cancelled a booking of a hold that "
                        "was " +
                        states_text(m.possible) + ":" + history_of(m));
        if (op.body.value("status", "") != "cancelled") unexpected(op);
        m.possible = st_cancelled;
      } else if (op.result == outcome::rejected) {
        unexpected(op);
      } else if (m.possible & st_confirmed) {
        m.possible |= st_cancelled;
      }
      break;
    default:
      break;
    }
  }

  // What the server shows, hold by hold.
  std::map<std::string, std::map<std::string, std::string>> seat_status;
  for (const auto& [section, seats] : state.seat_maps)
    seat_status[section].insert(seats.begin(), seats.end());
  std::map<std::string, std::map<std::string, std::string>> claimed;
  for (const auto& [id, m] : holds) {
    auto shown = state.holds.find(id);
    if (shown == state.holds.end() || !shown->second.contains("hold_id")) {
      out.push_back("hold " + id + " " + states_text(m.possible) +
                    " is gone: " +
                    (shown == state.holds.end() ? std::string{"not read"}
                                                : shown->second.dump()) +
                    history_of(m));
      continue;
    }
    const auto& hold = shown->second;
    auto status = hold.value("status", "");
    if (string_list(hold.value("seats", json())) != m.seats)
      out.push_back("hold " + id + " has seats " + hold.dump() +
                    ", was answered " + joined(m.seats));
    const json* booking = nullptr;
    auto list = state.bookings.find(m.client);
    if (list != state.bookings.end() && list->second.contains("bookings"))
      for (const auto& b : list->second.at("bookings"))
        if (b.value("hold_id", "") == id) booking = &b;
    auto booking_status = booking ? booking->value("status", "") : "";
    unsigned seen = 0;
    if (status == "active" && !booking)
      seen = st_active;
    else if (status == "released" && !booking)
      seen = st_released;
    else if (status == "booked" && booking_status == "confirmed")
      seen = st_confirmed;
    else if (status == "booked" && booking_status == "cancelled")
      seen = st_cancelled;
    if (seen == 0)
      out.push_back("hold " + id + " is " + status + " but its booking is " +
                    (booking ? booking->dump() : std::string{"missing"}) +
                    " in GET /v1/bookings" + history_of(m));
    else if ((seen & m.possible) == 0)
      out.push_back("hold " + id + " is " + states_text(seen) +
                    ", its answers allow only " + states_text(m.possible) +
                    ":" + history_of(m));
    // The seats the hold takes, by the hold's own status (and its booking's
    // when it has one), so that one inconsistent hold is one message.
    bool takes_held = status == "active";
    bool takes_booked = status == "booked" && booking_status != "cancelled";
    if (!takes_held && !takes_booked) continue;
    auto want = takes_held ? "held" : "booked";
    for (const auto& seat : m.seats) {
      auto [owner, fresh] = claimed[m.section].emplace(seat, id);
      if (!fresh)
        out.push_back("seat " + m.section + "/" + seat + " is in holds " +
                      owner->second + " and " + id + ", both active or booked");
      auto shown_status = seat_status[m.section][seat];
      if (shown_status != want)
        out.push_back("seat " + m.section + "/" + seat + " of hold " + id +
                      " (" + status + ", booking " +
                      (booking_status.empty() ? "none" : booking_status) +
                      ") is " + shown_status + " in the seat map");
    }
  }

  // Every booking belongs to a hold its client tried to book, and reads the
  // same by its id; a booking id in no list is not found by its id either.
  std::set<std::string> in_lists;
  for (const auto& [client, list] : state.bookings) {
    if (!list.contains("bookings")) {
      out.push_back("bookings of client " + std::to_string(client) +
                    " unreadable: " + list.dump());
      continue;
    }
    for (const auto& b : list.at("bookings")) {
      auto booking_id = b.value("booking_id", "");
      in_lists.insert(booking_id);
      auto read = state.booking_reads.find(booking_id);
      if (read != state.booking_reads.end() && read->second != b)
        out.push_back("booking " + booking_id + " is " + b.dump() +
                      " in the list of client " + std::to_string(client) +
                      " but " + read->second.dump() + " read by its id");
      auto hold_id = b.value("hold_id", "");
      auto m = holds.find(hold_id);
      if (m == holds.end() || m->second.client != client ||
          !m->second.booking_tried)
        out.push_back("client " + std::to_string(client) + " has booking " +
                      b.dump() + " of a hold it never tried to book");
    }
  }

  for (const auto& [id, read] : state.booking_reads)
    if (!in_lists.count(id) && read.contains("booking_id"))
      out.push_back("booking " + id + " reads " + read.dump() +
                    " by its id but is in no list of bookings");

  // Seats taken that no known hold claims: only a hold request with an
  // indeterminate outcome can explain them, and only as held.
  for (const auto& [section, seats] : state.seat_maps) {
    auto& maybe = unknown[section];
    auto budget = maybe.quantity;
    for (const auto& [seat, status] : seats) {
      if (status == "free" || claimed[section].count(seat)) continue;
      if (status == "held" && maybe.named.count(seat)) continue;
      if (status == "held" && budget > 0) {
        --budget;
        continue;
      }
      out.push_back("seat " + section + "/" + seat + " is " + status +
                    " but no hold the clients made or may have made has it");
    }
  }

  // Counts: free + held + booked = capacity, and the seat map agrees.
  for (const auto& [section, seats] : state.seat_maps) {
    auto item = state.sections.find(section);
    if (item == state.sections.end()) {
      out.push_back("section " + section + " is missing from the event");
      continue;
    }
    const auto& s = item->second;
    auto total = s.value("seats_total", -1);
    counts listed{s.value("free", -1), s.value("held", -1),
                  s.value("booked", -1)};
    counts mapped;
    for (const auto& [seat, status] : seats) {
      if (status == "free") ++mapped.free;
      if (status == "held") ++mapped.held;
      if (status == "booked") ++mapped.booked;
    }
    std::ostringstream text;
    if (listed.free + listed.held + listed.booked != total) {
      text << "section " << section << ": " << listed
           << " do not add up to seats_total " << total;
      out.push_back(text.str());
    }
    if (listed != mapped || static_cast<long>(seats.size()) != total) {
      std::ostringstream why;
      why << "section " << section << ": the event says " << listed
          << ", the seat map " << mapped << " of " << seats.size() << " seats";
      out.push_back(why.str());
    }
  }
  return out;
}

std::vector<std::string> check_store(const std::string& conninfo,
                                     const std::string& event_id) {
  auto result =
      run_psql(conninfo, "SELECT section_id, seat_id, count(*) FROM seat_state "
                         "WHERE event_id = '" +
                             event_id +
                             "' GROUP BY 1, 2 HAVING count(*) > 1 "
                             "ORDER BY 1, 2");
  if (result.exit_code != 0) return {"psql failed: " + result.output};
  std::vector<std::string> out;
  std::istringstream lines(result.output);
  for (std::string line; std::getline(lines, line);)
    if (!line.empty())
      out.push_back("in the database, seat|taken by n holds: " + line);
  return out;
}

std::string summary(const std::vector<operation>& ops) {
  int acknowledged = 0, rejected = 0, indeterminate = 0, unanswered = 0;
  std::map<std::string, int> refusals; // "409 seats_unavailable" -> count
  for (const auto& op : ops) {
    if (op.result == outcome::acknowledged) ++acknowledged;
    if (op.result == outcome::rejected) {
      ++rejected;
      ++refusals[std::to_string(op.status) + " " + op.code];
    }
    if (op.result == outcome::indeterminate) ++indeterminate;
    if (op.status == 0) ++unanswered;
  }
  std::string why;
  for (const auto& [what, n] : refusals)
    why += (why.empty() ? ": " : ", ") + std::to_string(n) + " " + what;
  return std::to_string(ops.size()) +
         " requests: " + std::to_string(acknowledged) + " acknowledged, " +
         std::to_string(rejected) + " rejected" + why + ", " +
         std::to_string(indeterminate) + " indeterminate (" +
         std::to_string(unanswered) + " without an answer)";
}

std::string as_lines(const std::vector<std::string>& lines, std::size_t max) {
  std::string out;
  for (std::size_t i = 0; i < lines.size() && i < max; ++i)
    out += "\n  " + std::to_string(i + 1) + ". " + lines[i];
  if (lines.size() > max)
    out += "\n  ... and " + std::to_string(lines.size() - max) + " more";
  return out;
}

} // namespace rsv::e2e
