#include "persistence/pg_tables.hpp"

#include "persistence/pg_handles.hpp"
#include "persistence/pg_pipeline.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace rsv::persistence::pg {

namespace {

// Timestamps travel as milliseconds since the epoch and are divided as
// float8: the same microseconds as numeric division (checked on 2,000,000
// values up to the year 2096), for 0.7 us less per inserted hold
// (docs/benchmarks.md, "What PostgreSQL spends on a durable hold").
constexpr prepared_statement insert_events{
    "rsv_insert_events", 6,
    "INSERT INTO events (id, name, starts_at, hold_ttl_seconds, "
    "max_seats_per_customer, waiting_room) SELECT v.id, v.name, "
    "to_timestamp(v.starts_ms / 1000::float8), v.ttl, v.max_seats, "
    "v.room::jsonb FROM unnest($1::text[], $2::text[], $3::int8[], "
    "$4::int[], $5::int[], $6::text[]) "
    "AS v (id, name, starts_ms, ttl, max_seats, room)"};
constexpr prepared_statement insert_sections{
    "rsv_insert_sections", 7,
    "INSERT INTO sections (section_no, event_id, id, position, name, "
    "price_cents, rows) SELECT v.section_no, v.event_id, v.id, v.position, "
    "v.name, v.price_cents, v.rows::jsonb FROM unnest($1::int[], $2::text[], "
    "$3::text[], $4::int[], $5::text[], $6::int8[], $7::text[]) AS v "
    "(section_no, event_id, id, position, name, price_cents, rows)"};
constexpr prepared_statement insert_customers{
    "rsv_insert_customers", 4,
    "INSERT INTO customers (id, email, password_hash, created_at) SELECT "
    "v.id, v.email, v.password_hash, to_timestamp(v.at_ms / 1000::float8) FROM "
    "unnest($1::text[], $2::text[], $3::text[], $4::int8[]) AS v (id, "
    "email, password_hash, at_ms)"};
constexpr prepared_statement insert_holds{
    "rsv_insert_holds", 6,
    "INSERT INTO holds (section_no, slot, customer_id, seats, status, "
    "created_at, expires_at, updated_at) SELECT v.section_no, v.slot, "
    "v.customer_id, v.seats::text[], 'active', "
    "to_timestamp(v.at_ms / 1000::float8), "
    "to_timestamp(v.expires_ms / 1000::float8), "
    "to_timestamp(v.at_ms / 1000::float8) "
    "FROM unnest($1::int[], $2::int[], $3::text[], $4::text[], "
    "$5::int8[], $6::int8[]) AS v (section_no, slot, customer_id, seats, "
    "at_ms, expires_ms)"};
constexpr prepared_statement update_statuses{
    "rsv_update_statuses", 4,
    "UPDATE holds h SET status = v.status, "
    "updated_at = to_timestamp(v.at_ms / 1000::float8) "
    "FROM unnest($1::int[], $2::int[], $3::text[], $4::int8[]) "
    "AS v (section_no, slot, status, at_ms) WHERE h.section_no = v.section_no "
    "AND h.slot = v.slot"};
constexpr prepared_statement insert_bookings{
    "rsv_insert_bookings", 5,
    "INSERT INTO bookings (section_no, slot, customer_id, status, "
    "total_cents, created_at) SELECT v.section_no, v.slot, v.customer_id, "
    "'confirmed', v.total_cents, to_timestamp(v.at_ms / 1000::float8) FROM "
    "unnest($1::int[], $2::int[], $3::text[], $4::int8[], $5::int8[]) AS v "
    "(section_no, slot, customer_id, total_cents, at_ms)"};
constexpr prepared_statement cancel_bookings{
    "rsv_cancel_bookings", 3,
    "UPDATE bookings b SET status = 'cancelled', cancelled_at = "
    "to_timestamp(v.at_ms / 1000::float8) FROM unnest($1::int[], $2::int[], "
    "$3::int8[]) AS v (section_no, slot, at_ms) WHERE b.section_no = "
    "v.section_no AND b.slot = v.slot"};
// A record the node forgot (past 24 h in memory, not yet purged here) is
// simply replaced.
constexpr prepared_statement upsert_idempotency{
    "rsv_upsert_idempotency", 7,
    "INSERT INTO idempotency_records (customer_id, key, fingerprint, status, "
    "body, location, created_at) SELECT v.customer_id, v.key, "
    "v.fingerprint, v.status, v.body, v.location, to_timestamp(v.at_ms / "
    "1000::float8) FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], "
    "$5::text[], $6::text[], $7::int8[]) AS v (customer_id, key, "
    "fingerprint, status, body, location, at_ms) ON CONFLICT (customer_id, "
    "key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, status = "
    "EXCLUDED.status, body = EXCLUDED.body, location = EXCLUDED.location, "
    "created_at = EXCLUDED.created_at"};

constexpr prepared_statement table_statements[] = {
    insert_events,   insert_sections, insert_customers, insert_holds,
    update_statuses, insert_bookings, cancel_bookings,  upsert_idempotency};

/// The rows of a section as the `rows` column keeps them.
std::string rows_json(const section_def& section) {
  auto rows = nlohmann::json::array();
  for (const auto& row : section.rows)
    rows.push_back({{"label", row.label}, {"seats", row.seats}});
  return rows.dump();
}

} // namespace

bool prepare(PGconn* conn, const prepared_statement& statement) {
  result_ptr prepared{PQprepare(conn, statement.name, statement.sql,
                                statement.params, nullptr)};
  if (PQresultStatus(prepared.get()) == PGRES_COMMAND_OK) return true;
  spdlog::warn("PostgreSQL: preparing {}: {}", statement.name,
               PQerrorMessage(conn));
  return false;
}

bool prepare_table_statements(PGconn* conn) {
  for (const auto& statement : table_statements)
    if (!prepare(conn, statement)) return false;
  return true;
}

void array_param::separate() {
  text_ += text_.empty() ? "{" : ",";
}

void array_param::add(std::string_view text) {
  separate();
  text_ += '"';
  for (char c : text) {
    if (c == '"' || c == '\\') text_ += '\\';
    text_ += c;
  }
  text_ += '"';
}

void array_param::add(int64_t number) {
  separate();
  text_ += std::to_string(number);
}

void array_param::add_null() {
  separate();
  text_ += "NULL";
}

const char* array_param::c_str() {
  if (!closed_) {
    text_ = text_.empty() ? "{}" : text_ + '}';
    closed_ = true;
  }
  return text_.c_str();
}

table_rows::table_rows() = default;

void table_rows::add(const event_def& def,
                     const std::vector<uint32_t>& section_nos) {
  auto& e = events_.columns;
  e[0].add(def.id);
  e[1].add(def.name);
  e[2].add(def.starts_at_ms);
  e[3].add(def.hold_ttl_seconds);
  if (def.max_seats_per_customer)
    e[4].add(*def.max_seats_per_customer);
  else
    e[4].add_null();
  // Every field of the definition, as pg_recovery reads it back: a field
  // left out here is lost at the next restart (the waiting room was, and
  // with it the queue of an on-sale).
  if (def.waiting_room)
    e[5].add(
        nlohmann::json{{"enabled", def.waiting_room->enabled},
                       {"admit_per_second", def.waiting_room->admit_per_second}}
            .dump());
  else
    e[5].add_null();
  ++events_.count;
  for (std::size_t i = 0; i < def.sections.size(); ++i) {
    const auto& section = def.sections[i];
    auto& s = sections_.columns;
    s[0].add(int64_t{section_nos.at(i)});
    s[1].add(def.id);
    s[2].add(section.id);
    s[3].add(static_cast<int64_t>(i));
    s[4].add(section.name);
    s[5].add(section.price_cents);
    s[6].add(rows_json(section));
    ++sections_.count;
  }
}

void table_rows::add(const customer_record& customer) {
  auto& c = customers_.columns;
  c[0].add(customer.customer_id);
  c[1].add(customer.email);
  c[2].add(customer.password_hash);
  c[3].add(customer.created_at_ms);
  ++customers_.count;
}

void table_rows::add_key(rows& to, const seat_change& change) {
  to.columns[0].add(int64_t{change.section_no});
  to.columns[1].add(int64_t{change.slot});
  ++to.count;
}

void table_rows::add_status(const seat_change& change,
                            std::string_view status) {
  add_key(statuses_, change);
  statuses_.columns[2].add(status);
  statuses_.columns[3].add(change.at_ms);
}

void table_rows::add(const seat_change& change, const section_layout& layout) {
  switch (change.kind) {
  case change_kind::hold_created: {
    // The seats as a text[] literal of seat ids, itself one element of the
    // seats column's array.
    std::string seats = "{";
    for (auto index : change.seat_indexes) {
      if (seats.size() > 1) seats += ',';
      seats += '"' + layout.seat_id(index) + '"';
    }
    seats += '}';
    add_key(holds_, change);
    auto& h = holds_.columns;
    h[2].add(change.customer_id);
    h[3].add(seats);
    h[4].add(change.at_ms);
    h[5].add(change.expires_at_ms);
    break;
  }
  case change_kind::hold_released:
    add_status(change, "released");
    break;
  case change_kind::hold_expired:
    add_status(change, "expired");
    break;
  case change_kind::booking_confirmed: {
    add_status(change, "booked");
    add_key(bookings_, change);
    auto& b = bookings_.columns;
    b[2].add(change.customer_id);
    b[3].add(change.amount_cents);
    b[4].add(change.at_ms);
    break;
  }
  case change_kind::booking_cancelled:
    add_key(cancels_, change);
    cancels_.columns[2].add(change.at_ms);
    break;
  }
  if (change.idempotency) add(*change.idempotency);
}

void table_rows::add(const idempotency_record& record) {
  latest_records_[record.customer_id + '\n' + record.key] = record;
}

std::size_t table_rows::size() const {
  return events_.count + sections_.count + customers_.count + holds_.count +
         statuses_.count + bookings_.count + cancels_.count +
         latest_records_.size();
}

void table_rows::each_statement(
    const std::function<bool(const prepared_statement&,
                             const std::vector<const char*>&)>& run) {
  rows records{7};
  for (const auto& [key, record] : latest_records_) {
    auto& r = records.columns;
    r[0].add(record.customer_id);
    r[1].add(record.key);
    r[2].add(record.fingerprint);
    r[3].add(int64_t{record.response.status});
    r[4].add(record.response.body);
    r[5].add(record.response.location);
    r[6].add(record.created_at_ms);
    ++records.count;
  }
  std::pair<const prepared_statement*, rows*> in_order[] = {
      {&insert_events, &events_},       {&insert_sections, &sections_},
      {&insert_customers, &customers_}, {&insert_holds, &holds_},
      {&update_statuses, &statuses_},   {&insert_bookings, &bookings_},
      {&cancel_bookings, &cancels_},    {&upsert_idempotency, &records}};
  for (auto [statement, of] : in_order) {
    if (of->count == 0) continue;
    std::vector<const char*> values;
    for (auto& column : of->columns)
      values.push_back(column.c_str());
    if (!run(*statement, values)) return;
  }
}

bool table_rows::send(pipeline_transaction& transaction) {
  bool queued = true;
  each_statement([&](const prepared_statement& statement,
                     const std::vector<const char*>& values) {
    queued = transaction.send(statement, values.data()) >= 0;
    return queued;
  });
  return queued;
}

std::string table_rows::execute(PGconn* conn) {
  std::string failure;
  each_statement([&](const prepared_statement& statement,
                     const std::vector<const char*>& values) {
    result_ptr result{PQexecPrepared(conn, statement.name, statement.params,
                                     values.data(), nullptr, nullptr, 0)};
    if (PQresultStatus(result.get()) == PGRES_COMMAND_OK) return true;
    failure = std::string{statement.name} + ": " + PQerrorMessage(conn);
    return false;
  });
  return failure;
}

} // namespace rsv::persistence::pg
