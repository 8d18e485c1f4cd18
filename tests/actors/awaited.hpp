#pragma once

// One reply of an actor, awaited with a deadline: the actors' tests send a
// request with `fn()` as its reply function and read the outcome with
// `get()` (and with `replied()`, the thread it was delivered on).

#include "actors/protocol.hpp"
#include "core/errc.hpp"

#include <chrono>
#include <future>
#include <string>
#include <thread>

namespace rsv::actors {

/// One reply: its outcome and the thread it was delivered on.
template <class T>
struct replied {
  caf::expected<T> result =
      make_error(errc::unavailable, std::string{"no reply in 10 s"});
  std::thread::id thread;
};

template <class T>
struct awaited {
  std::promise<replied<T>> promise;
  std::future<replied<T>> future = promise.get_future();

  reply_fn<T> fn() {
    return reply_fn<T>{[this](caf::expected<T> x) {
      promise.set_value({std::move(x), std::this_thread::get_id()});
    }};
  }

  /// The reply; a missing one (none in 10 s) is an error.
  replied<T> wait() {
    if (future.wait_for(std::chrono::seconds(10)) != std::future_status::ready)
      return {};
    return future.get();
  }

  caf::expected<T> get() { return wait().result; }
};

} // namespace rsv::actors
