#include "pg_cluster.hpp"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <unistd.h>

namespace rsv::e2e {

namespace {

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
    text.pop_back();
  return text;
}

std::string postgres_bindir() {
  const char* configured = std::getenv("PG_CONFIG");
  auto pg_config = configured != nullptr && *configured != '\0'
                       ? std::string{configured}
                       : find_program("pg_config");
  auto result = run_command({pg_config, "--bindir"});
  if (result.exit_code != 0)
    throw std::runtime_error(pg_config + " --bindir: " + result.output);
  return trimmed(result.output);
}

} // namespace

pg_cluster::pg_cluster() {
  bindir_ = postgres_bindir();
  if (::geteuid() == 0) as_ = find_account("postgres");
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      std::string{tmp != nullptr && *tmp != '\0' ? tmp : "/tmp"} +
      "/rsv-e2e-pg-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr)
    throw std::runtime_error("mkdtemp: " + std::string{std::strerror(errno)});
  dir_ = pattern;
  log_path_ = dir_ + "/postgres.log";
  if (as_ && ::chown(dir_.c_str(), as_->uid, as_->gid) != 0)
    throw std::runtime_error("chown " + dir_ + ": " + std::strerror(errno));
  // --no-sync: a cluster that lives for one test needs no fsync at creation.
  auto initdb = run_command({bindir_ + "/initdb", "--pgdata=" + dir_ + "/data",
                             "--username=postgres", "--auth=trust",
                             "--encoding=UTF8", "--locale=C", "--no-sync"},
                            120s, as_);
  if (initdb.exit_code != 0) {
    std::filesystem::remove_all(dir_);
    throw std::runtime_error("initdb: " + initdb.output);
  }
  port_ = pick_free_port();
  std::string why;
  // Another process may take the port between pick_free_port and bind.
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (start_once(why)) return;
    port_ = pick_free_port();
  }
  std::filesystem::remove_all(dir_);
  throw std::runtime_error("PostgreSQL did not start: " + why);
}

pg_cluster::~pg_cluster() {
  thaw(); // a stopped process takes no SIGQUIT
  if (pid_ > 0) {
    ::kill(pid_, SIGQUIT); // immediate shutdown
    if (!wait_child(pid_, 10s)) {
      ::kill(pid_, SIGKILL);
      wait_child(pid_, 10s);
    }
    pid_ = -1;
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

bool pg_cluster::start_once(std::string& why) {
  int log_fd = ::open(log_path_.c_str(),
                      O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0)
    throw std::runtime_error("open " + log_path_ + ": " + std::strerror(errno));
  // fsync=off: the machine does not crash in these tests, and a stop of
  // PostgreSQL (fast or immediate) keeps every commit without it.
  pid_ = spawn_child({bindir_ + "/postgres", "-D", dir_ + "/data", "-p",
                      std::to_string(port_), "-k", dir_, "-c",
                      "listen_addresses=127.0.0.1", "-c", "fsync=off"},
                     log_fd, as_);
  ::close(log_fd);
  auto until = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < until) {
    if (auto code = wait_child(pid_, 0ms)) {
      pid_ = -1;
      why = "postgres exited with " + std::to_string(*code) + ":\n" + log();
      return false;
    }
    auto ready =
        run_command({bindir_ + "/pg_isready", "--quiet", "--host=127.0.0.1",
                     "--port=" + std::to_string(port_), "--timeout=1"},
                    5s);
    if (ready.exit_code == 0) return true;
    std::this_thread::sleep_for(20ms); // poll interval
  }
  why = "postgres did not accept connections within 30 s:\n" + log();
  ::kill(pid_, SIGKILL);
  wait_child(pid_, 10s);
  pid_ = -1;
  return false;
}

void pg_cluster::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGINT); // fast shutdown
  auto code = wait_child(pid_, 30s);
  if (!code) {
    ::kill(pid_, SIGKILL);
    wait_child(pid_, 10s);
  }
  pid_ = -1;
  if (!code)
    throw std::runtime_error("PostgreSQL did not stop within 30 s:\n" + log());
}

void pg_cluster::start() {
  if (pid_ > 0) return;
  std::string why;
  if (!start_once(why))
    throw std::runtime_error("PostgreSQL did not start again: " + why);
}

int pg_cluster::freeze() {
  if (pid_ <= 0) return 0;
  // The postmaster first, so that it starts no process while the others
  // are being stopped; then its children, read from /proc.
  frozen_ = {pid_};
  ::kill(pid_, SIGSTOP);
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    auto name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    // pid (comm) state ppid ...: comm may hold spaces, so read after ')'.
    auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 1));
    std::string state;
    pid_t parent = 0;
    rest >> state >> parent;
    if (parent != pid_) continue;
    auto child = static_cast<pid_t>(std::stol(name));
    if (::kill(child, SIGSTOP) == 0) frozen_.push_back(child);
  }
  return static_cast<int>(frozen_.size());
}

int pg_cluster::thaw() {
  int count = 0;
  for (auto pid : frozen_)
    count += ::kill(pid, SIGCONT) == 0 ? 1 : 0;
  frozen_.clear();
  return count;
}

std::string pg_cluster::conninfo(const std::string& dbname) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) +
         " user=postgres dbname=" + dbname;
}

void pg_cluster::create_database(const std::string& name) {
  auto created = run_psql(conninfo("postgres"), "CREATE DATABASE " + name);
  if (created.exit_code != 0)
    throw std::runtime_error("CREATE DATABASE " + name + ": " + created.output);
}

std::string pg_cluster::log() const {
  std::ifstream in(log_path_, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

pg_restart_guard::~pg_restart_guard() {
  if (cluster_.running()) return;
  try {
    cluster_.start();
  } catch (const std::exception& e) {
    std::cerr << "could not start PostgreSQL again: " << e.what() << '\n';
  }
}

} // namespace rsv::e2e
