// The container side of the actor tree: the catalog (names, IDs, the
// container database, routing) and one actor per container (its state
// machine, its conmon, its waiters).
#pragma once

#include <caf/atom.hpp>
#include <caf/fwd.hpp>

#include <string>

namespace berth::actors {

/// Asks the catalog how many containers exist (replies int64_t).
using ccount_atom = caf::atom_constant<caf::atom("ccount")>;
/// Asks the catalog to remove every container made from an image (by ID),
/// killing running ones first (replies std::string: empty when all are
/// gone, else why not).
using remove_users_atom = caf::atom_constant<caf::atom("rmusers")>;

struct container_options {
  std::string root;
  std::string runroot;
  /// "" picks crun where it can run, else runc; or a name or a path.
  std::string runtime;
};

/// The catalog: recovers every container from the database at start (and
/// after a reboot marks the ones that ran as exited), then serves the
/// io.podman container methods.
caf::behavior catalog_actor(caf::event_based_actor* self,
                            container_options opts, caf::actor images);

} // namespace berth::actors
