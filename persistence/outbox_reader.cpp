// The relay's reader (outbox.hpp, make_pg_outbox_reader): one connection
// that holds the relay lease and reads both tables that hold records, the
// outbox (`pipeline` writers) and the journal (`journal` writers), oldest
// first across them, so that a section whose writes moved from one node to
// another (or from one encoding to the other) is relayed in order.

#include "core/errc.hpp"
#include "persistence/outbox.hpp"
#include "persistence/relay_table.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <iterator>
#include <spdlog/spdlog.h>
#include <tuple>

namespace rsv::persistence {

namespace {

using pg::conn_ptr;
using pg::relay_failure;
using pg::result_ptr;

/// The advisory lock that makes one node the relay ("rsv" + 2; migrations
/// use "rsv" + 1). Held by the relay's connection for as long as it lives:
/// when that node dies, its session ends and another node takes over.
constexpr const char* relay_lock_key = "7500232";

/// Both tables, through one connection, the relay's.
class pg_outbox_reader final : public outbox_reader {
public:
  explicit pg_outbox_reader(std::string dsn)
      : dsn_(std::move(dsn)), tables_{pg::make_outbox_table(),
                                      pg::make_journal_table()} {}

  caf::expected<std::vector<outbox_row>> read(std::size_t max_rows) override {
    if (auto err = ensure_connected()) return err;
    if (!leader_) return std::vector<outbox_row>{};
    bool discovered = false;
    if (std::chrono::steady_clock::now() >= next_discovery_) {
      if (auto err = discover()) return err;
      discovered = true;
    }
    auto rows = read_tables(max_rows);
    // Nothing from the streams known: a new one (a node that started) may
    // have rows, unless the streams were just listed.
    if (rows && rows->empty() && !discovered) {
      if (auto err = discover()) return err;
      rows = read_tables(max_rows);
    }
    return rows;
  }

  void delivered(const std::vector<outbox_row>& rows) override {
    for (const auto& row : rows)
      table(row.table).delivered(row);
  }

  caf::error trim() override {
    if (auto err = ensure_connected()) return err;
    // A reconnection that took the lease again starts from the tables.
    for (auto& table : tables_)
      if (auto err = table->trim(conn_.get())) return lost(std::move(err));
    return {};
  }

  caf::expected<outbox_backlog> backlog() override {
    if (auto err = ensure_connected()) return err;
    outbox_backlog total;
    for (auto& table : tables_) {
      auto part = table->backlog(conn_.get());
      if (!part) return lost(std::move(part.error()));
      total.rows += part->rows;
      total.records += part->records;
      if (part->oldest_created_at_ms != 0 &&
          (total.oldest_created_at_ms == 0 ||
           part->oldest_created_at_ms < total.oldest_created_at_ms))
        total.oldest_created_at_ms = part->oldest_created_at_ms;
    }
    return total;
  }

private:
  pg::relay_table& table(outbox_table kind) {
    return *tables_[kind == outbox_table::outbox ? 0 : 1];
  }

  caf::error discover() {
    next_discovery_ =
        std::chrono::steady_clock::now() + std::chrono::seconds(1);
    for (auto& table : tables_)
      if (auto err = table->discover(conn_.get())) return lost(std::move(err));
    return {};
  }

  /// The oldest `max_rows` undelivered rows of both tables, rendered. Each
  /// table gives its oldest rows, a prefix of each of its streams; merged
  /// by time (a stream's rows never go back in time), the oldest of them
  /// are again a prefix of each stream.
  caf::expected<std::vector<outbox_row>> read_tables(std::size_t max_rows) {
    std::vector<outbox_row> rows;
    for (auto& table : tables_) {
      auto part = table->read(conn_.get(), max_rows);
      if (!part) return lost(std::move(part.error()));
      std::move(part->begin(), part->end(), std::back_inserter(rows));
    }
    std::stable_sort(
        rows.begin(), rows.end(), [](const auto& a, const auto& b) {
          return std::tie(a.created_at_ms, a.table, a.stream, a.seq) <
                 std::tie(b.created_at_ms, b.table, b.stream, b.seq);
        });
    if (rows.size() > max_rows) rows.resize(max_rows);
    // Only the rows of this round are rendered.
    for (auto kind : {outbox_table::outbox, outbox_table::journal}) {
      std::vector<outbox_row*> of_table;
      for (auto& row : rows)
        if (row.table == kind) of_table.push_back(&row);
      if (of_table.empty()) continue;
      if (auto err = table(kind).render(conn_.get(), of_table))
        return lost(std::move(err));
    }
    return rows;
  }

  caf::error ensure_connected() {
    if (conn_ && PQstatus(conn_.get()) == CONNECTION_OK) {
      if (!leader_) return try_lease();
      return {};
    }
    conn_ = pg::connect(dsn_);
    if (PQstatus(conn_.get()) != CONNECTION_OK) {
      auto err = relay_failure(conn_.get(), "connecting the relay");
      conn_.reset();
      return err;
    }
    // Never wait long on the database: the relay retries. Its deletes and
    // cursors need no flush to disk: one that is lost only means rows
    // relayed again, which consumers drop by id; waiting for the flush
    // would double the fsyncs of a busy node.
    result_ptr set{PQexec(conn_.get(), "SET statement_timeout = 10000; "
                                       "SET synchronous_commit = off")};
    leader_ = false;
    return try_lease();
  }

  caf::error try_lease() {
    result_ptr lock{PQexec(
        conn_.get(),
        (std::string{"SELECT pg_try_advisory_lock("} + relay_lock_key + ")")
            .c_str())};
    leader_ = PQresultStatus(lock.get()) == PGRES_TUPLES_OK &&
              std::string_view{PQgetvalue(lock.get(), 0, 0)} == "t";
    if (!leader_) return {};
    // Another node may have relayed meanwhile: start from what the tables
    // say.
    for (auto& table : tables_)
      if (auto err = table->restart(conn_.get())) {
        leader_ = false;
        return lost(std::move(err));
      }
    next_discovery_ = {};
    spdlog::info("this node relays the outbox");
    return {};
  }

  /// `err` as it is answered; a connection that died is dropped (and the
  /// lease with it).
  caf::error lost(caf::error err) {
    if (conn_ && PQstatus(conn_.get()) != CONNECTION_OK) {
      conn_.reset();
      leader_ = false;
    }
    return err;
  }

  std::string dsn_;
  conn_ptr conn_;
  bool leader_ = false;
  std::array<std::unique_ptr<pg::relay_table>, 2> tables_;
  std::chrono::steady_clock::time_point next_discovery_{};
};

} // namespace

std::unique_ptr<outbox_reader> make_pg_outbox_reader(std::string dsn) {
  return std::make_unique<pg_outbox_reader>(std::move(dsn));
}

} // namespace rsv::persistence
