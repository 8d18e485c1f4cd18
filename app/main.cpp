#include "app/config.hpp"
#include "app/options.hpp"
#include "core/errc.hpp"
#include "persistence/migrations.hpp"

#include <CLI/CLI.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <iostream>

namespace rsv::app {
namespace {

/// `reservations healthcheck`: 0 when the node answers /ready with 200.
int healthcheck(const std::string& url) {
  namespace beast = boost::beast;
  namespace bhttp = beast::http;
  using tcp = boost::asio::ip::tcp;
  // http://host:port/path only: container health checks need no more.
  std::string rest = url;
  if (rest.rfind("http://", 0) == 0) rest = rest.substr(7);
  auto slash = rest.find('/');
  auto host_port = rest.substr(0, slash);
  auto path = slash == std::string::npos ? "/ready" : rest.substr(slash);
  auto colon = host_port.rfind(':');
  auto host = host_port.substr(0, colon);
  auto port = colon == std::string::npos ? "80" : host_port.substr(colon + 1);
  try {
    boost::asio::io_context ioc;
    tcp::resolver resolver{ioc};
    beast::tcp_stream stream{ioc};
    stream.expires_after(std::chrono::seconds(3));
    stream.connect(resolver.resolve(host, port));
    bhttp::request<bhttp::empty_body> req{bhttp::verb::get, path, 11};
    req.set(bhttp::field::host, host);
    bhttp::write(stream, req);
    beast::flat_buffer buffer;
    bhttp::response<bhttp::string_body> res;
    bhttp::read(stream, buffer, res);
    std::cout << res.result_int() << ' ' << res.body() << '\n';
    return res.result_int() == 200 ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "healthcheck " << url << ": " << e.what() << '\n';
    return 1;
  }
}

/// `reservations migrate`: 0 when the schema is current, 1 otherwise.
int migrate_database(store_kind store, const std::string& dsn) {
  if (store == store_kind::memory) {
    std::cout << "the memory store has no schema: nothing to migrate\n";
    return 0;
  }
  auto report = persistence::apply_migrations(dsn);
  if (!report) {
    std::cerr << "migrate: " << describe(report.error()) << '\n';
    return 1;
  }
  for (auto version : report->applied)
    std::cout << "applied migration " << version << '\n';
  std::cout << "schema version " << report->schema_version
            << (report->applied.empty() ? " (already current)\n" : "\n");
  return 0;
}

} // namespace
} // namespace rsv::app

int main(int argc, char** argv) {
  CLI::App cli{"reservations: a high-concurrency seat reservation server"};
  cli.require_subcommand(1);
  rsv::app::serve_config cfg;

  auto* serve = cli.add_subcommand("serve", "Start a node");
  rsv::app::add_serve_options(*serve, cfg);

  auto* migrate =
      cli.add_subcommand("migrate", "Apply the database migrations and exit");
  auto migrate_store = rsv::app::store_kind::memory;
  rsv::app::add_named_option(*migrate, "--store", migrate_store,
                             rsv::app::store_names, "memory or postgres")
      ->envname("RSV_STORE");
  std::string migrate_dsn;
  migrate->add_option("--pg-dsn", migrate_dsn, "libpq connection string")
      ->envname("RSV_PG_DSN");

  auto* check = cli.add_subcommand(
      "healthcheck", "Exit 0 when a node answers /ready with 200");
  std::string url = "http://127.0.0.1:8080/ready";
  check->add_option("--url", url, "URL of /ready")->capture_default_str();

  CLI11_PARSE(cli, argc, argv);

  if (serve->parsed()) return rsv::app::serve(cfg);
  if (migrate->parsed())
    return rsv::app::migrate_database(migrate_store, migrate_dsn);
  if (check->parsed()) return rsv::app::healthcheck(url);
  return 2;
}
