#include "storage/push.hpp"

#include "protocol/json.hpp"

#include "storage/digest.hpp"
#include "storage/gzip.hpp"
#include "storage/parallel.hpp"
#include "storage/reference.hpp"
#include "storage/registry.hpp"

#include <simdjson.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <map>
#include <mutex>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace berth::storage {

namespace {

namespace fs = std::filesystem;

constexpr size_t parallel_layers = 3;

constexpr std::string_view oci_config_type =
    "application/vnd.oci.image.config.v1+json";
constexpr std::string_view docker_config_type =
    "application/vnd.docker.container.image.v1+json";
constexpr std::string_view zstd_layer_type =
    "application/vnd.oci.image.layer.v1.tar+zstd";

/// A layer media type in both formats.
struct layer_type_pair {
  std::string_view oci, docker;
};

constexpr layer_type_pair layer_types[] = {
    {"application/vnd.oci.image.layer.v1.tar+gzip",
     "application/vnd.docker.image.rootfs.diff.tar.gzip"},
    {"application/vnd.oci.image.layer.v1.tar",
     "application/vnd.docker.image.rootfs.diff.tar"},
    {"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
     "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"},
};

enum class manifest_format { oci, docker };

std::string_view manifest_type_of(manifest_format f) {
  return f == manifest_format::oci ? oci_manifest_type : docker_manifest_type;
}

/// A JSON member kept as it was: its key and its minified value.
using raw_member = std::pair<std::string, std::string>;

struct descriptor {
  std::string media_type, digest;
  int64_t size = 0;
  std::vector<raw_member> extra; ///< urls, annotations, platform, ...
};

/// An image manifest (OCI or Docker schema 2) taken apart far enough to
/// change its media types and put it back together.
struct manifest_model {
  manifest_format format = manifest_format::oci;
  descriptor config;
  std::vector<descriptor> layers;
  std::vector<raw_member> extra; ///< annotations, subject, ...
};

std::string short_digest(const std::string& d) {
  return d.substr(d.find(':') + 1, 12);
}

std::string json_string(std::string_view s) {
  return json::quote(s);
}

bool parse_format(const std::string& text, std::optional<manifest_format>& out,
                  std::string& err) {
  if (text.empty()) {
    out.reset();
  } else if (text == "oci") {
    out = manifest_format::oci;
  } else if (text == "v2s2" || text == "docker") {
    out = manifest_format::docker;
  } else if (text == "v2s1") {
    err = "unsupported manifest format v2s1";
    return false;
  } else {
    err =
        "unknown manifest format \"" + text + "\": choose oci or v2s2 (docker)";
    return false;
  }
  return true;
}

bool read_descriptor(simdjson::dom::element e, descriptor& d,
                     std::string& err) {
  simdjson::dom::object obj;
  if (e.get(obj) != simdjson::SUCCESS) {
    err = "manifest descriptor is not a JSON object";
    return false;
  }
  for (auto [key, value] : obj) {
    std::string_view text;
    if (key == "mediaType") {
      if (value.get(text) == simdjson::SUCCESS)
        d.media_type = text;
    } else if (key == "digest") {
      if (value.get(text) == simdjson::SUCCESS)
        d.digest = text;
    } else if (key == "size") {
      if (value.get(d.size) != simdjson::SUCCESS)
        d.size = 0;
    } else {
      d.extra.emplace_back(std::string(key), simdjson::minify(value));
    }
  }
  if (!valid_digest(d.digest)) {
    err = "manifest descriptor has no valid digest";
    return false;
  }
  return true;
}

bool read_manifest(const std::string& body, manifest_model& m,
                   std::string& err) {
  simdjson::dom::parser parser;
  simdjson::dom::object doc;
  if (parser.parse(body).get(doc) != simdjson::SUCCESS) {
    err = "stored manifest is not a JSON object";
    return false;
  }
  std::string media_type;
  for (auto [key, value] : doc) {
    if (key == "schemaVersion") {
      continue;
    } else if (key == "mediaType") {
      std::string_view text;
      if (value.get(text) == simdjson::SUCCESS)
        media_type = text;
    } else if (key == "config") {
      if (!read_descriptor(value, m.config, err))
        return false;
    } else if (key == "layers") {
      simdjson::dom::array layers;
      if (value.get(layers) != simdjson::SUCCESS) {
        err = "stored manifest has no layer list";
        return false;
      }
      for (auto l : layers)
        if (!read_descriptor(l, m.layers.emplace_back(), err))
          return false;
    } else {
      m.extra.emplace_back(std::string(key), simdjson::minify(value));
    }
  }
  if (m.config.digest.empty()) {
    err = "stored manifest has no config";
    return false;
  }
  if (media_type.empty())
    media_type = m.config.media_type == docker_config_type
                     ? docker_manifest_type
                     : oci_manifest_type;
  if (media_type != oci_manifest_type && media_type != docker_manifest_type) {
    err = "unsupported manifest type " + media_type;
    return false;
  }
  m.format = media_type == oci_manifest_type ? manifest_format::oci
                                             : manifest_format::docker;
  return true;
}

std::string render_descriptor(const descriptor& d, manifest_format f) {
  auto out = "{\"mediaType\":" + json_string(d.media_type) +
             ",\"digest\":" + json_string(d.digest) +
             ",\"size\":" + std::to_string(d.size);
  // Docker schema 2 descriptors know only `urls` besides these.
  for (auto& [key, value] : d.extra)
    if (f == manifest_format::oci || key == "urls")
      out += "," + json_string(key) + ":" + value;
  return out + "}";
}

std::string render_manifest(const manifest_model& m) {
  auto out = "{\"schemaVersion\":2,\"mediaType\":" +
             json_string(manifest_type_of(m.format)) +
             ",\"config\":" + render_descriptor(m.config, m.format) +
             ",\"layers\":[";
  for (size_t i = 0; i < m.layers.size(); ++i)
    out += (i ? "," : "") + render_descriptor(m.layers[i], m.format);
  out += "]";
  if (m.format == manifest_format::oci)
    for (auto& [key, value] : m.extra)
      out += "," + json_string(key) + ":" + value;
  return out + "}";
}

bool uncompressed_layer(const std::string& media_type) {
  return media_type == layer_types[1].oci ||
         media_type == layer_types[1].docker;
}

/// Whether a layer goes to a registry in `target` only once recompressed
/// with gzip: one stored uncompressed (podman sends those gzip'd), or zstd
/// for Docker schema 2, which has no media type for it.
bool needs_gzip(const std::string& media_type, manifest_format target) {
  return uncompressed_layer(media_type) ||
         (target == manifest_format::docker && media_type == zstd_layer_type);
}

/// Rewrites the media types of `m` for `target`.
void convert_manifest(manifest_model& m, manifest_format target) {
  bool oci = target == manifest_format::oci;
  if (m.config.media_type == oci_config_type ||
      m.config.media_type == docker_config_type || m.config.media_type.empty())
    m.config.media_type = oci ? oci_config_type : docker_config_type;
  for (auto& l : m.layers)
    for (auto& pair : layer_types)
      if (l.media_type == pair.oci || l.media_type == pair.docker) {
        l.media_type = oci ? pair.oci : pair.docker;
        break;
      }
  m.format = target;
}

/// One push of one image to one destination.
class pusher {
public:
  pusher(image_store& store, const image_reference& dest, registry_options opts,
         const pull_events& ev)
      : store_(store), dest_(dest), client_(dest.registry, std::move(opts)),
        ev_(ev) {}

  ~pusher() {
    if (!temp_dir_.empty()) {
      std::error_code ec;
      fs::remove_all(temp_dir_, ec);
    }
  }

  bool run(const image_record& img, std::optional<manifest_format> format,
           std::string& err) {
    log("Getting image source signatures\n");
    manifest_model model;
    std::string body;
    if (!load_manifest(img, model, body, err))
      return false;

    bool changed = false;
    auto target = format.value_or(model.format);
    if (!compress_layers(img, model, target, changed, err))
      return false;
    if (changed || target != model.format) {
      convert_manifest(model, target);
      body = render_manifest(model);
    }

    if (!push_layers(model.layers, err) || !push_config(model.config, err))
      return false;

    log("Writing manifest to image destination\n");
    if (!client_.put_manifest(dest_.repository, dest_.tag,
                              std::string(manifest_type_of(model.format)), body,
                              err))
      return false;
    log("Storing signatures\n");
    return true;
  }

private:
  // The stored manifest, or one made from the image record when the store
  // has none (an image that did not come from a registry).
  bool load_manifest(const image_record& img, manifest_model& model,
                     std::string& body, std::string& err) {
    if (!img.manifest_digest.empty() && store_.has_blob(img.manifest_digest))
      return store_.read_blob(img.manifest_digest, body, err) &&
             read_manifest(body, model, err);
    model.format = img.manifest_type == docker_manifest_type
                       ? manifest_format::docker
                       : manifest_format::oci;
    bool oci = model.format == manifest_format::oci;
    model.config = {std::string(oci ? oci_config_type : docker_config_type),
                    "sha256:" + img.id,
                    blob_size("sha256:" + img.id),
                    {}};
    for (auto& l : img.layers)
      model.layers.push_back({l.media_type, l.blob, blob_size(l.blob), {}});
    body = render_manifest(model);
    return true;
  }

  int64_t blob_size(const std::string& digest) {
    std::error_code ec;
    auto n = fs::file_size(blob_file(digest), ec);
    return ec ? 0 : int64_t(n);
  }

  std::string blob_file(const std::string& digest) const {
    auto it = made_.find(digest);
    return it != made_.end() ? it->second : store_.blob_path(digest);
  }

  // Replaces the layers `needs_gzip` names by gzip'd copies in a temp
  // dir, each checked against its diff ID.
  bool compress_layers(const image_record& img, manifest_model& model,
                       manifest_format target, bool& changed,
                       std::string& err) {
    for (auto& l : model.layers) {
      if (!needs_gzip(l.media_type, target))
        continue;
      // An uncompressed blob is its own diff ID.
      std::string diff_id = uncompressed_layer(l.media_type) ? l.digest : "";
      for (auto& stored : img.layers)
        if (stored.blob == l.digest)
          diff_id = stored.diff_id;
      if (diff_id.empty()) {
        err = "layer " + l.digest + ": the image records no diff ID for it";
        return false;
      }
      if (temp_dir_.empty() && (temp_dir_ = store_.make_temp_dir(err)).empty())
        return false;
      auto file = temp_dir_ + "/" + l.digest.substr(7) + ".gz";
      gzipped_layer gz;
      if (!gzip_layer(store_.blob_path(l.digest), file, gz, err))
        return false;
      if (gz.diff_id != diff_id) {
        err = "layer " + l.digest + " in the store has content " + gz.diff_id +
              ", the image says " + diff_id;
        return false;
      }
      made_[gz.digest] = file;
      l.digest = gz.digest;
      l.size = gz.size;
      l.media_type = model.format == manifest_format::oci
                         ? layer_types[0].oci
                         : layer_types[0].docker;
      changed = true;
    }
    return true;
  }

  // Pushes the layers a few at once; the client is shared between threads.
  bool push_layers(const std::vector<descriptor>& layers, std::string& err) {
    return run_parallel(
        layers.size(), parallel_layers,
        [&](size_t i, std::string& e) { return push_layer(layers[i], e); },
        err);
  }

  bool push_layer(const descriptor& l, std::string& err) {
    if (cancelled()) {
      err = "cancelled";
      return false;
    }
    bool exists = false;
    if (!client_.blob_exists(dest_.repository, l.digest, exists, err))
      return false;
    if (exists) {
      log("Copying blob " + short_digest(l.digest) +
          " skipped: already exists\n");
      return true;
    }
    auto path = blob_file(l.digest);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0) {
      err = "reading layer " + l.digest + ": " + std::strerror(errno);
      if (fd >= 0)
        ::close(fd);
      return false;
    }
    int last_tenth = -1;
    auto progress = [&](uint64_t done, uint64_t total) {
      if (total > 0 && done < total) {
        int tenth = int(done * 10 / total);
        if (tenth != last_tenth) {
          last_tenth = tenth;
          log("Copying blob " + short_digest(l.digest) + " " +
              std::to_string(done) + "/" + std::to_string(total) + "\n");
        }
      }
      return !cancelled();
    };
    bool ok = client_.push_blob(dest_.repository, l.digest, fd,
                                uint64_t(st.st_size), progress, err);
    ::close(fd);
    if (ok)
      log("Copying blob " + short_digest(l.digest) + " done\n");
    return ok;
  }

  bool push_config(const descriptor& config, std::string& err) {
    if (cancelled()) {
      err = "cancelled";
      return false;
    }
    bool exists = false;
    if (!client_.blob_exists(dest_.repository, config.digest, exists, err))
      return false;
    if (exists) {
      log("Copying config " + short_digest(config.digest) +
          " skipped: already exists\n");
      return true;
    }
    std::string text;
    if (!store_.read_blob(config.digest, text, err) ||
        !client_.push_blob(dest_.repository, config.digest, text, err))
      return false;
    log("Copying config " + short_digest(config.digest) + " done\n");
    return true;
  }

  void log(std::string line) {
    std::lock_guard guard{log_mtx_};
    if (ev_.log)
      ev_.log(std::move(line));
  }

  bool cancelled() const { return ev_.cancelled && ev_.cancelled(); }

  image_store& store_;
  image_reference dest_;
  registry_client client_;
  const pull_events& ev_;
  std::mutex log_mtx_;
  std::string temp_dir_;                    ///< compressed layers, if any
  std::map<std::string, std::string> made_; ///< digest -> file in temp_dir_
};

bool is_id_of(const std::string& given, const image_record& img) {
  auto id = given.starts_with("sha256:") ? given.substr(7) : given;
  return !id.empty() && img.id.starts_with(id) &&
         std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// Where an image goes when no destination is given: the name the user
// gave, completed from the image's own names when it was a short one.
bool default_destination(const std::string& given, const image_record& img,
                         image_reference& out, std::string& err) {
  if (is_id_of(given, img)) {
    if (img.names.size() != 1) {
      err = "image " + given + " has " + std::to_string(img.names.size()) +
            " names; name the destination";
      return false;
    }
    return image_reference::parse(img.names[0], out, err);
  }
  if (!image_reference::parse(given, out, err))
    return false;
  if (out.has_registry_part)
    return true;
  for (auto& name : img.names) {
    image_reference stored;
    std::string ignored;
    if (image_reference::parse(name, stored, ignored) &&
        stored.tag == out.tag && stored.digest == out.digest &&
        (stored.repository == out.path ||
         stored.repository.ends_with("/" + out.path))) {
      out = stored;
      return true;
    }
  }
  return true;
}

registry_options options_for(const push_request& req,
                             const std::string& registry) {
  return options_for_registry(registry, req.tls_verify,
                              req.insecure_registries, req.creds,
                              req.cert_dir);
}

} // namespace

bool push_image(image_store& store, const push_request& req,
                const pull_events& ev, std::string& err,
                push_failure& failure) {
  failure = push_failure::invalid_request;
  std::optional<manifest_format> format;
  if (!parse_format(req.format, format, err))
    return false;

  image_record img;
  std::string why;
  switch (store.resolve(req.image, img, why)) {
  case lookup::found:
    break;
  case lookup::not_found:
    failure = push_failure::image_not_found;
    err = why;
    return false;
  case lookup::ambiguous:
    err = why;
    return false;
  }

  image_reference dest;
  bool named = req.destination.empty()
                   ? default_destination(req.image, img, dest, err)
                   : image_reference::parse(req.destination, dest, err);
  if (!named)
    return false;
  if (!dest.digest.empty()) {
    err = "pushing " + dest.str() +
          ": cannot push to a reference with a "
          "digest";
    return false;
  }

  failure = push_failure::failed;
  pusher p{store, dest, options_for(req, dest.registry), ev};
  if (!p.run(img, format, why)) {
    err = "pushing " + dest.str() + ": " + why;
    return false;
  }
  failure = push_failure::none;
  return true;
}

bool push_image(image_store& store, const push_request& req,
                const pull_events& ev, std::string& err) {
  push_failure ignored;
  return push_image(store, req, ev, err, ignored);
}

} // namespace berth::storage
