// Image references as the registry world writes them: registry, repository,
// tag and digest, normalised the way podman and containers/image do.
#pragma once

#include "storage/digest.hpp" // valid_digest

#include <string>
#include <string_view>

namespace berth::storage {

/// The registry that short names fall back to, and its usual aliases.
inline constexpr std::string_view default_registry = "docker.io";

/// A parsed `[registry/]repository[:tag][@digest]`.
///
/// A first component counts as a registry when it contains `.` or `:` or
/// is `localhost`. Without one the name is short: `registry` is then
/// docker.io (and `repository` carries docker.io's `library/` prefix for
/// single-component names), and `has_registry_part` is false so a caller
/// can try its search registries through `qualified()` instead.
struct image_reference {
  /// "docker.io", "quay.io", "127.0.0.1:5000", "localhost", "[::1]:5000".
  std::string registry;
  /// "library/busybox"; lowercase components separated by `/`.
  std::string repository;
  /// "latest" when the text named neither a tag nor a digest.
  std::string tag;
  /// "sha256:<64 hex>" or empty.
  std::string digest;
  /// False for short names such as "busybox" or "user/app".
  bool has_registry_part = false;
  /// The repository as written, before docker.io's `library/` prefix;
  /// what a search registry is asked for.
  std::string path;

  /// Parses `text`, with or without a `docker://` transport prefix. On
  /// failure returns false and `err` names the reference and the rule it
  /// breaks ("parsing reference "X": invalid reference format: ...").
  static bool parse(std::string_view text, image_reference& out,
                    std::string& err);

  /// "docker.io/library/busybox:latest", "quay.io/x/y@sha256:...", or
  /// "reg/x:tag@sha256:..." when both were given.
  std::string str() const;

  /// "registry/repository".
  std::string name() const;

  /// The digest when there is one, else the tag: what a registry is asked
  /// for when fetching the manifest.
  const std::string& tag_or_digest() const {
    return digest.empty() ? tag : digest;
  }

  /// This reference resolved against `search_registry`: a copy of itself
  /// when it names a registry already, otherwise the short name placed
  /// under that registry (with `library/` only on docker.io).
  image_reference qualified(std::string_view search_registry) const;

  friend bool operator==(const image_reference&,
                         const image_reference&) = default;
};

/// Whether `text` is a valid tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
bool valid_tag(std::string_view text);

/// Whether `text` is a valid repository: lowercase alphanumeric components
/// joined by `.`, `_`, `__` or runs of `-`, separated by `/`.
bool valid_repository(std::string_view text);

} // namespace berth::storage
