#include "persistence/snapshot_recovery.hpp"

#include "core/clock.hpp"
#include "core/errc.hpp"
#include "core/limits.hpp"
#include "persistence/journal_codec.hpp"

#include <algorithm>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>

namespace rsv::persistence::pg {

namespace {

/// Whether every section has a snapshot; false when there is no section.
constexpr const char* every_section_snapshotted =
    "SELECT count(*) > 0 AND count(*) = count(p.section_no) FROM sections s "
    "LEFT JOIN section_snapshots p USING (section_no)";

/// Snapshots, binary: section number, mark, body.
constexpr const char* select_snapshots =
    "SELECT section_no::int8, mark, body FROM section_snapshots";

/// Journal rows, binary, in the order of their numbers: those after the
/// oldest snapshot ($1), and those the projector has not applied (their
/// idempotency records are not in the table yet), each with its number and
/// whether it is unprojected.
constexpr const char* select_rows_after =
    "SELECT j.id, j.body, j.seq > coalesce(c.seq, 0) FROM journal j LEFT "
    "JOIN journal_cursors c ON c.reader = 'projector' AND c.stream = "
    "j.stream WHERE j.id > $1::int8 OR j.seq > coalesce(c.seq, 0) ORDER BY "
    "j.id";

/// One section's holds by slot, from its snapshot, and the snapshot's mark.
struct section_holds {
  int64_t mark = 0;
  std::map<uint32_t, recorded_hold> by_slot;
};

/// Applies `change` to the holds it concerns, as the projection applies it
/// to the tables. A change of a slot the snapshot no longer keeps ended
/// that hold again (a restated release or cancellation): nothing to apply.
void apply_change(const seat_change& change,
                  std::map<uint32_t, recorded_hold>& holds) {
  if (change.kind == change_kind::hold_created) {
    apply_to_record(holds[change.slot], change);
    return;
  }
  if (auto it = holds.find(change.slot); it != holds.end())
    apply_to_record(it->second, change);
}

using sections_read = std::unordered_map<uint32_t, section_holds>;

/// Every section's snapshot, decoded; the oldest mark in `oldest_mark`.
caf::expected<sections_read> read_snapshots(PGconn* conn,
                                            int64_t& oldest_mark) {
  result_ptr snapshots{PQexecParams(conn, select_snapshots, 0, nullptr, nullptr,
                                    nullptr, nullptr, 1)};
  if (PQresultStatus(snapshots.get()) != PGRES_TUPLES_OK)
    return failure(conn, "reading the sections' snapshots");
  sections_read sections;
  oldest_mark = std::numeric_limits<int64_t>::max();
  for (int row = 0; row < PQntuples(snapshots.get()); ++row) {
    auto no = static_cast<uint32_t>(int8_at(snapshots.get(), row, 0));
    auto decoded = journal::decode_snapshot(bytes_at(snapshots.get(), row, 2));
    if (!decoded || decoded->section_no != no)
      return make_error(
          errc::validation_failed,
          "the snapshot of section " + std::to_string(no) +
              " cannot be read (" +
              (decoded ? std::string{"it names section "} +
                             std::to_string(decoded->section_no)
                       : describe(decoded.error())) +
              "); recovery stops until it is repaired (deleting the row "
              "makes the next start read the tables instead)");
    auto& section = sections[no];
    section.mark = int8_at(snapshots.get(), row, 1);
    oldest_mark = std::min(oldest_mark, section.mark);
    for (auto& hold : decoded->holds) {
      auto slot = hold.slot;
      section.by_slot.emplace(slot, std::move(hold));
    }
  }
  return sections;
}

/// Applies the rows after the oldest mark to the sections they change
/// after their own marks, and takes the idempotency answers of the rows
/// the projector has not applied.
caf::error apply_rows(PGconn* conn, int64_t oldest_mark,
                      sections_read& sections, snapshot_image& image) {
  auto after = std::to_string(oldest_mark);
  const char* values[] = {after.c_str()};
  result_ptr rows{PQexecParams(conn, select_rows_after, 1, nullptr, values,
                               nullptr, nullptr, 1)};
  if (PQresultStatus(rows.get()) != PGRES_TUPLES_OK)
    return failure(conn, "reading the journal after the snapshots");
  auto kept_since = system_clock_source{}.now_ms() -
                    limits::idempotency_ttl_seconds * int64_t{1000};
  auto keep = [&](const idempotency_record& record) {
    if (record.created_at_ms > kept_since) image.idempotency.push_back(record);
  };
  for (int row = 0; row < PQntuples(rows.get()); ++row) {
    auto id = int8_at(rows.get(), row, 0);
    bool unprojected = PQgetvalue(rows.get(), row, 2)[0] != 0;
    auto entries = journal::decode(bytes_at(rows.get(), row, 1));
    if (!entries)
      return make_error(errc::validation_failed,
                        "journal row number " + std::to_string(id) +
                            " cannot be read (" + describe(entries.error()) +
                            "); recovery stops until it is repaired");
    ++image.rows;
    for (auto& entry : *entries) {
      const auto* record = std::get_if<idempotency_record>(&entry);
      const auto* change = std::get_if<seat_change>(&entry);
      if (unprojected && record != nullptr) keep(*record);
      if (change == nullptr) continue; // or an event's record, for Kafka
      if (unprojected && change->idempotency) keep(*change->idempotency);
      auto section = sections.find(change->section_no);
      if (section == sections.end())
        return make_error(
            errc::validation_failed,
            "journal row number " + std::to_string(id) + " changes section " +
                std::to_string(change->section_no) + ", which has no snapshot");
      if (id <= section->second.mark) continue; // in the snapshot
      apply_change(*change, section->second.by_slot);
      ++image.entries;
    }
  }
  return {};
}

} // namespace

caf::expected<std::optional<snapshot_image>> read_snapshot_image(PGconn* conn) {
  result_ptr every{PQexec(conn, every_section_snapshotted)};
  if (PQresultStatus(every.get()) != PGRES_TUPLES_OK)
    return failure(conn, "reading the sections' snapshots");
  if (std::string_view{PQgetvalue(every.get(), 0, 0)} != "t")
    return std::optional<snapshot_image>{};
  int64_t oldest_mark = 0;
  auto sections = read_snapshots(conn, oldest_mark);
  if (!sections) return sections.error();
  snapshot_image image;
  image.snapshots = sections->size();
  if (auto err = apply_rows(conn, oldest_mark, *sections, image)) return err;
  for (auto& [no, section] : *sections) {
    auto& holds = image.holds[no];
    holds.reserve(section.by_slot.size());
    for (auto& [slot, hold] : section.by_slot)
      holds.push_back(std::move(hold));
  }
  return std::optional<snapshot_image>{std::move(image)};
}

} // namespace rsv::persistence::pg
