#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace rsv {

/// Milliseconds since the Unix epoch (UTC). The one time type of the domain.
using millis = int64_t;

/// A source of wall-clock time. Section actors read time only through a clock
/// so that tests can move time forward instead of sleeping. Implementations
/// are thread-safe.
class clock_source {
public:
  virtual ~clock_source() = default;
  virtual millis now_ms() const = 0;
};

/// The real clock.
class system_clock_source final : public clock_source {
public:
  millis now_ms() const override {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
        .count();
  }
};

/// A clock that stands still until a test advances it.
class manual_clock final : public clock_source {
public:
  explicit manual_clock(millis start_ms) : now_ms_(start_ms) {}
  millis now_ms() const override { return now_ms_.load(); }
  void advance_ms(millis delta_ms) { now_ms_ += delta_ms; }

private:
  std::atomic<millis> now_ms_;
};

} // namespace rsv
