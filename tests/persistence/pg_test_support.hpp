#pragma once

#include "core/ids.hpp"
#include "persistence/journal_codec.hpp"
#include "persistence/recovery.hpp"
#include "persistence/store.hpp"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <gtest/gtest.h>
#include <initializer_list>
#include <memory>
#include <sodium.h>
#include <string>

namespace rsv::persistence::test {

/// Runs a command (with the PG* environment) and answers its output.
inline std::string run(const std::string& command) {
  std::array<char, 4096> buffer{};
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> pipe{popen(command.c_str(), "r"),
                                             pclose};
  if (!pipe) return out;
  while (fgets(buffer.data(), buffer.size(), pipe.get()) != nullptr)
    out += buffer.data();
  return out;
}

/// A fresh, empty database on the server that PG* names (scripts/test runs
/// the suite inside pg_virtualenv), dropped at the end.
class fresh_database : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_GE(sodium_init(), 0);
    ASSERT_NE(std::getenv("PGHOST"), nullptr)
        << "PostgreSQL tests need PGHOST and friends: run them through "
           "scripts/test, which starts a server with pg_virtualenv";
    name_ = make_random_id("rsv_test");
    ASSERT_EQ(std::system(("createdb " + name_).c_str()), 0);
    dsn_ = "dbname=" + name_;
  }

  void TearDown() override {
    if (!name_.empty())
      std::system(("dropdb --force --if-exists " + name_).c_str());
  }

  std::string psql(const std::string& sql) {
    return run("psql -X -At -d " + name_ + " -c \"" + sql + "\"");
  }

  std::string name_;
  std::string dsn_;
};

/// `def` as recovery hands it to a store (`learn`): its sections numbered
/// 0, 1, ... in event order, each with its layout.
inline recovered_event recovered(event_def def) {
  recovered_event event;
  event.def = std::move(def);
  for (uint32_t i = 0; i < event.def.sections.size(); ++i) {
    event.section_nos.push_back(i);
    event.layouts.push_back(
        section_layout::make(event.def.id, event.def.sections[i], i));
  }
  return event;
}

/// The concert of the store tests: a floor of two rows of 100 seats and a
/// balcony of one row of 50.
inline event_def concert(millis starts_at_ms = 1'800'000'000'000) {
  event_def def;
  def.id = "concert";
  def.name = "Concert";
  def.starts_at_ms = starts_at_ms;
  def.hold_ttl_seconds = 600;
  def.sections.push_back({"floor", "Floor", 5000, {{"A", 100}, {"B", 100}}});
  def.sections.push_back({"balcony", "Balcony", 2000, {{"A", 50}}});
  return def;
}

/// Writes a snapshot of each of `sections` through `store`, as a section
/// actor does: its holds as the store has them (a load, after every write
/// before it). A journal row is deleted only once snapshots of its sections
/// cover it (migration 0012). Fails the test if the store refuses.
inline void snapshot_sections(store& target,
                              std::initializer_list<uint32_t> sections) {
  for (auto no : sections) {
    std::promise<caf::expected<std::vector<recorded_hold>>> loaded;
    target.load_section(no,
                        [&](caf::expected<std::vector<recorded_hold>> holds) {
                          loaded.set_value(std::move(holds));
                        });
    auto holds = loaded.get_future().get();
    ASSERT_TRUE(holds) << describe(holds.error());
    journal::section_snapshot snapshot{no, std::move(*holds)};
    auto count = static_cast<uint32_t>(snapshot.holds.size());
    std::promise<caf::error> written;
    target.put_snapshot(no, journal::encode_snapshot(snapshot), count, {},
                        [&](caf::error err) { written.set_value(err); });
    auto err = written.get_future().get();
    ASSERT_FALSE(err) << describe(err);
  }
}

} // namespace rsv::persistence::test
