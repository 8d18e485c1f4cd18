#include "core/errc.hpp"
#include "core/limits.hpp"
#include "persistence/pg_handles.hpp"
#include "persistence/recovery.hpp"

#include <charconv>
#include <memory>
#include <nlohmann/json.hpp>
#include <unordered_map>

namespace rsv {

namespace {

using pg::conn_ptr;
using pg::result_ptr;

/// Times come back as milliseconds since the epoch.
int64_t int_at(PGresult* result, int row, int column) {
  const char* text = PQgetvalue(result, row, column);
  int64_t value = 0;
  std::from_chars(text, text + PQgetlength(result, row, column), value);
  return value;
}

std::string text_at(PGresult* result, int row, int column) {
  return {PQgetvalue(result, row, column),
          static_cast<std::size_t>(PQgetlength(result, row, column))};
}

hold_status status_of(const std::string& text) {
  if (text == "active") return hold_status::active;
  if (text == "expired") return hold_status::expired;
  if (text == "booked") return hold_status::booked;
  return hold_status::released;
}

} // namespace

namespace pg {

caf::expected<holds_by_section> read_holds(PGconn* conn,
                                           const layout_map& layouts,
                                           std::optional<uint32_t> section_no) {
  std::string sql =
      "SELECT h.section_no, h.slot, h.customer_id, array_to_string(h.seats, "
      "','), h.status, (extract(epoch FROM h.expires_at) * 1000)::bigint, "
      "coalesce((extract(epoch FROM b.created_at) * 1000)::bigint, 0), "
      "coalesce(b.status, '') FROM holds h LEFT JOIN bookings b "
      "USING (section_no, slot)";
  if (section_no) sql += " WHERE h.section_no = " + std::to_string(*section_no);
  result_ptr holds{PQexec(conn, sql.c_str())};
  if (PQresultStatus(holds.get()) != PGRES_TUPLES_OK)
    return make_error(errc::unavailable,
                      std::string{"reading holds: "} + PQerrorMessage(conn));
  holds_by_section out;
  for (int row = 0; row < PQntuples(holds.get()); ++row) {
    auto no = static_cast<uint32_t>(int_at(holds.get(), row, 0));
    auto layout = layouts.find(no);
    if (layout == layouts.end())
      return make_error(errc::unavailable,
                        std::string{"a hold of an unknown section"});
    recorded_hold hold;
    hold.slot = static_cast<uint32_t>(int_at(holds.get(), row, 1));
    hold.customer_id = text_at(holds.get(), row, 2);
    auto seats = text_at(holds.get(), row, 3);
    for (std::size_t start = 0; start < seats.size();) {
      auto end = seats.find(',', start);
      if (end == std::string::npos) end = seats.size();
      auto index = layout->second->seat_index(seats.substr(start, end - start));
      if (!index)
        return make_error(errc::unavailable,
                          "hold " + std::to_string(hold.slot) +
                              " names a seat its section lacks");
      hold.seats.push_back(*index);
      start = end + 1;
    }
    hold.status = status_of(text_at(holds.get(), row, 4));
    hold.expires_at_ms = int_at(holds.get(), row, 5);
    hold.booked_at_ms = int_at(holds.get(), row, 6);
    hold.cancelled = text_at(holds.get(), row, 7) == "cancelled";
    out[no].push_back(std::move(hold));
  }
  return out;
}

} // namespace pg

caf::expected<recovered_state> load_recorded_state(const std::string& dsn) {
  auto conn = pg::connect(dsn);
  auto fail = [&](const std::string& what) {
    return make_error(errc::unavailable,
                      what + ": " + PQerrorMessage(conn.get()));
  };
  if (PQstatus(conn.get()) != CONNECTION_OK)
    return fail("connecting to PostgreSQL");
  auto query = [&](const char* sql) {
    return result_ptr{PQexec(conn.get(), sql)};
  };
  auto ok = [](const result_ptr& r) {
    return PQresultStatus(r.get()) == PGRES_TUPLES_OK;
  };
  // One snapshot for all reads, so the pieces agree with each other.
  result_ptr begin{PQexec(conn.get(), "BEGIN ISOLATION LEVEL REPEATABLE READ "
                                      "READ ONLY")};
  if (PQresultStatus(begin.get()) != PGRES_COMMAND_OK)
    return fail("starting the recovery snapshot");

  recovered_state state;
  std::unordered_map<std::string, std::size_t> event_index;
  auto events = query("SELECT id, name, (extract(epoch FROM starts_at) * "
                      "1000)::bigint, hold_ttl_seconds, "
                      "coalesce(max_seats_per_customer, 0) FROM events");
  if (!ok(events)) return fail("reading events");
  for (int row = 0; row < PQntuples(events.get()); ++row) {
    recovered_event event;
    event.def.id = text_at(events.get(), row, 0);
    event.def.name = text_at(events.get(), row, 1);
    event.def.starts_at_ms = int_at(events.get(), row, 2);
    event.def.hold_ttl_seconds = int_at(events.get(), row, 3);
    if (auto limit = int_at(events.get(), row, 4); limit > 0)
      event.def.max_seats_per_customer = limit;
    event_index.emplace(event.def.id, state.events.size());
    state.events.push_back(std::move(event));
  }

  // Section layouts turn recorded seat ids back into indexes.
  pg::layout_map layouts;
  auto sections = query("SELECT section_no, event_id, id, name, price_cents, "
                        "rows::text FROM sections ORDER BY event_id, position");
  if (!ok(sections)) return fail("reading sections");
  for (int row = 0; row < PQntuples(sections.get()); ++row) {
    auto no = static_cast<uint32_t>(int_at(sections.get(), row, 0));
    auto event = event_index.find(text_at(sections.get(), row, 1));
    if (event == event_index.end())
      return make_error(errc::unavailable,
                        std::string{"a section of an unknown event"});
    section_def def;
    def.id = text_at(sections.get(), row, 2);
    def.name = text_at(sections.get(), row, 3);
    def.price_cents = int_at(sections.get(), row, 4);
    auto rows =
        nlohmann::json::parse(text_at(sections.get(), row, 5), nullptr, false);
    if (!rows.is_array())
      return make_error(errc::unavailable,
                        "section " + def.id + " has unreadable rows");
    for (const auto& r : rows)
      def.rows.push_back({r.value("label", ""), r.value("seats", 0u)});
    auto& recovered = state.events[event->second];
    auto layout = section_layout::make(recovered.def.id, def, no);
    layouts[no] = layout;
    recovered.layouts.push_back(std::move(layout));
    recovered.def.sections.push_back(std::move(def));
    recovered.section_nos.push_back(no);
    state.next_section_no = std::max(state.next_section_no, no + 1);
  }

  auto customers = query("SELECT id, email, password_hash, (extract(epoch "
                         "FROM created_at) * 1000)::bigint FROM customers");
  if (!ok(customers)) return fail("reading customers");
  for (int row = 0; row < PQntuples(customers.get()); ++row)
    state.customers.push_back(
        {text_at(customers.get(), row, 0), text_at(customers.get(), row, 1),
         text_at(customers.get(), row, 2), int_at(customers.get(), row, 3)});

  auto holds = pg::read_holds(conn.get(), layouts, std::nullopt);
  if (!holds) return holds.error();
  state.holds = std::move(*holds);

  // Answers to idempotent requests, for as long as they are replayed.
  auto records =
      query(("SELECT customer_id, key, fingerprint, status, body, location, "
             "(extract(epoch FROM created_at) * 1000)::bigint FROM "
             "idempotency_records WHERE created_at > now() - interval '" +
             std::to_string(limits::idempotency_ttl_seconds) + " seconds'")
                .c_str());
  if (!ok(records)) return fail("reading idempotency records");
  for (int row = 0; row < PQntuples(records.get()); ++row) {
    idempotency_record record;
    record.customer_id = text_at(records.get(), row, 0);
    record.key = text_at(records.get(), row, 1);
    record.fingerprint = text_at(records.get(), row, 2);
    record.response.status =
        static_cast<unsigned>(int_at(records.get(), row, 3));
    record.response.body = text_at(records.get(), row, 4);
    record.response.location = text_at(records.get(), row, 5);
    record.created_at_ms = int_at(records.get(), row, 6);
    state.idempotency.push_back(std::move(record));
  }
  return state;
}

} // namespace rsv
