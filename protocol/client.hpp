// A small blocking varlink client, for the berth command line and tests.
#pragma once

#include "protocol/address.hpp"
#include "protocol/frame.hpp"
#include "protocol/rpc.hpp"

#include <string>
#include <string_view>

namespace berth::varlink {

/// One reply, split into its parts.
struct reply {
  std::string error;      ///< error name, empty on success
  std::string parameters; ///< JSON object text
  bool continues = false;
};

class client {
public:
  client() = default;
  ~client();
  client(client&& other) noexcept;
  client& operator=(client&& other) noexcept;

  /// Connects; false with `err` set on failure.
  bool connect(const address& a, std::string& err);

  /// Writes one call. `params_json` is a JSON object text or empty.
  bool send(std::string_view method, std::string_view params_json,
            rpc::call_flags flags = {});

  /// Reads the next reply; false on EOF, I/O error or a malformed reply
  /// (then `err` says which).
  bool receive(reply& out, std::string& err);

  /// Writes raw bytes (after an `upgrade` reply).
  bool write_raw(std::string_view bytes);
  /// Reads exactly `n` raw bytes, starting with any already buffered.
  bool read_raw(size_t n, std::string& out);

  int fd() const { return fd_; }

private:
  int fd_ = -1;
  frame_reader in_;
};

/// Splits one reply message. False if it is not a valid reply object.
bool parse_reply(std::string_view msg, reply& out);

} // namespace berth::varlink
