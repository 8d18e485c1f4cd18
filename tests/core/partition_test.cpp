#include "core/ids.hpp"
#include "core/partition.hpp"

#include <gtest/gtest.h>
#include <set>
#include <string>

namespace rsv {
namespace {

// The placement of every event of a running cluster, and the ids of every
// hold and booking ever made, follow from this hash: it must never change.
TEST(partition, fnv1a_64_gives_the_published_test_vectors) {
  EXPECT_EQ(fnv1a_64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(fnv1a_64("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(fnv1a_64("foobar"), 0x85944171f73967e8ULL);
}

TEST(partition, events_keep_their_partitions) {
  // Pinned by hand once; a change here moves live events between nodes.
  EXPECT_EQ(fnv1a_64("demo-concert"), 0xab6e180ad94ba7f5ULL);
  EXPECT_EQ(partition_of("demo-concert", 64), 53u);
  EXPECT_EQ(partition_of("demo-concert", 1), 0u);
  static_assert(partition_of("a", 64) == (0xaf63dc4c8601ec8cULL % 64));
}

TEST(partition, spreads_event_ids_over_every_partition) {
  std::set<uint32_t> seen;
  for (int i = 0; i < 2000; ++i)
    seen.insert(partition_of("event-" + std::to_string(i), 64));
  EXPECT_EQ(seen.size(), 64u);
}

TEST(partition, hold_ids_carry_the_event_hash) {
  auto hash = fnv1a_64("demo-concert");
  auto id = make_hold_id({0x2a, 0x1f, hash});
  EXPECT_EQ(id, "hld_2a_1f_ab6e180ad94ba7f5");
  auto ref = parse_hold_id(id);
  ASSERT_TRUE(ref);
  EXPECT_EQ(ref->event_hash, hash);
  EXPECT_EQ(partition_of_hash(ref->event_hash, 64),
            partition_of("demo-concert", 64));
  EXPECT_FALSE(parse_hold_id("hld_2a_1f_0ab6e180ad94ba7f5"));
  EXPECT_FALSE(parse_hold_id("hld_2a_1f_"));
  EXPECT_FALSE(parse_hold_id("hld_2a_1f_3EA5"));
  EXPECT_FALSE(parse_hold_id("hld_2a_1f_1_2"));
  auto booking = parse_booking_id(make_booking_id({1, 2, hash}));
  ASSERT_TRUE(booking);
  EXPECT_EQ(booking->event_hash, hash);
  // An id from before clusters has no hash and still names its record.
  auto legacy = parse_hold_id("hld_2a_1f");
  ASSERT_TRUE(legacy);
  EXPECT_EQ(legacy->event_hash, 0u);
}

} // namespace
} // namespace rsv
