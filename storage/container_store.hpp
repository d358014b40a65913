// The container store: one row per container in containers.db, and the
// container's files under containers/<id>/. The catalog actor creates and
// removes rows; each container actor updates its own row. Every change is
// one transaction, committed before anyone is told of it.
//
// Containers live in their own database file, apart from the image store's
// state.db: the two have different owners (the catalog and the images
// actor), each with its own connection and schema, and neither ever needs a
// transaction that spans both.
#pragma once

#include "storage/sqlite.hpp"

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace berth::storage {

/// libpod's container states, with libpod's numbers (ContainerStateData
/// reports the number).
enum class container_state : int {
  unknown = 0,
  configured = 1, ///< stored, never handed to the runtime
  created = 2,    ///< the runtime created it; its process waits to start
  running = 3,
  stopped = 4, ///< its process ended; not cleaned up yet
  paused = 5,
  exited = 6, ///< ended and cleaned up
  removing = 7,
};

/// "configured", "running", ... as ListContainers reports them.
const char* state_name(container_state s);

struct container_record {
  std::string id; ///< 64 hex
  std::string name;
  std::string image;    ///< as the creator named it
  std::string image_id; ///< hex
  std::string create_json;          ///< the Create struct, as received
  std::vector<std::string> command; ///< the process args, resolved
  std::vector<std::string> layers;  ///< the image's chain IDs, bottom first
  int64_t created = 0;              ///< unix ns
  container_state state = container_state::configured;
  int64_t pid = 0;
  int64_t conmon_pid = 0;
  int64_t exit_code = 0;
  int64_t started = 0;  ///< unix ns, 0 = never
  int64_t finished = 0; ///< unix ns, 0 = never
  std::string boot_id;  ///< the boot during which the runtime knew it
  bool mounted = false; ///< MountContainer holds its root file system
};

class container_store {
public:
  /// Opens ROOT/containers.db, creating it, and removes container
  /// directories that no row owns (the remains of interrupted creates).
  bool open(const std::string& root, std::string& err);

  const std::string& root() const { return root_; }
  /// ROOT/containers/<id>
  std::string dir(const std::string& id) const;

  std::vector<container_record> list();
  bool insert(const container_record& c, std::string& err);
  /// Writes the mutable part of the row: state, pids, exit code, times,
  /// boot id and mount flag.
  bool update(const container_record& c, std::string& err);
  /// Deletes the row, remembering its exit code for later waiters.
  bool remove(const container_record& c, std::string& err);
  /// The exit code of a removed container, while it is remembered.
  std::optional<int64_t> removed_exit_code(const std::string& id);

  std::string meta(const std::string& key);
  bool set_meta(const std::string& key, const std::string& value,
                std::string& err);

private:
  std::mutex mu_;
  std::string root_;
  database db_;
};

} // namespace berth::storage
