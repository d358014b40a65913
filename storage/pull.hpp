// Bringing an image into the store: one import path fed by a blob source (a
// registry, or a directory such as an OCI layout or an unpacked archive),
// and the registry pull built on it. The blocking part, run on a worker
// thread; the caller commits the image it returns.
#pragma once

#include "storage/image_store.hpp"
#include "storage/registry.hpp" // manifest, transfer_progress

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace berth::storage {

struct pull_request {
  std::string reference;        ///< as the user wrote it
  std::optional<bool> tls_verify;
  std::string creds;            ///< "user:pass" or empty
  std::string cert_dir;
  std::vector<std::string> search_registries;
  std::vector<std::string> insecure_registries;
};

struct pull_events {
  /// A progress line (ending in a newline).
  std::function<void(std::string)> log;
  /// Checked between steps; true stops the pull.
  std::function<bool()> cancelled;
};

/// Where the blobs of an image come from. Several threads may fetch from
/// one source at once.
class blob_source {
public:
  virtual ~blob_source() = default;

  /// Writes the blob `digest` into `fd` (an empty file open for writing),
  /// verified against its digest; false with `err` naming the blob.
  /// `progress` is called as bytes move; returning false cancels. A source
  /// may show `tap` the bytes as it writes them (so that a layer can be
  /// unpacked while it arrives); one that does not is still correct, only
  /// slower.
  virtual bool fetch_blob(const std::string& digest, int fd,
                          const transfer_progress& progress, std::string& err,
                          const blob_tap* tap) = 0;
};

/// The import path every image takes into the store: checks the manifest
/// `m` (OCI or Docker schema 2) and every digest it names, fetches the
/// config, then the layers the store lacks, a few at once, each verified,
/// unpacked into the store's temporary directory and checked against its
/// diff ID before it moves into place, and stores the manifest. Layers
/// already stored are shared, not unpacked again. Nothing is visible until
/// the caller commits `out` (its `names` are left empty); a crash leaves
/// only what `image_store::open` cleans up.
bool store_image(image_store& store, blob_source& source, const manifest& m,
                 const pull_events& ev, image_record& out, std::string& err);

/// Pulls from a registry: resolves the reference (short names through the
/// search registries, in order; a short name with none configured fails
/// as libpod's does, naming no registry and asking none), fetches the manifest
/// and runs `store_image` with the registry as the source; `out.names` holds
/// the reference pulled. Errors name the reference and carry the registry's own
/// reason, one line per registry tried.
bool pull_image(image_store& store, const pull_request& req,
                const pull_events& ev, image_record& out, std::string& err);

} // namespace berth::storage
