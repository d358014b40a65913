// The engine: the actor system and the actors behind each interface. This
// header keeps CAF out of its users.
#pragma once

#include <memory>
#include <string>

namespace berth::varlink {
class server;
} // namespace berth::varlink

namespace berth::actors {

struct engine_options {
  std::string root = "/var/lib/berth";
  std::string runroot = "/run/berth";
  std::string registries_conf = "/etc/containers/registries.conf";
  /// The OCI runtime: "" picks crun where it works, else runc.
  std::string runtime;
  /// Also serve org.varlink.certification.
  bool certification = false;
  /// Scheduler threads; 0 means one per core.
  size_t threads = 0;
};

class engine {
public:
  explicit engine(engine_options opts);
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  /// Plugs the engine's interfaces into `srv`.
  void serve(varlink::server& srv);

  /// Stops every actor and waits for them.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace berth::actors
