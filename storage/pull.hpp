// Pulling an image from a registry into the store: the blocking part, run
// on a worker thread. The caller commits the image it returns.
#pragma once

#include "storage/image_store.hpp"

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

/// Downloads the manifest, config and missing layers, verifies every
/// digest, unpacks the layers into the store and fills `out` for
/// `image_store::commit_image`. Errors name the reference and carry the
/// registry's own reason, one line per registry tried.
bool pull_image(image_store& store, const pull_request& req,
                const pull_events& ev, image_record& out, std::string& err);

} // namespace berth::storage
