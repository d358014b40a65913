// registries.conf (containers-registries.conf(5)): search and insecure
// registries, version 2 TOML and the older version 1 tables.
#pragma once

#include <string>
#include <vector>

namespace berth::storage {

struct registry_config {
  std::string location;
  std::string prefix;
  bool insecure = false;
  bool blocked = false;
};

struct registries_conf {
  std::vector<std::string> search;
  std::vector<registry_config> registries;
  /// Locations marked insecure, in file order.
  std::vector<std::string> insecure() const;
};

/// Parses the text of a registries.conf; false with `err` naming the line
/// of the first error. Unknown keys are ignored.
bool parse_registries_conf(const std::string& text, registries_conf& out,
                           std::string& err);

/// Reads and parses `path`; a missing file is an empty configuration.
bool load_registries_conf(const std::string& path, registries_conf& out,
                          std::string& err);

} // namespace berth::storage
