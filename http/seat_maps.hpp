#pragma once

#include "actors/directory.hpp"
#include "actors/protocol.hpp"
#include "http/api_types.hpp"

#include <boost/asio/thread_pool.hpp>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace rsv::http {

/// Seat maps, served without stalling the section actors (issue 19: four
/// anonymous readers of a 1M-seat section raised hold latency from 2 ms to
/// 1.1 s when each map was rendered on the actor).
///
/// - The actor only copies its statuses (a byte per seat), and not even
///   that when the asker already has its current version.
/// - Rendering (33.8 MB of JSON for 1M seats) and gzip run on this object's
///   own threads, never on an actor or an I/O thread; each version of a
///   section is rendered once, whoever asks.
/// - Per section at most one snapshot is asked of the actor at a time.
///   Readers arriving meanwhile wait for the next one, which is asked after
///   the current one is answered: a reader never gets a map older than its
///   request (a hold answered 201 is in every map asked for after it).
/// - Beyond limits::seat_map_readers_waiting_max waiting readers per section
///   the next is answered 503 at once: reads shed before writes suffer.
class seat_maps {
public:
  explicit seat_maps(std::size_t render_threads);
  ~seat_maps();
  seat_maps(const seat_maps&) = delete;
  seat_maps& operator=(const seat_maps&) = delete;

  /// Answers `done` with `section`'s seat map as JSON (gzip-encoded when
  /// `gzip`), from the actor's state at or after this call.
  void get(const std::shared_ptr<actors::section_entry>& section, bool gzip,
           respond_fn done);

  /// Waits for the rendering threads (at shutdown, before the actors go).
  void stop();

private:
  struct reader {
    respond_fn done;
    bool gzip = false;
  };
  struct section_cache;

  std::shared_ptr<section_cache> cache_of(const actors::section_entry* section);
  // Static: an actor's late reply may come after this object is gone; it
  // keeps the pool (and the cache) alive, not `this`.
  static void ask(const std::shared_ptr<boost::asio::thread_pool>& pool,
                  const std::shared_ptr<actors::section_entry>& section,
                  const std::shared_ptr<section_cache>& cache, uint64_t known);
  static void answer(const std::shared_ptr<boost::asio::thread_pool>& pool,
                     const std::shared_ptr<actors::section_entry>& section,
                     const std::shared_ptr<section_cache>& cache,
                     caf::expected<actors::seat_map_snapshot> snapshot);

  std::mutex mutex_;
  std::unordered_map<const actors::section_entry*,
                     std::shared_ptr<section_cache>>
      caches_;
  std::shared_ptr<boost::asio::thread_pool> rendering_;
};

} // namespace rsv::http
