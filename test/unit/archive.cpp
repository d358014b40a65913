// Archives: transport references, names found in archives, the changes
// ImportImage applies to a configuration, and the configuration it writes.
#define BOOST_TEST_MODULE archive
#include <boost/test/unit_test.hpp>

#include "storage/archive.hpp"

#include <string>
#include <vector>

using namespace berth::storage;

namespace {

image_config changed(const std::vector<std::string>& changes) {
  image_config cfg;
  for (auto& c : changes) {
    std::string err;
    BOOST_TEST_INFO("change: " << c);
    BOOST_REQUIRE_MESSAGE(apply_change(c, cfg, err), err);
  }
  return cfg;
}

std::string change_error(const std::string& change) {
  image_config cfg;
  std::string err;
  BOOST_TEST_INFO("change: " << change);
  BOOST_TEST(!apply_change(change, cfg, err));
  return err;
}

} // namespace

BOOST_AUTO_TEST_CASE(archive_references) {
  archive_reference r;
  BOOST_REQUIRE(parse_archive_reference("docker-archive:/a/b.tar", r));
  BOOST_TEST(int(r.format) == int(image_format::docker_archive));
  BOOST_TEST(r.path == "/a/b.tar");
  BOOST_TEST(r.ref == "");
  BOOST_REQUIRE(
      parse_archive_reference("docker-archive:/a/b.tar:localhost/x:1", r));
  BOOST_TEST(r.path == "/a/b.tar");
  BOOST_TEST(r.ref == "localhost/x:1");
  BOOST_REQUIRE(parse_archive_reference("oci-archive:/o.tar:latest", r));
  BOOST_TEST(int(r.format) == int(image_format::oci_archive));
  BOOST_TEST(r.ref == "latest");
  BOOST_REQUIRE(parse_archive_reference("oci:/layout", r));
  BOOST_TEST(int(r.format) == int(image_format::oci_layout));
  BOOST_TEST(r.path == "/layout");
  BOOST_REQUIRE(parse_archive_reference("dir:/d:with:colons", r));
  BOOST_TEST(int(r.format) == int(image_format::directory));
  BOOST_TEST(r.path == "/d:with:colons");
  BOOST_TEST(!parse_archive_reference("docker://busybox", r));
  BOOST_TEST(!parse_archive_reference("busybox:latest", r));
  BOOST_TEST(!parse_archive_reference("oci-archive:", r));
}

BOOST_AUTO_TEST_CASE(names_in_archives) {
  std::string n;
  BOOST_REQUIRE(archive_name("busybox:1", n));
  BOOST_TEST(n == "docker.io/library/busybox:1");
  BOOST_REQUIRE(archive_name("localhost/busybox:latest", n));
  BOOST_TEST(n == "localhost/busybox:latest");
  BOOST_REQUIRE(archive_name("quay.io/x/y", n));
  BOOST_TEST(n == "quay.io/x/y:latest");
  BOOST_TEST(!archive_name("latest", n));
  BOOST_TEST(!archive_name("v1.0", n));
  BOOST_TEST(!archive_name("Bad/Name:1", n));
}

BOOST_AUTO_TEST_CASE(commands_exec_and_shell_form) {
  auto cfg = changed({"CMD [\"sh\", \"-c\", \"echo hi\"]", "ENTRYPOINT=/init"});
  BOOST_TEST(cfg.cmd == (std::vector<std::string>{"sh", "-c", "echo hi"}));
  BOOST_TEST(cfg.entrypoint ==
             (std::vector<std::string>{"/bin/sh", "-c", "/init"}));
  cfg = changed({"cmd echo a b"});
  BOOST_TEST(cfg.cmd ==
             (std::vector<std::string>{"/bin/sh", "-c", "echo a b"}));
  BOOST_TEST(change_error("CMD [\"sh\", 1]").find("JSON") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(env_and_labels) {
  auto cfg = changed({"ENV A=1 B=\"two words\"", "ENV C three words",
                      "ENV A=replaced", "LABEL x=y \"z=w v\"", "LABEL=k=v"});
  BOOST_TEST(cfg.env == (std::vector<std::string>{"A=replaced", "B=two words",
                                                  "C=three words"}));
  BOOST_TEST(cfg.labels.at("x") == "y");
  BOOST_TEST(cfg.labels.at("z") == "w v");
  BOOST_TEST(cfg.labels.at("k") == "v");
  BOOST_TEST(!change_error("LABEL novalue").empty());
  BOOST_TEST(!change_error("ENV A=\"open").empty());
}

BOOST_AUTO_TEST_CASE(other_instructions) {
  auto cfg =
      changed({"EXPOSE 80 53/udp 80", "VOLUME [\"/a\", \"/b\"]", "VOLUME /c",
               "WORKDIR /srv", "USER 1000:1000", "STOPSIGNAL SIGKILL"});
  BOOST_TEST(cfg.exposed_ports ==
             (std::vector<std::string>{"80/tcp", "53/udp"}));
  BOOST_TEST(cfg.volumes == (std::vector<std::string>{"/a", "/b", "/c"}));
  BOOST_TEST(cfg.working_dir == "/srv");
  BOOST_TEST(cfg.user == "1000:1000");
  BOOST_TEST(cfg.stop_signal == "SIGKILL");
  BOOST_TEST(!change_error("EXPOSE http").empty());
  BOOST_TEST(change_error("RUN rm -rf /").find("unknown instruction RUN") !=
             std::string::npos);
  BOOST_TEST(!change_error("CMD").empty());
  BOOST_TEST(!change_error("").empty());
}

BOOST_AUTO_TEST_CASE(rendered_config_reads_back) {
  auto cfg = changed({"CMD [\"sh\"]", "ENV PATH=/bin", "LABEL a=\"b\\\"c\"",
                      "EXPOSE 8080", "VOLUME /data", "WORKDIR /w", "USER app",
                      "STOPSIGNAL SIGINT"});
  cfg.created = "2024-01-01T00:00:00Z";
  cfg.architecture = "amd64";
  cfg.os = "linux";
  cfg.diff_ids = {"sha256:" + std::string(64, 'a')};
  cfg.history = {{cfg.created, "", "", "a \"comment\"\n", false}};
  image_config back;
  std::string err;
  BOOST_REQUIRE_MESSAGE(parse_image_config(render_config(cfg), back, err), err);
  BOOST_TEST(back.cmd == cfg.cmd);
  BOOST_TEST(back.env == cfg.env);
  BOOST_TEST(back.labels.at("a") == "b\"c");
  BOOST_TEST(back.exposed_ports == cfg.exposed_ports);
  BOOST_TEST(back.volumes == cfg.volumes);
  BOOST_TEST(back.working_dir == "/w");
  BOOST_TEST(back.user == "app");
  BOOST_TEST(back.stop_signal == "SIGINT");
  BOOST_TEST(back.diff_ids == cfg.diff_ids);
  BOOST_TEST(back.created == cfg.created);
  BOOST_REQUIRE(back.history.size() == 1u);
  BOOST_TEST(back.history[0].comment == "a \"comment\"\n");
}
