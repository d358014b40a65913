// The OCI image configuration (also what Docker schema 2 carries): what a
// container started from the image gets by default, and how it was built.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace berth::storage {

struct history_entry {
  std::string created;
  std::string created_by;
  std::string author;
  std::string comment;
  bool empty_layer = false;
};

struct image_config {
  std::string created;
  std::string author;
  std::string architecture;
  std::string os;
  // The runtime defaults ("config" in the JSON).
  std::string user;
  std::vector<std::string> exposed_ports;
  std::vector<std::string> env;
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> volumes;
  std::string working_dir;
  std::map<std::string, std::string> labels;
  std::string stop_signal;
  std::vector<std::string> diff_ids; ///< rootfs.diff_ids, bottom first
  std::vector<history_entry> history;
};

/// Parses a configuration blob; false with `err` if it is not one.
bool parse_image_config(std::string_view json, image_config& out,
                        std::string& err);

/// The layers of a manifest (OCI or Docker schema 2).
struct manifest_layer {
  std::string digest;
  std::string media_type;
  int64_t size = 0;
};

struct image_manifest {
  std::string media_type;
  std::string config_digest;
  std::vector<manifest_layer> layers;
};

bool parse_image_manifest(std::string_view json, image_manifest& out,
                          std::string& err);

} // namespace berth::storage
