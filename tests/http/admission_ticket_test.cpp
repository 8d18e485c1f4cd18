#include "http/admission_ticket.hpp"

#include <gtest/gtest.h>
#include <sodium.h>
#include <string>

namespace rsv::http {
namespace {

class admission_ticket_test : public ::testing::Test {
protected:
  void SetUp() override { ASSERT_GE(sodium_init(), 0); }
};

TEST_F(admission_ticket_test, a_ticket_names_its_event_and_customer) {
  auto ticket = make_ticket("summer-festival", "cus_4f2a");
  EXPECT_EQ(ticket.rfind("qtk_", 0), 0u);
  // base64url without padding: safe in a path segment as it is.
  EXPECT_EQ(ticket.find_first_of("+/=", 4), std::string::npos);
  auto owner = read_ticket(ticket);
  ASSERT_TRUE(owner);
  EXPECT_EQ(owner->event_id, "summer-festival");
  EXPECT_EQ(owner->customer_id, "cus_4f2a");
}

TEST_F(admission_ticket_test, the_same_customer_gets_the_same_ticket) {
  EXPECT_EQ(make_ticket("e", "cus_1"), make_ticket("e", "cus_1"));
  EXPECT_NE(make_ticket("e", "cus_1"), make_ticket("e", "cus_2"));
  EXPECT_NE(make_ticket("e", "cus_1"), make_ticket("f", "cus_1"));
}

TEST_F(admission_ticket_test, anything_else_is_no_ticket) {
  EXPECT_FALSE(read_ticket(""));
  EXPECT_FALSE(read_ticket("qtk_"));
  EXPECT_FALSE(read_ticket("hld_1_2"));
  EXPECT_FALSE(read_ticket("qtk_!!!!"));       // not base64url
  EXPECT_FALSE(read_ticket("QTK_ZS9jdXNfMQ")); // the prefix is exact
  // Decodes, but names no event and customer: "e", "/cus_1", "e/".
  EXPECT_FALSE(read_ticket("qtk_ZQ"));
  EXPECT_FALSE(read_ticket("qtk_L2N1c18x"));
  EXPECT_FALSE(read_ticket("qtk_ZS8"));
  // Longer than any real ticket: refused before decoding.
  EXPECT_FALSE(read_ticket(make_ticket("e", std::string(300, 'c'))));
  EXPECT_TRUE(read_ticket("qtk_ZS9jdXNfMQ")); // "e/cus_1"
}

} // namespace
} // namespace rsv::http
