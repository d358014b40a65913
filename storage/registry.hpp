// A synchronous client for the registry HTTP API v2 (OCI distribution) on
// libcurl: manifests, blobs, uploads, catalog and tags, with bearer and
// basic auth, insecure registries, certificate dirs and retries.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <optional>
#include <string_view>
#include <vector>

namespace berth::storage {

inline constexpr std::string_view oci_manifest_type =
    "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view oci_index_type =
    "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view docker_manifest_type =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view docker_list_type =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// Whether `media_type` is an OCI index or a Docker manifest list.
bool is_index_type(std::string_view media_type);

/// The platform picked from a manifest list or index.
struct image_platform {
  std::string os = "linux";
  std::string architecture = "amd64";
  /// Empty accepts any variant, preferring entries that name none.
  std::string variant;
};

struct registry_options {
  /// False: certificates are not checked, and when https fails at the
  /// connection or TLS level the client falls back to plain http, as
  /// podman does for insecure registries.
  bool tls_verify = true;
  /// A directory like /etc/containers/certs.d/<host:port>: every `*.crt`
  /// is trusted as a CA in addition to the system's, and an `X.cert` with
  /// its `X.key` is presented as the client certificate.
  std::string cert_dir;
  /// Credentials for basic auth and for bearer-token requests.
  std::string username, password;
  /// How often a transient failure (connection error, 5xx, 408, 429) is
  /// retried; 4xx answers are final.
  int retries = 3;
  /// The delay before the first retry, doubled for each further one.
  std::chrono::milliseconds retry_delay{500};
  /// Connect timeout, and how long a transfer may stall without a byte
  /// before it fails. Large blobs may take longer than this in total.
  std::chrono::seconds timeout{30};
  /// The platform `get_manifest` chooses from a list or index.
  image_platform platform;
};

/// A manifest as the registry sent it.
struct manifest {
  std::string media_type;
  /// "sha256:..." of `body`.
  std::string digest;
  std::string body;
  /// When `get_manifest` chose this manifest from a list or index: the
  /// digest of that list; empty otherwise.
  std::string index_digest;
};

/// Called as bytes move: `done` so far out of `total` (0 when unknown).
/// Returning false cancels the transfer with the error "cancelled".
using transfer_progress = std::function<bool(uint64_t done, uint64_t total)>;

/// Sees a blob's bytes as they are written: `chunk` after each write, in
/// order, and `rewound` when a retry starts the blob over. Either may be
/// empty.
struct blob_tap {
  std::function<void(const char* data, size_t size)> chunk;
  std::function<void()> rewound;
};

/// Options for talking to `registry`: TLS is verified unless `tls_verify`
/// says otherwise or the registry is listed as insecure; `creds` is
/// "user:pass" (or just a user).
registry_options options_for_registry(
    const std::string& registry, std::optional<bool> tls_verify,
    const std::vector<std::string>& insecure_registries,
    const std::string& creds = {}, const std::string& cert_dir = {});

/// One registry, addressed as image references name it ("docker.io",
/// "quay.io", "127.0.0.1:5000"). Every call is blocking and reports
/// failure as false with `err` naming the operation, the object and the
/// registry's own reason ("reading manifest foobar in
/// 127.0.0.1:5000/busybox: manifest unknown").
///
/// Several threads may call one client at once (a pull fetching layers in
/// parallel): connections, the chosen scheme and auth tokens are shared
/// under a lock, and nothing is shared between clients.
class registry_client {
public:
  registry_client(std::string registry, registry_options options = {});
  ~registry_client();
  registry_client(const registry_client&) = delete;
  registry_client& operator=(const registry_client&) = delete;

  const std::string& registry() const;

  /// The base URL in use, "https://host[:port]" or "http://..." once the
  /// client fell back to plain http.
  std::string base_url() const;

  /// GET /v2/: true when a v2 registry answers (200, or 401 asking for
  /// credentials).
  bool ping(std::string& err);

  /// Fetches the manifest for a tag or digest. A list or index is resolved
  /// to the manifest for `registry_options::platform`, which is fetched by
  /// digest. Manifests asked for by digest are checked against it.
  bool get_manifest(const std::string& repository,
                    const std::string& tag_or_digest, manifest& out,
                    std::string& err);

  /// Like `get_manifest` but returns a list or index as it is.
  bool get_manifest_raw(const std::string& repository,
                        const std::string& tag_or_digest, manifest& out,
                        std::string& err);

  /// Streams the blob into `fd` at its current position, verifying the
  /// digest as it goes. A retry after a partial transfer rewinds and
  /// truncates `fd` (so it must be seekable to be retried). On a mismatch
  /// the bytes stay written and the error says which digest arrived.
  /// `tap`, when given, sees every byte written and every rewind.
  bool fetch_blob(const std::string& repository, const std::string& digest,
                  int fd, const transfer_progress& progress, std::string& err,
                  const blob_tap* tap = nullptr);

  /// Fetches a small blob (an image config) into memory, verified; fails
  /// when it is larger than `max_size`.
  bool get_blob(const std::string& repository, const std::string& digest,
                std::string& out, std::string& err, size_t max_size = 16 << 20);

  /// HEAD on the blob: `exists` tells whether the registry has it.
  bool blob_exists(const std::string& repository, const std::string& digest,
                   bool& exists, std::string& err);

  /// Uploads `size` bytes read from offset 0 of `fd` as the blob `digest`
  /// (monolithic POST + PUT); a blob the registry already has is skipped.
  bool push_blob(const std::string& repository, const std::string& digest,
                 int fd, uint64_t size, const transfer_progress& progress,
                 std::string& err);

  /// Uploads `data` as the blob `digest`.
  bool push_blob(const std::string& repository, const std::string& digest,
                 std::string_view data, std::string& err);

  /// PUT of a manifest under a tag or its digest.
  bool put_manifest(const std::string& repository,
                    const std::string& tag_or_digest,
                    const std::string& media_type, const std::string& body,
                    std::string& err);

  /// GET /v2/_catalog, following pagination; at most `limit` names when
  /// `limit` > 0.
  bool catalog(std::vector<std::string>& repositories, int limit,
               std::string& err);

  /// GET /v2/<repository>/tags/list, following pagination.
  bool tags(const std::string& repository, std::vector<std::string>& out,
            std::string& err);

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

/// The host[:port] that serves `registry`: docker.io (and index.docker.io)
/// is served by registry-1.docker.io; every other name serves itself.
std::string registry_endpoint(std::string_view registry);

/// A parsed `WWW-Authenticate` header: the scheme in lowercase ("bearer",
/// "basic") and its parameters (realm, service, scope, ...).
struct auth_challenge {
  std::string scheme;
  std::map<std::string, std::string> params;
};

/// Parses one challenge; false when the header is not one.
bool parse_auth_challenge(std::string_view header, auth_challenge& out);

/// The reason a registry gave for an error answer: the messages of the v2
/// error body (`{"errors":[{"code":..,"message":..}]}`), or of a token
/// server's `details`, else a text for the HTTP status. 401 answers read
/// "unauthorized: ...", 403 answers "denied: ...".
std::string registry_error_reason(long status, std::string_view body);

/// Chooses the entry of a manifest list or index for `platform`: its
/// digest and media type, or false with the error podman gives ("no image
/// found in manifest list for architecture amd64, variant "", OS linux").
bool choose_platform_manifest(std::string_view index_body,
                              const image_platform& platform,
                              std::string& digest, std::string& media_type,
                              std::string& err);

/// The target of a `Link: <url>; rel="next"` header, or empty.
std::string next_link(std::string_view link_header);

} // namespace berth::storage
