// GET /v1/admin/version (an extension outside the contract): the build's
// version and commit, for the operator only.

#include "harness.hpp"

namespace rsv::e2e {
namespace {

class admin_version_test : public server_test {};

TEST_F(admin_version_test, TheOperatorSeesTheBuildsVersionAndCommit) {
  auto response = http().get("/v1/admin/version", admin());
  ASSERT_EQ(response.status, 200u) << response;
  EXPECT_EQ(response.header("Content-Type").value_or(""), "application/json");
  EXPECT_EQ(response.body_json(), json({{"version", RSV_EXPECTED_VERSION},
                                        {"commit", RSV_EXPECTED_COMMIT}}));
}

TEST_F(admin_version_test, ItNeedsTheAdminToken) {
  auto someone = new_customer(http(), "version");
  for (const std::string& token :
       {std::string{}, admin() + "x", someone.token}) {
    auto response = http().get("/v1/admin/version", token);
    EXPECT_TRUE(is_problem(response, 401, "unauthorized")) << response;
  }
  auto wrong_method = http().del("/v1/admin/version", admin());
  EXPECT_TRUE(is_problem(wrong_method, 405, "method_not_allowed"))
      << wrong_method;
  EXPECT_EQ(wrong_method.header("Allow").value_or(""), "GET");
}

} // namespace
} // namespace rsv::e2e
