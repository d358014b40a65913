// io.podman, the front end: each method decodes nothing (the server did),
// asks the part of the engine that knows, and translates the answer.
#pragma once

#include "protocol/gen/io_podman.hpp"

#include <string>

namespace berth::actors {

struct api_options {
  std::string root;
  std::string runroot;
  std::string registries_conf;
};

class podman_api : public podman::service {
public:
  explicit podman_api(api_options opts);

  void GetVersion(const rpc::call_ptr& c,
                  const podman::GetVersion_in& in) override;
  /// GetInfo needs the stores' counts: the gateway gathers them and calls
  /// `info`.
  void info(const rpc::call_ptr& c, int64_t containers, int64_t images);
  void SendFile(const rpc::call_ptr& c,
                const podman::SendFile_in& in) override;
  void ReceiveFile(const rpc::call_ptr& c,
                   const podman::ReceiveFile_in& in) override;
  void internal_error(const rpc::call_ptr& c,
                      const std::string& what) override;

private:
  api_options opts_;
};

/// The reply of GetVersion for this build.
podman::GetVersion_out version_info();

} // namespace berth::actors
