#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

/// Every bound of the server in one place, each with the reason for its value
/// ("put a limit on everything"). Values that the contract fixes say so.
namespace rsv::limits {

// The contract: 1..1000 sections, rows and seats per row, 1,000,000 seats per
// event. Seat counts of a section therefore fit in 20 bits, which lets a
// section publish free/held/booked as one atomic 64-bit word.
constexpr std::size_t sections_per_event_max = 1000;
constexpr std::size_t rows_per_section_max = 1000;
constexpr std::size_t seats_per_row_max = 1000;
constexpr std::size_t seats_per_event_max = 1'000'000;

// The contract: a hold names or asks for 1..50 seats.
constexpr std::size_t seats_per_hold_max = 50;

// The contract: hold_ttl_seconds is 30..7200, default 600.
constexpr int64_t hold_ttl_seconds_min = 30;
constexpr int64_t hold_ttl_seconds_max = 7200;
constexpr int64_t hold_ttl_seconds_default = 600;

// The contract: bodies up to 64 KiB, POST /v1/events up to 1 MiB, headers up
// to 8 KiB.
constexpr std::size_t body_bytes_max = 64 * 1024;
constexpr std::size_t event_body_bytes_max = 1024 * 1024;
constexpr std::size_t header_bytes_max = 8 * 1024;

// Idempotency keys: the contract says 1..255 visible ASCII characters.
constexpr std::size_t idempotency_key_bytes_max = 255;

// Money: a price above a million currency units per seat is a typo, and the
// bound keeps 1,000,000 seats * price far from int64 overflow.
constexpr int64_t price_cents_max = 100'000'000;

// Text fields shown to people; anything longer is abuse, not a name.
constexpr std::size_t name_chars_max = 200;
constexpr std::size_t email_bytes_max = 254;     // RFC 5321 path limit
constexpr std::size_t password_chars_min = 8;    // the contract
constexpr std::size_t password_chars_max = 1024; // hashing cost stays bounded

// Per-customer seat limit, when an event sets one.
constexpr int64_t max_seats_per_customer_max = 1'000'000;

// Holds that ended (released or expired) stay in their section's memory this
// long, then only the store has them (actors/section_state.hpp). Within the
// retention a repeated DELETE, a late booking attempt or a read is answered
// from memory; after it, from a read of the store, which is ordered after
// every write of the section (so it sees the ending). A minute covers a
// client's retries many times over (their deadline is seconds) while the
// memory of ended holds stays that of a minute of churn: measured about 210
// bytes per ended one-seat hold (docs/benchmarks.md, "Churn"), so at 10,000
// holds/s some 600,000 records and 130 MB, levelling off there.
// `--hold-retention-seconds` changes it.
constexpr int64_t ended_hold_retention_ms = 60'000;

// Per-section snapshots (the journal, docs/architecture.md "Per-section
// snapshots"): a section writes one after this many writes since its last,
// or as many as it has hold records if that is more, or this long after
// the first of them, whichever comes first. A snapshot costs about as many
// bytes as the entries of its records, so tying the count to them keeps
// snapshots at most about as large as the journal they replace: with a
// fixed count or a short interval, a section of 25,000 bookings wrote a
// megabyte every few thousand holds and the p99 of holds rose from 10 to
// 240 ms (docs/benchmarks.md). Recovery reads a section's journal rows
// after its snapshot, and a row is deleted only once snapshots cover it,
// so the interval bounds how long rows stay. `--snapshot-writes` and
// `--snapshot-seconds` change them.
constexpr uint32_t snapshot_writes_default = 4096;
constexpr int64_t snapshot_interval_ms_default = 60'000;

// Active holds one customer may have in one section at once. Live holds are
// bounded by seats anyway; this keeps one customer (a buggy reseller loop)
// from taking a section's seats as thousands of one-seat holds that each
// cost a record and a timer entry. 200 holds of up to 50 seats each is
// 10,000 seats, more than any real basket. The 201st gets 422
// limit_exceeded until one of them ends.
constexpr std::size_t active_holds_per_customer_max = 200;

// Mailbox bound of a section actor: beyond this many queued requests a
// section answers 503 `unavailable` at once instead of letting latency grow
// without bound during an on-sale stampede.
constexpr std::size_t section_mailbox_max = 20'000;

// A section whose write failed is stale: it answers 503 until it has
// reloaded itself from the store (actors/section_actor.hpp). A request to a
// stale section starts a load at once, unless one is under way or one failed
// less than the gap ago: a customer who retries is served as soon as the
// database is back, while a down database sees at most one load in flight
// per section and at most one per gap (the store queues loads beyond its
// write bound, so this is their bound). Idle stale sections retry on a
// timer, from the gap doubling up to the maximum. The maximum is 1 s, not
// more, because it is how long an idle section may go on answering 503
// after the database is back; each failed load costs a connection attempt
// on the section's writer, refused at once while the server is down: an idle
// stale section adds one a second, one that is asked at most ten.
constexpr int64_t section_reload_gap_ms = 100;
constexpr int64_t section_reload_backoff_max_ms = 1000;

// Supervision of section actors (actors/registry_actor.cpp). A section
// actor that dies is restarted after a backoff that starts at 10 ms and
// doubles up to 250 ms: its requests get 503 until it has reloaded, so a
// fast first restart keeps that window short, and the doubling keeps a
// section that dies at once after each start from spinning. The backoff
// starts again from 10 ms once an incarnation has lived for 1 s.
//
// A restart storm is bounded: the 21st restart within 10 s marks the section
// failed instead (it answers 503 until the node restarts, and
// rsv_sections_failed counts it). Why these numbers: a section that dies at
// once after every start reaches 20 restarts in about 5 s with this backoff,
// so a real crash loop is stopped within seconds; random kills at the chaos
// suite's rate (10 a second over 16 sections, about 6 per section in 10 s)
// stay far below it, so a fault that is not a loop never fails a section.
constexpr int64_t section_restart_backoff_first_ms = 10;
constexpr int64_t section_restart_backoff_max_ms = 250;
constexpr int64_t section_restart_stable_ms = 1000;
constexpr std::size_t section_restarts_max = 20;
constexpr int64_t section_restart_window_ms = 10'000;

// Supervision of the store's writer threads and the Kafka relay thread
// (core/supervised.hpp): one that throws is restarted after 100 ms, doubling
// up to 5 s. They are never given up on (without a writer its sections
// cannot write at all), but a thread that fails again at once costs one
// attempt per 5 s; /health reports the store down meanwhile.
constexpr int64_t thread_restart_backoff_first_ms = 100;
constexpr int64_t thread_restart_backoff_max_ms = 5000;
constexpr int64_t thread_restart_stable_ms = 10'000;

// The chaos facility (--chaos, docs/operations.md): random section kills at
// most every 10 ms and for at most an hour, injected commit latency at most
// 10 s (beyond the request deadline any latency looks the same), so that a
// typo cannot wedge a node for good.
constexpr int64_t chaos_kill_interval_ms_min = 10;
constexpr int64_t chaos_duration_ms_max = 3600 * 1000;
constexpr int64_t chaos_commit_delay_ms_max = 10'000;
// Crashes to come per thread kind (and the store's writer_crashes): enough
// for any test; each one costs a supervisor's backoff, up to 5 s.
constexpr int64_t chaos_crashes_max = 100;

// How long an HTTP request may wait for the actors before it is answered
// 503 (the default of --request-timeout-ms).
constexpr int64_t request_timeout_ms_default = 5000;

// Slow clients: a new connection must send its first byte within
// first_byte_timeout_ms (a connection that never speaks only holds a file
// descriptor), a request's header must arrive within header_read_timeout_ms,
// and an idle keep-alive connection is closed after
// keepalive_idle_timeout_ms (longer than the usual load balancer idle
// timeout of 60 s would be wrong: 60 s keeps an ALB's connections alive).
constexpr int64_t first_byte_timeout_ms = 10'000;
constexpr int64_t header_read_timeout_ms = 10'000;
constexpr int64_t body_read_timeout_ms = 10'000;
constexpr int64_t write_timeout_ms = 10'000;
constexpr int64_t keepalive_idle_timeout_ms = 60'000;

// Answers of peer nodes to forwarded requests (http/peer_client): a seat map
// of a big section is tens of MB of JSON, so a forwarded answer may be up to
// 64 MiB; anything beyond is a broken peer, and the forward fails instead of
// holding more of this node's memory. Headers up to 64 KiB: a node's own
// answers have a few hundred bytes of them, the bound only stops a runaway.
constexpr std::size_t peer_response_body_bytes_max = 64 * 1024 * 1024;
constexpr std::size_t peer_response_header_bytes_max = 64 * 1024;

// Open connections per node: a connection beyond the cap is closed as soon
// as it is accepted. The cap is the smaller of connections_max and what the
// process's file limit (RLIMIT_NOFILE, raised to its hard limit at start)
// leaves after a reserve for everything else (PostgreSQL, Redis, Kafka,
// peer nodes, the process itself): a quarter of the limit, at most
// connections_fd_reserve_max, plus connections_fd_reserve_min.
constexpr std::size_t connections_max = 50'000;
constexpr std::size_t connections_fd_reserve_min = 32;
constexpr std::size_t connections_fd_reserve_max = 1024;
// Connections per client address (IPv4 address, IPv6 /64 prefix): the
// default of --connections-per-address-max, so that one client cannot take
// every connection. 0 turns the cap off (behind a load balancer every
// connection comes from the balancer's few addresses).
constexpr std::size_t connections_per_address_default = 1024;
// After a failed accept (out of file descriptors, most often) the acceptor
// waits before it tries again, doubling from the minimum to the maximum
// while accepts keep failing; the warning is logged at most once per
// accept_error_log_interval_ms, with how many failures it stands for.
constexpr int64_t accept_retry_ms_min = 10;
constexpr int64_t accept_retry_ms_max = 1000;
constexpr int64_t accept_error_log_interval_ms = 10'000;

// The web pages (web/, served from `/`) are read into memory at start, so
// that serving them never touches the disk on an I/O thread. The built pages
// are about 40 KB in a handful of files; these bounds only stop a mistaken
// --web-root (a home directory, say) from filling the memory at start.
constexpr std::size_t web_files_max = 1000;
constexpr std::size_t web_bytes_max = 32 * 1024 * 1024;

// Session tokens live a day unless configured otherwise.
constexpr int64_t session_ttl_seconds_default = 24 * 3600;

// Password hashing (http/hashing_pool). An argon2id check costs tens of
// milliseconds of CPU and 19 MiB at the default cost, on purpose, and anyone
// can ask for one without an account: a wrong password costs as much as a
// right one. So:
// - the pool has one thread per core the process may run on unless
//   --password-hash-threads says otherwise (at most 64: 64 x 19 MiB is
//   already more than a gigabyte), at nice 5, below the I/O and actor
//   threads, so that a flood of logins slows logins, not bookings;
// - at most 32 jobs per thread wait (about 1.6 s of work at 50 ms a job,
//   well inside the request deadline); beyond that the answer is 503 with
//   Retry-After at once, and a job whose request deadline passed while it
//   waited is dropped unhashed;
// - logins and registrations are throttled per client address and per email
//   (http/auth_throttle, in-process, so with or without Redis): an address
//   gets 20 at once and one a second after that (60 a minute), so one
//   address fills at most 20 of the queue's places and a person behind a
//   shared address who mistypes is not turned away; an email gets 10 at once
//   and then one every 10 s (6 a minute), slower than any person types,
//   faster than an attacker can guess. Each table keeps at most 100,000 keys
//   (about 10 MB); a full table lets new keys through untracked rather than
//   refuse everyone, and the queue's bound still holds.
constexpr std::size_t password_hash_threads_default = 0; // one per core
constexpr std::size_t password_hash_threads_max = 64;
constexpr std::size_t password_hash_queue_per_thread = 32;
constexpr int password_hash_nice = 5;
constexpr int64_t auth_per_address_per_minute_default = 60;
constexpr int64_t auth_per_address_burst_default = 20;
constexpr int64_t auth_per_email_per_minute_default = 6;
constexpr int64_t auth_per_email_burst_default = 10;
constexpr std::size_t auth_throttle_keys_max = 100'000;
// The argon2id cost of password hashes unless --password-hash-ops and
// --password-hash-memory-kib say otherwise: OWASP's 2023 recommendation
// (t=2, m=19 MiB, p=1), the cost the pool's bounds above were measured with.
constexpr unsigned long long password_hash_ops_default = 2;
constexpr std::size_t password_hash_memory_kib_default = 19 * 1024;

// Secrets the operator configures. The admin token is a bearer password that
// anyone on the network may guess at: 32 characters of base64 or hex are 128
// bits or more, beyond any online guessing. The HMAC keys of session and
// admission tokens need as many bytes to be as strong as their SHA-256.
constexpr std::size_t admin_token_chars_min = 32;
constexpr std::size_t token_secret_bytes_min = 32;
// Previous token secrets still accepted while one rotates: one is all a
// rotation needs (docs/operations.md); a few allow a rotation to begin before
// the last one ended. Each costs an HMAC per check of a token without a key
// id (old sessions, admission tokens), so they stay few.
constexpr std::size_t token_secrets_accepted_max = 4;

// Idempotency records are kept at least this long (the contract: 24 hours).
constexpr int64_t idempotency_ttl_seconds = 24 * 3600;
// Keys one customer may have recorded at once (within those 24 hours): a
// request with a new key beyond it is answered 429 rate_limited, with
// Retry-After until the oldest record expires, and not run. The contract
// promises every recorded answer for 24 hours, so old records are never
// evicted to make room. 10,000 keys of at most idempotency_response_bytes_max
// each bound one customer's records; real clients use a few per booking.
constexpr std::size_t idempotency_keys_per_customer_max = 10'000;
// An answer larger than this is not recorded when it is a refusal (4xx), so
// a retry runs again; answers that carry a change are always recorded (holds
// of at most seats_per_hold_max seats stay far below it).
constexpr std::size_t idempotency_response_bytes_max = 16 * 1024;

// Seat maps (http/seat_maps.hpp) are rendered on their own threads, each
// version once; readers of a section wait for the snapshot after theirs,
// and beyond seat_map_readers_waiting_max such readers the next is answered
// 503 at once, so that seat map reads never pile up in front of holds.
constexpr std::size_t seat_map_render_threads = 1;
constexpr std::size_t seat_map_readers_waiting_max = 256;

// Problem answers echo input back (a seat id, a repeated id): the `detail`
// is cut at problem_detail_chars_max characters and every string among the
// extra members at problem_echo_chars_max, each marked with "...", so that
// an answer (and its idempotency record) stays small whatever was sent.
constexpr std::size_t problem_detail_chars_max = 300;
constexpr std::size_t problem_echo_chars_max = 64;

// Commands waiting for the node's Redis connection (messaging/redis_client):
// the client's one thread writes up to redis_batch_max of them as one
// pipeline, and Redis on loopback answers well over 100,000 simple commands a
// second, so a full queue is about 100 ms of work. Beyond that the caller is
// told at once that Redis is unavailable (the waiting room answers 503, rate
// limits fail open) rather than waiting behind a slow Redis.
constexpr std::size_t redis_queue_max = 10'000;
constexpr std::size_t redis_batch_max = 1'000;
// Connections (each with a thread that mostly waits on its socket): one
// blocking connection is bound by round trips, not by CPU, and rate-limit
// checks wait for their answer; four keep four pipelines in flight, enough
// to make Redis's CPU the limit on the benchmark machine
// (docs/benchmarks.md, "Redis").
constexpr std::size_t redis_connections = 4;
// Every Redis connection (messaging/redis_connection: the client's and each
// I/O thread's rate-limit connection) that is lost or cannot be made tries
// again after redis_backoff_first_ms, doubling after each failed attempt up
// to redis_backoff_max_ms: a restarted Redis is in use again within about a
// second, while one that stays down sees each connection of each node (4 plus
// one per I/O thread) try at most once a second.
constexpr int64_t redis_backoff_first_ms = 50;
constexpr int64_t redis_backoff_max_ms = 1'000;
// A connection attempt may take redis_connect_timeout_ms, and a command's
// reply redis_command_timeout_ms, before the connection counts as broken and
// what waits on it is answered unavailable: Redis on a local network answers
// in well under a millisecond, and a caller kept waiting longer is better
// told at once (rate limits fail open, the waiting room answers 503).
constexpr int redis_connect_timeout_ms = 500;
constexpr int redis_command_timeout_ms = 1'000;
// An idle client connection PINGs Redis this often, so that /health sees an
// outage within about a second even without traffic.
constexpr int64_t redis_idle_ping_ms = 1'000;
// Shared rate limits (messaging/rate_limiter): per I/O thread at most
// rate_limit_calls_max script calls are in flight; checks that come meanwhile
// wait and go out together in the next call, at most rate_limit_batch_max of
// them. One Lua call per request cost more than half the holds/s of the
// benchmark (docs/benchmarks.md, "Redis"); with one call in flight a check
// waits at most two round trips to Redis, and every call serves as many as
// came.
constexpr std::size_t rate_limit_calls_max = 1;
constexpr std::size_t rate_limit_batch_max = 500;
// Leases of request numbers (messaging/rate_limiter): a key that comes again
// in its window has numbers reserved ahead, at most --rate-limit-lease-max
// and at most 1/rate_limit_lease_share of what its window has left, so that
// numbers left unused when the window ends (the only cost: requests refused
// that another node's lease would have allowed) are a small share of the
// quota, and near the quota every request is counted in Redis again. Keys
// are remembered for their window, at most rate_limit_leases_max per I/O
// thread (about 100 bytes each).
constexpr std::size_t rate_limit_lease_share = 128;
constexpr std::size_t rate_limit_leases_max = 65'536;
// The read model (messaging/read_model) gathers committed changes for this
// long and publishes them as one script call per event, of at most
// read_model_batch_max changes: a call per change cost Redis more CPU than
// it has at 20,000 changes a second, and the staleness p99 grew past 500 ms
// (docs/benchmarks.md, "Redis"). At most read_model_pending_max changes wait;
// beyond that Redis is far behind, and a change's section is published
// whole later instead.
constexpr std::chrono::milliseconds read_model_gather{2};
constexpr std::size_t read_model_batch_max = 1'000;
constexpr std::size_t read_model_pending_max = 100'000;

// Waiting room: an admission token lasts this long after the admission
// unless --admission-ttl-seconds says otherwise: long enough to choose seats
// and hold them, short enough that a token passed around stops working.
constexpr int64_t admission_ttl_seconds_default = 600;
// The admission loop of each node wakes this often; the lease that lets one
// node admit for an event lasts lease_ms, renewed every tick, so a dead
// node's loop is taken over within that time.
constexpr int64_t admission_tick_ms = 100;
constexpr int64_t admission_lease_ms = 2'000;
// Waiting-room events one node drives at once: each costs one script call per
// tick.
constexpr std::size_t waiting_rooms_max = 1'000;

// The Kafka relay's producer waits this long to fill a batch unless
// --kafka-linger-ms says otherwise: 5 ms adds little to an event's delay
// while a busy outbox still goes out in batches of many rows.
constexpr int kafka_linger_ms_default = 5;

// Cluster (docs/cluster.md). A revoked partition's events are dropped before
// the group moves it; a registry that does not answer within this time must
// not hold the whole group's rebalance (the fence keeps the node's late
// writes out anyway).
constexpr int64_t cluster_revoke_wait_ms = 5'000;

// Cluster membership (messaging/cluster_membership): the poll thread waits
// at most membership_poll_ms in rd_kafka_consumer_poll, so a stop is seen
// that fast. A node's `revoked` handler may block this long while it stops
// serving the revoked partitions (it finishes their in-flight work); the
// consumer's max.poll.interval.ms is membership_max_poll_interval_ms, well
// above it, so a slow revocation never makes librdkafka leave the group.
// The broker is asked for the topic's metadata every
// membership_probe_interval_ms (waiting at most membership_probe_timeout_ms):
// that keeps topic_partitions() fresh and tells health() whether the brokers
// answer; an answer older than membership_health_stale_ms counts as none.
constexpr int membership_poll_ms = 100;
constexpr int membership_revoke_block_max_ms = 30'000;
constexpr int membership_max_poll_interval_ms = 120'000;
constexpr int membership_probe_interval_ms = 1'000;
constexpr int membership_probe_timeout_ms = 500;
constexpr int membership_health_stale_ms = 5'000;
// Defaults of the cluster's flags for real brokers: a node that stops
// heartbeating loses its partitions after the session timeout of 10 s
// (docs/cluster.md, "Failure cases"), and heartbeats come at most a third of
// it apart, as Kafka asks. A node reads every partition's owner and epoch
// from PostgreSQL once a second: forwarding follows moves that fast, and a
// node whose partition another node took stops serving it even before a
// write of its is fenced.
constexpr int cluster_session_timeout_ms_default = 10'000;
constexpr int cluster_heartbeat_ms_default = 3'000;
constexpr int cluster_owners_refresh_ms_default = 1'000;

// Clusters (persistence/cluster_store). The partition count is at most 4096,
// as the CHECK of cluster_settings says: partitions are the unit of
// ownership, and each costs a row, a consumer-group assignment and a fence
// entry per batch that writes under it; more than a few thousand buys no
// finer balance over any plausible number of nodes.
constexpr uint32_t cluster_partitions_max = 4096;
// Jobs waiting for the cluster store's one connection: its reads (customers,
// idempotency records, bookings and events owned by other nodes) take well
// under a millisecond each, so a full queue is about a second of work, and a
// request waiting behind it would miss its deadline
// (request_timeout_ms_default) anyway. Beyond it the caller is told at once
// that the store is unavailable.
constexpr std::size_t cluster_store_queue_max = 1'000;
// A takeover raises its partitions' epochs with lock_timeout set: a batch of
// the former owner that passed rsv_fence holds a FOR SHARE lock on the rows
// until it commits, normally a few milliseconds (one flush), at most the
// writer's statement_timeout (10 s). A frozen former owner can hold it open
// much longer, so the takeover gives up after a bounded number of waits of
// one second each (about 3 s in all, during which the store's one thread
// serves nothing else) and reports it; the caller decides whether to try
// again later.
constexpr int64_t cluster_bump_lock_timeout_ms = 1000;
constexpr int cluster_bump_attempts_max = 3;
// The cluster store's connection, when lost, is tried again at most this
// often (as pg_store's writers do): jobs meanwhile fail at once.
constexpr int64_t cluster_store_reconnect_delay_ms = 200;

// A journal projection step (persistence/journal_projection) holds the
// projection lock, which every node's drains wait for, across several round
// trips: a node frozen in the middle (SIGSTOP, a VM pause) would hold it,
// and stop every partition load and section reload of the cluster, for as
// long as it is frozen. PostgreSQL ends a step's transaction that waits this
// long for its client (idle_in_transaction_session_timeout), which rolls it
// back whole; a live client needs well under a second between its
// statements even for a step of 256 full rows.
constexpr int64_t journal_step_idle_timeout_ms = 3000;
// The projector's interval between rounds of steps while journal rows keep
// coming (--pg-journal-step-interval-ms): long enough that a step gathers
// many commits (docs/benchmarks.md, "The journal": without one it cost
// PostgreSQL up to half again as much per hold), short enough that the
// tables trail by a fraction of a second.
constexpr int64_t journal_step_interval_ms_default = 100;
// After snapshots commit, the projector deletes the projected rows they
// cover, looking at this many of the oldest at a time, one window a second
// while windows come back full (a window of 5,000 costs PostgreSQL a few
// milliseconds; looking at every row each time cost it 0.15 cores,
// docs/benchmarks.md). A clean stop sweeps at most this many windows.
constexpr std::size_t journal_sweep_rows = 5000;
constexpr int journal_sweeps_at_stop = 20;

} // namespace rsv::limits
