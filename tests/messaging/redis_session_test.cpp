// The parts of a Redis connection that do no I/O (messaging/
// redis_connection.hpp), fed replies by hand: the bounded backoff between
// attempts, the commands a new connection sends first, a script run as
// EVALSHA and sent again as EVAL when Redis lost it, and what waits answered
// unavailable when the connection goes. The same pieces against a real
// redis-server: redis_connection_test.cpp.

#include "core/errc.hpp"
#include "core/limits.hpp"
#include "messaging/redis_connection.hpp"

#include <gtest/gtest.h>
#include <optional>

namespace rsv::messaging {
namespace {

using namespace std::chrono_literals;
using kind = redis_session::outcome::kind;
using strings = std::vector<std::string>;

redis_reply reply_of(redis_reply::type type, std::string text = {}) {
  redis_reply r;
  r.kind = type;
  r.text = std::move(text);
  return r;
}

redis_reply integer_reply(long long value) {
  redis_reply r;
  r.kind = redis_reply::type::integer;
  r.integer = value;
  return r;
}

/// A callback that keeps what it was answered.
struct answer_box {
  redis_callback callback() {
    return [this](caf::expected<redis_reply> reply) {
      ++calls;
      answer = std::move(reply);
    };
  }
  int calls = 0;
  std::optional<caf::expected<redis_reply>> answer;
};

TEST(redis_backoff_test,
     doubles_up_to_its_bound_and_starts_over_after_a_success) {
  redis_backoff backoff;
  std::vector<std::chrono::milliseconds> waits;
  for (int i = 0; i < 8; ++i)
    waits.push_back(backoff.next());
  EXPECT_EQ(waits.front(),
            std::chrono::milliseconds{limits::redis_backoff_first_ms});
  for (std::size_t i = 1; i < waits.size(); ++i) {
    EXPECT_GE(waits[i], waits[i - 1]) << "attempt " << i;
    EXPECT_LE(waits[i], std::chrono::milliseconds{limits::redis_backoff_max_ms})
        << "attempt " << i;
  }
  EXPECT_EQ(waits.back(),
            std::chrono::milliseconds{limits::redis_backoff_max_ms});
  backoff.reset();
  EXPECT_EQ(backoff.next(),
            std::chrono::milliseconds{limits::redis_backoff_first_ms});
}

TEST(redis_session_test, a_new_connection_authenticates_selects_and_loads) {
  redis_endpoint endpoint;
  endpoint.host = "127.0.0.1";
  endpoint.user = "app";
  endpoint.password = "secret";
  endpoint.db = 3;
  redis_session session{endpoint, {"return 1", "return 2"}};
  EXPECT_FALSE(session.ready());
  auto opening = session.open();
  ASSERT_EQ(opening.size(), 4u);
  EXPECT_EQ(opening[0], (strings{"AUTH", "app", "secret"}));
  EXPECT_EQ(opening[1], (strings{"SELECT", "3"}));
  EXPECT_EQ(opening[2], (strings{"SCRIPT", "LOAD", "return 1"}));
  EXPECT_EQ(opening[3], (strings{"SCRIPT", "LOAD", "return 2"}));
  EXPECT_EQ(session.waiting(), 4u);
  EXPECT_EQ(session.on_reply(reply_of(redis_reply::type::status, "OK")).what,
            kind::nothing);
  EXPECT_EQ(session.on_reply(reply_of(redis_reply::type::status, "OK")).what,
            kind::nothing);
  EXPECT_EQ(session.on_reply(reply_of(redis_reply::type::string, "sha-1")).what,
            kind::nothing);
  EXPECT_FALSE(session.ready());
  EXPECT_EQ(session.on_reply(reply_of(redis_reply::type::string, "sha-2")).what,
            kind::ready);
  EXPECT_TRUE(session.ready());
  answer_box box;
  EXPECT_EQ(session.script(1, {"1", "key", "arg"}, box.callback()),
            (strings{"EVALSHA", "sha-2", "1", "key", "arg"}));
}

TEST(redis_session_test, without_credentials_or_scripts_it_is_ready_at_once) {
  redis_session session{redis_endpoint{}, {}};
  EXPECT_TRUE(session.open().empty());
  EXPECT_TRUE(session.ready());
}

TEST(redis_session_test, a_refused_opening_breaks_the_connection) {
  redis_endpoint endpoint;
  endpoint.password = "wrong";
  redis_session session{endpoint, {"return 1"}};
  session.open();
  auto out = session.on_reply(
      reply_of(redis_reply::type::error, "WRONGPASS invalid password"));
  EXPECT_EQ(out.what, kind::broken);
  EXPECT_NE(out.why.find("WRONGPASS"), std::string::npos) << out.why;
  EXPECT_FALSE(session.ready());
}

TEST(redis_session_test, a_script_redis_lost_is_sent_again_as_eval_once) {
  redis_session session{redis_endpoint{}, {"return KEYS[1]"}};
  session.open();
  ASSERT_EQ(session.on_reply(reply_of(redis_reply::type::string, "sha")).what,
            kind::ready);
  answer_box first, second;
  EXPECT_EQ(session.script(0, {"1", "a"}, first.callback()),
            (strings{"EVALSHA", "sha", "1", "a"}));
  session.command({"PING"}, second.callback());
  // Redis restarted or flushed its scripts: the EVALSHA is written again
  // as EVAL, after the PING already written, and answers the caller then.
  auto lost = session.on_reply(reply_of(
      redis_reply::type::error, "NOSCRIPT No matching script. Use EVAL."));
  ASSERT_EQ(lost.what, kind::resend);
  EXPECT_EQ(*lost.resend, (strings{"EVAL", "return KEYS[1]", "1", "a"}));
  EXPECT_EQ(first.calls, 0);
  auto pong = session.on_reply(reply_of(redis_reply::type::status, "PONG"));
  ASSERT_EQ(pong.what, kind::answer);
  pong.done(std::move(pong.reply));
  EXPECT_EQ(second.calls, 1);
  auto again = session.on_reply(reply_of(redis_reply::type::string, "a"));
  ASSERT_EQ(again.what, kind::answer);
  again.done(std::move(again.reply));
  ASSERT_EQ(first.calls, 1);
  ASSERT_TRUE(*first.answer);
  EXPECT_EQ((*first.answer)->text, "a");
  EXPECT_EQ(session.waiting(), 0u);
}

TEST(redis_session_test, an_error_reply_of_a_plain_command_is_its_answer) {
  redis_session session{redis_endpoint{}, {}};
  session.open();
  answer_box box;
  session.command({"INCR", "text"}, box.callback());
  auto out = session.on_reply(reply_of(
      redis_reply::type::error, "NOSCRIPT not a script, passed on as it is"));
  EXPECT_EQ(out.what, kind::answer);
  EXPECT_EQ(out.reply.kind, redis_reply::type::error);
}

TEST(redis_session_test, a_lost_connection_answers_what_waits_unavailable) {
  redis_session session{redis_endpoint{}, {}};
  session.open();
  answer_box a, b;
  session.command({"INCR", "x"}, a.callback());
  session.command({"INCR", "y"}, b.callback());
  EXPECT_TRUE(session.oldest_written().has_value());
  auto first = session.on_reply(integer_reply(1));
  first.done(std::move(first.reply));
  EXPECT_EQ(session.fail_all("the connection broke"), 1u);
  EXPECT_EQ(a.calls, 1);
  ASSERT_EQ(b.calls, 1);
  ASSERT_FALSE(*b.answer);
  EXPECT_EQ(b.answer->error().category(), errc_category);
  EXPECT_TRUE(code_of(b.answer->error()) == errc::unavailable)
      << describe(b.answer->error());
  EXPECT_FALSE(session.ready());
  EXPECT_FALSE(session.oldest_written().has_value());
  // A reply that nobody asked for breaks the next connection too.
  EXPECT_EQ(session.on_reply(integer_reply(2)).what, kind::broken);
}

} // namespace
} // namespace rsv::messaging
