#include "actors/runtime.hpp"
#include "persistence/cluster_store.hpp"

#include <caf/all.hpp>
#include <unordered_map>

namespace rsv::actors {

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

/// In a cluster: an email this node did not know, as PostgreSQL has it
/// (another node registered it).
struct customer_looked_up {
  find_customer_request request;
  caf::expected<std::optional<customer_record>> found;
};

} // namespace

} // namespace rsv::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::forget_email)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rsv::actors::customer_looked_up)

namespace rsv::actors {

caf::actor spawn_accounts(caf::actor_system& system, const runtime_deps& deps) {
  auto store = deps.store;
  auto cluster_db = deps.cluster_db;
  auto behavior = [store, cluster_db](accounts_self* self) -> caf::behavior {
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
          if (it != self->state.by_email.end()) {
            req.reply(it->second);
          } else if (cluster_db) {
            // Registered on another node, perhaps.
            auto me = caf::actor_cast<caf::actor>(self);
            auto email = req.email;
            cluster_db->find_customer(
                std::move(email),
                [me, req = std::move(req)](
                    caf::expected<std::optional<customer_record>>
                        found) mutable {
                  caf::anon_send(
                      me, customer_looked_up{std::move(req), std::move(found)});
                });
          } else {
            req.reply(make_error(errc::invalid_credentials));
          }
        },
        [=](customer_looked_up& msg) {
          if (!msg.found) {
            msg.request.reply(std::move(msg.found.error()));
          } else if (!*msg.found) {
            msg.request.reply(make_error(errc::invalid_credentials));
          } else {
            auto record = **msg.found;
            self->state.by_email.emplace(record.email, record);
            msg.request.reply(std::move(record));
          }
        },
    };
  };
  return system.spawn(behavior);
}

} // namespace rsv::actors
