// Remote attach: relays a container's terminal between conmon's attach
// socket (SOCK_SEQPACKET, first byte of each packet names the stream) and a
// client connection that speaks berth's attach framing (see the Attach
// method in io.podman.varlink). One thread owns an io_uring ring that does
// every receive from and send to the attach sockets; the client side is the
// varlink server's raw channel.
#pragma once

#include "protocol/rpc.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace berth::runtime {

/// Frame types of the attach framing.
enum class attach_frame : uint8_t {
  stdin_data = 0, ///< client -> server
  resize = 1,     ///< client -> server: "ROWS COLS"
  stdin_end = 2,  ///< client -> server
  stdout_data = 1,
  stderr_data = 2,
  end = 3, ///< server -> client: exit code in ASCII, or "detached"
};

/// One frame: type, 4-byte big-endian length, payload.
std::string encode_frame(uint8_t type, std::string_view payload);

/// "ctrl-p,ctrl-q" -> {0x10, 0x11}; "" gives that default. False with
/// `err` for anything else.
bool parse_detach_keys(std::string_view text, std::string& out,
                       std::string& err);

struct attach_request {
  std::string socket_path; ///< conmon's attach socket
  std::string ctl_path;    ///< conmon's ctl FIFO ("1 ROWS COLS" resizes)
  std::string detach_keys; ///< raw bytes, from parse_detach_keys
  bool tty = false;
  bool stdin_open = false; ///< the container has stdin (interactive)
};

class attach_hub {
public:
  using id = uint64_t;

  attach_hub();
  ~attach_hub();
  attach_hub(const attach_hub&) = delete;
  attach_hub& operator=(const attach_hub&) = delete;

  bool start(std::string& err);
  void stop();

  /// Connects to the container's attach socket now (so no output is lost
  /// when the caller starts the container next); false with `err` if it
  /// cannot. `on_output_end` runs (on the hub's thread) when conmon closes
  /// the socket, that is, when the container's process ended: the caller
  /// then gives the exit code to `end`.
  bool open(const attach_request& r, std::function<void()> on_output_end,
            id& out, std::string& err);
  /// The client side: the server's raw channel once the reply is out.
  void connect(id s, std::shared_ptr<rpc::raw_channel> channel);
  /// The peer to hand to reply_upgraded_duplex: parses the client's
  /// frames.
  std::shared_ptr<rpc::raw_peer> peer(id s);
  /// Sends the end frame with `code`, after the rest of the output, and
  /// closes the connection.
  void end(id s, int64_t code);
  /// Drops a session that never got connected (the reply failed).
  void abandon(id s);

  size_t sessions() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace berth::runtime
