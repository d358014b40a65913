// What the berth command's verbs share: a connection to berthd, error
// output and exit codes.
#pragma once

#include "protocol/client.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace berth::cli {

enum exit_code { ok = 0, failure = 1, remote_error = 2 };

/// Prints `msg` with a hint and exits with status 1.
[[noreturn]] void usage_error(const std::string& msg);

/// A connection to berthd; every failure to talk to it exits with status 1.
struct session {
  varlink::client conn;

  explicit session(const std::string& addr);
  /// Sends a call and returns its first reply.
  varlink::reply call(std::string_view method, std::string_view params,
                      rpc::call_flags flags = {});
  /// The next reply of a `more` call.
  varlink::reply next();
};

/// Prints an error reply (name and parameters) to stderr; returns 2.
int print_error(const varlink::reply& r);

/// Verbs for images: pull, push, images, rmi, tag, history, image inspect,
/// load, save, import, search.
int image_command(const std::string& addr, const std::string& verb,
                  const std::vector<std::string>& args);
bool is_image_command(const std::string& verb);

/// Verbs for containers: run, create, start, stop, kill, restart, pause,
/// unpause, wait, rm, ps, inspect, mount, umount, diff, export, logs.
int container_command(const std::string& addr, const std::string& verb,
                      const std::vector<std::string>& args);
bool is_container_command(const std::string& verb);

/// Fetches the server file `remote` with ReceiveFile (removing it there)
/// into the open file `fd`; exits on any failure.
void receive_file(session& s, const std::string& remote, int fd);

} // namespace berth::cli
