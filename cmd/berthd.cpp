// berthd: the berth daemon. Parses flags, wires the varlink server to the
// engine, runs the I/O loop until SIGTERM, SIGINT or the idle timeout.
#include "actors/engine.hpp"
#include "protocol/log.hpp"
#include "protocol/server.hpp"
#include "runtime/process.hpp"
#include "storage/store.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <uv.h>

#include <fcntl.h>
#include <getopt.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <csignal>
#include <pthread.h>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <thread>

namespace {

using namespace berth;

constexpr const char* default_address = "unix:/run/podman/io.podman";

const char* usage_text = R"(Usage: berthd [OPTIONS]

The berth container engine daemon. Serves the io.podman varlink interface.

Options:
  --address ADDR           listen on ADDR; repeatable (default
                           unix:/run/podman/io.podman). Forms: unix:/path,
                           unix:@abstract, tcp:HOST:PORT
  --root DIR               storage directory (default /var/lib/berth)
  --runroot DIR            run-state directory (default /run/berth)
  --registries-conf FILE   registries.conf (default
                           /etc/containers/registries.conf)
  --log-level LEVEL        trace, debug, info, warn, error, off (default info)
  --socket-mode MODE       octal mode of unix socket files (default 0600)
  --timeout MS             exit after MS milliseconds with no connection and
                           no call in flight; 0 never exits (default 0)
  --varlink-certification  also serve org.varlink.certification
  --threads N              actor scheduler threads (default: one per core)
  --runtime NAME|PATH      OCI runtime: crun or runc or a path (default:
                           crun where it can run on this host, else runc)
  --version                print the version and exit
  --help                   print this text and exit

Socket activation: when LISTEN_PID is this process and LISTEN_FDS is set,
berthd serves the inherited sockets (those named "varlink" in
LISTEN_FDNAMES, if any are) instead of --address.
)";

struct options {
  varlink::server_config server;
  actors::engine_options engine;
  std::string log_level = "info";
};

[[noreturn]] void usage_error(const std::string& msg) {
  std::cerr << "berthd: " << msg << "\nTry 'berthd --help'.\n";
  std::exit(1);
}

template <class T>
T number(const char* text, const char* flag, int base = 10) {
  T v{};
  std::string_view s{text};
  auto r = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (r.ec != std::errc{} || r.ptr != s.data() + s.size())
    usage_error(std::string{"invalid value for "} + flag + ": " + text);
  return v;
}

options parse_flags(int argc, char** argv) {
  enum { o_address = 256, o_root, o_runroot, o_log, o_mode, o_timeout,
         o_cert, o_regs, o_threads, o_runtime, o_version, o_help };
  static const option longs[] = {
    {"address", required_argument, nullptr, o_address},
    {"varlink", required_argument, nullptr, o_address},
    {"root", required_argument, nullptr, o_root},
    {"runroot", required_argument, nullptr, o_runroot},
    {"log-level", required_argument, nullptr, o_log},
    {"socket-mode", required_argument, nullptr, o_mode},
    {"timeout", required_argument, nullptr, o_timeout},
    {"varlink-certification", no_argument, nullptr, o_cert},
    {"registries-conf", required_argument, nullptr, o_regs},
    {"threads", required_argument, nullptr, o_threads},
    {"runtime", required_argument, nullptr, o_runtime},
    {"version", no_argument, nullptr, o_version},
    {"help", no_argument, nullptr, o_help},
    {nullptr, 0, nullptr, 0},
  };
  options o;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "", longs, nullptr)) != -1) {
    switch (c) {
      case o_address: {
        auto a = varlink::address::parse(optarg);
        if (!a)
          usage_error(std::string{"invalid address: "} + optarg);
        o.server.addresses.push_back(*a);
        break;
      }
      case o_root: o.engine.root = optarg; break;
      case o_runroot: o.engine.runroot = optarg; break;
      case o_log: o.log_level = optarg; break;
      case o_mode:
        o.server.socket_mode = number<unsigned>(optarg, "--socket-mode", 8);
        if (o.server.socket_mode > 0777)
          usage_error("--socket-mode must be at most 0777");
        break;
      case o_timeout:
        o.server.idle_timeout = std::chrono::milliseconds{
            number<uint64_t>(optarg, "--timeout")};
        break;
      case o_cert: o.engine.certification = true; break;
      case o_regs: o.engine.registries_conf = optarg; break;
      case o_threads:
        o.engine.threads = number<size_t>(optarg, "--threads");
        break;
      case o_runtime: o.engine.runtime = optarg; break;
      case o_version:
        std::cout << "berthd version " << BERTH_VERSION << '\n';
        std::exit(0);
      case o_help:
        std::cout << usage_text;
        std::exit(0);
      default:
        usage_error(std::string{"unknown or incomplete option: "} +
                    argv[optind - 1]);
    }
  }
  if (optind < argc)
    usage_error(std::string{"unexpected argument: "} + argv[optind]);
  if (o.server.addresses.empty())
    o.server.addresses.push_back(*varlink::address::parse(default_address));
  return o;
}

void setup_logging(const std::string& level) {
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off")
    usage_error("invalid log level: " + level);
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto def = std::make_shared<spdlog::logger>("berthd", sink);
  def->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %n: %v");
  spdlog::set_default_logger(def);
  spdlog::set_level(lvl);
}

// Sockets passed by a service manager (sd_listen_fds(3) conventions).
std::vector<int> activated_fds() {
  const char* pid = std::getenv("LISTEN_PID");
  const char* fds = std::getenv("LISTEN_FDS");
  if (!pid || !fds || std::atol(pid) != long(getpid()))
    return {};
  int n = std::atoi(fds);
  std::vector<std::string> names;
  if (const char* s = std::getenv("LISTEN_FDNAMES")) {
    std::stringstream in{s};
    for (std::string name; std::getline(in, name, ':');)
      names.push_back(name);
  }
  bool any_named = std::find(names.begin(), names.end(), "varlink") !=
                   names.end();
  std::vector<int> out;
  for (int i = 0; i < n; ++i) {
    int fd = 3 + i;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    if (!any_named || (size_t(i) < names.size() && names[i] == "varlink"))
      out.push_back(fd);
  }
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  return out;
}

// Ends the process if stopping hangs: a daemon that cannot stop must not
// linger holding its socket.
void start_watchdog(std::chrono::seconds limit) {
  std::thread{[limit] {
    std::this_thread::sleep_for(limit);
    berth::logger("berthd")->error("shutdown took over {} s, exiting",
                                   limit.count());
    std::_Exit(1);
  }}.detach();
}

} // namespace

int main(int argc, char** argv) {
  auto opts = parse_flags(argc, argv);
  setup_logging(opts.log_level);
  auto log = berth::logger("berthd");
  std::signal(SIGPIPE, SIG_IGN);
  // SIGTERM and SIGINT wait until the loop handles them: a stop that
  // arrives while starting must still remove the socket files. Every thread
  // started before that (the reaper's, the actor system's) keeps them
  // blocked, so none of them can die of one.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  // Before any thread exists: every child, and every orphan of a child
  // (conmon daemonises), is reaped here.
  runtime::start_reaper();

  for (auto* dir : {&opts.engine.root, &opts.engine.runroot}) {
    if (!storage::make_dirs(*dir, 0700)) {
      log->error("creating {}: {}", *dir, std::strerror(errno));
      return 1;
    }
  }
  for (auto& a : opts.server.addresses) {
    if (a.type != varlink::address::kind::unix_path)
      continue;
    auto parent = a.path.substr(0, a.path.rfind('/'));
    if (!parent.empty() && !storage::make_dirs(parent, 0755)) {
      log->error("creating {}: {}", parent, std::strerror(errno));
      return 1;
    }
  }
  opts.server.activated_fds = activated_fds();
  opts.server.vendor = "berth";
  opts.server.product = "berthd";
  opts.server.version = BERTH_VERSION;
  opts.server.url = "";

  uv_loop_t loop;
  uv_loop_init(&loop);
  std::unique_ptr<actors::engine> engine;
  try {
    engine = std::make_unique<actors::engine>(opts.engine);
  } catch (const std::exception& e) {
    log->error("starting: {}", e.what());
    uv_loop_close(&loop);
    return 1;
  }
  varlink::server srv{&loop, opts.server};
  std::string err;
  if (!srv.start(err)) {
    log->error("{}", err);
    engine->stop();
    uv_loop_close(&loop);
    return 1;
  }
  engine->serve(srv);

  uv_signal_t sigterm, sigint;
  auto stop = [&] {
    log->info("shutting down");
    srv.shutdown([&] {
      uv_close(reinterpret_cast<uv_handle_t*>(&sigterm), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&sigint), nullptr);
    });
  };
  srv.on_idle = stop;
  uv_signal_init(&loop, &sigterm);
  uv_signal_init(&loop, &sigint);
  sigterm.data = sigint.data = &stop;
  auto on_signal = [](uv_signal_t* s, int) {
    (*static_cast<decltype(stop)*>(s->data))();
  };
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_signal_start(&sigint, on_signal, SIGINT);
  pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);

  if (opts.server.activated_fds.empty()) {
    for (auto& a : opts.server.addresses)
      log->info("listening on {}", a.str());
  } else {
    log->info("serving {} activated socket(s)",
              opts.server.activated_fds.size());
  }
  uv_run(&loop, UV_RUN_DEFAULT);

  start_watchdog(std::chrono::seconds{10});
  engine->stop();
  uv_loop_close(&loop);
  log->info("stopped");
  return 0;
}
