#include "harness.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <fstream>
#include <grp.h>
#include <iostream>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace rsv::e2e {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;

namespace {

constexpr std::string_view token_secret =
    "e2e-token-secret-0123456789abcdef-0123456789";

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

/// Runs the io_context until the one started operation completes. The
/// operation's own stream expiry bounds it.
void run_one(net::io_context& ioc) {
  ioc.restart();
  ioc.run();
}

http_response from_beast(bhttp::response<bhttp::string_body>& res) {
  http_response out;
  out.status = res.result_int();
  for (const auto& field : res)
    out.headers.emplace_back(std::string{field.name_string()},
                             std::string{field.value()});
  out.body = std::move(res.body());
  out.keep_alive = res.keep_alive();
  return out;
}

} // namespace

// -- server_process -----------------------------------------------------------

unsigned short pick_free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    throw std::runtime_error("socket: " + std::string{std::strerror(errno)});
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    auto why = std::string{std::strerror(errno)};
    ::close(fd);
    throw std::runtime_error("bind: " + why);
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string make_temp_file(std::string_view prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string{tmp && *tmp ? tmp : "/tmp"} + "/" +
                        std::string{prefix} + "-XXXXXX";
  std::vector<char> name(pattern.begin(), pattern.end());
  name.push_back('\0');
  int fd = ::mkstemp(name.data());
  if (fd < 0)
    throw std::runtime_error("mkstemp: " + std::string{std::strerror(errno)});
  ::close(fd);
  return name.data();
}

std::string server_binary() {
  const char* binary = std::getenv("RSV_BINARY");
  if (binary == nullptr || *binary == '\0')
    throw std::runtime_error("RSV_BINARY is not set");
  return binary;
}

os_account find_account(const std::string& name) {
  std::vector<char> buffer(16384);
  passwd entry{};
  passwd* found = nullptr;
  if (::getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(),
                   &found) != 0 ||
      found == nullptr)
    throw std::runtime_error("no user account " + name);
  return {found->pw_uid, found->pw_gid};
}

std::string find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  std::size_t begin = 0;
  while (begin <= dirs.size()) {
    auto end = dirs.find(':', begin);
    if (end == std::string::npos) end = dirs.size();
    auto dir = dirs.substr(begin, end - begin);
    auto candidate = (dir.empty() ? std::string{"."} : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    begin = end + 1;
  }
  throw std::runtime_error(name + " is not in PATH");
}

pid_t spawn_child(std::vector<std::string> args, int out_fd,
                  const std::optional<os_account>& as) {
  if (!args.empty() && args[0].find('/') == std::string::npos)
    args[0] = find_program(args[0]);
  std::vector<char*> argv;
  for (auto& arg : args)
    argv.push_back(arg.data());
  argv.push_back(nullptr);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0)
    throw std::runtime_error("open: " + std::string{std::strerror(errno)});
  auto parent = ::getpid();
  pid_t child = ::fork();
  if (child < 0)
    throw std::runtime_error("fork: " + std::string{std::strerror(errno)});
  if (child == 0) {
    // Only async-signal-safe calls until exec. The account changes first:
    // a change of user clears the parent-death signal.
    if (as && (::setgroups(0, nullptr) != 0 || ::setgid(as->gid) != 0 ||
               ::setuid(as->uid) != 0))
      ::_exit(126);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(null_fd, 0);
    ::dup2(out_fd, 1);
    ::dup2(out_fd, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(null_fd);
  return child;
}

std::optional<int> wait_child(pid_t pid, std::chrono::milliseconds deadline) {
  auto until = std::chrono::steady_clock::now() + deadline;
  int status = 0;
  while (true) {
    auto done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) return -1; // not our child (any more)
    if (std::chrono::steady_clock::now() >= until) return std::nullopt;
    std::this_thread::sleep_for(5ms); // poll interval
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

command_result run_command(std::vector<std::string> args,
                           std::chrono::milliseconds deadline,
                           const std::optional<os_account>& as) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw std::runtime_error("pipe: " + std::string{std::strerror(errno)});
  pid_t child = spawn_child(std::move(args), fds[1], as);
  ::close(fds[1]);
  command_result result;
  auto until = std::chrono::steady_clock::now() + deadline;
  bool killed = false;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left <= 0ms) {
      ::kill(child, SIGKILL);
      killed = true;
      break;
    }
    pollfd pfd{fds[0], POLLIN, 0};
    int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue; // the deadline check above ends the loop
    char buffer[4096];
    auto n = ::read(fds[0], buffer, sizeof(buffer));
    if (n <= 0) break; // end of output
    result.output.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  if (!killed && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  return result;
}

server_process::server_process(std::vector<std::string> extra_args,
                               std::string admin_token,
                               std::vector<std::string> launcher)
    : admin_token_(std::move(admin_token)), launcher_(std::move(launcher)) {
  std::signal(SIGPIPE, SIG_IGN);
  static std::atomic<int> counter{0};
  // At least 32 characters, as the server requires.
  if (admin_token_.empty())
    admin_token_ = "e2e-admin-token-" + std::to_string(::getpid()) + "-" +
                   std::to_string(counter.fetch_add(1)) + "-0123456789abcdef";
  std::string why;
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (start_once(extra_args, why)) return;
  }
  throw std::runtime_error("the server did not start: " + why);
}

server_process::~server_process() {
  stop();
  if (!log_path_.empty()) ::unlink(log_path_.c_str());
}

bool server_process::start_once(const std::vector<std::string>& extra_args,
                                std::string& why) {
  auto binary = server_binary();
  if (log_path_.empty()) log_path_ = make_temp_file("rsv-e2e");
  port_ = pick_free_port();
  std::vector<std::string> args = launcher_;
  args.insert(args.end(), {binary, "serve", "--listen",
                           "127.0.0.1:" + std::to_string(port_),
                           "--admin-token", admin_token_});
  // The harness's defaults, unless the test gives the flag itself: cheap
  // password hashes (the real cost is for attackers), and no throttle of
  // logins and registrations per address (every test client is 127.0.0.1;
  // tests/e2e/security_test.cpp tests the throttle).
  const std::pair<const char*, std::string> defaults[] = {
      {"--token-secret", std::string{token_secret}},
      {"--password-hash-memory-kib", "1024"},
      {"--password-hash-ops", "1"},
      {"--auth-limit-address", "0"},
  };
  for (const auto& [flag, value] : defaults)
    if (std::find(extra_args.begin(), extra_args.end(), flag) ==
        extra_args.end())
      args.insert(args.end(), {flag, value});
  args.insert(args.end(), extra_args.begin(), extra_args.end());

  int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (log_fd < 0)
    throw std::runtime_error("open: " + std::string{std::strerror(errno)});
  pid_t child = spawn_child(args, log_fd);
  ::close(log_fd);
  pid_ = child;
  exit_code_ = -1;

  // Up when our process says it listens on our port and /ready says 200.
  const auto listening =
      "listening on 127.0.0.1:" + std::to_string(port_) + " ";
  auto deadline = std::chrono::steady_clock::now() + 15s;
  bool bound = false;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      why = "the process exited during start (port " + std::to_string(port_) +
            "):\n" + log();
      return false;
    }
    if (!bound) bound = log().find(listening) != std::string::npos;
    if (bound) {
      try {
        http_connection probe(port_, 1s);
        if (probe.get("/ready").status == 200) return true;
      } catch (const std::exception&) {
        // not yet
      }
    }
    std::this_thread::sleep_for(10ms); // poll interval
  }
  why = "not ready within 15 s (port " + std::to_string(port_) + "):\n" + log();
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
  return false;
}

int server_process::stop(std::chrono::milliseconds deadline) {
  if (pid_ <= 0) return exit_code_;
  ::kill(pid_, SIGTERM);
  auto code = wait_child(pid_, deadline);
  if (!code) {
    ::kill(pid_, SIGKILL);
    wait_child(pid_, 30s);
  }
  pid_ = -1;
  exit_code_ = code.value_or(-1);
  return exit_code_;
}

std::string server_process::log() const {
  return log_path_.empty() ? std::string{} : read_file(log_path_);
}

// -- PostgreSQL ---------------------------------------------------------------

command_result run_psql(const std::string& conninfo, const std::string& sql) {
  return run_command({find_program("psql"), "--no-psqlrc", "--quiet",
                      "--no-align", "--tuples-only", "--set=ON_ERROR_STOP=1",
                      "--dbname=" + conninfo, "--command=" + sql});
}

scratch_database::scratch_database() {
  if (std::getenv("PGHOST") == nullptr)
    throw std::runtime_error(
        "needs PostgreSQL: run through scripts/test (pg_virtualenv)");
  static std::atomic<int> counter{0};
  name_ = "rsv_e2e_" + std::to_string(::getpid()) + "_" +
          std::to_string(counter.fetch_add(1));
  auto created = run_command({find_program("createdb"), name_});
  if (created.exit_code != 0)
    throw std::runtime_error("createdb " + name_ + ": " + created.output);
}

scratch_database::~scratch_database() {
  run_command({find_program("dropdb"), "--force", "--if-exists", name_});
}

// -- http_response ------------------------------------------------------------

std::optional<std::string> http_response::header(std::string_view name) const {
  for (const auto& [key, value] : headers)
    if (iequals(key, name)) return value;
  return std::nullopt;
}

json http_response::body_json() const {
  auto parsed = json::parse(body, nullptr, false);
  if (parsed.is_discarded())
    throw std::runtime_error("response body is not JSON: " +
                             body.substr(0, 500));
  return parsed;
}

std::ostream& operator<<(std::ostream& os, const http_response& response) {
  os << "HTTP " << response.status;
  for (const auto& [name, value] : response.headers)
    os << "\n  " << name << ": " << value;
  os << "\n  "
     << (response.body.size() > 2000 ? response.body.substr(0, 2000) + "..."
                                     : response.body);
  return os;
}

// -- http_connection ----------------------------------------------------------

struct http_connection::impl {
  net::io_context ioc;
  std::optional<beast::tcp_stream> holder;
  beast::flat_buffer buffer;
  unsigned short port;
  std::chrono::milliseconds timeout;
  std::string from;
  bool open = false;
  int connects = 0;

  void connect() {
    buffer.clear();
    holder.emplace(ioc);
    auto& stream = *holder;
    beast::error_code result;
    if (!from.empty()) {
      stream.socket().open(tcp::v4());
      stream.socket().bind(tcp::endpoint{net::ip::make_address(from), 0});
    }
    stream.expires_after(timeout);
    stream.async_connect(
        tcp::endpoint{net::ip::make_address("127.0.0.1"), port},
        [&](beast::error_code ec) { result = ec; });
    run_one(ioc);
    if (result)
      throw std::runtime_error("connect to port " + std::to_string(port) +
                               ": " + result.message());
    stream.socket().set_option(tcp::no_delay(true));
    open = true;
    ++connects;
  }

  beast::tcp_stream& stream() { return *holder; }

  void shut() {
    if (!holder) return;
    auto& stream = *holder;
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.socket().close(ignored);
    open = false;
  }
};

http_connection::http_connection(unsigned short port,
                                 std::chrono::milliseconds timeout,
                                 std::string from)
    : impl_(std::make_unique<impl>()) {
  impl_->port = port;
  impl_->timeout = timeout;
  impl_->from = std::move(from);
  impl_->connect();
}

http_connection::~http_connection() {
  impl_->shut();
}

int http_connection::connects() const {
  return impl_->connects;
}

bool http_connection::is_open() const {
  return impl_->open;
}

void http_connection::close() {
  impl_->shut();
}

http_response http_connection::request(std::string_view method,
                                       std::string_view target,
                                       const headers_t& headers,
                                       std::string body) {
  auto& s = *impl_;
  if (!s.open) s.connect();
  bhttp::request<bhttp::string_body> req;
  req.version(11);
  beast::string_view method_view{method.data(), method.size()};
  auto verb = bhttp::string_to_verb(method_view);
  if (verb == bhttp::verb::unknown)
    req.method_string(method_view);
  else
    req.method(verb);
  req.target(beast::string_view{target.data(), target.size()});
  req.set(bhttp::field::host, "127.0.0.1:" + std::to_string(s.port));
  for (const auto& [name, value] : headers)
    req.insert(name, value);
  bool has_body = !body.empty();
  req.body() = std::move(body);
  if (has_body || verb == bhttp::verb::post) req.prepare_payload();

  beast::error_code result;
  s.stream().expires_after(s.timeout);
  bhttp::async_write(s.stream(), req,
                     [&](beast::error_code ec, std::size_t) { result = ec; });
  run_one(s.ioc);
  if (result) {
    s.shut();
    throw std::runtime_error(std::string{method} + " " + std::string{target} +
                             ": write: " + result.message());
  }
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(256 * 1024 * 1024);
  parser.header_limit(64 * 1024);
  // A response to a HEAD request has no body.
  if (verb == bhttp::verb::head) parser.skip(true);
  s.stream().expires_after(s.timeout);
  bhttp::async_read(s.stream(), s.buffer, parser,
                    [&](beast::error_code ec, std::size_t) { result = ec; });
  run_one(s.ioc);
  if (result) {
    s.shut();
    throw std::runtime_error(std::string{method} + " " + std::string{target} +
                             ": read: " + result.message());
  }
  auto message = parser.release();
  auto response = from_beast(message);
  if (!response.keep_alive) s.shut();
  return response;
}

http_response http_connection::get(std::string_view target,
                                   std::string_view token) {
  return request("GET", target, token.empty() ? headers_t{} : bearer(token));
}

http_response http_connection::del(std::string_view target,
                                   std::string_view token) {
  return request("DELETE", target, token.empty() ? headers_t{} : bearer(token));
}

http_response http_connection::post(std::string_view target, const json& body,
                                    std::string_view token, headers_t extra) {
  return post_raw(target, body.dump(), token, std::move(extra));
}

http_response http_connection::post_raw(std::string_view target,
                                        std::string body,
                                        std::string_view token,
                                        headers_t extra) {
  headers_t headers{{"Content-Type", "application/json"}};
  if (!token.empty())
    headers.emplace_back("Authorization", "Bearer " + std::string{token});
  headers.insert(headers.end(), extra.begin(), extra.end());
  return request("POST", target, headers, std::move(body));
}

// -- raw_connection -----------------------------------------------------------

struct raw_connection::impl {
  net::io_context ioc;
  beast::tcp_stream stream{ioc};
  beast::flat_buffer buffer;
  std::string error;
};

raw_connection::raw_connection(unsigned short port,
                               const std::string& source_address)
    : impl_(std::make_unique<impl>()) {
  beast::error_code result;
  if (!source_address.empty()) {
    auto& socket = impl_->stream.socket();
    socket.open(tcp::v4());
    socket.bind(tcp::endpoint{net::ip::make_address(source_address), 0});
  }
  impl_->stream.expires_after(5s);
  impl_->stream.async_connect(
      tcp::endpoint{net::ip::make_address("127.0.0.1"), port},
      [&](beast::error_code ec) { result = ec; });
  run_one(impl_->ioc);
  if (result) throw std::runtime_error("connect: " + result.message());
  impl_->stream.socket().set_option(tcp::no_delay(true));
}

raw_connection::~raw_connection() {
  close();
}

void raw_connection::close() {
  beast::error_code ignored;
  impl_->stream.socket().close(ignored);
}

bool raw_connection::send(std::string_view bytes,
                          std::chrono::milliseconds timeout) {
  beast::error_code result;
  impl_->stream.expires_after(timeout);
  net::async_write(impl_->stream, net::buffer(bytes.data(), bytes.size()),
                   [&](beast::error_code ec, std::size_t) { result = ec; });
  run_one(impl_->ioc);
  impl_->error = result == beast::error::timeout ? "timeout"
                 : result                        ? result.message()
                                                 : std::string{};
  return !result;
}

std::optional<http_response>
raw_connection::read_response(std::chrono::milliseconds timeout) {
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  beast::error_code result;
  impl_->stream.expires_after(timeout);
  bhttp::async_read(impl_->stream, impl_->buffer, parser,
                    [&](beast::error_code ec, std::size_t) { result = ec; });
  run_one(impl_->ioc);
  if (result) {
    impl_->error =
        result == beast::error::timeout ? "timeout" : result.message();
    return std::nullopt;
  }
  impl_->error.clear();
  auto message = parser.release();
  return from_beast(message);
}

bool raw_connection::wait_closed(std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  char scratch[4096];
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left <= 0ms) {
      impl_->error = "still open";
      return false;
    }
    beast::error_code result;
    impl_->stream.expires_after(left);
    impl_->stream.async_read_some(
        net::buffer(scratch),
        [&](beast::error_code ec, std::size_t) { result = ec; });
    run_one(impl_->ioc);
    if (result == beast::error::timeout) {
      impl_->error = "still open";
      return false;
    }
    if (result) {
      impl_->error = result.message();
      return true; // end of stream or reset
    }
  }
}

const std::string& raw_connection::last_error() const {
  return impl_->error;
}

// -- API helpers --------------------------------------------------------------

headers_t bearer(std::string_view token) {
  return {{"Authorization", "Bearer " + std::string{token}}};
}

std::string unique_email(std::string_view tag) {
  static std::atomic<int> counter{0};
  return std::string{tag} + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(counter.fetch_add(1)) + "@e2e.example";
}

customer new_customer(http_connection& http, std::string_view tag) {
  customer who;
  who.email = unique_email(tag);
  who.password = "correct horse battery staple";
  auto created = http.post("/v1/customers",
                           {{"email", who.email}, {"password", who.password}});
  if (created.status != 201)
    throw std::runtime_error(
        "POST /v1/customers: " + std::to_string(created.status) + " " +
        created.body);
  who.id = created.body_json().at("customer_id").get<std::string>();
  auto session = http.post("/v1/sessions",
                           {{"email", who.email}, {"password", who.password}});
  if (session.status != 201)
    throw std::runtime_error(
        "POST /v1/sessions: " + std::to_string(session.status) + " " +
        session.body);
  who.token = session.body_json().at("token").get<std::string>();
  return who;
}

json section_json(std::string id, std::int64_t price_cents,
                  std::vector<std::pair<std::string, int>> rows,
                  std::string name) {
  json out_rows = json::array();
  for (auto& [label, seats] : rows)
    out_rows.push_back({{"label", label}, {"seats", seats}});
  if (name.empty()) name = "Section " + id;
  return {{"id", std::move(id)},
          {"name", std::move(name)},
          {"price_cents", price_cents},
          {"rows", std::move(out_rows)}};
}

json event_json(std::string id, std::vector<json> sections,
                std::string starts_at) {
  json body = {{"name", "Event " + id},
               {"starts_at", std::move(starts_at)},
               {"sections", std::move(sections)}};
  if (!id.empty()) body["id"] = std::move(id);
  return body;
}

json create_event(http_connection& http, const std::string& admin_token,
                  const json& body) {
  auto response = http.post("/v1/events", body, admin_token);
  if (response.status != 201)
    throw std::runtime_error(
        "POST /v1/events: " + std::to_string(response.status) + " " +
        response.body);
  return response.body_json();
}

http_response hold_seats(http_connection& http, const customer& who,
                         const std::string& event_id,
                         const std::string& section_id,
                         std::vector<std::string> seats, headers_t extra) {
  return http.post("/v1/holds",
                   {{"event_id", event_id},
                    {"section_id", section_id},
                    {"seats", std::move(seats)}},
                   who.token, std::move(extra));
}

http_response hold_quantity(http_connection& http, const customer& who,
                            const std::string& event_id,
                            const std::string& section_id, int quantity,
                            headers_t extra) {
  return http.post("/v1/holds",
                   {{"event_id", event_id},
                    {"section_id", section_id},
                    {"quantity", quantity}},
                   who.token, std::move(extra));
}

std::string seat_map::status(const std::string& id) const {
  for (const auto& [seat, status] : seats)
    if (seat == id) return status;
  return "<absent>";
}

std::vector<std::string> seat_map::with_status(std::string_view status) const {
  std::vector<std::string> out;
  for (const auto& [seat, state] : seats)
    if (state == status) out.push_back(seat);
  return out;
}

seat_map get_seat_map(http_connection& http, const std::string& event_id,
                      const std::string& section_id) {
  auto response =
      http.get("/v1/events/" + event_id + "/sections/" + section_id + "/seats");
  if (response.status != 200)
    throw std::runtime_error("GET seats: " + std::to_string(response.status) +
                             " " + response.body);
  auto body = response.body_json();
  if (body.at("event_id") != event_id || body.at("section_id") != section_id)
    throw std::runtime_error("seat map of another section: " + response.body);
  seat_map out;
  for (const auto& seat : body.at("seats")) {
    auto id = seat.at("id").get<std::string>();
    out.order.push_back(id);
    out.seats.emplace_back(id, seat.at("status").get<std::string>());
  }
  return out;
}

std::ostream& operator<<(std::ostream& os, const counts& c) {
  return os << "{free " << c.free << ", held " << c.held << ", booked "
            << c.booked << "}";
}

counts section_counts(http_connection& http, const std::string& event_id,
                      const std::string& section_id) {
  auto response = http.get("/v1/events/" + event_id);
  if (response.status != 200)
    throw std::runtime_error("GET event: " + std::to_string(response.status) +
                             " " + response.body);
  auto body = response.body_json();
  for (const auto& section : body.at("sections"))
    if (section.at("id") == section_id)
      return {section.at("free").get<std::int64_t>(),
              section.at("held").get<std::int64_t>(),
              section.at("booked").get<std::int64_t>()};
  throw std::runtime_error("no section " + section_id + " in " + response.body);
}

std::optional<std::chrono::system_clock::time_point>
parse_time(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.fraction]Z
  auto digits = [&](std::size_t at, std::size_t n) -> std::optional<int> {
    if (at + n > text.size()) return std::nullopt;
    int value = 0;
    for (std::size_t i = at; i < at + n; ++i) {
      if (text[i] < '0' || text[i] > '9') return std::nullopt;
      value = value * 10 + (text[i] - '0');
    }
    return value;
  };
  if (text.size() < 20 || text[4] != '-' || text[7] != '-' || text[10] != 'T' ||
      text[13] != ':' || text[16] != ':' || text.back() != 'Z')
    return std::nullopt;
  auto year = digits(0, 4), month = digits(5, 2), day = digits(8, 2),
       hour = digits(11, 2), minute = digits(14, 2), second = digits(17, 2);
  if (!year || !month || !day || !hour || !minute || !second)
    return std::nullopt;
  std::chrono::nanoseconds fraction{0};
  std::size_t at = 19;
  if (text[at] == '.') {
    ++at;
    std::int64_t scale = 100'000'000;
    while (at < text.size() - 1) {
      if (text[at] < '0' || text[at] > '9') return std::nullopt;
      fraction += std::chrono::nanoseconds((text[at] - '0') * scale);
      scale /= 10;
      ++at;
    }
  }
  if (at != text.size() - 1) return std::nullopt;
  std::tm tm{};
  tm.tm_year = *year - 1900;
  tm.tm_mon = *month - 1;
  tm.tm_mday = *day;
  tm.tm_hour = *hour;
  tm.tm_min = *minute;
  tm.tm_sec = *second;
  auto seconds = ::timegm(&tm);
  return std::chrono::system_clock::from_time_t(seconds) +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(
             fraction);
}

::testing::AssertionResult is_problem(const http_response& response,
                                      unsigned status, std::string_view code) {
  auto fail = [&](const std::string& why) {
    return ::testing::AssertionFailure()
           << "expected problem " << status << " " << code << ": " << why
           << "\n got " << response;
  };
  if (response.status != status) return fail("wrong status");
  auto type = response.header("Content-Type").value_or("");
  if (type.rfind("application/problem+json", 0) != 0)
    return fail("Content-Type is not application/problem+json");
  auto body = json::parse(response.body, nullptr, false);
  if (body.is_discarded() || !body.is_object())
    return fail("body is not a JSON object");
  if (body.value("code", json{}) != code) return fail("wrong code");
  if (body.value("type", json{}) != "urn:rsv:problem:" + std::string{code})
    return fail("wrong type");
  if (!body.contains("title") || !body["title"].is_string() ||
      body["title"].get<std::string>().empty())
    return fail("no title");
  if (!body.contains("detail") || !body["detail"].is_string())
    return fail("no detail");
  if (body.value("status", json{}) != status)
    return fail("status member differs");
  return ::testing::AssertionSuccess();
}

double metric_value(const std::string& text, const std::string& name,
                    const std::string& labels) {
  std::regex line("^" + name + R"((\{[^}]*\})? ([0-9.eE+-]+)$)");
  std::istringstream in(text);
  std::string row;
  double total = -1;
  while (std::getline(in, row)) {
    std::smatch match;
    if (!std::regex_match(row, match, line)) continue;
    if (!labels.empty() && match[1].str().find(labels) == std::string::npos)
      continue;
    total = (total < 0 ? 0 : total) + std::stod(match[2].str());
  }
  return total;
}

std::optional<double> metric(http_connection& http, const std::string& name) {
  auto response = http.get("/metrics");
  std::istringstream in{response.body};
  for (std::string line; std::getline(in, line);)
    if (line.rfind(name + " ", 0) == 0)
      return std::stod(line.substr(name.size() + 1));
  return std::nullopt;
}

// -- fixture ------------------------------------------------------------------

void server_test::SetUp() {
  server_ = std::make_unique<server_process>(server_args());
  http_ = std::make_unique<http_connection>(server_->port());
}

void server_test::TearDown() {
  http_.reset();
  if (!server_) return;
  int code = server_->stop();
  EXPECT_EQ(code, 0) << "the server did not exit 0 on SIGTERM";
  if (HasFailure())
    std::cerr << "---- server log (port " << server_->port() << ") ----\n"
              << server_->log() << "---- end of server log ----\n";
  server_.reset();
}

} // namespace rsv::e2e
