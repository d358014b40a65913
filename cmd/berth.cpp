// berth: the command-line client of berthd.
#include "cmd/cli.hpp"
#include "protocol/json_decode.hpp"

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

namespace {

using namespace berth;
using namespace berth::cli;

constexpr const char* default_address = "unix:/run/podman/io.podman";

const char* usage_text = R"(Usage: berth [--address ADDR] COMMAND [ARGS]

Commands:
  call [--more] [--oneway] [--upgrade] METHOD [JSON]
                     call any varlink method; METHOD is INTERFACE.Method or
                     a bare io.podman method name. Prints the parameters of
                     each reply as one JSON line.
  info               show host and store information (io.podman.GetInfo)
  version            show client and server versions
  help [INTERFACE]   without INTERFACE this text and the interfaces the
                     server offers; with it, the interface's description

Images:
  pull [--tls-verify=false] [--creds USER:PASS] [--cert-dir DIR] [-q] NAME
  images [-q] [--format json]
  rmi [-f] NAME...
  tag IMAGE NAME...
  history IMAGE
  image inspect IMAGE...
  push [--tls-verify=false] [--creds USER:PASS] [--cert-dir DIR]
       [--format oci|v2s2] [--compress] [-q] IMAGE [DESTINATION]
  load [-i FILE] [-q] [NAME]    a docker-archive, oci-archive or OCI
                     layout tarball (standard input without -i)
  save [-o FILE|DIR] [--format oci-archive|docker-archive|oci-dir|docker-dir]
       [--compress] [-q] IMAGE [TAG...]
                     to standard output without -o; --compress writes
                     every layer of oci-dir and docker-dir gzip-compressed
                     (the archives ignore it)
  import FILE [REFERENCE] [-c CHANGE]... [-m MESSAGE]
                     a root file system tarball as a one-layer image
  search [--limit N] [--tls-verify=false] [--filter is-official=BOOL|
         is-automated=BOOL|stars=N] TERM

Containers:
  run [OPTIONS] IMAGE [COMMAND [ARG...]]
                     create and start a container; without -d, show its
                     output and exit with its status; with -i or -t,
                     attached to its input and terminal
  create [OPTIONS] IMAGE [COMMAND [ARG...]]    create only; prints the ID
    -d, --detach     (run only) print the ID and leave it running
    --rm             remove the container when it exits
    -e, --env K=V    --env-file FILE   -l, --label K=V   --name NAME
    -w, --workdir DIR   -u, --user USER   -h, --hostname NAME
    -t, --tty        -i, --interactive   --detach-keys KEYS (ctrl-p,ctrl-q)
    -v, --volume SRC:DST[:ro]   --tmpfs DST[:OPTS]   --device DEV
    --entrypoint CMD   --init   --read-only   --privileged
    --cap-add CAP   --cap-drop CAP   --group-add GROUP   --sysctl K=V
    --ulimit NAME=SOFT[:HARD]   --log-opt max-size=N
    --network none|host|container:ID   --pid MODE   --ipc MODE   --uts MODE
    --dns IP   --dns-search DOMAIN   --dns-option OPT   --add-host HOST:IP
    --stop-signal SIG (name or number)   --stop-timeout SECONDS
    -m, --memory N[b|k|m|g]   --memory-reservation N   --memory-swap N|-1
    --memory-swappiness 0-100   --kernel-memory N   --shm-size N
    --cpus F   -c, --cpu-shares N   --cpu-period N   --cpu-quota N
    --cpuset-cpus LIST   --cpuset-mems LIST   --pids-limit N
    --blkio-weight N   --device-read-bps DEV:RATE   --device-write-bps ...
    --device-read-iops DEV:N   --device-write-iops DEV:N
    --oom-kill-disable   --oom-score-adj N
  start [-a] NAME...           -a: show the output, exit with its status
  start -ai [--detach-keys KEYS] NAME     attached to its input and terminal
  stop [-t SECONDS] NAME...    restart [-t SECONDS] NAME...
  kill [-s SIGNAL] NAME...     (default KILL)
  pause NAME...                unpause NAME...
  wait NAME...                 prints each exit code
  rm [-f] [-v] NAME...
  ps [-a] [-q] [--no-trunc] [--format json]
  inspect NAME...              a JSON array (images too, as podman)
  mount [NAME...]              without NAME: every mounted container
  umount [-f] NAME...
  diff [--format json] NAME    changed (C), added (A), deleted (D) paths
  export [-o FILE] NAME        the root file system as a tar archive

Watching containers:
  logs [-f] [--tail N] [--since TIME] [-t] NAME
                     -f: follow until the container exits; --tail: the last
                     N lines; --since: an RFC 3339 time or a duration (10m);
                     -t: the time of each line in front of it
  stats [--no-stream] [--format json] [NAME...]
                     resource usage of the named (else every running)
                     containers; on a terminal a table refreshed each second
  top NAME [DESCRIPTOR...]      its processes; descriptors as podman top's:
                     user, pid, ppid, pcpu, etime, tty, time, comm, args ...
  attach [--detach-keys KEYS] [--no-stdin] NAME
                     relay a running container's input and output; the
                     detach keys (default ctrl-p,ctrl-q) leave it running

Options:
  --address ADDR     daemon address (default: $BERTH_ADDRESS, else
                     $PODMAN_VARLINK_ADDRESS, else unix:/run/podman/io.podman)

Exit status: 0 success, 1 usage or connection failure, 2 the server answered
with an error, printed as its name and parameters (container verbs print
"Error: REASON").
run, create, start -a and attach, as podman: 125 a usage error or berthd
failed, 126 the command cannot be invoked, 127 the command was not found,
else the container's own exit status (0 after detaching).
)";

std::string full_method(const std::string& m) {
  return m.find('.') == std::string::npos ? "io.podman." + m : m;
}

int cmd_call(const std::string& addr, std::vector<std::string> args) {
  rpc::call_flags flags;
  std::vector<std::string> rest;
  for (auto& a : args) {
    if (a == "--more")
      flags.more = true;
    else if (a == "--oneway")
      flags.oneway = true;
    else if (a == "--upgrade")
      flags.upgrade = true;
    else if (a.starts_with("--"))
      usage_error("unknown option for call: " + a);
    else
      rest.push_back(a);
  }
  if (rest.empty() || rest.size() > 2)
    usage_error("call needs METHOD and at most one JSON argument");
  std::string params = rest.size() == 2 ? rest[1] : "";
  if (!params.empty() && !json::is_object_text(params))
    usage_error("parameters must be a JSON object: " + params);
  session s{addr};
  auto method = full_method(rest[0]);
  if (flags.oneway) {
    if (!s.conn.send(method, params, flags)) {
      std::cerr << "berth: " << method << ": connection lost\n";
      return failure;
    }
    return ok;
  }
  for (auto r = s.call(method, params, flags);; r = s.next()) {
    if (!r.error.empty())
      return print_error(r);
    std::cout << r.parameters << '\n' << std::flush;
    if (!r.continues)
      return ok;
  }
}

// Prints a JSON value as indented "key: value" lines.
void print_tree(const simdjson::dom::element& e, int depth) {
  std::string pad(depth * 2, ' ');
  if (e.is_object()) {
    for (auto [k, v] : simdjson::dom::object(e)) {
      std::cout << pad << k << ':';
      if (v.is_object() || (v.is_array() && simdjson::dom::array(v).size())) {
        std::cout << '\n';
        print_tree(v, depth + 1);
      } else {
        std::cout << ' ';
        print_tree(v, 0);
      }
    }
  } else if (e.is_array()) {
    auto a = simdjson::dom::array(e);
    if (a.size() == 0)
      std::cout << "[]\n";
    for (auto v : a) {
      std::cout << pad << "- ";
      if (v.is_object() || v.is_array()) {
        std::cout << '\n';
        print_tree(v, depth + 1);
      } else {
        print_tree(v, 0);
      }
    }
  } else if (e.is_string()) {
    std::cout << std::string_view(e) << '\n';
  } else {
    std::cout << simdjson::minify(e) << '\n';
  }
}

int print_reply_tree(const varlink::reply& r, const char* member) {
  simdjson::dom::parser parser;
  simdjson::padded_string text{r.parameters};
  simdjson::dom::element doc;
  if (parser.parse(text).get(doc) != simdjson::SUCCESS) {
    std::cerr << "berth: malformed reply\n";
    return failure;
  }
  simdjson::dom::element value = doc;
  if (member && doc[member].get(value) != simdjson::SUCCESS) {
    std::cerr << "berth: reply lacks " << member << '\n';
    return failure;
  }
  print_tree(value, 0);
  return ok;
}

int cmd_info(const std::string& addr) {
  session s{addr};
  auto r = s.call("io.podman.GetInfo", "");
  if (!r.error.empty())
    return print_error(r);
  return print_reply_tree(r, "info");
}

int cmd_version(const std::string& addr) {
  std::cout << "Client:\n  Version: " << BERTH_VERSION << "\nServer:\n";
  session s{addr};
  auto r = s.call("io.podman.GetVersion", "");
  if (!r.error.empty())
    return print_error(r);
  simdjson::dom::parser parser;
  simdjson::padded_string text{r.parameters};
  simdjson::dom::element doc;
  if (parser.parse(text).get(doc) != simdjson::SUCCESS)
    return failure;
  std::cout.flush();
  // Indent the server's fields under "Server:".
  for (auto [k, v] : simdjson::dom::object(doc)) {
    std::cout << "  " << k << ": ";
    print_tree(v, 0);
  }
  return ok;
}

int cmd_help(const std::string& addr, const std::vector<std::string>& args) {
  if (args.size() > 1)
    usage_error("help takes at most one INTERFACE");
  if (args.empty()) {
    std::cout << usage_text;
    session s{addr};
    auto r = s.call("org.varlink.service.GetInfo", "");
    if (!r.error.empty())
      return print_error(r);
    std::cout << "\nInterfaces served at " << addr << ":\n";
    return print_reply_tree(r, "interfaces");
  }
  session s{addr};
  auto r = s.call("org.varlink.service.GetInterfaceDescription",
                  "{\"interface\":" + json::quote(args[0]) + "}");
  if (!r.error.empty())
    return print_error(r);
  simdjson::dom::parser parser;
  simdjson::padded_string text{r.parameters};
  std::string_view desc;
  if (parser.parse(text)["description"].get(desc) != simdjson::SUCCESS)
    return failure;
  std::cout << desc;
  if (!desc.ends_with('\n'))
    std::cout << '\n';
  return ok;
}

} // namespace

int main(int argc, char** argv) {
  std::string addr = default_address;
  for (auto* env : {"PODMAN_VARLINK_ADDRESS", "BERTH_ADDRESS"})
    if (const char* v = std::getenv(env); v && *v)
      addr = v;
  std::vector<std::string> args(argv + 1, argv + argc);
  while (!args.empty() && args.front().starts_with("--address")) {
    if (args.front() == "--address") {
      if (args.size() < 2)
        usage_error("--address needs a value");
      addr = args[1];
      args.erase(args.begin(), args.begin() + 2);
    } else if (args.front().starts_with("--address=")) {
      addr = args.front().substr(10);
      args.erase(args.begin());
    } else {
      break;
    }
  }
  if (args.empty())
    usage_error("no command given");
  auto cmd = args.front();
  args.erase(args.begin());
  if (cmd == "call")
    return cmd_call(addr, args);
  if (cmd == "info" && args.empty())
    return cmd_info(addr);
  if (cmd == "version" && args.empty())
    return cmd_version(addr);
  if (cmd == "help" || cmd == "--help" || cmd == "-h")
    return cmd_help(addr, args);
  if (is_container_command(cmd))
    return container_command(addr, cmd, args);
  if (is_stream_command(cmd))
    return stream_command(addr, cmd, args);
  if (is_image_command(cmd))
    return image_command(addr, cmd, args);
  usage_error("unknown command or extra arguments: " + cmd);
}
