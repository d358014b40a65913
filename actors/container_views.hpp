// How a container looks from outside: the Container struct of ListContainers
// and GetContainer, and the JSON documents of InspectContainer,
// ContainerInspectData, ContainerConfig and ContainerStateData. Plain
// functions of the container's record, plan and Create; no actors here.
#pragma once

#include "protocol/gen/io_podman.hpp"
#include "runtime/spec.hpp"
#include "storage/container_store.hpp"

#include <cstdint>
#include <string>

namespace berth::actors {

/// What is known of one container, as its actor holds it.
struct container_facts {
  storage::container_record rec;
  runtime::container_plan plan;
  podman::Create create;
  std::string dir;      ///< ROOT/containers/<id>
  std::string userdata; ///< dir/userdata: the bundle, logs, conmon files
  std::string merged;   ///< dir/merged: the mounted root file system
  std::string log_path;
  std::string hostname; ///< the plan's, or the ID's first 12 digits
};

podman::Container summarize(const container_facts& f);

/// InspectContainer's document (with Config and HostConfig) or
/// ContainerInspectData's (`with_config` false).
std::string inspect_json(const container_facts& f, bool with_config);
/// ContainerConfig: libpod's configuration keys, with the OCI spec.
std::string config_json(const container_facts& f, const std::string& spec);
/// ContainerStateData: libpod's state, `state` as a number.
std::string state_json(const container_facts& f);

/// Go's Duration text: "1h2m3.5s", "150ms", "0s".
std::string go_duration(int64_t ns);
/// RFC 3339 in local time; with `nanos`, nine fractional digits.
std::string rfc3339(int64_t unix_ns, bool nanos = false);

} // namespace berth::actors
