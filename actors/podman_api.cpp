#include "actors/podman_api.hpp"

#include "runtime/host.hpp"
#include "storage/registries.hpp"
#include "storage/store.hpp"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <sys/stat.h>
#include <unistd.h>

#include "actors/build_info.hpp"

namespace berth::actors {

namespace {

constexpr const char* compiler = "g++ " __VERSION__;

std::string rfc3339(std::time_t t) {
  char buf[32];
  std::tm tm;
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

} // namespace

podman::GetVersion_out version_info() {
  podman::GetVersion_out v;
  v.version = BERTH_VERSION;
  v.go_version = compiler;
  v.git_commit = BERTH_GIT_COMMIT;
  v.built = rfc3339(BERTH_BUILD_EPOCH);
  v.os_arch = "linux/" + runtime::go_arch();
  v.remote_api_version = 1;
  return v;
}

podman_api::podman_api(api_options opts) : opts_(std::move(opts)) {
}

namespace {

template <class Out>
std::string encoded(const Out& out) {
  json::writer w;
  encode(w, out);
  return w.take();
}

bool needs_upgrade(const rpc::call_ptr& c, const char* what) {
  if (c->flags().upgrade)
    return true;
  c->fail(podman::ErrorOccurred{
      std::string{"client must use upgraded connection to "} + what});
  return false;
}

} // namespace

void podman_api::SendFile(const rpc::call_ptr& c,
                          const podman::SendFile_in& in) {
  if (!needs_upgrade(c, "send files"))
    return;
  if (in.length < 0)
    return c->fail(podman::ErrorOccurred{"sending a file: negative length"});
  auto dir = opts_.root + "/uploads";
  std::string path = dir + "/varlink_sendXXXXXX";
  int fd = -1;
  if (!storage::make_dirs(dir, 0700) || (fd = mkstemp(path.data())) < 0)
    return c->fail(podman::ErrorOccurred{"creating a file in " + dir + ": " +
                                         std::strerror(errno)});
  ::close(fd);
  rpc::raw_transfer t;
  t.dir = rpc::raw_transfer::direction::to_file;
  t.path = path;
  t.length = uint64_t(in.length);
  t.ack = path + ":";
  c->reply_upgraded(encoded(podman::SendFile_out{path}), std::move(t));
}

void podman_api::ReceiveFile(const rpc::call_ptr& c,
                             const podman::ReceiveFile_in& in) {
  if (!needs_upgrade(c, "receive files"))
    return;
  struct stat st;
  if (stat(in.path.c_str(), &st) < 0)
    return c->fail(podman::ErrorOccurred{"receiving " + in.path + ": " +
                                         std::strerror(errno)});
  if (!S_ISREG(st.st_mode))
    return c->fail(podman::ErrorOccurred{"receiving " + in.path +
                                         ": not a regular file"});
  rpc::raw_transfer t;
  t.dir = rpc::raw_transfer::direction::from_file;
  t.path = in.path;
  t.length = uint64_t(st.st_size);
  t.remove_after = in.delete_;
  c->reply_upgraded(encoded(podman::ReceiveFile_out{st.st_size}),
                    std::move(t));
}

void podman_api::internal_error(const rpc::call_ptr& c,
                                const std::string& what) {
  c->fail(podman::ErrorOccurred{std::string{c->method().name} + ": " + what});
}

void podman_api::GetVersion(const rpc::call_ptr& c,
                            const podman::GetVersion_in&) {
  static const auto reply = version_info();
  c->reply(reply);
}

void podman_api::info(const rpc::call_ptr& c, int64_t containers,
                      int64_t images) {
  storage::registries_conf regs;
  std::string err;
  if (!storage::load_registries_conf(opts_.registries_conf, regs, err)) {
    c->fail(podman::ErrorOccurred{"getting info: " + err});
    return;
  }
  auto host = runtime::read_host_info();
  auto store = storage::probe_store(opts_.root);
  podman::PodmanInfo info;
  auto& h = info.host;
  h.buildah_version = "";
  h.distribution = {host.distribution, host.version};
  h.mem_free = host.mem_free;
  h.mem_total = host.mem_total;
  h.swap_free = host.swap_free;
  h.swap_total = host.swap_total;
  h.arch = host.arch;
  h.cpus = host.cpus;
  h.hostname = host.hostname;
  h.kernel = host.kernel;
  h.os = "linux";
  h.uptime = runtime::format_uptime(host.uptime);
  info.registries = regs.search;
  info.insecure_registries = regs.insecure();
  auto& s = info.store;
  s.containers = containers;
  s.images = images;
  s.graph_driver_name = store.graph_driver;
  s.graph_driver_options = "";
  s.graph_root = opts_.root;
  s.graph_status = {store.backing_filesystem,
                    store.native_overlay_diff ? "true" : "false",
                    store.supports_d_type ? "true" : "false"};
  s.run_root = opts_.runroot;
  info.podman = {compiler, compiler, BERTH_VERSION, BERTH_GIT_COMMIT};
  c->reply(podman::GetInfo_out{std::move(info)});
}

} // namespace berth::actors
