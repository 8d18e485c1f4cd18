#include "messaging/redis_connection.hpp"

#include "core/assert.hpp"
#include "core/errc.hpp"
#include "messaging/hiredis_support.hpp"

#include <algorithm>
#include <charconv>
#include <string_view>

namespace rsv::messaging {

namespace {

caf::error bad_url(const std::string& why) {
  return make_error(errc::validation_failed, "--redis-url: " + why);
}

/// Undoes %XX escapes (a password may contain '@' or ':').
std::string percent_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size()) {
      int value = 0;
      auto [end, ec] =
          std::from_chars(text.data() + i + 1, text.data() + i + 3, value, 16);
      if (ec == std::errc{} && end == text.data() + i + 3) {
        out += static_cast<char>(value);
        i += 2;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}

/// Reads `text` whole as a number into `out`; false when it is not one.
bool whole_number(std::string_view text, int& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc{} && end == text.data() + text.size();
}

/// Splits `host[:port]` or `[v6]:port` into the endpoint's host and port.
caf::error parse_authority(std::string_view authority, redis_endpoint& out) {
  std::string_view host = authority;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return bad_url("unclosed '['");
    host = authority.substr(1, close - 1);
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad_url("expected ':' after ']'");
      port = after.substr(1);
    }
  } else if (auto colon = authority.rfind(':');
             colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) return bad_url("no host");
  out.host = std::string{host};
  if (!port.empty() &&
      (!whole_number(port, out.port) || out.port < 1 || out.port > 65535))
    return bad_url("the port must be 1..65535");
  return {};
}

timeval to_timeval(int ms) {
  timeval tv{};
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  return tv;
}

bool is_noscript(const redis_reply& reply) {
  return reply.kind == redis_reply::type::error &&
         reply.text.rfind("NOSCRIPT", 0) == 0;
}

} // namespace

caf::expected<redis_endpoint> parse_redis_url(const std::string& url) {
  constexpr std::string_view scheme = "redis://";
  if (url.rfind("rediss://", 0) == 0)
    return bad_url("rediss:// (TLS) is not supported by this build's hiredis "
                   "0.14; see docs/operations.md, \"Redis\"");
  if (url.rfind(scheme, 0) != 0)
    return bad_url("expected redis://[[user]:password@]host[:port][/db]");
  std::string_view rest{url};
  rest.remove_prefix(scheme.size());
  redis_endpoint out;
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    auto credentials = rest.substr(0, at);
    rest.remove_prefix(at + 1);
    auto colon = credentials.find(':');
    if (colon == std::string_view::npos) {
      out.password = percent_decode(credentials);
    } else {
      out.user = percent_decode(credentials.substr(0, colon));
      out.password = percent_decode(credentials.substr(colon + 1));
    }
  }
  auto slash = rest.find('/');
  if (slash != std::string_view::npos) {
    auto db = rest.substr(slash + 1);
    if (!db.empty() && (!whole_number(db, out.db) || out.db < 0))
      return bad_url("the database after '/' must be a number");
  }
  if (auto err = parse_authority(rest.substr(0, slash), out)) return err;
  return out;
}

std::vector<std::string> script_arguments(std::vector<std::string> keys,
                                          std::vector<std::string> args) {
  std::vector<std::string> out;
  out.reserve(1 + keys.size() + args.size());
  out.push_back(std::to_string(keys.size()));
  for (auto& key : keys)
    out.push_back(std::move(key));
  for (auto& arg : args)
    out.push_back(std::move(arg));
  return out;
}

caf::error redis_unavailable(const std::string& why) {
  return make_error(errc::unavailable, why);
}

redis_reply copy_reply(const redisReply* reply) {
  redis_reply out;
  switch (reply->type) {
  case REDIS_REPLY_INTEGER:
    out.kind = redis_reply::type::integer;
    out.integer = reply->integer;
    break;
  case REDIS_REPLY_STRING:
    out.kind = redis_reply::type::string;
    out.text.assign(reply->str, reply->len);
    break;
  case REDIS_REPLY_STATUS:
    out.kind = redis_reply::type::status;
    out.text.assign(reply->str, reply->len);
    break;
  case REDIS_REPLY_ERROR:
    out.kind = redis_reply::type::error;
    out.text.assign(reply->str, reply->len);
    break;
  case REDIS_REPLY_ARRAY:
    out.kind = redis_reply::type::array;
    out.elements.reserve(reply->elements);
    for (std::size_t i = 0; i < reply->elements; ++i)
      out.elements.push_back(copy_reply(reply->element[i]));
    break;
  default:
    out.kind = redis_reply::type::nil;
  }
  return out;
}

// -- redis_backoff ------------------------------------------------------------

std::chrono::milliseconds redis_backoff::next() {
  auto now = delay_;
  delay_ = std::min(delay_ * 2,
                    std::chrono::milliseconds{limits::redis_backoff_max_ms});
  return now;
}

void redis_backoff::reset() {
  delay_ = std::chrono::milliseconds{limits::redis_backoff_first_ms};
}

// -- redis_session ------------------------------------------------------------

redis_session::redis_session(redis_endpoint endpoint,
                             std::vector<std::string> scripts)
    : endpoint_(std::move(endpoint)), scripts_(std::move(scripts)),
      hashes_(scripts_.size()) {}

std::vector<std::vector<std::string>> redis_session::open() {
  RSV_ASSERT(waiting_.empty(),
             "a new Redis connection while the old one's commands wait");
  std::vector<std::vector<std::string>> out;
  if (!endpoint_.password.empty()) {
    if (endpoint_.user.empty())
      out.push_back({"AUTH", endpoint_.password});
    else
      out.push_back({"AUTH", endpoint_.user, endpoint_.password});
  }
  if (endpoint_.db != 0)
    out.push_back({"SELECT", std::to_string(endpoint_.db)});
  for (auto& command : out)
    add(command, nullptr).opening = true;
  for (std::size_t i = 0; i < scripts_.size(); ++i) {
    auto& w = add({"SCRIPT", "LOAD", scripts_[i]}, nullptr);
    w.opening = true;
    w.loads = i;
    out.push_back(w.command);
  }
  opening_left_ = waiting_.size();
  open_ = true;
  return out;
}

redis_session::written& redis_session::add(std::vector<std::string> command,
                                           redis_callback done) {
  auto& w = waiting_.emplace_back();
  w.command = std::move(command);
  w.done = std::move(done);
  w.at = std::chrono::steady_clock::now();
  return w;
}

const std::vector<std::string>&
redis_session::command(std::vector<std::string> args, redis_callback done) {
  return add(std::move(args), std::move(done)).command;
}

const std::vector<std::string>&
redis_session::script(std::size_t script,
                      std::vector<std::string> numkeys_keys_args,
                      redis_callback done) {
  RSV_ASSERT(ready() && script < scripts_.size(),
             "a script run before the scripts were loaded, or an unknown one");
  numkeys_keys_args.insert(numkeys_keys_args.begin(),
                           {"EVALSHA", hashes_[script]});
  auto& w = add(std::move(numkeys_keys_args), std::move(done));
  w.script = script;
  return w.command;
}

redis_session::outcome redis_session::on_reply(redis_reply reply) {
  outcome out;
  if (waiting_.empty()) {
    out.what = outcome::kind::broken;
    out.why = "a reply that nobody asked for";
    return out;
  }
  auto w = std::move(waiting_.front());
  waiting_.pop_front();
  if (w.opening) return opening_reply(w, std::move(reply));
  if (w.script != no_script && is_noscript(reply)) {
    // Redis lost the script (restarted, or SCRIPT FLUSH): send its source
    // this once; the reply comes after those of what was written before.
    w.command[0] = "EVAL";
    w.command[1] = scripts_[w.script];
    w.script = no_script;
    auto& again = add(std::move(w.command), std::move(w.done));
    out.what = outcome::kind::resend;
    out.resend = &again.command;
    return out;
  }
  out.what = outcome::kind::answer;
  out.done = std::move(w.done);
  out.reply = std::move(reply);
  return out;
}

redis_session::outcome redis_session::opening_reply(const written& w,
                                                    redis_reply reply) {
  outcome out;
  if (reply.kind == redis_reply::type::error ||
      (w.loads != no_script && reply.kind != redis_reply::type::string)) {
    out.what = outcome::kind::broken;
    out.why = "while connecting: " + reply.text;
    return out;
  }
  if (w.loads != no_script) hashes_[w.loads] = std::move(reply.text);
  if (--opening_left_ == 0) out.what = outcome::kind::ready;
  return out;
}

std::optional<std::chrono::steady_clock::time_point>
redis_session::oldest_written() const {
  if (waiting_.empty()) return std::nullopt;
  return waiting_.front().at;
}

std::size_t redis_session::fail_all(const std::string& why) {
  auto failed = std::move(waiting_);
  waiting_.clear();
  opening_left_ = 0;
  open_ = false;
  std::size_t answered = 0;
  for (auto& w : failed)
    if (w.done) {
      ++answered;
      w.done(redis_unavailable(why));
    }
  return answered;
}

// -- redis_link ---------------------------------------------------------------

struct redis_link::context {
  ~context() {
    if (c) redisFree(c);
  }
  redisContext* c = nullptr;
};

redis_link::redis_link() = default;
redis_link::~redis_link() = default;

bool redis_link::connect(const redis_endpoint& endpoint, int connect_timeout_ms,
                         int command_timeout_ms, redis_session& session) {
  close();
  redisContext* c = redisConnectWithTimeout(
      endpoint.host.c_str(), endpoint.port, to_timeval(connect_timeout_ms));
  if (!c || c->err) {
    error_ = c ? c->errstr : "out of memory";
    if (c) redisFree(c);
    return false;
  }
  redisSetTimeout(c, to_timeval(command_timeout_ms));
  redisEnableKeepAlive(c);
  context_ = std::make_unique<context>();
  context_->c = c;
  for (const auto& command : session.open())
    append(command);
  while (!session.ready()) {
    auto reply = read();
    if (reply) {
      auto out = session.on_reply(std::move(*reply));
      if (out.what != redis_session::outcome::kind::broken) continue;
      error_ = out.why;
    }
    session.fail_all(error_);
    close();
    return false;
  }
  return true;
}

bool redis_link::connected() const {
  return context_ != nullptr;
}

void redis_link::close() {
  context_.reset();
}

void redis_link::append(const std::vector<std::string>& args) {
  RSV_ASSERT(context_, "a Redis command appended without a connection");
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  argv.reserve(args.size());
  lengths.reserve(args.size());
  for (const auto& a : args) {
    argv.push_back(a.data());
    lengths.push_back(a.size());
  }
  redisAppendCommandArgv(context_->c, static_cast<int>(argv.size()),
                         argv.data(), lengths.data());
}

std::optional<redis_reply> redis_link::read() {
  RSV_ASSERT(context_, "a Redis reply read without a connection");
  void* raw = nullptr;
  if (redisGetReply(context_->c, &raw) != REDIS_OK || raw == nullptr) {
    error_ = context_->c->errstr[0] ? context_->c->errstr : "no reply";
    return std::nullopt;
  }
  auto reply = copy_reply(static_cast<redisReply*>(raw));
  freeReplyObject(raw);
  return reply;
}

std::optional<redis_reply>
redis_link::call(const std::vector<std::string>& args) {
  append(args);
  return read();
}

} // namespace rsv::messaging
