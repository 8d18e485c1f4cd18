#include "core/errc.hpp"
#include "core/limits.hpp"
#include "persistence/journal_projection.hpp"
#include "persistence/pg_handles.hpp"
#include "persistence/pg_tables.hpp"
#include "persistence/recovery.hpp"
#include "persistence/snapshot_recovery.hpp"

#include <memory>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <string_view>
#include <unistd.h>
#include <unordered_map>

namespace rsv::persistence {

namespace {

using pg::conn_ptr;
using pg::failure;
using pg::int_at;
using pg::result_ptr;
using pg::text_at;

hold_status status_of(const std::string& text) {
  return hold_status_names.value(text).value_or(hold_status::released);
}

/// The columns of a hold with its booking, as holds_from reads them.
constexpr const char* holds_select =
    "SELECT h.section_no, h.slot, h.customer_id, array_to_string(h.seats, "
    "','), h.status, (extract(epoch FROM h.expires_at) * 1000)::bigint, "
    "coalesce((extract(epoch FROM b.created_at) * 1000)::bigint, 0), "
    "coalesce(b.status, '') FROM holds h LEFT JOIN bookings b "
    "USING (section_no, slot)";

/// The live holds (active ones and bookings) and the last hold, whatever its
/// state, of each section that `sections` (a condition on `s.section_no`)
/// selects. Ended holds are not read (a section forgets them and reads one
/// by read_hold when it is asked), so recovery reads what is live, not every
/// hold ever made; the partial index holds_live serves the first half, the
/// primary key the second.
std::string live_holds_sql(const std::string& sections) {
  std::string selected =
      "(SELECT s.section_no FROM sections s WHERE " + sections + ")";
  return std::string{holds_select} +
         " WHERE h.status IN ('active', 'booked') AND h.section_no IN " +
         selected + " UNION ALL " + holds_select +
         " JOIN (SELECT s.section_no, (SELECT max(x.slot) FROM holds x WHERE "
         "x.section_no = s.section_no) AS slot FROM sections s WHERE " +
         sections +
         ") last USING (section_no, slot) WHERE h.status NOT IN ('active', "
         "'booked')";
}

caf::expected<pg::holds_by_section> holds_from(PGconn* conn, PGresult* holds,
                                               const pg::layout_map& layouts) {
  if (PQresultStatus(holds) != PGRES_TUPLES_OK)
    return failure(conn, "reading holds");
  pg::holds_by_section out;
  for (int row = 0; row < PQntuples(holds); ++row) {
    auto no = static_cast<uint32_t>(int_at(holds, row, 0));
    auto layout = layouts.find(no);
    if (layout == layouts.end())
      return make_error(errc::unavailable,
                        std::string{"a hold of an unknown section"});
    recorded_hold hold;
    hold.slot = static_cast<uint32_t>(int_at(holds, row, 1));
    hold.customer_id = text_at(holds, row, 2);
    auto seats = text_at(holds, row, 3);
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
    hold.status = status_of(text_at(holds, row, 4));
    hold.expires_at_ms = int_at(holds, row, 5);
    hold.booked_at_ms = int_at(holds, row, 6);
    hold.cancelled = text_at(holds, row, 7) == "cancelled";
    out[no].push_back(std::move(hold));
  }
  return out;
}

/// The waiting room column: `{"enabled": bool, "admit_per_second": int}`, or
/// NULL (read as empty text) for an event without one.
caf::expected<std::optional<waiting_room_def>>
waiting_room_of(const std::string& event_id, const std::string& text) {
  if (text.empty()) return std::optional<waiting_room_def>{};
  auto json = nlohmann::json::parse(text, nullptr, false);
  auto enabled = json.is_object() ? json.find("enabled") : json.end();
  auto pace = json.is_object() ? json.find("admit_per_second") : json.end();
  if (!json.is_object() || enabled == json.end() || !enabled->is_boolean() ||
      pace == json.end() || !pace->is_number_integer())
    return make_error(errc::unavailable,
                      "event " + event_id + " has an unreadable waiting room");
  return std::optional<waiting_room_def>{
      waiting_room_def{enabled->get<bool>(), pace->get<int64_t>()}};
}

/// The columns section_at reads.
constexpr const char* sections_select =
    "SELECT section_no, event_id, id, name, price_cents, rows::text FROM "
    "sections";

/// The definition of a row of sections_select, or why it cannot be read.
caf::expected<section_def> section_at(PGresult* sections, int row) {
  section_def def;
  def.id = text_at(sections, row, 2);
  def.name = text_at(sections, row, 3);
  def.price_cents = int_at(sections, row, 4);
  auto rows = nlohmann::json::parse(text_at(sections, row, 5), nullptr, false);
  if (!rows.is_array())
    return make_error(errc::unavailable,
                      "section " + def.id + " has unreadable rows");
  for (const auto& r : rows)
    def.rows.push_back({r.value("label", ""), r.value("seats", 0u)});
  return def;
}

} // namespace

namespace pg {

caf::expected<layout_map> read_layouts(PGconn* conn,
                                       const std::vector<uint32_t>& numbers) {
  layout_map out;
  if (numbers.empty()) return out;
  auto sections = exec_params(
      conn,
      (std::string{sections_select} + " WHERE section_no = ANY($1::int[])")
          .c_str(),
      {int_array(numbers)});
  if (PQresultStatus(sections.get()) != PGRES_TUPLES_OK)
    return failure(conn, "reading sections");
  for (int row = 0; row < PQntuples(sections.get()); ++row) {
    auto def = section_at(sections.get(), row);
    if (!def) return def.error();
    auto no = static_cast<uint32_t>(int_at(sections.get(), row, 0));
    out[no] = section_layout::make(text_at(sections.get(), row, 1), *def, no);
  }
  return out;
}

caf::expected<std::shared_ptr<const section_layout>>
read_journal_layout(PGconn* conn, uint32_t section_no) {
  auto read = read_layouts(conn, {section_no});
  if (!read) return read.error();
  auto it = read->find(section_no);
  if (it == read->end())
    return make_error(errc::unavailable,
                      "the journal names section " +
                          std::to_string(section_no) +
                          ", which the sections table lacks");
  return it->second;
}

caf::expected<holds_by_section> read_holds(PGconn* conn,
                                           const layout_map& layouts,
                                           std::optional<uint32_t> section_no) {
  auto sql = live_holds_sql(
      section_no ? "s.section_no = " + std::to_string(*section_no) : "true");
  result_ptr holds{PQexec(conn, sql.c_str())};
  return holds_from(conn, holds.get(), layouts);
}

caf::expected<holds_by_section>
read_holds_of(PGconn* conn, const layout_map& layouts,
              const std::vector<uint32_t>& section_nos) {
  if (section_nos.empty()) return holds_by_section{};
  auto sql = live_holds_sql("s.section_no = ANY($1::int[])");
  auto holds = exec_params(conn, sql.c_str(), {int_array(section_nos)});
  return holds_from(conn, holds.get(), layouts);
}

caf::expected<holds_by_section> read_hold(PGconn* conn,
                                          const layout_map& layouts,
                                          uint32_t section_no, uint32_t slot) {
  auto sql = std::string{holds_select} +
             " WHERE h.section_no = " + std::to_string(section_no) +
             " AND h.slot = " + std::to_string(slot);
  result_ptr holds{PQexec(conn, sql.c_str())};
  return holds_from(conn, holds.get(), layouts);
}

const char* const customer_columns =
    "id, email, password_hash, (extract(epoch FROM created_at) * "
    "1000)::bigint";

customer_record customer_at(PGresult* result, int row) {
  return {text_at(result, row, 0), text_at(result, row, 1),
          text_at(result, row, 2), int_at(result, row, 3)};
}

const char* const idempotency_columns =
    "customer_id, key, fingerprint, status, body, location, (extract(epoch "
    "FROM created_at) * 1000)::bigint";

idempotency_record idempotency_at(PGresult* result, int row) {
  idempotency_record record;
  record.customer_id = text_at(result, row, 0);
  record.key = text_at(result, row, 1);
  record.fingerprint = text_at(result, row, 2);
  record.response.status = static_cast<unsigned>(int_at(result, row, 3));
  record.response.body = text_at(result, row, 4);
  record.response.location = text_at(result, row, 5);
  record.created_at_ms = int_at(result, row, 6);
  return record;
}

caf::expected<recorded_events>
read_events(PGconn* conn, const std::function<bool(const std::string&)>& keep) {
  recorded_events out;
  std::unordered_map<std::string, std::size_t> event_index;
  std::vector<std::string> kept_ids;
  result_ptr events{PQexec(conn,
                           "SELECT id, name, (extract(epoch FROM starts_at) * "
                           "1000)::bigint, hold_ttl_seconds, "
                           "coalesce(max_seats_per_customer, 0), "
                           "coalesce(waiting_room::text, '') FROM events")};
  if (PQresultStatus(events.get()) != PGRES_TUPLES_OK)
    return failure(conn, "reading events");
  for (int row = 0; row < PQntuples(events.get()); ++row) {
    recovered_event event;
    event.def.id = text_at(events.get(), row, 0);
    if (keep && !keep(event.def.id)) continue;
    event.def.name = text_at(events.get(), row, 1);
    event.def.starts_at_ms = int_at(events.get(), row, 2);
    event.def.hold_ttl_seconds = int_at(events.get(), row, 3);
    if (auto limit = int_at(events.get(), row, 4); limit > 0)
      event.def.max_seats_per_customer = limit;
    auto room = waiting_room_of(event.def.id, text_at(events.get(), row, 5));
    if (!room) return room.error();
    event.def.waiting_room = *room;
    event_index.emplace(event.def.id, out.events.size());
    kept_ids.push_back(event.def.id);
    out.events.push_back(std::move(event));
  }
  if (keep && kept_ids.empty()) return out;

  // Section layouts turn recorded seat ids back into indexes.
  result_ptr sections =
      keep ? exec_params(conn,
                         (std::string{sections_select} +
                          " WHERE event_id = ANY($1::text[]) ORDER BY "
                          "event_id, position")
                             .c_str(),
                         {text_array(kept_ids)})
           : result_ptr{PQexec(conn, (std::string{sections_select} +
                                      " ORDER BY event_id, position")
                                         .c_str())};
  if (PQresultStatus(sections.get()) != PGRES_TUPLES_OK)
    return failure(conn, "reading sections");
  for (int row = 0; row < PQntuples(sections.get()); ++row) {
    auto no = static_cast<uint32_t>(int_at(sections.get(), row, 0));
    auto event = event_index.find(text_at(sections.get(), row, 1));
    if (event == event_index.end())
      return make_error(errc::unavailable,
                        std::string{"a section of an unknown event"});
    auto read = section_at(sections.get(), row);
    if (!read) return read.error();
    auto& def = *read;
    auto& recovered = out.events[event->second];
    auto layout = section_layout::make(recovered.def.id, def, no);
    out.layouts[no] = layout;
    recovered.layouts.push_back(std::move(layout));
    recovered.def.sections.push_back(std::move(def));
    recovered.section_nos.push_back(no);
    out.next_section_no = std::max(out.next_section_no, no + 1);
  }
  return out;
}

} // namespace pg

namespace {

/// How the application_name of a node's connections begins
/// (name_node_connections); no `_` or `%` in it, so that it and a `%` make
/// a LIKE pattern.
constexpr const char* node_connection_prefix = "reservations-node/";

/// Ends the backends of other node processes on this database ($1: this
/// process's name, $2: the prefix and a `%`), each waited for up to 5 s
/// (pg_terminate_backend): one row per backend, its pid and whether it is
/// gone.
constexpr const char* end_node_backends =
    "SELECT pid, pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() AND "
    "application_name LIKE $2 AND application_name <> $1";

} // namespace

void name_node_connections() {
  pg::name_connections(node_connection_prefix + pg::microseconds_now_hex() +
                       '.' + std::to_string(::getpid()));
}

caf::error end_former_node_backends(const std::string& dsn) {
  auto conn = pg::connect(dsn);
  // Unreachable: the migrations that come next say so, as they always did.
  if (PQstatus(conn.get()) != CONNECTION_OK) return {};
  constexpr int attempts = 3;
  for (int attempt = 1;; ++attempt) {
    auto ended = pg::exec_params(
        conn.get(), end_node_backends,
        {pg::connection_name(), std::string{node_connection_prefix} + '%'});
    if (PQresultStatus(ended.get()) != PGRES_TUPLES_OK) {
      // Another role's backends, or no such function (before PostgreSQL
      // 14): the node starts as it did before this check.
      spdlog::warn("PostgreSQL: cannot end the backends an earlier process "
                   "of this node left (reading the state anyway): {}",
                   PQerrorMessage(conn.get()));
      return {};
    }
    std::string gone, left;
    for (int row = 0; row < PQntuples(ended.get()); ++row) {
      auto& list = std::string_view{PQgetvalue(ended.get(), row, 1)} == "t"
                       ? gone
                       : left;
      list += (list.empty() ? "" : ", ") + pg::text_at(ended.get(), row, 0);
    }
    if (!gone.empty())
      spdlog::info("ended the backends an earlier process of this node left "
                   "(pids {}) before reading the state",
                   gone);
    if (left.empty()) return {};
    if (attempt == attempts)
      return make_error(errc::unavailable,
                        "backends an earlier process of this node left are "
                        "still there after 15 s (pids " +
                            left +
                            "): a COMMIT of theirs may be stuck, and the "
                            "state is not read before it is over");
  }
}

caf::expected<recovered_state> load_recorded_state(const std::string& dsn) {
  auto conn = pg::connect(dsn);
  if (PQstatus(conn.get()) != CONNECTION_OK)
    return failure(conn.get(), "connecting to PostgreSQL");
  auto query = [&](const char* sql) {
    return result_ptr{PQexec(conn.get(), sql)};
  };
  auto ok = [](const result_ptr& r) {
    return PQresultStatus(r.get()) == PGRES_TUPLES_OK;
  };
  // One snapshot for all reads, so the pieces agree with each other.
  auto begin = [&] {
    result_ptr begun{PQexec(conn.get(), "BEGIN ISOLATION LEVEL REPEATABLE "
                                        "READ READ ONLY")};
    return PQresultStatus(begun.get()) == PGRES_COMMAND_OK;
  };
  if (!begin()) return failure(conn.get(), "starting the recovery snapshot");
  // With a snapshot of every section, their holds are the snapshots and
  // the journal after them (snapshot_recovery.hpp).
  auto image = pg::read_snapshot_image(conn.get());
  if (!image) return image.error();
  if (*image) {
    spdlog::info("read {} sections from their snapshots and {} journal rows "
                 "({} changes) after them",
                 (*image)->snapshots, (*image)->rows, (*image)->entries);
  } else {
    // Else writes acknowledged but still in the journal go to the tables
    // first, and the holds come from there.
    query("ROLLBACK");
    if (!pg::prepare_table_statements(conn.get()))
      return failure(conn.get(), "preparing the journal's projection");
    pg::journal_projection projection;
    if (auto drained = projection.drain(conn.get()); !drained)
      return drained.error();
    else if (drained->rows > 0)
      spdlog::info("projected {} journal rows ({} writes) before reading",
                   drained->rows, drained->entries);
    if (!begin()) return failure(conn.get(), "starting the recovery snapshot");
  }

  recovered_state state;
  auto events = pg::read_events(conn.get());
  if (!events) return events.error();
  state.events = std::move(events->events);
  state.next_section_no = events->next_section_no;

  auto customers =
      query((std::string{"SELECT "} + pg::customer_columns + " FROM customers")
                .c_str());
  if (!ok(customers)) return failure(conn.get(), "reading customers");
  for (int row = 0; row < PQntuples(customers.get()); ++row)
    state.customers.push_back(pg::customer_at(customers.get(), row));

  if (*image) {
    state.holds = std::move((*image)->holds);
  } else {
    auto holds = pg::read_holds(conn.get(), events->layouts, std::nullopt);
    if (!holds) return holds.error();
    state.holds = std::move(*holds);
  }

  // Answers to idempotent requests, for as long as they are replayed.
  auto records =
      query((std::string{"SELECT "} + pg::idempotency_columns +
             " FROM idempotency_records WHERE created_at > now() "
             "- interval '" +
             std::to_string(limits::idempotency_ttl_seconds) + " seconds'")
                .c_str());
  if (!ok(records)) return failure(conn.get(), "reading idempotency records");
  for (int row = 0; row < PQntuples(records.get()); ++row)
    state.idempotency.push_back(pg::idempotency_at(records.get(), row));
  if (*image)
    for (auto& record : (*image)->idempotency)
      state.idempotency.push_back(std::move(record));
  return state;
}

} // namespace rsv::persistence
