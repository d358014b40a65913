// Small parsers and formatters: varlink addresses, registries.conf, host
// facts and podman's uptime text.
#define BOOST_TEST_MODULE misc
#include <boost/test/unit_test.hpp>

#include "protocol/address.hpp"
#include "runtime/host.hpp"
#include "storage/registries.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

using berth::varlink::address;
namespace storage = berth::storage;
namespace runtime = berth::runtime;
namespace fs = std::filesystem;

namespace {

// A directory under TMPDIR removed at the end of the test.
struct temp_dir {
  fs::path path;
  temp_dir() {
    auto base = fs::temp_directory_path() / "berth-unit-misc-XXXXXX";
    std::string tmpl = base.string();
    BOOST_TEST_REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path write(const std::string& name, const std::string& text) const {
    auto p = path / name;
    std::ofstream{p} << text;
    return p;
  }
};

storage::registries_conf parse_ok(const std::string& text) {
  storage::registries_conf conf;
  std::string err;
  BOOST_TEST(storage::parse_registries_conf(text, conf, err), err);
  return conf;
}

std::string parse_error(const std::string& text) {
  storage::registries_conf conf;
  std::string err;
  BOOST_TEST(!storage::parse_registries_conf(text, conf, err));
  return err;
}

} // namespace

// --- address ----------------------------------------------------------------

BOOST_AUTO_TEST_CASE(unix_path_address) {
  auto a = address::parse("unix:/run/podman/io.podman");
  BOOST_TEST_REQUIRE(a.has_value());
  BOOST_TEST((a->type == address::kind::unix_path));
  BOOST_TEST(a->path == "/run/podman/io.podman");
  BOOST_TEST(a->str() == "unix:/run/podman/io.podman");
}

BOOST_AUTO_TEST_CASE(unix_abstract_address) {
  auto a = address::parse("unix:@io.podman");
  BOOST_TEST_REQUIRE(a.has_value());
  BOOST_TEST((a->type == address::kind::unix_abstract));
  BOOST_TEST(a->path == "io.podman");
  BOOST_TEST(a->str() == "unix:@io.podman");
}

BOOST_AUTO_TEST_CASE(tcp_addresses) {
  auto a = address::parse("tcp:127.0.0.1:80");
  BOOST_TEST_REQUIRE(a.has_value());
  BOOST_TEST((a->type == address::kind::tcp));
  BOOST_TEST(a->host == "127.0.0.1");
  BOOST_TEST(a->port == 80);
  BOOST_TEST(a->str() == "tcp:127.0.0.1:80");

  auto v6 = address::parse("tcp:[::1]:5");
  BOOST_TEST_REQUIRE(v6.has_value());
  BOOST_TEST(v6->host == "::1");
  BOOST_TEST(v6->port == 5);
  BOOST_TEST(v6->str() == "tcp:[::1]:5");

  auto named = address::parse("tcp:localhost:65535");
  BOOST_TEST_REQUIRE(named.has_value());
  BOOST_TEST(named->host == "localhost");
  BOOST_TEST(named->port == 65535);
  BOOST_TEST(address::parse("tcp:0.0.0.0:0").has_value());
}

BOOST_AUTO_TEST_CASE(parameters_after_semicolon_are_ignored) {
  auto a = address::parse("unix:/run/io.podman;mode=0666");
  BOOST_TEST_REQUIRE(a.has_value());
  BOOST_TEST(a->path == "/run/io.podman");
  BOOST_TEST(a->str() == "unix:/run/io.podman");
  auto t = address::parse("tcp:127.0.0.1:12345;foo=bar;x");
  BOOST_TEST_REQUIRE(t.has_value());
  BOOST_TEST(t->port == 12345);
  BOOST_TEST(!address::parse(";unix:/run/x").has_value());
}

BOOST_AUTO_TEST_CASE(invalid_addresses) {
  for (auto text : {"", "/run/io.podman", "io.podman", "unix", "unix:",
                    "unix:@", "unix:run/io.podman", "unix:./io.podman",
                    "tcp:", "tcp:127.0.0.1", "tcp:127.0.0.1:",
                    "tcp::80", "tcp:127.0.0.1:70000", "tcp:127.0.0.1:65536",
                    "tcp:127.0.0.1:-1", "tcp:127.0.0.1:80x",
                    "tcp:127.0.0.1: 80", "tcp:[]:80", "udp:127.0.0.1:80",
                    "UNIX:/run/x", "exec:/bin/true"}) {
    BOOST_TEST(!address::parse(text).has_value(), "accepted: " << text);
  }
}

BOOST_AUTO_TEST_CASE(unix_path_length_limit) {
  // sun_path holds 108 bytes including the terminating NUL.
  auto longest = "/" + std::string(106, 'p');
  auto a = address::parse("unix:" + longest);
  BOOST_TEST_REQUIRE(a.has_value());
  BOOST_TEST(a->path == longest);
  BOOST_TEST(!address::parse("unix:" + longest + "p").has_value());
  BOOST_TEST(address::parse("unix:@" + std::string(107, 'a')).has_value());
  BOOST_TEST(!address::parse("unix:@" + std::string(108, 'a')).has_value());
}

BOOST_AUTO_TEST_CASE(address_str_round_trips) {
  for (auto text : {"unix:/run/podman/io.podman", "unix:@berth-test",
                    "tcp:127.0.0.1:80", "tcp:[::1]:5", "tcp:[fe80::1]:65535",
                    "tcp:example.org:8080"}) {
    auto a = address::parse(text);
    BOOST_TEST_REQUIRE(a.has_value(), text);
    BOOST_TEST(a->str() == text);
    auto again = address::parse(a->str());
    BOOST_TEST_REQUIRE(again.has_value());
    BOOST_TEST(again->str() == text);
  }
}

// --- registries.conf --------------------------------------------------------

BOOST_AUTO_TEST_CASE(v2_search_registries) {
  auto conf = parse_ok(
      "unqualified-search-registries = [\"docker.io\", \"quay.io\"]\n");
  BOOST_TEST(conf.search == (std::vector<std::string>{"docker.io", "quay.io"}),
             boost::test_tools::per_element());
  BOOST_TEST(conf.registries.empty());
}

BOOST_AUTO_TEST_CASE(v2_search_registries_across_lines) {
  auto conf = parse_ok(R"(# registries.conf
# An example with comments.

unqualified-search-registries = [   # the list
  "registry.fedoraproject.org",   # first
  # a whole-line comment
  'quay.io',
  "docker.io",
]
short-name-mode = "enforcing"
)");
  BOOST_TEST(conf.search ==
                 (std::vector<std::string>{"registry.fedoraproject.org",
                                           "quay.io", "docker.io"}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(v2_registry_tables) {
  auto conf = parse_ok(R"(
unqualified-search-registries = ["docker.io"]

[[registry]]
prefix = "example.com/foo"
location = "internal.example.com:5000/foo"
insecure = true
blocked = false

[[registry.mirror]]
location = "mirror.example.com"
insecure = false

[[registry]]
location = "blocked.example.com"
blocked = true
)");
  BOOST_TEST(conf.search == (std::vector<std::string>{"docker.io"}),
             boost::test_tools::per_element());
  BOOST_TEST_REQUIRE(conf.registries.size() == 2u);
  auto& first = conf.registries[0];
  BOOST_TEST(first.prefix == "example.com/foo");
  BOOST_TEST(first.location == "internal.example.com:5000/foo");
  BOOST_TEST(first.insecure);
  BOOST_TEST(!first.blocked);
  auto& second = conf.registries[1];
  BOOST_TEST(second.location == "blocked.example.com");
  BOOST_TEST(second.prefix.empty());
  BOOST_TEST(!second.insecure);
  BOOST_TEST(second.blocked);
  BOOST_TEST(conf.insecure() ==
                 (std::vector<std::string>{"internal.example.com:5000/foo"}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(v1_tables) {
  auto conf = parse_ok(R"(
# Version 1
[registries.search]
registries = ['docker.io', "registry.fedoraproject.org"]

[registries.insecure]
registries = ["localhost:5000", "10.0.0.1:5000"]

[registries.block]
registries = ["evil.example.com"]
)");
  BOOST_TEST(conf.search ==
                 (std::vector<std::string>{"docker.io",
                                           "registry.fedoraproject.org"}),
             boost::test_tools::per_element());
  BOOST_TEST(conf.insecure() ==
                 (std::vector<std::string>{"localhost:5000", "10.0.0.1:5000"}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(unknown_keys_are_ignored) {
  auto conf = parse_ok(R"(
short-name-mode = "permissive"
credential-helpers = ["containers-auth.json"]
some-number = 42
[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
)");
  BOOST_TEST(conf.search.empty());
  BOOST_TEST(conf.registries.empty());
}

BOOST_AUTO_TEST_CASE(empty_text_is_empty_config) {
  auto conf = parse_ok("");
  BOOST_TEST(conf.search.empty());
  conf = parse_ok("# only a comment\n\n   \n");
  BOOST_TEST(conf.search.empty());
}

BOOST_AUTO_TEST_CASE(errors_name_the_line) {
  BOOST_TEST(parse_error("a = \"x\"\nb \"y\"\n").starts_with("line 2:"));
  BOOST_TEST(parse_error("# c\n\n\n[registries.search\n").starts_with(
      "line 4:"));
  BOOST_TEST(parse_error("x = 1\n= 2\n").starts_with("line 2:"));
  BOOST_TEST(parse_error("unqualified-search-registries = [\n"
                         "  \"docker.io\",\n"
                         "  \"quay.io\n"
                         "]\n")
                 .starts_with("line 3:"));
  BOOST_TEST(parse_error("a = \"unterminated\n").starts_with("line 1:"));
  BOOST_TEST(parse_error("[[registry]\nlocation = \"x\"\n")
                 .starts_with("line 1:"));
}

BOOST_AUTO_TEST_CASE(missing_file_is_empty_config) {
  temp_dir dir;
  storage::registries_conf conf;
  conf.search = {"stale"};
  std::string err;
  BOOST_TEST(storage::load_registries_conf((dir.path / "nope").string(), conf,
                                           err));
  BOOST_TEST(conf.search.empty());
  BOOST_TEST(err.empty());
}

BOOST_AUTO_TEST_CASE(load_reads_the_file_and_names_it_in_errors) {
  temp_dir dir;
  auto good = dir.write("good.conf",
                        "unqualified-search-registries = [\"quay.io\"]\n");
  storage::registries_conf conf;
  std::string err;
  BOOST_TEST(storage::load_registries_conf(good.string(), conf, err), err);
  BOOST_TEST(conf.search == (std::vector<std::string>{"quay.io"}),
             boost::test_tools::per_element());
  auto bad = dir.write("bad.conf", "\n\n!!\n");
  BOOST_TEST(!storage::load_registries_conf(bad.string(), conf, err));
  BOOST_TEST(err.find(bad.string()) != std::string::npos, err);
  BOOST_TEST(err.find("line 3") != std::string::npos, err);
}

// --- host -------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(uptime_as_podman_prints_it) {
  BOOST_TEST(runtime::format_uptime(27.6) == "27.6s");
  BOOST_TEST(runtime::format_uptime(3027.6) == "50m 27.6s");
  BOOST_TEST(runtime::format_uptime(96627.6) ==
             "26h 50m 27.6s (Approximately 1.08 days)");
  BOOST_TEST(runtime::format_uptime(60) == "1m 0s");
  BOOST_TEST(runtime::format_uptime(3600) ==
             "1h 0m 0s (Approximately 0.04 days)");
  BOOST_TEST(runtime::format_uptime(12.25) == "12.25s");
  BOOST_TEST(runtime::format_uptime(10) == "10s");
}

BOOST_AUTO_TEST_CASE(host_info_is_plausible) {
  auto h = runtime::read_host_info();
  BOOST_TEST(h.cpus > 0);
  BOOST_TEST(h.mem_total > 0);
  BOOST_TEST(h.mem_free >= 0);
  BOOST_TEST(h.mem_free <= h.mem_total);
  BOOST_TEST(h.swap_free <= h.swap_total);
  BOOST_TEST(!h.kernel.empty());
  BOOST_TEST(!h.hostname.empty());
  BOOST_TEST(!h.arch.empty());
  BOOST_TEST(h.arch == runtime::go_arch());
  BOOST_TEST(h.uptime > 0.0);
#if defined(__x86_64__)
  BOOST_TEST(h.arch == "amd64");
#elif defined(__aarch64__)
  BOOST_TEST(h.arch == "arm64");
#endif
}

BOOST_AUTO_TEST_CASE(os_release_is_parsed) {
  temp_dir dir;
  auto path = dir.write("os-release", R"os(# os-release
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
ID=debian
HOME_URL="https://www.debian.org/"
)os");
  auto h = runtime::read_host_info(path.string());
  BOOST_TEST(h.distribution == "debian");
  BOOST_TEST(h.version == "12");

  auto quoted = dir.write("quoted", "ID=\"fedora\"\nVERSION_ID='39'\n");
  h = runtime::read_host_info(quoted.string());
  BOOST_TEST(h.distribution == "fedora");
  BOOST_TEST(h.version == "39");
}

BOOST_AUTO_TEST_CASE(missing_os_release_leaves_fields_empty) {
  temp_dir dir;
  auto h = runtime::read_host_info((dir.path / "none").string());
  BOOST_TEST(h.distribution.empty());
  BOOST_TEST(h.version.empty());
  BOOST_TEST(h.cpus > 0);
}
