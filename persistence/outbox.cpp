#include "persistence/outbox.hpp"

#include "core/errc.hpp"
#include "core/ids.hpp"
#include "persistence/pg_handles.hpp"

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace rsv {

namespace {

const char* type_of(change_kind kind) {
  switch (kind) {
  case change_kind::hold_created:
    return "hold.created";
  case change_kind::hold_released:
    return "hold.released";
  case change_kind::hold_expired:
    return "hold.expired";
  case change_kind::booking_confirmed:
    return "booking.confirmed";
  case change_kind::booking_cancelled:
    return "booking.cancelled";
  }
  return "unknown";
}

/// A line is `id \t key \t value`: the relay needs the id and the key of
/// every record, and reading them from the front of the line costs less
/// than parsing the JSON. A dumped JSON value never contains a raw tab.
void append_line(std::string_view id, std::string_view key,
                 const nlohmann::json& value, std::string& payload) {
  payload.append(id);
  payload += '\t';
  payload.append(key);
  payload += '\t';
  payload += value.dump();
  payload += '\n';
}

} // namespace

void render_outbox_record(const seat_change& change,
                          const section_layout& layout, std::string& payload) {
  bool booking = change.kind == change_kind::booking_confirmed ||
                 change.kind == change_kind::booking_cancelled;
  record_ref ref{change.section_no, change.slot};
  auto record_id = booking ? make_booking_id(ref) : make_hold_id(ref);
  // A slot sees each kind of change at most once, so the record id of the
  // change is its hold or booking id and its type.
  const char* type = type_of(change.kind);
  auto id = record_id + ':' + type;
  auto seats = nlohmann::json::array();
  for (auto index : change.seat_indexes)
    seats.push_back(layout.seat_id(index));
  nlohmann::json value{{"id", id},
                       {"type", type},
                       {"occurred_at", format_rfc3339(change.at_ms)},
                       {"event_id", change.event_id},
                       {"section_id", change.section_id},
                       {"seats", std::move(seats)},
                       {"customer_id", change.customer_id},
                       {"hold_id", make_hold_id(ref)},
                       {"total_cents", change.amount_cents},
                       {"currency_unit", "cents"}};
  if (booking) value["booking_id"] = record_id;
  if (change.kind == change_kind::hold_created)
    value["expires_at"] = format_rfc3339(change.expires_at_ms);
  append_line(id, change.event_id + '/' + change.section_id, value, payload);
}

void render_outbox_record(const event_def& def, millis at_ms,
                          std::string& payload) {
  auto id = "evt_" + def.id + ":event.created";
  auto sections = nlohmann::json::array();
  for (const auto& section : def.sections) {
    uint64_t seats = 0;
    for (const auto& row : section.rows)
      seats += row.seats;
    sections.push_back({{"section_id", section.id},
                        {"name", section.name},
                        {"price_cents", section.price_cents},
                        {"capacity", seats}});
  }
  nlohmann::json value{{"id", id},
                       {"type", "event.created"},
                       {"occurred_at", format_rfc3339(at_ms)},
                       {"event_id", def.id},
                       {"name", def.name},
                       {"starts_at", format_rfc3339(def.starts_at_ms)},
                       {"sections", std::move(sections)}};
  // An event has no section: its record is keyed by the event alone.
  append_line(id, def.id, value, payload);
}

std::vector<outbox_record> split_outbox_records(std::string_view payload) {
  std::vector<outbox_record> out;
  while (!payload.empty()) {
    auto end = payload.find('\n');
    auto line = payload.substr(0, end);
    payload = end == std::string_view::npos ? std::string_view{}
                                            : payload.substr(end + 1);
    auto first = line.find('\t');
    if (first == std::string_view::npos) continue;
    auto second = line.find('\t', first + 1);
    if (second == std::string_view::npos) continue;
    out.push_back({line.substr(0, first),
                   line.substr(first + 1, second - first - 1),
                   line.substr(second + 1)});
  }
  return out;
}

namespace {

using pg::conn_ptr;
using pg::result_ptr;

/// The advisory lock that makes one node the relay ("rsv" + 2; migrations
/// use "rsv" + 1). Held by the relay's connection for as long as it lives:
/// when that node dies, its session ends and another node takes over.
constexpr const char* relay_lock_key = "7500232";

caf::error failure(PGconn* conn, std::string_view what) {
  return make_error(errc::unavailable, "PostgreSQL: " + std::string{what} +
                                           ": " + PQerrorMessage(conn));
}

/// The outbox table through one connection, the relay's.
class pg_outbox_reader final : public outbox_reader {
public:
  explicit pg_outbox_reader(std::string dsn) : dsn_(std::move(dsn)) {}

  caf::expected<std::vector<outbox_row>> read(std::size_t max_rows) override {
    if (auto err = ensure_connected()) return err;
    if (!leader_) return std::vector<outbox_row>{};
    // created_at only grows within a stream (the writer makes sure), so
    // this order is seq order within each stream.
    auto sql = "SELECT stream, seq, (extract(epoch FROM created_at) * "
               "1000)::bigint, payload FROM outbox ORDER BY created_at, "
               "stream, seq LIMIT " +
               std::to_string(max_rows);
    result_ptr result{PQexec(conn_.get(), sql.c_str())};
    if (PQresultStatus(result.get()) != PGRES_TUPLES_OK)
      return lost("reading the outbox");
    std::vector<outbox_row> rows;
    int count = PQntuples(result.get());
    rows.reserve(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
      outbox_row row;
      row.stream = PQgetvalue(result.get(), i, 0);
      row.seq = std::atoll(PQgetvalue(result.get(), i, 1));
      row.created_at_ms = std::atoll(PQgetvalue(result.get(), i, 2));
      row.payload.assign(
          PQgetvalue(result.get(), i, 3),
          static_cast<std::size_t>(PQgetlength(result.get(), i, 3)));
      rows.push_back(std::move(row));
    }
    return rows;
  }

  caf::error remove(const std::vector<outbox_row>& rows) override {
    if (rows.empty()) return {};
    if (auto err = ensure_connected()) return err;
    std::string sql = "DELETE FROM outbox o USING (VALUES ";
    for (std::size_t i = 0; i < rows.size(); ++i) {
      if (i > 0) sql += ',';
      sql += '(' + literal(rows[i].stream) + ", " +
             std::to_string(rows[i].seq) + "::bigint)";
    }
    sql += ") AS d (stream, seq) WHERE o.stream = d.stream AND o.seq = d.seq";
    result_ptr result{PQexec(conn_.get(), sql.c_str())};
    if (PQresultStatus(result.get()) != PGRES_COMMAND_OK)
      return lost("trimming the outbox");
    return {};
  }

  caf::expected<outbox_backlog> backlog() override {
    if (auto err = ensure_connected()) return err;
    result_ptr result{PQexec(conn_.get(),
                             "SELECT count(*), coalesce(sum(records), 0), "
                             "coalesce((extract(epoch FROM min(created_at)) * "
                             "1000)::bigint, 0) FROM outbox")};
    if (PQresultStatus(result.get()) != PGRES_TUPLES_OK)
      return lost("measuring the outbox");
    return outbox_backlog{std::atoll(PQgetvalue(result.get(), 0, 0)),
                          std::atoll(PQgetvalue(result.get(), 0, 1)),
                          std::atoll(PQgetvalue(result.get(), 0, 2))};
  }

private:
  caf::error ensure_connected() {
    if (conn_ && PQstatus(conn_.get()) == CONNECTION_OK) {
      if (!leader_) try_lease();
      return {};
    }
    conn_ = pg::connect(dsn_);
    if (PQstatus(conn_.get()) != CONNECTION_OK) {
      auto err = failure(conn_.get(), "connecting the relay");
      conn_.reset();
      return err;
    }
    // Never wait long on the database: the relay retries.
    result_ptr set{PQexec(conn_.get(), "SET statement_timeout = 10000")};
    leader_ = false;
    try_lease();
    return {};
  }

  void try_lease() {
    result_ptr lock{PQexec(
        conn_.get(),
        (std::string{"SELECT pg_try_advisory_lock("} + relay_lock_key + ")")
            .c_str())};
    bool was = leader_;
    leader_ = PQresultStatus(lock.get()) == PGRES_TUPLES_OK &&
              std::string_view{PQgetvalue(lock.get(), 0, 0)} == "t";
    if (leader_ && !was) spdlog::info("this node relays the outbox");
  }

  caf::error lost(std::string_view what) {
    auto err = failure(conn_.get(), what);
    if (PQstatus(conn_.get()) != CONNECTION_OK) {
      conn_.reset();
      leader_ = false;
    }
    return err;
  }

  std::string literal(const std::string& text) {
    char* escaped = PQescapeLiteral(conn_.get(), text.data(), text.size());
    std::string out = escaped != nullptr ? escaped : "NULL";
    PQfreemem(escaped);
    return out;
  }

  std::string dsn_;
  conn_ptr conn_;
  bool leader_ = false;
};

} // namespace

std::unique_ptr<outbox_reader> make_pg_outbox_reader(std::string dsn) {
  return std::make_unique<pg_outbox_reader>(std::move(dsn));
}

} // namespace rsv
