// image_reference: parsing and normalising image names as podman does.
#define BOOST_TEST_MODULE reference
#include <boost/test/unit_test.hpp>

#include "storage/reference.hpp"

#include <string>
#include <vector>

using berth::storage::image_reference;

namespace {

const std::string digest_a = "sha256:" + std::string(64, 'a');

image_reference parsed(std::string_view text) {
  image_reference r;
  std::string err;
  BOOST_TEST_INFO("reference: " << text);
  BOOST_REQUIRE_MESSAGE(image_reference::parse(text, r, err), err);
  return r;
}

std::string parse_error(std::string_view text) {
  image_reference r;
  std::string err;
  BOOST_TEST_INFO("reference: " << text);
  BOOST_TEST(!image_reference::parse(text, r, err));
  return err;
}

} // namespace

BOOST_AUTO_TEST_CASE(canonical_forms) {
  struct row {
    std::string text, canonical;
    bool has_registry;
  };
  std::vector<row> rows = {
      {"busybox", "docker.io/library/busybox:latest", false},
      {"busybox:1.36", "docker.io/library/busybox:1.36", false},
      {"user/app", "docker.io/user/app:latest", false},
      {"user/app/sub:v1", "docker.io/user/app/sub:v1", false},
      {"docker.io/busybox", "docker.io/library/busybox:latest", true},
      {"docker.io/library/busybox:latest", "docker.io/library/busybox:latest",
       true},
      {"index.docker.io/busybox", "docker.io/library/busybox:latest", true},
      {"quay.io/podman/stable", "quay.io/podman/stable:latest", true},
      {"quay.io/busybox", "quay.io/busybox:latest", true},
      {"127.0.0.1:5000/busybox", "127.0.0.1:5000/busybox:latest", true},
      {"127.0.0.1:5000/busybox:foobar", "127.0.0.1:5000/busybox:foobar", true},
      {"localhost/app", "localhost/app:latest", true},
      {"localhost:5000/a/b:c", "localhost:5000/a/b:c", true},
      {"localhost", "docker.io/library/localhost:latest", false},
      {"localhost:5000", "docker.io/library/localhost:5000", false},
      {"my-registry.example.com:443/x_y/z.w-v",
       "my-registry.example.com:443/x_y/z.w-v:latest", true},
      {"[::1]:5000/busybox", "[::1]:5000/busybox:latest", true},
      {"[fe80::1]/busybox", "[fe80::1]/busybox:latest", true},
      {"Registry/app", "Registry/app:latest", true},
      {"docker://busybox", "docker.io/library/busybox:latest", false},
      {"docker://127.0.0.1:5000/busybox:t", "127.0.0.1:5000/busybox:t", true},
      {"a__b/c---d/e.f_g", "docker.io/a__b/c---d/e.f_g:latest", false},
      {"busybox:Tag_1.2-rc", "docker.io/library/busybox:Tag_1.2-rc", false},
      {"busybox:_x", "docker.io/library/busybox:_x", false},
  };
  for (auto& r : rows) {
    auto ref = parsed(r.text);
    BOOST_TEST_INFO("reference: " << r.text);
    BOOST_TEST(ref.str() == r.canonical);
    BOOST_TEST(ref.has_registry_part == r.has_registry);
  }
}

BOOST_AUTO_TEST_CASE(fields) {
  auto r = parsed("busybox");
  BOOST_TEST(r.registry == "docker.io");
  BOOST_TEST(r.repository == "library/busybox");
  BOOST_TEST(r.path == "busybox");
  BOOST_TEST(r.tag == "latest");
  BOOST_TEST(r.digest.empty());
  BOOST_TEST(r.name() == "docker.io/library/busybox");
  BOOST_TEST(r.tag_or_digest() == "latest");

  r = parsed("127.0.0.1:5000/team/app:v2");
  BOOST_TEST(r.registry == "127.0.0.1:5000");
  BOOST_TEST(r.repository == "team/app");
  BOOST_TEST(r.tag == "v2");
  BOOST_TEST(r.name() == "127.0.0.1:5000/team/app");
}

BOOST_AUTO_TEST_CASE(digests) {
  auto r = parsed("busybox@" + digest_a);
  BOOST_TEST(r.tag.empty());
  BOOST_TEST(r.digest == digest_a);
  BOOST_TEST(r.str() == "docker.io/library/busybox@" + digest_a);
  BOOST_TEST(r.tag_or_digest() == digest_a);

  r = parsed("quay.io/x/y:1.0@" + digest_a);
  BOOST_TEST(r.tag == "1.0");
  BOOST_TEST(r.digest == digest_a);
  BOOST_TEST(r.str() == "quay.io/x/y:1.0@" + digest_a);
  BOOST_TEST(r.tag_or_digest() == digest_a);

  r = parsed("127.0.0.1:5000/busybox@" + digest_a);
  BOOST_TEST(r.registry == "127.0.0.1:5000");
  BOOST_TEST(r.repository == "busybox");
}

BOOST_AUTO_TEST_CASE(qualified_short_names) {
  auto r = parsed("busybox");
  BOOST_TEST(r.qualified("quay.io").str() == "quay.io/busybox:latest");
  BOOST_TEST(r.qualified("docker.io").str() ==
             "docker.io/library/busybox:latest");
  BOOST_TEST(r.qualified("localhost:5000").has_registry_part);

  r = parsed("library/busybox:1");
  BOOST_TEST(r.qualified("quay.io").str() == "quay.io/library/busybox:1");

  r = parsed("user/app@" + digest_a);
  BOOST_TEST(r.qualified("127.0.0.1:5000").str() ==
             "127.0.0.1:5000/user/app@" + digest_a);

  // A name with a registry is never moved.
  r = parsed("quay.io/x/y");
  BOOST_TEST((r.qualified("docker.io") == r));
}

BOOST_AUTO_TEST_CASE(invalid_references) {
  struct row {
    std::string text, reason;
  };
  std::vector<row> rows = {
      {"", "repository name must have at least one component"},
      {"docker://", "repository name must have at least one component"},
      {":tag", "repository name must have at least one component"},
      {"Busybox", "repository name must be lowercase"},
      {"quay.io/Podman/stable", "repository name must be lowercase"},
      {"busybox:", "tag \"\" must match"},
      {"busybox:-x", "tag \"-x\" must match"},
      {"busybox:a/b", "registry \"busybox:a\""},
      {"busybox:" + std::string(129, 'x'), "must match"},
      {"busybox@sha256:abc", "invalid checksum digest length"},
      {"busybox@md5:" + std::string(32, 'a'), "unsupported digest algorithm"},
      {"busybox@" + std::string(64, 'a'), "invalid checksum digest format"},
      {"busybox@sha256:" + std::string(64, 'A'),
       "invalid checksum digest format"},
      {"busybox@sha256:" + std::string(63, 'a') + "g",
       "invalid checksum digest format"},
      {"busybox@", "invalid checksum digest format"},
      {"a//b", "empty path component"},
      {"quay.io/", "empty path component"},
      {"a/b/", "empty path component"},
      {"/busybox", "empty path component"},
      {"bu$ybox", "path component \"bu$ybox\""},
      {"-busybox", "path component"},
      {"busybox-", "path component"},
      {"a._b", "path component"},
      {"a___b", "path component"},
      {"a..b", "path component"},
      {"foo:bar:baz", "path component \"foo:bar\""},
      {"quay.io:port/x", "registry \"quay.io:port\""},
      {"quay..io/x", "registry \"quay..io\""},
      {"-quay.io/x", "registry \"-quay.io\""},
      {"[::1/x", "registry \"[::1\""},
      {"[zz::1]:5000/x", "registry \"[zz::1]:5000\""},
      {"127.0.0.1:123456/x", "registry"},
      {std::string(64, 'f'), "64-byte hexadecimal"},
      {"quay.io/" + std::string(250, 'a'), "more than 255 characters"},
  };
  for (auto& r : rows) {
    std::string err = parse_error(r.text);
    BOOST_TEST_INFO("reference: " << r.text << " error: " << err);
    BOOST_TEST(err.find("invalid reference format") != std::string::npos);
    BOOST_TEST_INFO("reference: " << r.text << " error: " << err);
    BOOST_TEST(err.find(r.reason) != std::string::npos);
  }
  BOOST_TEST(parse_error("Busybox") ==
             "parsing reference \"Busybox\": invalid reference format: "
             "repository name must be lowercase");
}

BOOST_AUTO_TEST_CASE(failed_parse_leaves_output_alone) {
  image_reference r = parsed("quay.io/x/y:1");
  std::string err;
  BOOST_TEST(!image_reference::parse("Bad", r, err));
  BOOST_TEST(r.str() == "quay.io/x/y:1");
}

BOOST_AUTO_TEST_CASE(component_validators) {
  using namespace berth::storage;
  BOOST_TEST(valid_tag("latest"));
  BOOST_TEST(valid_tag(std::string(128, 'a')));
  BOOST_TEST(!valid_tag(std::string(129, 'a')));
  BOOST_TEST(!valid_tag(".x"));
  BOOST_TEST(valid_digest(digest_a));
  BOOST_TEST(!valid_digest("sha512:" + std::string(64, 'a')));
  BOOST_TEST(valid_repository("library/busybox"));
  BOOST_TEST(valid_repository("a-b/c__d/e.f"));
  BOOST_TEST(!valid_repository(""));
  BOOST_TEST(!valid_repository("A/b"));
  BOOST_TEST(!valid_repository("a/"));
}
