// The images actor: owns the image store, serves the io.podman image
// methods, and runs the blocking work (pulls, one per reference in flight;
// pushes, loads, saves, imports, exports, searches) on worker actors.
#pragma once

#include <caf/atom.hpp>
#include <caf/fwd.hpp>

#include <string>

namespace berth::actors {

/// Asks the images actor how many images it stores (replies int64_t).
using count_atom = caf::atom_constant<caf::atom("count")>;

struct image_options {
  std::string root;
  std::string registries_conf;
};

caf::behavior images_actor(caf::event_based_actor* self, image_options opts);

} // namespace berth::actors
