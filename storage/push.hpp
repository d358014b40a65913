// Pushing an image from the store to a registry: the blocking part, run on
// a worker thread like a pull, reporting progress the same way.
#pragma once

#include "storage/image_store.hpp"
#include "storage/pull.hpp" // pull_events

#include <optional>
#include <string>
#include <vector>

namespace berth::storage {

struct push_request {
  /// The image as the user names it; resolved with `image_store::resolve`.
  std::string image;
  /// The reference to push to; empty pushes to the image's own name.
  std::string destination;
  std::optional<bool> tls_verify;
  std::string creds; ///< "user:pass" or empty
  std::string cert_dir;
  /// "oci", "v2s2" (or "docker"), or empty to keep the stored manifest's
  /// format. "v2s1" is refused.
  std::string format;
  std::vector<std::string> insecure_registries;
};

/// Why a push failed, for the caller to map onto io.podman errors.
enum class push_failure {
  none,
  image_not_found, ///< no local image has that name (ImageNotFound)
  invalid_request, ///< a bad format or destination
  failed,          ///< the registry or the store failed
};

/// Uploads the layers the registry lacks (asking with HEAD first), the
/// config, then the manifest under the destination's tag, converted
/// between OCI and Docker schema 2 when `req.format` asks for the other
/// one. Layers stored uncompressed are sent gzip-compressed, as podman
/// sends them to a registry; zstd layers stay zstd in an OCI manifest and
/// are recompressed with gzip for Docker schema 2. The manifest then names
/// the new blobs; the image's ID (its config) stays the same. Progress lines go
/// to `ev.log` (from several threads, one line at a time). Errors name the
/// destination and carry the registry's own reason ("pushing
/// 127.0.0.1:5000/x:y: ...: unauthorized: ...").
bool push_image(image_store& store, const push_request& req,
                const pull_events& ev, std::string& err, push_failure& failure);

/// As above, for callers that need not tell failures apart.
bool push_image(image_store& store, const push_request& req,
                const pull_events& ev, std::string& err);

} // namespace berth::storage
