#include "persistence/pg_pipeline.hpp"

#include <string_view>

namespace rsv::persistence::pg {

namespace {

// The cluster's fence (migration 0006) refuses a transaction with this
// SQLSTATE when one of its epochs is no longer current.
constexpr std::string_view fenced_sqlstate = "RSV01";

/// What a refused statement means for its writes: the fence's refusal
/// (SQLSTATE RSV01), an email another node registered first (in a
/// cluster, the unique index is where two registrations meet), or an
/// outage or refused row (unavailable).
errc refusal_of(const PGresult* result) {
  const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  if (state != nullptr && std::string_view{state} == fenced_sqlstate)
    return errc::fenced;
  const char* constraint = PQresultErrorField(result, PG_DIAG_CONSTRAINT_NAME);
  if (constraint != nullptr &&
      std::string_view{constraint} == "customers_email_key")
    return errc::email_taken;
  return errc::unavailable;
}

} // namespace

bool pipeline_transaction::begin() {
  if (PQenterPipelineMode(conn_) != 1) return queued_ = false;
  queued_ = PQsendQueryParams(conn_, "BEGIN", 0, nullptr, nullptr, nullptr,
                              nullptr, 0) == 1;
  sent_ += queued_ ? 1 : 0;
  return queued_;
}

int pipeline_transaction::send(const prepared_statement& statement,
                               const char* const* values, const int* lengths,
                               const int* formats) {
  if (!queued_) return -1;
  queued_ = PQsendQueryPrepared(conn_, statement.name, statement.params, values,
                                lengths, formats, 0) == 1;
  if (!queued_) return -1;
  return sent_++;
}

pipeline_transaction::outcome pipeline_transaction::finish(int watched) {
  outcome out;
  if (queued_)
    queued_ = PQsendQueryParams(conn_, "COMMIT", 0, nullptr, nullptr, nullptr,
                                nullptr, 0) == 1;
  sent_ += queued_ ? 1 : 0;
  if (!queued_ || PQpipelineSync(conn_) != 1) {
    // libpq could not even queue the pipeline: the connection is unusable.
    out.connection_lost = true;
    out.message = PQerrorMessage(conn_);
    return out;
  }
  read_results(watched, out);
  result_ptr sync{PQgetResult(conn_)};
  bool synced = PQresultStatus(sync.get()) == PGRES_PIPELINE_SYNC;
  if (!synced || PQexitPipelineMode(conn_) != 1) {
    if (out.message.empty()) out.message = PQerrorMessage(conn_);
    out.committed = false;
    out.connection_lost = true;
    return out;
  }
  if (out.committed && out.message.empty()) return out;
  out.committed = false;
  if (out.message.empty()) out.message = "COMMIT did not commit";
  // The failed statement left the transaction aborted; end it so the
  // connection can go on.
  if (PQtransactionStatus(conn_) != PQTRANS_IDLE) {
    result_ptr rollback{PQexec(conn_, "ROLLBACK")};
  }
  return out;
}

void pipeline_transaction::read_results(int watched, outcome& out) {
  // Every statement's results end with a null; after an error the rest
  // come back as PGRES_PIPELINE_ABORTED, and the sync closes the pipeline.
  for (int i = 0; i < sent_; ++i) {
    while (result_ptr result{PQgetResult(conn_)}) {
      auto status = PQresultStatus(result.get());
      if (i == watched && status == PGRES_TUPLES_OK) {
        out.watched_true = PQntuples(result.get()) == 1 &&
                           *PQgetvalue(result.get(), 0, 0) == 't';
        continue;
      }
      if (status == PGRES_FATAL_ERROR && out.message.empty())
        out.refusal = refusal_of(result.get());
      if (status == PGRES_COMMAND_OK) {
        out.committed = i == sent_ - 1 &&
                        std::string_view{PQcmdStatus(result.get())} == "COMMIT";
      } else if (out.message.empty()) {
        out.message = status == PGRES_PIPELINE_ABORTED
                          ? std::string{"pipeline aborted"}
                          : std::string{PQresultErrorMessage(result.get())};
      }
    }
  }
}

} // namespace rsv::persistence::pg
