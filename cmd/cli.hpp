// What the berth command's verbs share: a connection to berthd, error
// output and exit codes.
#pragma once

#include "protocol/client.hpp"
#include "protocol/json_decode.hpp"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace berth::cli {

enum exit_code { ok = 0, failure = 1, remote_error = 2 };

// podman's exit codes for run, create, start -a and attach: the engine
// failed, the command could not be invoked, the command was not found.
inline constexpr int engine_failed = 125;
inline constexpr int cannot_invoke = 126;
inline constexpr int not_found = 127;

/// Prints `msg` with a hint and exits with status 1.
[[noreturn]] void usage_error(const std::string& msg);

/// A usage error of run, create, start -a or attach: exit status 125, as
/// podman's, so that it never looks like the container's own status.
[[noreturn]] void run_usage_error(const std::string& msg);

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

/// The human part of an error reply: its `reason` when it has one.
std::string reason_of(const varlink::reply& r);

/// Prints "Error: <reason>" for an error reply; returns `code`.
int report(const varlink::reply& r, int code = remote_error);

/// The status of a start that failed with the error reply `r`: 126 the
/// command could not be run, 127 it was not found, 125 anything else (a
/// missing container included).
int start_failure_code(const varlink::reply& r);

/// A reply's parameters, parsed; exits on malformed text.
struct parsed_reply {
  simdjson::dom::parser parser;
  simdjson::padded_string text;
  simdjson::dom::element doc;

  explicit parsed_reply(const std::string& json);
};

/// The string member `key` of an object, or "".
std::string string_at(simdjson::dom::element e, std::string_view key);

/// The parameters of a call from its generated input struct.
template <class In>
std::string params_of(const In& in) {
  json::writer w;
  encode(w, in);
  return w.take();
}

/// `{"name": NAME}`, the parameters of most container calls.
std::string name_param(const std::string& name);

/// How long before `now` (epoch seconds) the RFC 3339 time `when` was, in
/// podman's words ("3 hours ago"); empty when `when` does not parse.
std::string time_ago(const std::string& when, int64_t now);

/// Prints rows as columns separated by at least three spaces.
void print_table(const std::vector<std::vector<std::string>>& rows);

/// Writes k8s-file log lines `<time> <stdout|stderr> <P|F> <text>` the way
/// podman shows them: stdout lines to standard output, stderr lines to
/// standard error, a partial (P) chunk joined with what follows it, and
/// with `timestamps` the time in front of each line.
class log_printer {
public:
  explicit log_printer(bool timestamps = false) : timestamps_(timestamps) {}

  void print(std::string_view line);
  /// Prints the lines of a GetContainerLogs reply from index `skip` on and
  /// flushes; returns how many lines the reply held.
  size_t print_reply(const varlink::reply& r, size_t skip = 0);

private:
  bool timestamps_;
  bool at_line_start_[2] = {true, true}; ///< stdout, stderr
};

/// How to attach to a container's terminal.
struct attach_options {
  std::string detach_keys; ///< "" for berthd's default, ctrl-p,ctrl-q
  bool start = false;      ///< start the container once attached
  bool relay_stdin = true; ///< send our standard input
  bool tty = false;        ///< the container has a terminal
  /// Take `tty` from the container's configuration, and relay standard
  /// input only if the container has one open.
  bool from_container = false;
};

/// What an attach ended with.
struct attach_outcome {
  bool attached = false; ///< false: berthd refused (the error is printed)
  int status = 0;        ///< exit status for berth
};

/// Attaches to a container through Attach (with `upgrade`) and relays its
/// terminal until it ends or the detach keys are typed: 0 after a detach,
/// the container's status after its end, 125 when berthd fails (126 or 127
/// for a start whose command cannot run or was not found). The local
/// terminal is raw while relayed to a container's terminal, and restored on
/// every way out.
attach_outcome attach_to(const std::string& addr, const std::string& name,
                         const attach_options& opts);

/// Verbs for images: pull, push, images, rmi, tag, history, image inspect,
/// load, save, import, search.
int image_command(const std::string& addr, const std::string& verb,
                  const std::vector<std::string>& args);
bool is_image_command(const std::string& verb);

/// Verbs for containers: run, create, start, stop, kill, restart, pause,
/// unpause, wait, rm, ps, inspect, mount, umount, diff, export.
int container_command(const std::string& addr, const std::string& verb,
                      const std::vector<std::string>& args);
bool is_container_command(const std::string& verb);

/// Verbs that watch containers: logs, stats, top, attach.
int stream_command(const std::string& addr, const std::string& verb,
                   const std::vector<std::string>& args);
bool is_stream_command(const std::string& verb);

/// Fetches the server file `remote` with ReceiveFile (removing it there)
/// into the open file `fd`; exits on any failure.
void receive_file(session& s, const std::string& remote, int fd);

} // namespace berth::cli
