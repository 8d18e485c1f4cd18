#pragma once

#include "actors/directory.hpp"
#include "core/errc.hpp"
#include "core/model.hpp"
#include "persistence/recovery.hpp"
#include "persistence/store.hpp"

#include <atomic>
#include <caf/atom.hpp>
#include <caf/expected.hpp>
#include <caf/replies_to.hpp>
#include <caf/type_id.hpp>
#include <caf/typed_actor.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

/// The protocol of every actor of the node, written down once.
///
/// Requests from the HTTP front end carry a `reply_fn`: the actor calls it
/// exactly once with the outcome, and the front end posts it back to the
/// connection's I/O thread. So an I/O thread never waits for an actor, and an
/// actor never waits for an I/O thread. The front end arms a deadline per
/// request and answers 503 when the reply does not come in time; a late reply
/// is dropped.
///
/// Messages carry callbacks and never leave the process, so they are
/// whitelisted as unsafe message types; a cluster transport adds inspectors.
namespace rsv::actors {

/// A callback that answers a request exactly once. If every copy is
/// destroyed unanswered (the message died in the mailbox of an actor that was
/// killed), it answers errc::unavailable, so a client gets 503 and never
/// waits for an answer that cannot come. Thread-safe.
template <class T>
class reply_fn {
public:
  using callback = std::function<void(caf::expected<T>)>;

  reply_fn() = default;
  explicit reply_fn(callback fn)
      : impl_(std::make_shared<impl>(std::move(fn))) {}

  void operator()(caf::expected<T> result) const {
    if (impl_) impl_->deliver(std::move(result));
  }

private:
  struct impl {
    explicit impl(callback f) : fn(std::move(f)) {}
    impl(const impl&) = delete;
    impl& operator=(const impl&) = delete;
    ~impl() {
      if (!done.exchange(true))
        fn(make_error(errc::unavailable,
                      std::string{"the request was dropped"}));
    }
    void deliver(caf::expected<T> result) {
      if (!done.exchange(true)) fn(std::move(result));
    }
    callback fn;
    std::atomic<bool> done{false};
  };
  std::shared_ptr<impl> impl_;
};

// -- section actor ----------------------------------------------------------

/// Lets a section actor write the answer to a request with an
/// Idempotency-Key in the same transaction as the change it answers: the
/// front end passes how it renders the answer, the actor renders it before
/// the commit and marks the capture written.
template <class View>
struct idempotency_capture {
  std::string key;
  std::string fingerprint;
  std::function<stored_response(const View&)> render;
  std::shared_ptr<std::atomic<bool>> written;
};

template <class View>
using idempotency_capture_ptr =
    std::shared_ptr<const idempotency_capture<View>>;

class quota_return;

/// Hold named seats (`seat_ids` non-empty) or the best `quantity` seats.
/// `quota_reserved` says a customer shard has counted these seats against the
/// customer's per-event limit and must be told when they are given back;
/// `unclaimed_quota` then gives them back if the request dies unhandled.
struct hold_request {
  std::string customer_id;
  std::vector<std::string> seat_ids;
  uint32_t quantity = 0;
  bool quota_reserved = false;
  reply_fn<hold_view> reply;
  idempotency_capture_ptr<hold_view> idempotency = nullptr; // may be null
  std::shared_ptr<quota_return> unclaimed_quota = nullptr;  // may be null
};

/// A request about one of a customer's holds or bookings (`slot` is the
/// hold's) that answers its view. The tag makes each request a type of its
/// own: CAF dispatches on the type.
template <class View, class Tag>
struct slot_request {
  using view = View;
  std::string customer_id;
  uint32_t slot = 0;
  reply_fn<View> reply;
};

using get_hold_request = slot_request<hold_view, struct get_hold_tag>;
/// Answers the hold after release; already expired or released holds are
/// answered too (the contract's 204), a booked one with hold_booked.
using release_hold_request = slot_request<hold_view, struct release_hold_tag>;

struct book_request {
  std::string customer_id;
  uint32_t slot = 0; // the hold's slot
  reply_fn<booking_view> reply;
  idempotency_capture_ptr<booking_view> idempotency = nullptr; // may be null
};

using get_booking_request = slot_request<booking_view, struct get_booking_tag>;
using cancel_booking_request =
    slot_request<booking_view, struct cancel_booking_tag>;

/// A section's seat map as of its `version` (section_state::version());
/// `map` is empty when the asker already has that version.
struct seat_map_snapshot {
  uint64_t version = 0;
  std::optional<seat_map_view> map;
};

struct seat_map_request {
  uint64_t known_version = 0; // 0: none
  reply_fn<seat_map_snapshot> reply;
};

/// A section's holds as the store has them, after a failed write of its own
/// (see store::load_section).
struct section_reloaded {
  caf::expected<std::vector<recorded_hold>> holds;
};

/// What follows one write of a section once the store has answered it (the
/// commit's effects outside the section, then the client's answer), with the
/// store's verdict. Runs exactly once: normally on the section actor
/// (write_acknowledged); if it is destroyed unrun, because its message died
/// with a section that was killed between the write and its
/// acknowledgement, its destructor runs it on that thread, so that a
/// committed write is still told to the change sink and answered 2xx, and a
/// failed one 503. What it runs therefore touches only thread-safe things,
/// never the section's state.
class write_followup {
public:
  using callback = std::function<void(const caf::error&)>;

  write_followup(caf::error verdict, callback fn)
      : verdict_(std::move(verdict)), fn_(std::move(fn)) {}
  write_followup(const write_followup&) = delete;
  write_followup& operator=(const write_followup&) = delete;
  ~write_followup() { run(); }

  /// Empty: the write committed.
  const caf::error& verdict() const { return verdict_; }

  void run() {
    if (auto fn = std::exchange(fn_, nullptr)) fn(verdict_);
  }

private:
  caf::error verdict_;
  callback fn_;
};

/// The store answered one of the section's writes: posted by the store's
/// thread, in the order the section's writes committed (one writer per
/// section, and a thread's messages to one actor arrive in the order sent).
struct write_acknowledged {
  std::shared_ptr<write_followup> followup;
};

/// The store answered the section's snapshot (store::put_snapshot).
struct snapshot_written {
  caf::error error;
};

// -- customer shard actor -----------------------------------------------------

/// Count `seats` against the customer's limit in the event, then forward
/// `hold` to `section` (or answer limit_exceeded).
struct reserve_quota_request {
  std::string event_id;
  int64_t seats_max = 0;
  std::shared_ptr<section_entry> section;
  hold_request hold;
};

/// Recovery: a customer's seats per event and bookings, as recorded.
struct load_customer {
  std::string customer_id;
  std::unordered_map<std::string, int64_t> seats_by_event;
  std::vector<booking_view> bookings; // in any order: the shard sorts them
  std::vector<idempotency_record> idempotency;
};

/// Seats that started (positive) or stopped (negative) counting against a
/// customer's limit outside reserve_quota_request.
struct adjust_quota {
  std::string customer_id;
  std::string event_id;
  int64_t seats = 0;
};

/// Seats a customer shard counted for a hold request, given back to it when
/// the request is destroyed before a section actor took it (it was in the
/// mailbox of a section actor that died): the customer's limit must not go
/// on counting seats they never got. The section disarms it when it takes
/// the request, and from then on gives back what it refuses itself.
class quota_return {
public:
  quota_return(caf::actor shard, adjust_quota give_back)
      : shard_(std::move(shard)), give_back_(std::move(give_back)) {}
  ~quota_return();
  quota_return(const quota_return&) = delete;
  quota_return& operator=(const quota_return&) = delete;
  void disarm() { armed_ = false; }

private:
  caf::actor shard_;
  adjust_quota give_back_;
  std::atomic<bool> armed_{true};
};

/// A booking was confirmed or cancelled: keeps `GET /v1/bookings` current.
struct booking_changed {
  std::string customer_id;
  booking_view booking;
};

struct list_bookings_request {
  std::string customer_id;
  reply_fn<std::vector<booking_view>> reply;
};

/// What to do with a request that carries an Idempotency-Key.
struct idempotency_decision {
  /// too_many_keys: the customer has idempotency_keys_per_customer_max
  /// records already; the request must not run.
  enum class kind {
    proceed,
    replay,
    key_reused,
    in_use,
    too_many_keys
  } what = kind::proceed;
  stored_response response;        // set for replay
  int64_t retry_after_seconds = 0; // set for too_many_keys
};

struct idempotency_begin {
  std::string customer_id;
  std::string key;
  std::string fingerprint; // hash of method, route and body
  reply_fn<idempotency_decision> reply;
};

/// The request finished: keep its answer (status < 500) or forget the key
/// (5xx, so that a retry runs again). A kept answer that no change carried
/// into the store (`written` false) is written by the shard.
struct idempotency_finish {
  std::string customer_id;
  std::string key;
  std::string fingerprint;
  stored_response response;
  bool keep = false;
  bool written = false;
};

// -- accounts actor -----------------------------------------------------------

struct register_customer_request {
  customer_record record;
  reply_fn<customer_record> reply;
};

struct find_customer_request {
  std::string email;
  reply_fn<customer_record> reply;
};

/// Recovery: customers as the store recorded them.
struct load_customers {
  std::vector<customer_record> customers;
};

// -- registry actor -----------------------------------------------------------

struct event_entry;

/// Recovery: every recorded event with its sections' holds; answers the
/// number of events restored. Sent once, before the node serves.
struct recover_events_request {
  std::vector<persistence::recovered_event> events;
  std::unordered_map<uint32_t, std::vector<recorded_hold>> holds;
  uint32_t next_section_no = 0;
  reply_fn<std::size_t> reply;
};

struct create_event_request {
  event_def def;
  reply_fn<std::shared_ptr<const event_entry>> reply;
};

/// Cluster: section numbers for an event being created came from the store.
struct section_nos_reserved {
  create_event_request request;
  caf::expected<std::vector<uint32_t>> section_nos;
};

/// Cluster: the events of partitions this node took over, as recorded, with
/// layouts fenced under the new epochs; the registry serves them (as at
/// recovery) and answers how many events it added.
struct load_events_request {
  std::vector<persistence::recovered_event> events;
  std::unordered_map<uint32_t, std::vector<recorded_hold>> holds;
  reply_fn<std::size_t> reply;
};

/// Cluster: stop serving the events of these partitions (of
/// `partition_count`): their section actors stop, the directory forgets
/// them, the shards forget the customers' seats in them. Answers how many
/// events were dropped.
struct drop_partitions_request {
  std::vector<uint32_t> partitions;
  uint32_t partition_count = 0;
  reply_fn<std::size_t> reply;
};

// -- customer shards, in a cluster
// ---------------------------------------------

/// The seats (held and booked) each customer has in an event that this node
/// now serves, for the per-customer limit; replaces what the shard had.
struct event_seats {
  std::string event_id;
  std::unordered_map<std::string, int64_t> seats_by_customer;
};

/// The node no longer serves these events: forget the seats counted in them.
struct forget_events {
  std::vector<std::string> event_ids;
};

/// A shard asked the store whether another node recorded an idempotency key
/// it did not know; the request waits for the answer.
struct idempotency_looked_up {
  idempotency_begin request;
  caf::expected<std::optional<idempotency_record>> found;
};

} // namespace rsv::actors

CAF_BEGIN_TYPE_ID_BLOCK(rsv, caf::first_custom_type_id)
CAF_END_TYPE_ID_BLOCK(rsv)

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::hold_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::get_hold_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::release_hold_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::book_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::get_booking_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::cancel_booking_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::seat_map_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::section_reloaded)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::write_acknowledged)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::snapshot_written)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::reserve_quota_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::adjust_quota)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::booking_changed)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::list_bookings_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::idempotency_begin)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::idempotency_finish)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::register_customer_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::find_customer_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::create_event_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::recover_events_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::load_customers)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::load_customer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::section_nos_reserved)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::load_events_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::drop_partitions_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::event_seats)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::forget_events)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::idempotency_looked_up)

namespace rsv::actors {

/// Timer message of a section actor: expire the holds that are due.
using expire_tick_atom = caf::atom_constant<caf::atom("exp_tick")>;
/// Timer message of a stale section: try loading it again.
using reload_atom = caf::atom_constant<caf::atom("reload")>;
/// Timer message of the registry: start the next incarnation of a section
/// (by number) whose actor died.
using restart_atom = caf::atom_constant<caf::atom("restart")>;
/// Timer message of the chaos killer: kill the next random section.
using chaos_kill_atom = caf::atom_constant<caf::atom("chaos_kill")>;
/// Timer message of a customer shard: purge idempotency records past 24 h.
using purge_tick_atom = caf::atom_constant<caf::atom("purge")>;

/// Every message a section actor handles (actors/section_actor.hpp), checked
/// by the compiler against its handlers. The front end sends the requests
/// through section_entry::actor(), an untyped handle; the last five the
/// section sends itself, from its timers and from the store's answers (its
/// writes' acknowledgements, its reloads, its snapshots). Every request is
/// answered through its `reply_fn`, so none has a reply type.
using section_actor = caf::typed_actor<
    caf::reacts_to<hold_request>, caf::reacts_to<get_hold_request>,
    caf::reacts_to<release_hold_request>, caf::reacts_to<book_request>,
    caf::reacts_to<get_booking_request>, caf::reacts_to<cancel_booking_request>,
    caf::reacts_to<seat_map_request>, caf::reacts_to<expire_tick_atom>,
    caf::reacts_to<write_acknowledged>, caf::reacts_to<reload_atom>,
    caf::reacts_to<section_reloaded>, caf::reacts_to<snapshot_written>>;

} // namespace rsv::actors
