// Images in files: docker-archive and oci-archive tarballs, OCI layouts and
// "dir" directories, loaded through the store's import path (`store_image`)
// and written from the store; root file system tarballs imported as
// one-layer images. The blocking part, run on worker threads; callers
// commit the records they get.
#pragma once

#include "storage/image_config.hpp"
#include "storage/image_store.hpp"
#include "storage/pull.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace berth::storage {

/// How an image is laid out in a file or directory.
enum class image_format {
  /// A tarball: manifest.json ([{Config, RepoTags, Layers}]), the config
  /// and one uncompressed tar per layer.
  docker_archive,
  /// A tarball of an OCI layout.
  oci_archive,
  /// A directory: oci-layout, index.json, blobs/sha256/<hex>.
  oci_layout,
  /// containers/image's "dir:" directory: manifest.json (the manifest
  /// itself), version, and every blob in a file named by its hex digest.
  directory,
};

/// A reference to an image in a file or directory, as PullImage and
/// ExportImage name them: "docker-archive:PATH[:NAME]",
/// "oci-archive:PATH[:REF]", "oci:DIR[:REF]", "dir:DIR".
struct archive_reference {
  image_format format = image_format::docker_archive;
  std::string path;
  /// A name in a docker-archive's RepoTags, or an OCI index's ref name
  /// annotation; empty when none was given.
  std::string ref;
};

/// Parses `text` when it starts with one of the transports above; false
/// otherwise (a registry reference, for one) or when the path is empty.
bool parse_archive_reference(std::string_view text, archive_reference& out);

/// The full reference a name in an archive stands for
/// ("busybox:1" -> "docker.io/library/busybox:1",
/// "localhost/x:latest" stays); false for a bare tag such as "latest",
/// which names no repository, and for anything invalid.
bool archive_name(std::string_view text, std::string& out);

struct load_request {
  /// A tarball (plain or compressed) or a directory, format detected from
  /// its content: docker-archive, OCI layout (or its tarball) or "dir:".
  std::string path;
  /// Selects one image: a name in RepoTags or an index's ref name; empty
  /// loads every image found.
  std::string ref;
};

/// Loads the images in `req.path`. A tarball is first unpacked, confined
/// as a layer is, into the store's temporary directory; files inside are
/// then opened only within it, so names such as `../../etc/passwd` in
/// manifest.json fail instead of reaching out, and only regular files are
/// read as blobs. Docker archives get a synthesised OCI manifest (blobs as
/// stored: a layer that is gzip or zstd stays so), so every image has a
/// manifest digest. `out` gets one record per image, its names from the
/// archive (bare tags give none), in archive order.
bool load_images(image_store& store, const load_request& req,
                 const pull_events& ev, std::vector<image_record>& out,
                 std::string& err);

struct save_request {
  image_record image;
  image_format format = image_format::oci_archive;
  /// For `directory`: the manifest type to write, `oci_manifest_type` or
  /// `docker_manifest_type`; empty keeps the stored one. OCI formats are
  /// always OCI; a docker-archive has no manifest of its own.
  std::string manifest_type;
  /// Full references recorded in the output (RepoTags, ref names).
  std::vector<std::string> names;
  /// A file for the archives and, with `as_tar`, for the directory
  /// formats (tarred, as ImageSave sends them); otherwise a directory that
  /// must not exist yet or be empty.
  std::string destination;
  bool as_tar = false;
  /// For the directory formats (`oci_layout`, `directory`): every layer is
  /// written gzip-compressed, those stored uncompressed or as zstd
  /// recompressed and checked against their diff IDs, and the manifest
  /// describes them so. The archives ignore it, as podman does.
  bool compress = false;
};

/// Writes an image from the store. Converting a manifest between OCI and
/// Docker changes media types only, except that a layer Docker cannot
/// carry as stored (zstd, or any compression in a docker-archive) is
/// written uncompressed, checked against its diff ID. The output appears
/// whole or not at all: it is built under a temporary name (in the store's
/// temporary directory when on the same file system) and renamed.
bool save_image(image_store& store, const save_request& req,
                const pull_events& ev, std::string& err);

struct import_request {
  /// A tarball of a root file system: plain, gzip, zstd, bzip2 or xz.
  std::string source;
  /// Dockerfile-style instructions applied to the configuration.
  std::vector<std::string> changes;
  /// The history entry's comment.
  std::string message;
  std::string architecture = "amd64";
  std::string os = "linux";
};

/// Makes a one-layer image of `req.source` through `store_image`: the
/// tarball is the layer blob (bzip2 and xz are stored uncompressed), with
/// a fresh configuration and OCI manifest. `out.names` is left empty.
bool import_rootfs(image_store& store, const import_request& req,
                   const pull_events& ev, image_record& out, std::string& err);

/// Applies one change to `cfg`: CMD, ENTRYPOINT (JSON array or shell
/// form), ENV (k=v... or "k v"), WORKDIR, USER, LABEL k=v..., EXPOSE
/// port[/proto]..., VOLUME (JSON array or paths), STOPSIGNAL. The
/// instruction ends at the first space or `=`, as podman accepts both
/// "CMD [\"sh\"]" and "CMD=sh". False with `err` for anything else.
bool apply_change(const std::string& change, image_config& cfg,
                  std::string& err);

/// The JSON of an image configuration (the parts `image_config` holds).
std::string render_config(const image_config& cfg);

} // namespace berth::storage
