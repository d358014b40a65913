// Searching registries for images by name, as podman's SearchImages does
// against v2 registries: through the catalog, since they have no index.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace berth::storage {

struct search_request {
  /// A name or part of one; "host[:port]/term" searches only that
  /// registry.
  std::string query;
  /// Results per registry; absent or 0 means 25, podman's default.
  std::optional<int64_t> limit;
  std::optional<bool> tls_verify;
  /// Filters: v2 catalogs know nothing of official or automated builds nor
  /// of stars, so asking for any of them leaves nothing.
  std::optional<bool> is_official, is_automated;
  int64_t star_count = 0;
  std::vector<std::string> search_registries, insecure_registries;
};

struct search_result {
  std::string description;
  std::string registry; ///< the registry host ("127.0.0.1:5000")
  std::string name;     ///< "registry/repository"
  bool is_official = false, is_automated = false;
  int64_t star_count = 0;
};

/// The results per registry in registry order, repositories in catalog
/// order. Registries are asked in parallel; one that fails is skipped, and
/// only when every one failed is the result false, with one line of `err`
/// per registry. No registry to ask is no result, not an error.
bool search_images(const search_request& req, std::vector<search_result>& out,
                   std::string& err);

/// Splits a query into the registry it names ("" when none) and the term.
void split_search_query(const std::string& query, std::string& registry,
                        std::string& term);

} // namespace berth::storage
