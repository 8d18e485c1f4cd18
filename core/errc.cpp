#include "core/errc.hpp"

#include <caf/deep_to_string.hpp>
#include <caf/message.hpp>

namespace rsv {

errc code_of(const caf::error& err) {
  if (!err) return errc::none;
  if (err.category() != errc_category) return errc::unavailable;
  return static_cast<errc>(err.code());
}

std::string describe(const caf::error& err) {
  if (!err) return "none";
  if (err.category() != errc_category) return caf::to_string(err);
  std::string text = to_string(code_of(err));
  const auto& context = err.context();
  if (context.match_elements<std::string>()) {
    text += ": ";
    text += context.get_as<std::string>(0);
  }
  return text;
}

} // namespace rsv
