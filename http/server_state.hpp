#pragma once

// Private to http/: what the server and its connections share
// (server.cpp accepts, session.cpp serves one connection).

#include "core/limits.hpp"
#include "http/api.hpp"
#include "http/server.hpp"

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <string>
#include <unordered_map>

namespace rsv::http {

/// HTTP metrics by route and status. Label lookups in prometheus-cpp take a
/// lock, so each I/O thread caches the series it has used.
class http_metrics {
public:
  explicit http_metrics(prometheus::Registry& registry)
      : requests_(prometheus::BuildCounter()
                      .Name("rsv_http_requests_total")
                      .Help("HTTP requests answered, by route and status")
                      .Register(registry)),
        latency_(prometheus::BuildHistogram()
                     .Name("rsv_http_request_duration_seconds")
                     .Help("Time from a request's last byte to its answer")
                     .Register(registry)),
        connections_(prometheus::BuildGauge()
                         .Name("rsv_http_connections_open")
                         .Help("Open HTTP connections")
                         .Register(registry)
                         .Add({})),
        refused_(prometheus::BuildCounter()
                     .Name("rsv_http_connections_refused_total")
                     .Help("Connections closed as soon as accepted, by the "
                           "cap they were over (node or address)")
                     .Register(registry)),
        refused_node_(refused_.Add({{"cap", "node"}})),
        refused_address_(refused_.Add({{"cap", "address"}})),
        accept_errors_(prometheus::BuildCounter()
                           .Name("rsv_http_accept_errors_total")
                           .Help("Failed accepts (most often: out of file "
                                 "descriptors)")
                           .Register(registry)
                           .Add({})) {}

  void observe(const char* route, unsigned status, double seconds) {
    thread_local std::unordered_map<uint64_t, prometheus::Counter*> counters;
    thread_local std::unordered_map<const char*, prometheus::Histogram*>
        histograms;
    auto key = (reinterpret_cast<uint64_t>(route) << 10) ^ status;
    auto counter = counters.find(key);
    if (counter == counters.end()) {
      std::lock_guard<std::mutex> guard{mutex_};
      counter =
          counters
              .emplace(key,
                       &requests_.Add({{"route", route},
                                       {"status", std::to_string(status)}}))
              .first;
    }
    counter->second->Increment();
    auto histogram = histograms.find(route);
    if (histogram == histograms.end()) {
      std::lock_guard<std::mutex> guard{mutex_};
      static const prometheus::Histogram::BucketBoundaries buckets{
          0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5};
      histogram =
          histograms.emplace(route, &latency_.Add({{"route", route}}, buckets))
              .first;
    }
    histogram->second->Observe(seconds);
  }

  prometheus::Gauge& connections() { return connections_; }
  prometheus::Counter& refused_over_node_cap() { return refused_node_; }
  prometheus::Counter& refused_over_address_cap() { return refused_address_; }
  prometheus::Counter& accept_errors() { return accept_errors_; }

private:
  std::mutex mutex_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& latency_;
  prometheus::Gauge& connections_;
  prometheus::Family<prometheus::Counter>& refused_;
  prometheus::Counter& refused_node_;
  prometheus::Counter& refused_address_;
  prometheus::Counter& accept_errors_;
};

/// Open connections per client address, so that one client cannot take
/// them all. IPv6 clients are counted per /64: one host usually has a whole
/// /64 to pick addresses from. Taken on the acceptor's thread, released on
/// the connection's.
class address_counts {
public:
  explicit address_counts(std::size_t max) : max_(max) {}

  /// The key to release later, or nothing when `address` is at the cap.
  std::optional<std::string> take(const boost::asio::ip::address& address) {
    auto key = key_of(address);
    if (max_ == 0) return key;
    std::lock_guard<std::mutex> guard{mutex_};
    auto& count = counts_[key];
    if (count >= max_) return std::nullopt;
    ++count;
    return key;
  }

  void release(const std::string& key) {
    if (max_ == 0) return;
    std::lock_guard<std::mutex> guard{mutex_};
    auto it = counts_.find(key);
    if (it == counts_.end()) return;
    if (--it->second == 0) counts_.erase(it);
  }

private:
  static std::string key_of(const boost::asio::ip::address& address) {
    if (address.is_v6() && !address.to_v6().is_v4_mapped()) {
      auto bytes = address.to_v6().to_bytes();
      return std::string(reinterpret_cast<const char*>(bytes.data()), 8);
    }
    auto v4 = address.is_v6() ? boost::asio::ip::make_address_v4(
                                    boost::asio::ip::v4_mapped, address.to_v6())
                              : address.to_v4();
    auto bytes = v4.to_bytes();
    return std::string(reinterpret_cast<const char*>(bytes.data()), 4);
  }

  std::size_t max_;
  std::mutex mutex_;
  std::unordered_map<std::string, std::size_t> counts_;
};

/// What every connection shares with the server.
struct server::shared_state {
  api& handler;
  server_config config;
  http_metrics metrics;
  std::atomic<int64_t> connections{0};
  /// Set once in start(), before the first accept.
  std::size_t connections_cap = limits::connections_max;
  address_counts per_address;
  /// Requests from their first byte until their answer is written (or the
  /// connection fails): what a drain waits for.
  std::atomic<int64_t> requests_in_progress{0};
  /// steady_clock ticks of the latest request's first byte.
  std::atomic<int64_t> last_request_started{0};
  std::atomic<bool> draining{false};

  shared_state(api& h, server_config c, prometheus::Registry& registry)
      : handler(h), config(std::move(c)), metrics(registry),
        per_address(config.connections_per_address_max) {}
};

/// Serves one accepted connection until it closes; the session owns the
/// socket and releases `address_key` from the address counts at the end.
void serve_connection(boost::asio::ip::tcp::socket socket,
                      boost::asio::ip::address peer, std::string address_key,
                      std::shared_ptr<server::shared_state> shared);

} // namespace rsv::http
