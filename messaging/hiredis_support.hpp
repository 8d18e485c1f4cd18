#pragma once

// What messaging/'s two Redis connections share about hiredis; private to
// messaging/ (no hiredis type leaves it).

#include "messaging/redis_client.hpp"

#include <hiredis/hiredis.h>
#include <string>
#include <vector>

namespace rsv {

/// A hiredis reply copied into a redis_reply.
redis_reply copy_reply(const redisReply* reply);

/// The commands a connection sends before anything else: AUTH and SELECT
/// as the endpoint asks for them (none when it does not).
std::vector<std::vector<std::string>>
session_commands(const redis_endpoint& endpoint);

} // namespace rsv
