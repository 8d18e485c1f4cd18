#include "actors/runtime.hpp"

#include <caf/all.hpp>
#include <unordered_map>

namespace rsv {

namespace {

/// The accounts actor's state: every customer by normalised email.
struct accounts_state {
  std::unordered_map<std::string, customer_record> by_email;
  static inline const char* name = "accounts";
};

using accounts_self = caf::stateful_actor<accounts_state>;

/// A registration whose store write failed: the email is free again.
struct forget_email {
  std::string email;
};

} // namespace

} // namespace rsv

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::forget_email)

namespace rsv {

caf::actor spawn_accounts(caf::actor_system& system, const runtime_deps& deps) {
  auto store = deps.store;
  auto behavior = [store](accounts_self* self) -> caf::behavior {
    return {
        [=](register_customer_request& req) {
          auto email = req.record.email;
          auto [it, inserted] =
              self->state.by_email.try_emplace(email, req.record);
          if (!inserted) {
            req.reply(make_error(errc::email_taken));
            return;
          }
          // The email is taken from now on, so a concurrent registration gets
          // 409; the client hears success only once the store has the record.
          caf::actor me = caf::actor_cast<caf::actor>(self);
          store->create_customer(
              req.record,
              [me, reply = req.reply, record = req.record](caf::error err) {
                if (err) {
                  caf::anon_send(me, forget_email{record.email});
                  reply(std::move(err));
                } else {
                  reply(record);
                }
              });
        },
        [=](load_customers& msg) {
          for (auto& record : msg.customers) {
            auto email = record.email;
            self->state.by_email.emplace(std::move(email), std::move(record));
          }
        },
        [=](const forget_email& msg) { self->state.by_email.erase(msg.email); },
        [=](find_customer_request& req) {
          auto it = self->state.by_email.find(req.email);
          if (it == self->state.by_email.end())
            req.reply(make_error(errc::invalid_credentials));
          else
            req.reply(it->second);
        },
    };
  };
  return system.spawn(behavior);
}

} // namespace rsv
