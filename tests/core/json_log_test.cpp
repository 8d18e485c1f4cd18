#include "core/json_log.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <spdlog/logger.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sstream>
#include <string>

namespace rsv {
namespace {

// Every line of --log-format json parses, whatever the message holds: a
// PostgreSQL error quoting a constraint name over two lines, backslashes,
// control characters, and bytes that are not UTF-8.
TEST(json_log, every_line_is_json_whatever_the_message) {
  static constexpr char with_nul[] = "control \x01\x1f and a NUL \0 inside";
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  spdlog::logger logger{"test", sink};
  logger.set_formatter(make_json_log_formatter());
  const std::string messages[] = {
      "plain",
      "ERROR:  duplicate key value violates unique constraint "
      "\"customers_email_key\"\nDETAIL:  Key (email)=(a@b) already exists.",
      R"(C:\path\with\backslashes and a tab	here)",
      std::string(with_nul, sizeof with_nul - 1),
      "not UTF-8: \xff\xfe end",
  };
  for (const auto& message : messages)
    logger.warn("{}", message);
  logger.flush();

  std::istringstream lines{out.str()};
  std::string line;
  int parsed = 0;
  while (std::getline(lines, line)) {
    auto json = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(json.is_discarded()) << line;
    EXPECT_EQ(json["level"], "warning");
    EXPECT_TRUE(json["thread"].is_number_integer()) << line;
    EXPECT_EQ(json["time"].get<std::string>().back(), 'Z') << line;
    if (parsed < 4)
      EXPECT_EQ(json["msg"], messages[parsed]) << line;
    else
      EXPECT_EQ(json["msg"], "not UTF-8: \xef\xbf\xbd\xef\xbf\xbd end");
    ++parsed;
  }
  EXPECT_EQ(parsed, 5) << out.str();
}

} // namespace
} // namespace rsv
