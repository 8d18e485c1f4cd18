#pragma once

// What messaging/'s Redis connections share about hiredis; private to
// messaging/ (no hiredis type leaves it).

#include "messaging/redis_connection.hpp"

#include <hiredis/hiredis.h>

namespace rsv::messaging {

/// A hiredis reply copied into a redis_reply.
redis_reply copy_reply(const redisReply* reply);

} // namespace rsv::messaging
