#include "http/seat_maps.hpp"

#include "core/limits.hpp"
#include "http/json_mapping.hpp"
#include "http/problem.hpp"

#include <boost/asio/post.hpp>
#include <caf/all.hpp>
#include <vector>
#include <zlib.h>

namespace rsv::http {

namespace {

/// `text` as a gzip member (RFC 1952), at zlib's fastest level: a seat map
/// is mostly the same few words, and speed matters more than the last
/// percent. Empty when zlib fails (out of memory).
std::string gzipped(const std::string& text) {
  z_stream stream{};
  // 15 window bits, +16: a gzip header and trailer instead of zlib's.
  if (deflateInit2(&stream, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8,
                   Z_DEFAULT_STRATEGY) != Z_OK)
    return {};
  std::string out(deflateBound(&stream, text.size()), '\0');
  stream.next_in =
      reinterpret_cast<Bytef*>(const_cast<char*>(text.data())); // zlib API
  stream.avail_in = static_cast<uInt>(text.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  auto result = deflate(&stream, Z_FINISH);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return result == Z_STREAM_END ? out : std::string{};
}

api_response map_response(const std::string& body, bool gzip) {
  api_response response;
  response.status = 200;
  response.body = body;
  response.header("Vary", "Accept-Encoding");
  if (gzip) response.header("Content-Encoding", "gzip");
  return response;
}

} // namespace

/// What is known of one section's map, and who waits for it.
struct seat_maps::section_cache {
  std::weak_ptr<actors::section_entry> section;
  std::mutex mutex;
  uint64_t version = 0; // 0: nothing rendered yet
  std::shared_ptr<const std::string> json;
  std::shared_ptr<const std::string> gzip; // of `json`, made when asked for
  bool asking = false;       // a snapshot is on its way from the actor
  std::vector<reader> asked; // readers the snapshot on its way answers
  std::vector<reader> next;  // readers that came after it was asked
};

seat_maps::seat_maps(std::size_t render_threads)
    : rendering_(std::make_shared<boost::asio::thread_pool>(
          std::max<std::size_t>(1, render_threads))) {}

seat_maps::~seat_maps() {
  stop();
}

void seat_maps::stop() {
  rendering_->join();
}

std::shared_ptr<seat_maps::section_cache>
seat_maps::cache_of(const actors::section_entry* section) {
  std::lock_guard<std::mutex> guard{mutex_};
  auto it = caches_.find(section);
  if (it != caches_.end() && !it->second->section.expired()) return it->second;
  // A new section (or a new one at a freed address): drop the caches of
  // sections that are gone, with their rendered maps.
  std::erase_if(caches_, [](const auto& entry) {
    return entry.second->section.expired();
  });
  return caches_.emplace(section, std::make_shared<section_cache>())
      .first->second;
}

void seat_maps::get(const std::shared_ptr<actors::section_entry>& section,
                    bool gzip, respond_fn done) {
  auto cache = cache_of(section.get());
  std::unique_lock<std::mutex> lock{cache->mutex};
  if (cache->section.expired()) cache->section = section;
  if (cache->asking) {
    if (cache->next.size() >= limits::seat_map_readers_waiting_max) {
      lock.unlock();
      done(problem(503, problem_code::unavailable,
                   "too many seat map readers of this section; retry"));
      return;
    }
    cache->next.push_back({std::move(done), gzip});
    return;
  }
  cache->asking = true;
  cache->asked.push_back({std::move(done), gzip});
  auto known = cache->version;
  lock.unlock();
  ask(rendering_, section, cache, known);
}

void seat_maps::ask(const std::shared_ptr<boost::asio::thread_pool>& pool,
                    const std::shared_ptr<actors::section_entry>& section,
                    const std::shared_ptr<section_cache>& cache,
                    uint64_t known) {
  section->count_request();
  // The reply comes on the actor's thread: hand it to the renderers at once.
  // A dropped request (actor gone) is answered unavailable by reply_fn.
  caf::anon_send(
      section->actor(),
      actors::seat_map_request{
          known, actors::reply_fn<actors::seat_map_snapshot>{
                     [pool, section, cache](
                         caf::expected<actors::seat_map_snapshot> snapshot) {
                       boost::asio::post(
                           *pool, [pool, section, cache,
                                   snapshot = std::move(snapshot)]() mutable {
                             answer(pool, section, cache, std::move(snapshot));
                           });
                     }}});
}

void seat_maps::answer(const std::shared_ptr<boost::asio::thread_pool>& pool,
                       const std::shared_ptr<actors::section_entry>& section,
                       const std::shared_ptr<section_cache>& cache,
                       caf::expected<actors::seat_map_snapshot> snapshot) {
  std::vector<reader> readers;
  std::shared_ptr<const std::string> json;
  std::shared_ptr<const std::string> gzip;
  if (snapshot && snapshot->map) {
    // Rendered outside the lock: readers of the cached version are not
    // kept waiting by a new one.
    json = std::make_shared<const std::string>(render_seat_map(*snapshot->map));
  }
  {
    std::lock_guard<std::mutex> guard{cache->mutex};
    readers.swap(cache->asked);
    if (json) {
      cache->version = snapshot->version;
      cache->json = json;
      cache->gzip.reset();
    }
    json = cache->json;
    gzip = cache->gzip;
  }
  if (snapshot && json) {
    bool wants_gzip = false;
    for (const auto& r : readers)
      wants_gzip = wants_gzip || r.gzip;
    if (wants_gzip && !gzip) {
      auto packed = gzipped(*json);
      if (!packed.empty()) {
        gzip = std::make_shared<const std::string>(std::move(packed));
        std::lock_guard<std::mutex> guard{cache->mutex};
        if (cache->json == json) cache->gzip = gzip;
      }
    }
  }
  for (auto& r : readers) {
    if (!snapshot)
      r.done(problem_from(snapshot.error()));
    else if (!json)
      r.done(problem(503, problem_code::unavailable, "no seat map yet"));
    else if (r.gzip && gzip)
      r.done(map_response(*gzip, true));
    else
      r.done(map_response(*json, false));
  }
  // Readers that came while this snapshot was on its way need a newer one.
  uint64_t known = 0;
  {
    std::lock_guard<std::mutex> guard{cache->mutex};
    if (cache->next.empty()) {
      cache->asking = false;
      return;
    }
    cache->asked.swap(cache->next);
    known = cache->version;
  }
  ask(pool, section, cache, known);
}

} // namespace rsv::http
