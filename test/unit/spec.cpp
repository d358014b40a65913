// plan_container and render_spec: podman's rules for commands, environment
// and users, every refusal, the files written for /etc, the config.json read
// back with simdjson, and (as root) a real runc run of the rendered bundle.
#define BOOST_TEST_MODULE spec
#include <boost/test/unit_test.hpp>

#include "runtime/spec.hpp"

#include <simdjson.h>

#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;
using namespace berth::runtime;
using berth::podman::Create;
using strings = std::vector<std::string>;

namespace {

// A directory removed with everything in it when the test ends.
struct temp_dir {
  std::string path;
  temp_dir() {
    char tmpl[] = "/tmp/berth-spec-XXXXXX";
    BOOST_REQUIRE(mkdtemp(tmpl));
    path = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const {
    return path + "/" + name;
  }
};

void write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path{path}.parent_path());
  std::ofstream{path} << text;
}

std::string read(const std::string& path) {
  std::ifstream in{path};
  return {std::istreambuf_iterator<char>{in}, {}};
}

Create command(strings cmd) {
  Create c;
  c.image = "busybox";
  c.command = std::move(cmd);
  return c;
}

container_plan plan(const Create& c, const image_defaults& img = {}) {
  container_plan p;
  std::string err;
  BOOST_REQUIRE_MESSAGE(plan_container(c, img, p, err), err);
  return p;
}

std::string plan_error(const Create& c, const image_defaults& img = {}) {
  container_plan p;
  std::string err;
  BOOST_CHECK(!plan_container(c, img, p, err));
  return err;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A root file system with users and groups, and userdata beside it.
struct bundle {
  temp_dir dir;
  render_inputs in;
  explicit bundle(bool users = true) {
    in.id = std::string(64, 'a');
    in.id.replace(0, 12, "0123456789ab");
    in.rootfs = dir / "rootfs";
    in.userdata = dir / "userdata";
    in.cgroups_path = "/berth-test/" + in.id;
    in.host_hosts = dir / "host-hosts";
    in.host_resolv = dir / "host-resolv";
    fs::create_directories(in.rootfs);
    fs::create_directories(in.userdata);
    write(in.host_hosts, "127.0.0.1 localhost\n10.9.9.9 buildhost\n");
    write(in.host_resolv, "# generated\nnameserver 127.0.0.53\n"
                          "nameserver 10.0.0.1\nsearch corp.example\n"
                          "options ndots:2\n");
    if (!users)
      return;
    write(in.rootfs + "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                                     "# a comment\n"
                                     "app:x:1000:1000::/home/app:/bin/sh\n"
                                     "broken:x:notanumber:1::/:/bin/sh\n");
    write(in.rootfs + "/etc/group",
          "root:x:0:\naudio:x:29:app\nvideo:x:44:other,app\n"
          "staff:x:50:\napp:x:1000:\n");
  }
};

// The rendered config.json, parsed.
struct rendered {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  std::string text;
  rendered(const container_plan& p, const render_inputs& in) {
    std::string err;
    BOOST_REQUIRE_MESSAGE(render_spec(p, in, text, err), err);
    BOOST_REQUIRE_MESSAGE(parser.parse(text).get(doc) == simdjson::SUCCESS,
                          text);
  }
  simdjson::dom::element at(std::string_view pointer) {
    simdjson::dom::element e;
    BOOST_REQUIRE_MESSAGE(doc.at_pointer(pointer).get(e) == simdjson::SUCCESS,
                          "missing " << pointer);
    return e;
  }
  bool has(std::string_view pointer) {
    simdjson::dom::element e;
    return doc.at_pointer(pointer).get(e) == simdjson::SUCCESS;
  }
  strings list(std::string_view pointer) {
    strings out;
    simdjson::dom::array arr1 = at(pointer).get_array().value();
    for (auto e : arr1)
      out.emplace_back(std::string_view(e));
    return out;
  }
  // The mount at `destination`, or a null element.
  simdjson::dom::object mount(std::string_view destination) {
    simdjson::dom::array arr2 = at("/mounts").get_array().value();
    for (auto m : arr2)
      if (std::string_view(m["destination"]) == destination)
        return m.get_object().value();
    BOOST_FAIL("no mount at " << destination);
    return {};
  }
  size_t mounts_at(std::string_view destination) {
    size_t n = 0;
    simdjson::dom::array arr3 = at("/mounts").get_array().value();
    for (auto m : arr3)
      n += std::string_view(m["destination"]) == destination;
    return n;
  }
  strings mount_options(std::string_view destination) {
    strings out;
    simdjson::dom::array arr4 = mount(destination)["options"].get_array().value();
    for (auto o : arr4)
      out.emplace_back(std::string_view(o));
    return out;
  }
  // Namespace type -> path ("" without one); absent types are missing.
  std::map<std::string, std::string> namespaces() {
    std::map<std::string, std::string> out;
    simdjson::dom::array arr5 = at("/linux/namespaces").get_array().value();
    for (auto ns : arr5) {
      std::string_view path;
      if (ns["path"].get(path) != simdjson::SUCCESS)
        path = "";
      out[std::string{std::string_view(ns["type"])}] = path;
    }
    return out;
  }
  uint64_t rlimit(std::string_view type, const char* which) {
    simdjson::dom::array arr6 = at("/process/rlimits").get_array().value();
    for (auto r : arr6)
      if (std::string_view(r["type"]) == type)
        return uint64_t(r[which]);
    BOOST_FAIL("no rlimit " << type);
    return 0;
  }
};

bool has_entry(const strings& list, const std::string& entry) {
  return std::find(list.begin(), list.end(), entry) != list.end();
}

// A device node made here, so tests need no particular host device.
bool make_node(const std::string& path, mode_t type, int maj, int min) {
  if (mknod(path.c_str(), type | 0600, makedev(maj, min)) == 0)
    return true;
  BOOST_TEST_MESSAGE("mknod " << path << ": " << std::strerror(errno)
                              << " (device checks skipped)");
  return false;
}

} // namespace

// ---------------------------------------------------------------------------
// Arguments

BOOST_AUTO_TEST_CASE(args_follow_podmans_rules) {
  image_defaults img;
  img.entrypoint = {"/entry"};
  img.cmd = {"default", "cmd"};
  Create c;
  c.image = "img";
  // Image entrypoint and CMD; a one-element entrypoint stays.
  BOOST_TEST(plan(c, img).args == (strings{"/entry", "default", "cmd"}),
             boost::test_tools::per_element());
  // A command replaces CMD, the entrypoint stays.
  c.command = {"mine"};
  BOOST_TEST(plan(c, img).args == (strings{"/entry", "mine"}),
             boost::test_tools::per_element());
  // An entrypoint replaces the image's and drops its CMD.
  c.command = {};
  c.entrypoint = {"/other", "-x"};
  BOOST_TEST(plan(c, img).args == (strings{"/other", "-x"}),
             boost::test_tools::per_element());
  c.command = {"arg"};
  BOOST_TEST(plan(c, img).args == (strings{"/other", "-x", "arg"}),
             boost::test_tools::per_element());
  // [""] clears the entrypoint.
  c.entrypoint = {""};
  c.command = {"sh", "-c", "true"};
  BOOST_TEST(plan(c, img).args == (strings{"sh", "-c", "true"}),
             boost::test_tools::per_element());
  c.command = {};
  BOOST_TEST(plan_error(c, img) == "no command specified");
  // No entrypoint anywhere: CMD alone.
  img.entrypoint = {};
  Create plain;
  BOOST_TEST(plan(plain, img).args == (strings{"default", "cmd"}),
             boost::test_tools::per_element());
  BOOST_TEST(plan_error(plain, {}) == "no command specified");
}

BOOST_AUTO_TEST_CASE(command_from_args_as_later_clients_send_it) {
  Create c;
  c.args = {"alpine", "echo", "hi"};
  BOOST_TEST(requested_command(c) == (strings{"echo", "hi"}),
             boost::test_tools::per_element());
  c.image = "alpine";
  BOOST_TEST(plan(c).args == (strings{"echo", "hi"}),
             boost::test_tools::per_element());
  // `command` wins; args naming another image are not a command.
  c.command = {"true"};
  BOOST_TEST(requested_command(c) == strings{"true"},
             boost::test_tools::per_element());
  c.command = {};
  c.image = "busybox";
  BOOST_TEST(requested_command(c).empty());
}

// ---------------------------------------------------------------------------
// Environment, working directory, stop settings

BOOST_AUTO_TEST_CASE(env_merges_defaults_image_and_request) {
  image_defaults img;
  img.env = {"PATH=/img/bin", "A=1", "B=2", "NOEQUALS", "=bad"};
  auto c = command({"true"});
  c.env = {{"B", "3"}, {"C", "x=y"}};
  c.tty = true;
  c.hostname = "web";
  auto p = plan(c, img);
  BOOST_TEST(p.env == (strings{"PATH=/img/bin", "TERM=xterm", "HOSTNAME=web",
                               "A=1", "B=3", "C=x=y"}),
             boost::test_tools::per_element());

  auto bare = plan(command({"true"}));
  BOOST_TEST(bare.env == strings{"PATH=/usr/local/sbin:/usr/local/bin:"
                                 "/usr/sbin:/usr/bin:/sbin:/bin"},
             boost::test_tools::per_element());

  // The request's env may replace the defaults too.
  c.env = {{"TERM", "dumb"}};
  BOOST_TEST(has_entry(plan(c, img).env, "TERM=dumb"));
}

BOOST_AUTO_TEST_CASE(work_dir_stop_signal_and_timeout) {
  image_defaults img;
  auto c = command({"true"});
  auto p = plan(c, img);
  BOOST_TEST(p.work_dir == "/");
  BOOST_TEST(p.stop_signal == 15);
  BOOST_TEST(p.stop_timeout == 10u);

  img.working_dir = "/srv";
  img.stop_signal = "SIGQUIT";
  p = plan(c, img);
  BOOST_TEST(p.work_dir == "/srv");
  BOOST_TEST(p.stop_signal == 3);

  c.work_dir = "/w";
  c.stop_signal = 37;
  c.stop_timeout = 3;
  p = plan(c, img);
  BOOST_TEST(p.work_dir == "/w");
  BOOST_TEST(p.stop_signal == 37);
  BOOST_TEST(p.stop_timeout == 3u);

  img.stop_signal = "RTMIN+3";
  c.stop_signal = 0;
  BOOST_TEST(plan(c, img).stop_signal == 37);
}

BOOST_AUTO_TEST_CASE(signals_by_name_and_number) {
  BOOST_TEST(parse_signal("SIGTERM") == 15);
  BOOST_TEST(parse_signal("TERM") == 15);
  BOOST_TEST(parse_signal("term") == 15);
  BOOST_TEST(parse_signal("15") == 15);
  BOOST_TEST(parse_signal("SIGKILL") == 9);
  BOOST_TEST(parse_signal("SIGRTMIN") == 34);
  BOOST_TEST(parse_signal("SIGRTMIN+3") == 37);
  BOOST_TEST(parse_signal("RTMIN+3") == 37);
  BOOST_TEST(parse_signal("RTMAX") == 64);
  BOOST_TEST(parse_signal("RTMAX-2") == 62);
  BOOST_TEST(parse_signal("64") == 64);
  for (auto bad : {"", "0", "65", "-1", "SIGFOO", "RTMIN+31", "RTMAX-31",
                   "RTMIN-1", "15x", "+15", "SIG"})
    BOOST_TEST(parse_signal(bad) == 0, "accepted " << bad);
}

BOOST_AUTO_TEST_CASE(log_size_option) {
  auto c = command({"true"});
  BOOST_TEST(plan(c).log_max_size == -1);
  c.log_driver_opt = {"max-size=10k"};
  BOOST_TEST(plan(c).log_max_size == 10000);
  c.log_driver_opt = {"max-size=2mb"};
  BOOST_TEST(plan(c).log_max_size == 2000000);
  c.log_driver_opt = {"max-size=123"};
  BOOST_TEST(plan(c).log_max_size == 123);
}

// ---------------------------------------------------------------------------
// Refusals: each names its field and value

BOOST_AUTO_TEST_CASE(every_invalid_field_is_refused_by_name) {
  temp_dir dir;
  write(dir / "file", "x");
  struct refusal {
    std::function<void(Create&)> set;
    std::string expected;
  };
  std::vector<refusal> cases = {
      {[](Create& c) { c.resources.ulimit = {"nofile=abc"}; },
       "invalid ulimit \"nofile=abc\": "},
      {[](Create& c) { c.resources.ulimit = {"nofile=10:5"}; },
       "invalid ulimit \"nofile=10:5\": the soft limit exceeds"},
      {[](Create& c) { c.resources.ulimit = {"bogus=1"}; },
       "invalid ulimit \"bogus=1\": unknown limit"},
      {[](Create& c) { c.resources.ulimit = {"nofile"}; },
       "invalid ulimit \"nofile\""},
      {[](Create& c) { c.net_mode = "bridge"; },
       "bridge networking is not supported yet: use net_mode \"none\", "
       "\"host\" or \"container:<id>\""},
      {[](Create& c) { c.net_mode = "slirp4netns"; },
       "net_mode \"slirp4netns\": bridge networking is not supported yet"},
      {[](Create& c) { c.network = "cni0"; },
       "network \"cni0\": bridge networking is not supported yet"},
      {[](Create& c) { c.resources.cpu_rt_period = -1; },
       "invalid cpu_rt_period -1"},
      {[](Create& c) { c.net_mode = "container:"; }, "net_mode \"container:\""},
      {[](Create& c) { c.publish = {"8080:80"}; }, "publish \"8080:80\""},
      {[](Create& c) { c.pid_mode = "other"; }, "invalid pid_mode \"other\""},
      {[](Create& c) { c.ipc_mode = "container"; },
       "invalid ipc_mode \"container\""},
      {[](Create& c) { c.uts_mode = "ns:/x"; }, "invalid uts_mode \"ns:/x\""},
      {[](Create& c) { c.uidmap = {"0:100000:65536"}; },
       "user namespaces and ID maps are not supported yet"},
      {[](Create& c) { c.cap_add = {"CAP_FOO"}; },
       "unknown capability \"CAP_FOO\" in cap_add"},
      {[](Create& c) { c.cap_drop = {"nonsense"}; },
       "unknown capability \"nonsense\" in cap_drop"},
      {[](Create& c) { c.volumes = {"data:/data"}; },
       "invalid volume \"data:/data\": named volumes are not supported yet"},
      {[](Create& c) { c.volumes = {"/data"}; },
       "invalid volume \"/data\": anonymous volumes are not supported yet"},
      {[](Create& c) { c.volumes = {"/nonexistent-berth:/x"}; },
       "invalid volume \"/nonexistent-berth:/x\": host path "
       "\"/nonexistent-berth\": no such file or directory"},
      {[&](Create& c) { c.volumes = {dir.path + ":rel"}; },
       "the destination must be an absolute path"},
      {[&](Create& c) { c.volumes = {dir.path + ":/x:rw,bogus"}; },
       "unknown option \"bogus\""},
      {[&](Create& c) {
         c.volumes = {dir.path + ":/x", dir.path + ":/x/"};
       },
       "duplicate mount destination \"/x\""},
      {[&](Create& c) {
         c.volumes = {dir.path + ":/t"};
         c.tmpfs = {"/t"};
       },
       "duplicate mount destination \"/t\""},
      {[](Create& c) { c.tmpfs = {"rel"}; }, "invalid tmpfs \"rel\""},
      {[](Create& c) { c.tmpfs = {"/t:size=lots"}; },
       "invalid tmpfs \"/t:size=lots\": unknown option \"size=lots\""},
      {[](Create& c) { c.devices = {"/nonexistent-dev"}; },
       "invalid device \"/nonexistent-dev\": \"/nonexistent-dev\": no such"},
      {[&](Create& c) { c.devices = {dir / "file"}; }, "is not a device node"},
      {[](Create& c) { c.devices = {"/dev/null:/dev/n:rwx"}; },
       "invalid device \"/dev/null:/dev/n:rwx\": permissions"},
      {[](Create& c) {
         c.sys_ctl = {{"kernel.hostname", "x"}};
       },
       "invalid sys_ctl \"kernel.hostname\": not a namespaced sysctl"},
      {[](Create& c) {
         c.net_mode = "host";
         c.sys_ctl = {{"net.ipv4.ip_forward", "1"}};
       },
       "invalid sys_ctl \"net.ipv4.ip_forward\": not allowed with the host's "
       "network namespace"},
      {[](Create& c) {
         c.ipc_mode = "host";
         c.sys_ctl = {{"kernel.shmmax", "1"}};
       },
       "invalid sys_ctl \"kernel.shmmax\": not allowed with the host's IPC"},
      {[](Create& c) { c.resources.memory = 1000; }, "invalid memory 1000"},
      {[](Create& c) { c.resources.memory = -5; }, "invalid memory -5"},
      {[](Create& c) { c.resources.memory_swap = 100 << 20; },
       "invalid memory_swap 104857600"},
      {[](Create& c) { c.resources.memory_swappiness = 200; },
       "invalid memory_swappiness 200"},
      {[](Create& c) {
         c.resources.memory = 8 << 20;
         c.resources.memory_reservation = 16 << 20;
       },
       "invalid memory_reservation 16777216"},
      {[](Create& c) { c.resources.kernel_memory = 10; },
       "invalid kernel_memory 10"},
      {[](Create& c) { c.resources.cpu_shares = -1; }, "invalid cpu_shares -1"},
      {[](Create& c) { c.resources.cpu_period = 10; }, "invalid cpu_period 10"},
      {[](Create& c) { c.resources.cpu_quota = 5; }, "invalid cpu_quota 5"},
      {[](Create& c) {
         c.resources.cpu_rt_period = 1000;
         c.resources.cpu_rt_runtime = 2000;
       },
       "invalid cpu_rt_runtime 2000"},
      {[](Create& c) { c.resources.cpus = -1; }, "invalid cpus -1"},
      {[](Create& c) {
         c.resources.cpus = 1.5;
         c.resources.cpu_quota = 50000;
       },
       "cpus conflicts with cpu_period and cpu_quota"},
      {[](Create& c) { c.resources.cpuset_cpus = "a-b"; },
       "invalid cpuset_cpus \"a-b\""},
      {[](Create& c) { c.resources.cpuset_mems = "3-1"; },
       "invalid cpuset_mems \"3-1\""},
      {[](Create& c) { c.resources.pids_limit = -5; }, "invalid pids_limit -5"},
      {[](Create& c) { c.resources.blkio_weight = 5; },
       "invalid blkio_weight 5"},
      {[](Create& c) { c.resources.blkio_weight_device = {"/dev/null:100"}; },
       "invalid blkio_weight_device \"/dev/null:100\": \"/dev/null\" is not "
       "a block device"},
      {[](Create& c) { c.resources.device_read_bps = {"/dev/null"}; },
       "invalid device_read_bps \"/dev/null\": want \"/dev/x:value\""},
      {[](Create& c) { c.resources.device_write_iops = {"/dev/null:1k"}; },
       "invalid device_write_iops \"/dev/null:1k\": \"1k\" is not a number"},
      {[](Create& c) { c.resources.device_write_bps = {"/dev/nope:1mb"}; },
       "invalid device_write_bps \"/dev/nope:1mb\": \"/dev/nope\": no such"},
      {[](Create& c) { c.resources.oom_score_adj = 2000; },
       "invalid oom_score_adj 2000"},
      {[](Create& c) { c.resources.shm_size = -1; }, "invalid shm_size -1"},
      {[](Create& c) { c.dns_servers = {"not-an-ip"}; },
       "invalid dns_servers entry \"not-an-ip\""},
      {[](Create& c) { c.dns_search = {"a b"}; },
       "invalid dns_search entry \"a b\""},
      {[](Create& c) { c.dns_opt = {""}; }, "invalid dns_opt entry \"\""},
      {[](Create& c) { c.host_add = {"nohost"}; },
       "invalid host_add entry \"nohost\""},
      {[](Create& c) { c.host_add = {"db:10.0.0.300"}; },
       "invalid host_add entry \"db:10.0.0.300\""},
      {[](Create& c) { c.hostname = "bad_name"; },
       "invalid hostname \"bad_name\""},
      {[](Create& c) {
         c.uts_mode = "host";
         c.hostname = "web";
       },
       "hostname \"web\": cannot be set without a UTS namespace of its own"},
      {[](Create& c) { c.log_driver_opt = {"max-file=3"}; },
       "invalid log_driver_opt \"max-file=3\""},
      {[](Create& c) { c.log_driver_opt = {"max-size=big"}; },
       "invalid log_driver_opt \"max-size=big\""},
      {[](Create& c) { c.log_driver = "journald"; },
       "log_driver \"journald\" is not supported"},
      {[](Create& c) { c.stop_signal = 99; }, "invalid stop_signal 99"},
      {[](Create& c) { c.stop_timeout = -1; }, "invalid stop_timeout -1"},
      {[](Create& c) { c.work_dir = "rel"; }, "invalid work_dir \"rel\""},
      {[](Create& c) { c.user = "a:b:c"; }, "invalid user \"a:b:c\""},
      {[](Create& c) { c.user = "app:"; }, "invalid user \"app:\""},
      {[](Create& c) { c.group_add = {""}; }, "invalid group_add entry \"\""},
      {[](Create& c) {
         c.env = {{"A=B", "1"}};
       },
       "invalid env \"A=B=1\""},
      {[](Create& c) { c.security_opts = {"seccomp=/p.json"}; },
       "security_opts \"seccomp=/p.json\": seccomp profiles are not "
       "supported yet"},
      {[](Create& c) { c.security_opts = {"bogus"}; },
       "invalid security_opts entry \"bogus\""},
      {[](Create& c) { c.seccomp_profile_path = "/p.json"; },
       "seccomp_profile_path \"/p.json\""},
      {[](Create& c) {
         c.init = true;
         c.init_path = "catatonit";
       },
       "invalid init_path \"catatonit\""},
      {[](Create& c) { c.cgroup_parent = "../x"; },
       "invalid cgroup_parent \"../x\""},
      {[](Create& c) {
         c.labels = {{"", "v"}};
       },
       "invalid labels entry"},
  };
  for (const auto& r : cases) {
    auto c = command({"true"});
    r.set(c);
    auto err = plan_error(c);
    BOOST_TEST(contains(err, r.expected),
               "expected \"" << r.expected << "\" in \"" << err << "\"");
  }

  image_defaults img;
  img.stop_signal = "SIGFOO";
  BOOST_TEST(plan_error(command({"true"}), img) ==
             "invalid stop signal \"SIGFOO\" in the image configuration");
}

BOOST_AUTO_TEST_CASE(accepted_variants_of_modes_and_options) {
  temp_dir dir;
  auto c = command({"true"});
  c.net_mode = "none";
  BOOST_TEST((plan(c).net.mode == ns_mode::private_));
  c.net_mode = "";
  BOOST_TEST((plan(c).net.mode == ns_mode::private_));
  c.net_mode = "host";
  c.publish = {"80:80"}; // published ports mean nothing on the host's net
  c.sys_ctl = {{"kernel.shmmax", "100000"}, {"fs.mqueue.msg_max", "20"}};
  auto p = plan(c);
  BOOST_TEST((p.net.mode == ns_mode::host));
  BOOST_TEST(p.sysctls.size() == 2u);
  c = command({"true"});
  c.net_mode = "container:web";
  c.pid_mode = "container:0123abc";
  c.ipc_mode = "host";
  c.uts_mode = "host";
  p = plan(c);
  BOOST_TEST((p.net.mode == ns_mode::container));
  BOOST_TEST(p.net.container == "web");
  BOOST_TEST(p.pid.container == "0123abc");
  BOOST_TEST((p.ipc.mode == ns_mode::host));
  BOOST_TEST((p.uts.mode == ns_mode::host));

  c = command({"true"});
  c.volumes = {dir.path + ":/data:ro,z", dir.path + ":/other/"};
  c.tmpfs = {"/run", "/scratch:size=10m,mode=1777,noexec"};
  c.security_opts = {"no-new-privileges", "label=disable", "seccomp=unconfined",
                     "apparmor=unconfined"};
  c.devices = {"/dev/null:/dev/mynull:rw", "/dev/zero:r"};
  p = plan(c);
  BOOST_REQUIRE_EQUAL(p.binds.size(), 2u);
  BOOST_TEST(p.binds[0].options == (strings{"rbind", "ro", "rprivate"}),
             boost::test_tools::per_element());
  BOOST_TEST(p.binds[1].destination == "/other");
  BOOST_TEST(p.no_new_privs);
  BOOST_REQUIRE_EQUAL(p.devices.size(), 2u);
  BOOST_TEST(p.devices[0].path == "/dev/mynull");
  BOOST_TEST(p.devices[0].access == "rw");
  BOOST_TEST(p.devices[0].major == 1);
  BOOST_TEST(p.devices[0].minor == 3);
  BOOST_TEST(p.devices[1].path == "/dev/zero");
  BOOST_TEST(p.devices[1].access == "r");
}

// ---------------------------------------------------------------------------
// Capabilities

BOOST_AUTO_TEST_CASE(capabilities_default_add_drop_all_privileged) {
  auto c = command({"true"});
  auto p = plan(c);
  BOOST_TEST(p.caps.size() == 14u);
  for (auto cap : {"CAP_CHOWN", "CAP_NET_RAW", "CAP_MKNOD", "CAP_AUDIT_WRITE",
                   "CAP_SYS_CHROOT", "CAP_SETFCAP"})
    BOOST_TEST(has_entry(p.caps, cap), cap);
  BOOST_TEST(!has_entry(p.caps, "CAP_SYS_ADMIN"));

  c.cap_add = {"sys_admin", "CAP_NET_ADMIN"};
  c.cap_drop = {"net_raw", "CAP_MKNOD"};
  p = plan(c);
  BOOST_TEST(p.caps.size() == 14u);
  BOOST_TEST(has_entry(p.caps, "CAP_SYS_ADMIN"));
  BOOST_TEST(has_entry(p.caps, "CAP_NET_ADMIN"));
  BOOST_TEST(!has_entry(p.caps, "CAP_NET_RAW"));
  BOOST_TEST(!has_entry(p.caps, "CAP_MKNOD"));

  c.cap_add = {"KILL"};
  c.cap_drop = {"all"};
  BOOST_TEST(plan(c).caps == strings{"CAP_KILL"},
             boost::test_tools::per_element());

  c.cap_add = {"ALL"};
  c.cap_drop = {"SYS_MODULE"};
  p = plan(c);
  BOOST_TEST(p.caps.size() > 30u);
  BOOST_TEST(!has_entry(p.caps, "CAP_SYS_MODULE"));

  c = command({"true"});
  c.privileged = true;
  c.cap_drop = {"CHOWN"};
  p = plan(c);
  BOOST_TEST(has_entry(p.caps, "CAP_CHOWN"));
  BOOST_TEST(has_entry(p.caps, "CAP_SYS_ADMIN"));
}

BOOST_AUTO_TEST_CASE(capabilities_stay_within_our_bounding_set) {
  // CAP_SYS_RESOURCE is bit 24; root on this host lacks it.
  std::ifstream status{"/proc/self/status"};
  std::string line;
  uint64_t bounding = ~uint64_t{0};
  while (std::getline(status, line))
    if (line.starts_with("CapBnd:"))
      bounding = std::stoull(line.substr(7), nullptr, 16);
  auto c = command({"true"});
  c.privileged = true;
  auto p = plan(c);
  bool have = (bounding >> 24) & 1;
  BOOST_TEST(has_entry(p.caps, "CAP_SYS_RESOURCE") == have);
  c = command({"true"});
  c.cap_add = {"SYS_RESOURCE"};
  if (have) {
    BOOST_TEST_MESSAGE("CAP_SYS_RESOURCE is in our bounding set here");
    BOOST_TEST(has_entry(plan(c).caps, "CAP_SYS_RESOURCE"));
  } else {
    BOOST_TEST(plan_error(c) ==
               "cap_add \"SYS_RESOURCE\": berthd's own bounding set lacks "
               "it, so no container can have it");
  }
}

// ---------------------------------------------------------------------------
// Users and groups in the root file system

BOOST_AUTO_TEST_CASE(users_resolve_in_the_image_files) {
  bundle b;
  auto ids = [&](const std::string& user, strings extra = {}) {
    exec_ids out;
    std::string err;
    BOOST_REQUIRE_MESSAGE(resolve_user(b.in.rootfs, user, extra, out, err),
                          err);
    return out;
  };
  auto gids = [](const exec_ids& e) {
    return std::vector<uint32_t>(e.additional_gids);
  };
  auto root = ids("");
  BOOST_TEST(root.uid == 0u);
  BOOST_TEST(root.gid == 0u);
  BOOST_TEST(root.home == "/root");
  auto app = ids("app");
  BOOST_TEST(app.uid == 1000u);
  BOOST_TEST(app.gid == 1000u);
  BOOST_TEST(app.home == "/home/app");
  BOOST_TEST(gids(app) == (std::vector<uint32_t>{29, 44}),
             boost::test_tools::per_element());
  BOOST_TEST(ids("1000").home == "/home/app");
  auto staff = ids("app:staff");
  BOOST_TEST(staff.gid == 50u);
  BOOST_TEST(staff.additional_gids.empty());
  auto unknown = ids("1234");
  BOOST_TEST(unknown.uid == 1234u);
  BOOST_TEST(unknown.gid == 0u);
  BOOST_TEST(unknown.home == "/");
  BOOST_TEST(ids("1234:99").gid == 99u);
  BOOST_TEST(ids("0:audio").gid == 29u);
  auto extra = ids("app", {"staff", "777", "audio"});
  BOOST_TEST(gids(extra) == (std::vector<uint32_t>{29, 44, 50, 777}),
             boost::test_tools::per_element());

  exec_ids out;
  std::string err;
  BOOST_TEST(!resolve_user(b.in.rootfs, "nobody", {}, out, err));
  BOOST_TEST(contains(err, "unable to find user \"nobody\""), err);
  BOOST_TEST(!resolve_user(b.in.rootfs, "app:wheel", {}, out, err));
  BOOST_TEST(contains(err, "unable to find group \"wheel\""), err);
  BOOST_TEST(!resolve_user(b.in.rootfs, "app", {"bogus"}, out, err));
  BOOST_TEST(contains(err, "\"bogus\" (group_add)"), err);
  // A malformed line is not a user.
  BOOST_TEST(!resolve_user(b.in.rootfs, "broken", {}, out, err));
}

BOOST_AUTO_TEST_CASE(passwd_links_never_leave_the_rootfs) {
  temp_dir outside;
  write(outside / "passwd", "evil:x:4242:4242::/evil:/bin/sh\n");
  write(outside / "group", "evilgroup:x:4343:\n");
  for (std::string target :
       {outside / "passwd",
        "../../../../../../" + outside.path.substr(1) + "/passwd"}) {
    bundle b{false};
    fs::create_directories(b.in.rootfs + "/etc");
    fs::create_symlink(target, b.in.rootfs + "/etc/passwd");
    fs::create_symlink(outside / "group", b.in.rootfs + "/etc/group");
    exec_ids out;
    std::string err;
    BOOST_TEST(!resolve_user(b.in.rootfs, "evil", {}, out, err), target);
    BOOST_TEST(contains(err, "unable to find user \"evil\""), err);
    BOOST_TEST(!resolve_user(b.in.rootfs, "0:evilgroup", {}, out, err));
    BOOST_TEST(resolve_user(b.in.rootfs, "4242", {}, out, err), err);
    BOOST_TEST(out.gid == 0u);
    BOOST_TEST(out.home == "/");
  }

  // An absolute link resolves inside the root: it is the image's own file.
  bundle b{false};
  write(b.in.rootfs + "/real/passwd", "inside:x:77:78::/in:/bin/sh\n");
  fs::create_directories(b.in.rootfs + "/etc");
  fs::create_symlink("/real/passwd", b.in.rootfs + "/etc/passwd");
  exec_ids out;
  std::string err;
  BOOST_REQUIRE_MESSAGE(resolve_user(b.in.rootfs, "inside", {}, out, err), err);
  BOOST_TEST(out.uid == 77u);
  BOOST_TEST(out.gid == 78u);

  // A FIFO is refused, never waited on.
  bundle fifo{false};
  fs::create_directories(fifo.in.rootfs + "/etc");
  BOOST_REQUIRE(mkfifo((fifo.in.rootfs + "/etc/passwd").c_str(), 0644) == 0);
  BOOST_TEST(!resolve_user(fifo.in.rootfs, "", {}, out, err));
  BOOST_TEST(contains(err, "not a regular file"), err);
}

// ---------------------------------------------------------------------------
// Rendering

BOOST_AUTO_TEST_CASE(rendered_spec_has_podmans_defaults) {
  bundle b;
  auto c = command({"sh", "-c", "exit 3"});
  c.user = "app";
  c.labels = {{"team", "infra"}};
  auto p = plan(c);
  rendered r{p, b.in};

  BOOST_TEST(std::string_view(r.at("/ociVersion")) == "1.0.2");
  BOOST_TEST(r.list("/process/args") == (strings{"sh", "-c", "exit 3"}),
             boost::test_tools::per_element());
  BOOST_TEST(bool(r.at("/process/terminal")) == false);
  BOOST_TEST(uint64_t(r.at("/process/user/uid")) == 1000u);
  BOOST_TEST(uint64_t(r.at("/process/user/gid")) == 1000u);
  BOOST_TEST(uint64_t(r.at("/process/user/additionalGids/1")) == 44u);
  auto env = r.list("/process/env");
  BOOST_TEST(has_entry(env, "HOSTNAME=0123456789ab"));
  BOOST_TEST(has_entry(env, "HOME=/home/app"));
  BOOST_TEST(std::string_view(r.at("/process/cwd")) == "/");
  BOOST_TEST(r.list("/process/capabilities/bounding").size() == 14u);
  BOOST_TEST(r.list("/process/capabilities/effective").size() == 14u);
  BOOST_TEST(bool(r.at("/process/noNewPrivileges")) == false);
  BOOST_TEST(!r.has("/process/oomScoreAdj"));
  BOOST_TEST(std::string_view(r.at("/root/path")) == b.in.rootfs);
  BOOST_TEST(bool(r.at("/root/readonly")) == false);
  BOOST_TEST(std::string_view(r.at("/hostname")) == "0123456789ab");
  BOOST_TEST(std::string_view(r.at("/annotations/team")) == "infra");
  BOOST_TEST(std::string_view(r.at("/linux/cgroupsPath")) == b.in.cgroups_path);

  // Mounts.
  for (auto dest :
       {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys",
        "/sys/fs/cgroup", "/etc/resolv.conf", "/etc/hosts", "/etc/hostname"})
    BOOST_TEST(r.mounts_at(dest) == 1u, dest);
  BOOST_TEST(has_entry(r.mount_options("/dev/shm"), "size=67108864"));
  BOOST_TEST(has_entry(r.mount_options("/sys"), "ro"));
  BOOST_TEST(std::string_view(r.mount("/etc/hosts")["source"]) ==
             b.in.userdata + "/hosts");
  BOOST_TEST(std::string_view(r.mount("/etc/hosts")["type"]) == "bind");
  BOOST_TEST(r.mounts_at("/dev/init") == 0u);

  // Namespaces, masks, device rules.
  auto ns = r.namespaces();
  BOOST_TEST(ns.size() == 5u);
  for (auto type : {"pid", "network", "ipc", "uts", "mount"})
    BOOST_TEST((ns.count(type) == 1 && ns[type].empty()), type);
  auto masked = r.list("/linux/maskedPaths");
  BOOST_TEST(has_entry(masked, "/proc/kcore"));
  BOOST_TEST(has_entry(masked, "/sys/firmware"));
  BOOST_TEST(has_entry(r.list("/linux/readonlyPaths"), "/proc/sys"));
  BOOST_TEST(bool(r.at("/linux/resources/devices/0/allow")) == false);
  BOOST_TEST(std::string_view(r.at("/linux/resources/devices/0/access")) ==
             "rwm");
  BOOST_TEST(!r.has("/linux/resources/memory"));
  BOOST_TEST(!r.has("/linux/seccomp"));
}

BOOST_AUTO_TEST_CASE(rendered_options_of_the_request) {
  bundle b;
  temp_dir vol;
  auto c = command({"app"});
  c.tty = true;
  c.init = true;
  c.readonly_rootfs = true;
  c.no_new_privs = true;
  c.hostname = "web1";
  c.work_dir = "/srv";
  c.volumes = {vol.path + ":/data:ro", vol.path + ":/data/sub"};
  c.tmpfs = {"/tmp", "/cache:size=1m"};
  c.devices = {"/dev/null:/dev/mynull:rw"};
  c.sys_ctl = {{"net.ipv4.ip_forward", "1"}};
  c.resources.shm_size = 1 << 20;
  c.resources.oom_score_adj = 250;
  c.cap_drop = {"ALL"};
  auto p = plan(c);
  b.in.init_path = "/bin/sh"; // any regular file will do for the spec
  rendered r{p, b.in};

  BOOST_TEST(r.list("/process/args") == (strings{"/dev/init", "--", "app"}),
             boost::test_tools::per_element());
  BOOST_TEST(std::string_view(r.mount("/dev/init")["source"]) == "/bin/sh");
  BOOST_TEST(bool(r.at("/process/terminal")));
  BOOST_TEST(has_entry(r.list("/process/env"), "TERM=xterm"));
  BOOST_TEST(has_entry(r.list("/process/env"), "HOSTNAME=web1"));
  BOOST_TEST(bool(r.at("/root/readonly")));
  BOOST_TEST(bool(r.at("/process/noNewPrivileges")));
  BOOST_TEST(int64_t(r.at("/process/oomScoreAdj")) == 250);
  BOOST_TEST(r.list("/process/capabilities/bounding").empty());
  BOOST_TEST(std::string_view(r.at("/hostname")) == "web1");
  BOOST_TEST(std::string_view(r.at("/process/cwd")) == "/srv");
  BOOST_TEST(std::string_view(r.at("/linux/sysctl/net.ipv4.ip_forward")) ==
             "1");
  BOOST_TEST(has_entry(r.mount_options("/dev/shm"), "size=1048576"));

  BOOST_TEST(r.mount_options("/data") == (strings{"rbind", "ro", "rprivate"}),
             boost::test_tools::per_element());
  BOOST_TEST(std::string_view(r.mount("/data/sub")["source"]) == vol.path);
  BOOST_TEST(r.mount_options("/tmp") ==
                 (strings{"rw", "noexec", "nosuid", "nodev"}),
             boost::test_tools::per_element());
  BOOST_TEST(r.mount_options("/cache") == strings{"size=1m"},
             boost::test_tools::per_element());
  // Parents before children.
  size_t data = 0, sub = 0, i = 0;
  simdjson::dom::array arr7 = r.at("/mounts").get_array().value();
  for (auto m : arr7) {
    auto d = std::string_view(m["destination"]);
    if (d == "/data")
      data = i;
    if (d == "/data/sub")
      sub = i;
    ++i;
  }
  BOOST_TEST(data < sub);

  BOOST_TEST(std::string_view(r.at("/linux/devices/0/path")) == "/dev/mynull");
  BOOST_TEST(std::string_view(r.at("/linux/devices/0/type")) == "c");
  BOOST_TEST(int64_t(r.at("/linux/devices/0/major")) == 1);
  BOOST_TEST(int64_t(r.at("/linux/devices/0/minor")) == 3);
  BOOST_TEST(int64_t(r.at("/linux/devices/0/fileMode")) == 0666);
  BOOST_TEST(bool(r.at("/linux/resources/devices/1/allow")));
  BOOST_TEST(int64_t(r.at("/linux/resources/devices/1/minor")) == 3);
  BOOST_TEST(std::string_view(r.at("/linux/resources/devices/1/access")) ==
             "rw");

  // A tmpfs over a default mount replaces it.
  c = command({"app"});
  c.tmpfs = {"/dev/shm:size=2m"};
  rendered over{plan(c), b.in};
  BOOST_TEST(over.mounts_at("/dev/shm") == 1u);
  BOOST_TEST(over.mount_options("/dev/shm") == strings{"size=2m"},
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(privileged_has_every_capability_and_device) {
  bundle b;
  auto c = command({"true"});
  c.privileged = true;
  rendered r{plan(c), b.in};
  BOOST_TEST(r.list("/process/capabilities/bounding").size() > 30u);
  BOOST_TEST(!r.has("/linux/maskedPaths"));
  BOOST_TEST(!r.has("/linux/readonlyPaths"));
  BOOST_TEST(bool(r.at("/linux/resources/devices/0/allow")));
  BOOST_TEST(has_entry(r.mount_options("/sys"), "rw"));
  bool null_found = false;
  simdjson::dom::array arr8 = r.at("/linux/devices").get_array().value();
  for (auto d : arr8)
    null_found |= std::string_view(d["path"]) == "/dev/null";
  BOOST_TEST(null_found);
}

BOOST_AUTO_TEST_CASE(namespace_modes_render_as_paths_or_omissions) {
  bundle b;
  auto c = command({"true"});
  c.pid_mode = "host";
  c.ipc_mode = "container:db";
  c.uts_mode = "host";
  c.net_mode = "container:db";
  auto p = plan(c);
  b.in.ipc_ns_pid = 4321;
  b.in.net_ns_pid = 4322;
  b.in.shm_path = "/var/lib/berth/containers/db/userdata/shm";
  rendered r{p, b.in};
  auto ns = r.namespaces();
  BOOST_TEST(ns.count("pid") == 0u);
  BOOST_TEST(ns.count("uts") == 0u);
  BOOST_TEST(ns["ipc"] == "/proc/4321/ns/ipc");
  BOOST_TEST(ns["network"] == "/proc/4322/ns/net");
  BOOST_TEST(ns.count("mount") == 1u);
  BOOST_TEST(!r.has("/hostname"));
  // The joined container's /dev/shm, as mounted on the host.
  BOOST_TEST(std::string_view(r.mount("/dev/shm")["source"]) ==
             "/var/lib/berth/containers/db/userdata/shm");
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  BOOST_TEST(read(b.in.userdata + "/hostname") == std::string{host} + "\n");

  // Joining a namespace needs the target's pid.
  b.in.net_ns_pid = 0;
  std::string json, err;
  BOOST_TEST(!render_spec(p, b.in, json, err));
  BOOST_TEST(contains(err, "network namespace of container \"db\""), err);

  // The host's IPC: its /dev/shm; a joined UTS: the target's name.
  c = command({"true"});
  c.ipc_mode = "host";
  c.uts_mode = "container:db";
  b.in.uts_ns_pid = 99;
  b.in.uts_hostname = "dbhost";
  rendered shared{plan(c), b.in};
  BOOST_TEST(std::string_view(shared.mount("/dev/shm")["source"]) ==
             "/dev/shm");
  BOOST_TEST(shared.namespaces()["uts"] == "/proc/99/ns/uts");
  BOOST_TEST(!shared.has("/hostname"));
  BOOST_TEST(has_entry(shared.list("/process/env"), "HOSTNAME=dbhost"));
}

BOOST_AUTO_TEST_CASE(resources_map_to_linux_resources) {
  bundle b;
  auto blk = b.dir / "blk";
  bool have_node = make_node(blk, S_IFBLK, 7, 200);
  auto c = command({"true"});
  auto& res = c.resources;
  res.memory = 64 << 20;
  res.memory_reservation = 32 << 20;
  res.memory_swap = 128 << 20;
  res.memory_swappiness = 10;
  res.kernel_memory = 8 << 20;
  res.disable_oomkiller = true;
  res.cpu_shares = 512;
  res.cpus = 1.5;
  res.cpuset_cpus = "0";
  res.cpuset_mems = "0";
  res.cpu_rt_period = 1000000;
  res.cpu_rt_runtime = 950000;
  res.pids_limit = 100;
  res.blkio_weight = 500;
  if (have_node) {
    res.blkio_weight_device = {blk + ":300"};
    res.device_read_bps = {blk + ":2mb"};
    res.device_write_bps = {blk + ":1mb"};
    res.device_read_iops = {blk + ":100"};
    res.device_write_iops = {blk + ":200"};
  }
  rendered r{plan(c), b.in};
  auto num = [&](std::string_view ptr) { return int64_t(r.at(ptr)); };
  BOOST_TEST(num("/linux/resources/memory/limit") == 64 << 20);
  BOOST_TEST(num("/linux/resources/memory/reservation") == 32 << 20);
  BOOST_TEST(num("/linux/resources/memory/swap") == 128 << 20);
  BOOST_TEST(num("/linux/resources/memory/swappiness") == 10);
  BOOST_TEST(num("/linux/resources/memory/kernel") == 8 << 20);
  BOOST_TEST(bool(r.at("/linux/resources/memory/disableOOMKiller")));
  BOOST_TEST(num("/linux/resources/cpu/shares") == 512);
  BOOST_TEST(num("/linux/resources/cpu/period") == 100000);
  BOOST_TEST(num("/linux/resources/cpu/quota") == 150000);
  BOOST_TEST(num("/linux/resources/cpu/realtimePeriod") == 1000000);
  BOOST_TEST(num("/linux/resources/cpu/realtimeRuntime") == 950000);
  BOOST_TEST(std::string_view(r.at("/linux/resources/cpu/cpus")) == "0");
  BOOST_TEST(std::string_view(r.at("/linux/resources/cpu/mems")) == "0");
  BOOST_TEST(num("/linux/resources/pids/limit") == 100);
  BOOST_TEST(num("/linux/resources/blockIO/weight") == 500);
  if (have_node) {
    auto io = [&](std::string_view list) {
      auto base =
          std::string{"/linux/resources/blockIO/"} + std::string{list} + "/0/";
      BOOST_TEST(num(base + "major") == 7);
      BOOST_TEST(num(base + "minor") == 200);
      return num(base + (list == "weightDevice" ? "weight" : "rate"));
    };
    BOOST_TEST(io("weightDevice") == 300);
    BOOST_TEST(io("throttleReadBpsDevice") == 2 << 20);
    BOOST_TEST(io("throttleWriteBpsDevice") == 1 << 20);
    BOOST_TEST(io("throttleReadIOPSDevice") == 100);
    BOOST_TEST(io("throttleWriteIOPSDevice") == 200);
  }

  // Explicit quota and period; swappiness 0 counts as not set; -1 limits.
  c = command({"true"});
  c.resources.cpu_quota = 50000;
  c.resources.cpu_period = 200000;
  c.resources.memory = 64 << 20;
  c.resources.memory_swap = -1;
  c.resources.pids_limit = -1;
  rendered q{plan(c), b.in};
  BOOST_TEST(int64_t(q.at("/linux/resources/cpu/quota")) == 50000);
  BOOST_TEST(int64_t(q.at("/linux/resources/cpu/period")) == 200000);
  BOOST_TEST(int64_t(q.at("/linux/resources/memory/swap")) == -1);
  BOOST_TEST(!q.has("/linux/resources/memory/swappiness"));
  BOOST_TEST(int64_t(q.at("/linux/resources/pids/limit")) == -1);
}

BOOST_AUTO_TEST_CASE(rlimits_are_clamped_to_the_hosts_hard_limits) {
  bundle b;
  rlimit nofile{}, nproc{};
  BOOST_REQUIRE(getrlimit(RLIMIT_NOFILE, &nofile) == 0);
  BOOST_REQUIRE(getrlimit(RLIMIT_NPROC, &nproc) == 0);
  auto expect = [](uint64_t want, const rlimit& host) {
    return host.rlim_max == RLIM_INFINITY
               ? want
               : std::min<uint64_t>(want, host.rlim_max);
  };

  // podman's defaults, clamped.
  rendered d{plan(command({"true"})), b.in};
  BOOST_TEST(d.rlimit("RLIMIT_NOFILE", "hard") == expect(1048576, nofile));
  BOOST_TEST(d.rlimit("RLIMIT_NOFILE", "soft") == expect(1048576, nofile));
  BOOST_TEST(d.rlimit("RLIMIT_NPROC", "hard") == expect(1048576, nproc));

  // Asked for more than any kernel allows for nofile (nr_open < 2^31).
  auto c = command({"true"});
  c.resources.ulimit = {"nofile=100:3000000000", "core=-1", "NPROC=50:60",
                        "msgqueue=1000"};
  auto p = plan(c);
  rendered r{p, b.in};
  BOOST_TEST(r.rlimit("RLIMIT_NOFILE", "soft") == 100u);
  BOOST_TEST(r.rlimit("RLIMIT_NOFILE", "hard") == nofile.rlim_max);
  BOOST_TEST(r.rlimit("RLIMIT_NOFILE", "hard") < 3000000000u);
  BOOST_TEST(r.rlimit("RLIMIT_NPROC", "soft") == 50u);
  BOOST_TEST(r.rlimit("RLIMIT_NPROC", "hard") == expect(60, nproc));
  BOOST_TEST(r.rlimit("RLIMIT_MSGQUEUE", "hard") == 1000u);
  rlimit core{};
  getrlimit(RLIMIT_CORE, &core);
  uint64_t core_max =
      core.rlim_max == RLIM_INFINITY ? UINT64_MAX : core.rlim_max;
  BOOST_TEST(r.rlimit("RLIMIT_CORE", "hard") == core_max);
  BOOST_TEST(r.rlimit("RLIMIT_CORE", "soft") == core_max);
  // The plan keeps what was asked.
  BOOST_TEST(p.rlimits.size() == 4u);
}

// ---------------------------------------------------------------------------
// /etc files

BOOST_AUTO_TEST_CASE(resolv_conf_hosts_and_hostname_files) {
  bundle b;
  auto c = command({"true"});
  c.host_add = {"db:10.1.1.1", "v6:fd00::1"};
  c.hostname = "web1";
  render_inputs& in = b.in;
  rendered r{plan(c), in};
  auto resolv = read(in.userdata + "/resolv.conf");
  BOOST_TEST(resolv == "search corp.example\nnameserver 10.0.0.1\n"
                       "options ndots:2\n");
  auto hosts = read(in.userdata + "/hosts");
  BOOST_TEST(hosts == "127.0.0.1\tlocalhost\n"
                      "::1\tlocalhost ip6-localhost ip6-loopback\n"
                      "10.1.1.1\tdb\nfd00::1\tv6\n127.0.1.1\tweb1\n");
  BOOST_TEST(read(in.userdata + "/hostname") == "web1\n");
  struct stat st;
  BOOST_REQUIRE(stat((in.userdata + "/hosts").c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & 0777) == 0644u);

  // Request entries replace the host's, one kind at a time.
  c.dns_servers = {"1.1.1.1", "2606:4700::1111"};
  c.dns_opt = {"rotate"};
  rendered dns{plan(c), in};
  BOOST_TEST(read(in.userdata + "/resolv.conf") ==
             "search corp.example\nnameserver 1.1.1.1\n"
             "nameserver 2606:4700::1111\noptions rotate\n");
  c.dns_search = {"."};
  rendered nosearch{plan(c), in};
  BOOST_TEST(!contains(read(in.userdata + "/resolv.conf"), "search"));

  // The host's network: its resolvers on loopback and its hosts file.
  c = command({"true"});
  c.net_mode = "host";
  c.host_add = {"db:10.1.1.1"};
  rendered host{plan(c), in};
  BOOST_TEST(contains(read(in.userdata + "/resolv.conf"),
                      "nameserver 127.0.0.53\nnameserver 10.0.0.1\n"));
  hosts = read(in.userdata + "/hosts");
  BOOST_TEST(hosts.starts_with("127.0.0.1 localhost\n10.9.9.9 buildhost\n"));
  BOOST_TEST(contains(hosts, "10.1.1.1\tdb\n"));
  BOOST_TEST(contains(hosts, "127.0.1.1\t0123456789ab\n"));

  // No host file at all: no entries, no failure.
  in.host_resolv = b.dir / "missing";
  rendered none{plan(command({"true"})), in};
  BOOST_TEST(read(in.userdata + "/resolv.conf").empty());
}

BOOST_AUTO_TEST_CASE(render_refuses_what_it_cannot_resolve) {
  bundle b;
  auto c = command({"true"});
  c.user = "ghost";
  auto p = plan(c);
  std::string json, err;
  BOOST_TEST(!render_spec(p, b.in, json, err));
  BOOST_TEST(contains(err, "unable to find user \"ghost\""), err);

  c = command({"true"});
  c.init = true;
  p = plan(c);
  b.in.init_path = b.dir / "no-init";
  BOOST_TEST(!render_spec(p, b.in, json, err));
  BOOST_TEST(contains(err, "no-init"), err);

  b.in.rootfs = "relative";
  BOOST_TEST(!render_spec(plan(command({"true"})), b.in, json, err));
}

// ---------------------------------------------------------------------------
// A real container from the rendered spec

namespace {

// Runs a shell command line; its exit code, or -1.
int shell(const std::string& line) {
  int status = std::system(line.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The container ID's cgroup left behind in any v1 hierarchy, removed.
bool cgroup_left(const std::string& leaf) {
  bool left = false;
  std::error_code ec;
  for (const auto& h : fs::directory_iterator{"/sys/fs/cgroup", ec}) {
    auto dir = h.path() / leaf;
    if (fs::exists(dir, ec)) {
      left = true;
      rmdir(dir.c_str());
    }
  }
  return left;
}

// Builds a busybox root, renders `c` into DIR/config.json, runs it with
// runc and returns its exit code (-1 if runc could not be run at all).
int run_with_runc(Create c, const std::string& tag,
                  std::function<void(bundle&)> prepare = {}) {
  bundle b{false};
  for (auto dir : {"bin", "etc"})
    fs::create_directories(b.in.rootfs + "/" + dir);
  fs::copy_file("/bin/busybox", b.in.rootfs + "/bin/busybox");
  for (auto tool :
       {"sh", "true", "id", "test", "touch", "grep", "hostname", "cat", "ls"})
    fs::create_symlink("busybox", b.in.rootfs + "/bin/" + tool);
  std::random_device rd;
  auto id = "berth-spec-" + std::to_string(getpid()) + "-" + tag + "-" +
            std::to_string(rd() % 100000);
  b.in.id = id;
  b.in.cgroups_path = "/" + id;
  b.in.host_hosts = "/etc/hosts";
  b.in.host_resolv = "/etc/resolv.conf";
  if (prepare)
    prepare(b);

  std::string json, err;
  auto p = plan(c);
  BOOST_REQUIRE_MESSAGE(render_spec(p, b.in, json, err), err);
  write(b.dir / "config.json", json);
  auto log = b.dir / "runc.log";
  int code = shell("/usr/sbin/runc run --bundle " + b.dir.path + " " + id +
                   " </dev/null >" + log + " 2>&1");
  BOOST_TEST_MESSAGE("runc " << tag << " exit " << code << ": " << read(log));
  shell("/usr/sbin/runc delete -f " + id + " >/dev/null 2>&1");
  BOOST_TEST(!cgroup_left(id), "cgroup of " << id << " left behind");
  return code;
}

bool can_run_runc() {
  if (geteuid() != 0 || access("/usr/sbin/runc", X_OK) != 0 ||
      access("/bin/busybox", R_OK) != 0) {
    BOOST_TEST_MESSAGE("skipped: needs root, /usr/sbin/runc and "
                       "/bin/busybox");
    return false;
  }
  return true;
}

} // namespace

BOOST_AUTO_TEST_CASE(runc_runs_the_rendered_spec) {
  if (!can_run_runc())
    return;
  auto c = command({"sh", "-c", "exit 3"});
  c.net_mode = "none";
  BOOST_TEST(run_with_runc(c, "exit3") == 3);
}

BOOST_AUTO_TEST_CASE(runc_applies_user_names_and_limits) {
  if (!can_run_runc())
    return;
  auto c = command(
      {"sh", "-c",
       "test \"$(id -u)\" = 1000 && test \"$(id -G)\" = '0 555' && "
       "test \"$(hostname)\" = box1 && grep -q box1 /etc/hosts && "
       "grep -q '10.2.2.2' /etc/hosts && test \"$HOSTNAME\" = box1 && "
       "test \"$(cat /proc/self/oom_score_adj)\" = 100 && "
       "test \"$(ulimit -n)\" = 1024 && test \"$FOO\" = bar && exit 4"});
  c.user = "1000";
  c.group_add = {"555"};
  c.hostname = "box1";
  c.host_add = {"gw:10.2.2.2"};
  c.env = {{"FOO", "bar"}};
  c.resources.oom_score_adj = 100;
  c.resources.ulimit = {"nofile=1024:4096"};
  BOOST_TEST(run_with_runc(c, "user") == 4);
}

BOOST_AUTO_TEST_CASE(runc_applies_mounts_and_a_readonly_root) {
  if (!can_run_runc())
    return;
  temp_dir vol;
  write(vol / "marker", "x");
  auto c = command({"sh", "-c",
                    "test -f /data/marker && ! touch /data/new 2>/dev/null "
                    "&& ! touch /newfile 2>/dev/null && touch /scratch/ok "
                    "&& test -s /etc/resolv.conf -o -f /etc/resolv.conf "
                    "&& test -z \"$(ls /sys/firmware)\" && exit 4"});
  c.readonly_rootfs = true;
  c.volumes = {vol.path + ":/data:ro"};
  c.tmpfs = {"/scratch"};
  BOOST_TEST(run_with_runc(c, "mounts") == 4);
  BOOST_TEST(!fs::exists(vol / "new"));
}

BOOST_AUTO_TEST_CASE(runc_runs_with_catatonit_as_init) {
  if (!can_run_runc() || access("/usr/bin/catatonit", X_OK) != 0)
    return;
  auto c = command({"sh", "-c", "test -x /dev/init && exit 5"});
  c.init = true;
  BOOST_TEST(run_with_runc(c, "init") == 5);
}

BOOST_AUTO_TEST_CASE(runc_runs_a_privileged_container) {
  if (!can_run_runc())
    return;
  auto c = command({"sh", "-c", "test -n \"$(ls /sys/firmware)\" && exit 6"});
  c.privileged = true;
  BOOST_TEST(run_with_runc(c, "priv") == 6);
}
