// The images actor: owns the image store, serves the io.podman image
// methods, and runs the blocking work (pulls, one per reference in flight;
// pushes, loads, saves, imports, exports, searches) on worker actors.
#pragma once

#include "storage/image_config.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace berth::actors {

/// Asks the images actor how many images it stores (replies int64_t);
/// once it answers, its store is open. Readers that must not wait behind
/// the actor's work read `image_options::image_count` instead.
using count_atom = caf::atom_constant<caf::atom("count")>;

/// Asks the images actor for the image a container is made from, pulling
/// it when missing (replies container_image_ptr).
using image_for_atom = caf::atom_constant<caf::atom("imagefor")>;

/// Tells the images actor where the catalog is (RemoveImage with force
/// asks it to remove the containers of an image).
using catalog_atom = caf::atom_constant<caf::atom("catalog")>;

/// The catalog tells the images actor which containers use which image,
/// so that no image a container needs is pruned or removed as unused and
/// ListImages counts containers without asking. Each message carries an
/// image ID and a container ID:
/// - used: a container recovered at start;
/// - handed: a create that image_for answered with that image has ended,
///   with that container, or with "" when it failed (image_for's answer
///   holds the image until then);
/// - unused: the container is gone.
using used_atom = caf::atom_constant<caf::atom("imgused")>;
using handed_atom = caf::atom_constant<caf::atom("imghanded")>;
using unused_atom = caf::atom_constant<caf::atom("imgunused")>;

struct container_image {
  bool ok = false;
  std::string error; ///< why not, when !ok
  std::string id;
  std::vector<std::string> layer_dirs; ///< unpacked layers, bottom first
  std::vector<std::string> chain_ids;  ///< the same layers by chain ID
  storage::image_config config;
};
using container_image_ptr = std::shared_ptr<const container_image>;

struct image_options {
  std::string root;
  std::string registries_conf;
  /// Set to the number of stored images when the store opens and after
  /// every change, before the change's caller hears of it (optional).
  std::shared_ptr<std::atomic<int64_t>> image_count;
};

caf::behavior images_actor(caf::event_based_actor* self, image_options opts);

} // namespace berth::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(berth::actors::container_image_ptr)
