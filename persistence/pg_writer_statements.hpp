#pragma once

// Private to persistence/: the statements a store writer prepares on each
// of its connections (pg_writer.cpp); the tables' are in pg_tables.cpp.

#include "persistence/pg_tables.hpp"

namespace rsv::persistence::pg {

inline constexpr prepared_statement insert_outbox{
    "rsv_insert_outbox", 5,
    "INSERT INTO outbox (stream, seq, created_at, records, payload) VALUES "
    "($1, $2::int8, to_timestamp($3::int8 / 1000::float8), $4::int, $5)"};
inline constexpr prepared_statement select_outbox_end{
    "rsv_select_outbox_end", 1,
    "SELECT coalesce(max(seq), 0) FROM outbox WHERE stream = $1"};

// The cluster's fence (migration 0006, docs/cluster.md): the first statement
// of a transaction whose writes were made under an ownership epoch. It fails
// with SQLSTATE RSV01 when any of them is no longer current (pg_pipeline.cpp
// tells its refusal from others). The test-only
// switch that turns fencing off asks the second instead, which only tells.
inline constexpr prepared_statement check_fence{
    "rsv_check_fence", 2, "SELECT rsv_fence($1::int[], $2::int8[])"};
inline constexpr prepared_statement check_stale{
    "rsv_check_stale", 2, "SELECT rsv_stale_epochs($1::int[], $2::int8[])"};

// The journal's row (migrations 0008, 0009, 0012): its body is sent in
// binary format; its number (`id`) comes from journal_order as it is
// inserted.
inline constexpr prepared_statement insert_journal{
    "rsv_insert_journal", 7,
    "INSERT INTO journal (stream, seq, created_at, entries, records, body, "
    "sections) VALUES ($1, $2::int8, to_timestamp($3::int8 / 1000::float8), "
    "$4::int, $5::int, $6::bytea, $7::int[])"};

// A section's snapshot (migration 0012), sent after the batch's journal
// row: its mark is numbered after that row, so it covers the section's
// entries there and before.
inline constexpr prepared_statement upsert_snapshot{
    "rsv_upsert_snapshot", 3,
    "INSERT INTO section_snapshots (section_no, mark, taken_at, holds, body) "
    "VALUES ($1::int, nextval('journal_order'), now(), $2::int, $3::bytea) "
    "ON CONFLICT (section_no) DO UPDATE SET mark = excluded.mark, taken_at = "
    "excluded.taken_at, holds = excluded.holds, body = excluded.body"};

inline constexpr prepared_statement writer_statements[] = {
    insert_outbox,   select_outbox_end, insert_journal,
    upsert_snapshot, check_fence,       check_stale};

} // namespace rsv::persistence::pg
