#pragma once

#include "core/ids.hpp"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <gtest/gtest.h>
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

} // namespace rsv::persistence::test
