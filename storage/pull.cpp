#include "storage/pull.hpp"

#include "storage/digest.hpp"
#include "storage/parallel.hpp"
#include "storage/image_config.hpp"
#include "storage/layer.hpp"
#include "storage/reference.hpp"
#include "storage/registry.hpp"
#include "protocol/unique_fd.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <mutex>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace berth::storage {

namespace {

namespace fs = std::filesystem;

constexpr size_t parallel_layers = 3;

std::string short_digest(const std::string& d) {
  auto hex = d.substr(d.find(':') + 1);
  return hex.substr(0, 12);
}

bool supported_manifest(const std::string& type) {
  return type == oci_manifest_type || type == docker_manifest_type ||
         type.empty();
}

void remove_dir(const std::string& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
}

/// A registry repository as a blob source.
class registry_source : public blob_source {
public:
  registry_source(registry_client& client, std::string repository)
    : client_(client), repository_(std::move(repository)) {
  }

  bool fetch_blob(const std::string& digest, int fd,
                  const transfer_progress& progress, std::string& err,
                  const blob_tap* tap) override {
    return client_.fetch_blob(repository_, digest, fd, progress, err, tap);
  }

private:
  registry_client& client_;
  std::string repository_;
};

/// Unpacks a layer while its blob arrives. The bytes the source writes are
/// also sent through a socket pair to a thread that unpacks them into
/// `diff`. The result counts only if that thread saw exactly the bytes that
/// were then verified against the digest: after a retry that started the
/// blob over, or from a source that does not show its bytes, the caller
/// unpacks the stored file instead.
class streamed_unpack {
public:
  explicit streamed_unpack(std::string diff) : diff_(std::move(diff)) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
      broken_ = true;
      return;
    }
    writer_.reset(sv[0]);
    reader_.reset(sv[1]);
    // A deeper buffer lets the download run ahead of a busy unpacker.
    int size = 4 << 20;
    setsockopt(writer_.get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    setsockopt(reader_.get(), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    tap_.chunk = [this](const char* p, size_t n) { send_chunk(p, n); };
    tap_.rewound = [this] { stop_sending(); };
    thread_ = std::thread{[this] {
      ok_ = unpack_layer(reader_.get(), diff_, stats_, err_);
      // Closing our end tells a sender still writing to stop.
      reader_.reset();
    }};
  }

  streamed_unpack(const streamed_unpack&) = delete;
  streamed_unpack& operator=(const streamed_unpack&) = delete;

  ~streamed_unpack() { finish(); }

  const blob_tap* tap() const { return broken_ ? nullptr : &tap_; }

  /// Ends the stream and waits for the unpacker.
  void finish() {
    writer_.reset();
    if (thread_.joinable())
      thread_.join();
  }

  /// Whether the unpacker saw all `size` bytes of the blob, and only them.
  bool saw_whole_blob(uint64_t size) const {
    return !broken_ && sent_ == size;
  }

  bool ok() const { return ok_; }
  const unpack_stats& stats() const { return stats_; }
  const std::string& error() const { return err_; }

private:
  void send_chunk(const char* p, size_t n) {
    while (!broken_ && n > 0) {
      auto sent = ::send(writer_.get(), p, n, MSG_NOSIGNAL);
      if (sent < 0 && errno == EINTR)
        continue;
      if (sent <= 0) {
        // The unpacker stopped reading: it failed, and says why.
        stop_sending();
        return;
      }
      sent_ += uint64_t(sent);
      p += sent;
      n -= size_t(sent);
    }
  }

  void stop_sending() {
    broken_ = true;
    if (writer_)
      ::shutdown(writer_.get(), SHUT_WR);
  }

  std::string diff_;
  unique_fd writer_;
  unique_fd reader_;
  blob_tap tap_;
  std::thread thread_;
  uint64_t sent_ = 0;
  bool broken_ = false;
  bool ok_ = false;
  unpack_stats stats_;
  std::string err_;
};

/// One image on its way into the store.
class importer {
public:
  importer(image_store& store, blob_source& source, const pull_events& ev)
    : store_(store), source_(source), ev_(ev) {
  }

  bool run(const manifest& m, image_record& out, std::string& err) {
    if (!supported_manifest(m.media_type)) {
      err = "unsupported manifest type " + m.media_type;
      return false;
    }
    image_manifest im;
    if (!parse_image_manifest(m.body, im, err) || !check_digests(im, err))
      return false;
    image_config cfg;
    std::string cfg_text;
    if (!fetch_config(im.config_digest, cfg_text, err) ||
        !parse_image_config(cfg_text, cfg, err))
      return false;
    if (cfg.diff_ids.size() != im.layers.size()) {
      err = "image configuration lists " + std::to_string(cfg.diff_ids.size())
            + " layers, the manifest " + std::to_string(im.layers.size());
      return false;
    }
    for (auto& d : cfg.diff_ids)
      if (!valid_digest(d)) {
        err = "image configuration names an invalid diff ID \"" + d + "\"";
        return false;
      }

    out = {};
    out.id = im.config_digest.substr(im.config_digest.find(':') + 1);
    out.manifest_digest = m.digest;
    out.manifest_type = m.media_type.empty() ? im.media_type : m.media_type;
    out.created = cfg.created;
    std::string parent;
    for (size_t i = 0; i < im.layers.size(); ++i) {
      auto chain = chain_id(parent, cfg.diff_ids[i]);
      out.layers.push_back({chain, cfg.diff_ids[i], im.layers[i].digest,
                            im.layers[i].media_type, 0});
      parent = chain;
    }
    if (!fetch_layers(out.layers, err))
      return false;

    ev_.log("Writing manifest to image destination\n");
    if (!store_text(m.digest, m.body, err))
      return false;
    ev_.log("Storing signatures\n");
    for (auto& l : out.layers)
      out.size += l.size;
    return true;
  }

private:
  // Digests become file names in the store: each must be a real one.
  static bool check_digests(const image_manifest& im, std::string& err) {
    if (!valid_digest(im.config_digest)) {
      err = "manifest names an invalid config digest \"" +
            im.config_digest + "\"";
      return false;
    }
    for (auto& l : im.layers)
      if (!valid_digest(l.digest)) {
        err = "manifest names an invalid layer digest \"" + l.digest + "\"";
        return false;
      }
    return true;
  }

  // Fetches the config into the blob store (unless there) and reads it.
  bool fetch_config(const std::string& digest, std::string& text,
                    std::string& err) {
    if (!store_.has_blob(digest)) {
      ev_.log("Copying config " + short_digest(digest) + "\n");
      if (!fetch_into_store(digest, false, err))
        return false;
    }
    return store_.read_blob(digest, text, err);
  }

  bool store_text(const std::string& digest, const std::string& body,
                  std::string& err) {
    if (store_.has_blob(digest))
      return true;
    auto dir = store_.make_temp_dir(err);
    if (dir.empty())
      return false;
    auto tmp = dir + "/blob";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && ::write(fd, body.data(), body.size()) ==
                             ssize_t(body.size());
    if (fd >= 0)
      ::close(fd);
    if (!ok)
      err = "writing manifest: " + std::string{std::strerror(errno)};
    ok = ok && store_.put_blob(digest, tmp, err);
    remove_dir(dir);
    return ok;
  }

  // Fetches a blob, verified, into `path` (created); `tap` sees the bytes.
  bool fetch_file(const std::string& digest, const std::string& path,
                  bool report, const blob_tap* tap, std::string& err) {
    unique_fd fd{::open(path.c_str(),
                        O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)};
    if (!fd) {
      err = "creating " + path + ": " + std::strerror(errno);
      return false;
    }
    int last_tenth = -1;
    auto progress = [&](uint64_t done, uint64_t total) {
      if (report && total > 0) {
        int tenth = int(done * 10 / total);
        if (tenth != last_tenth) {
          last_tenth = tenth;
          ev_.log("Copying blob " + short_digest(digest) + " " +
                  std::to_string(done) + "/" + std::to_string(total) + "\n");
        }
      }
      return !ev_.cancelled();
    };
    return source_.fetch_blob(digest, fd.get(), progress, err, tap);
  }

  // Fetches a blob, verified, through a temporary file into the blob store.
  bool fetch_into_store(const std::string& digest, bool report,
                        std::string& err) {
    auto dir = store_.make_temp_dir(err);
    if (dir.empty())
      return false;
    auto path = dir + "/blob";
    bool ok = fetch_file(digest, path, report, nullptr, err) &&
              store_.put_blob(digest, path, err);
    remove_dir(dir);
    return ok;
  }

  // Fetches and unpacks the layers that are not here yet, a few at once.
  bool fetch_layers(std::vector<layer_record>& layers, std::string& err) {
    return run_parallel(
        layers.size(), parallel_layers,
        [&](size_t i, std::string& e) { return fetch_layer(layers[i], e); },
        err);
  }

  bool fetch_layer(layer_record& l, std::string& err) {
    if (ev_.cancelled()) {
      err = "cancelled";
      return false;
    }
    if (store_.has_layer(l.chain_id)) {
      // The unpacked layer is shared; its blob is still kept, so that the
      // image can be saved and pushed as its manifest describes it.
      ev_.log("Copying blob " + short_digest(l.blob) + " skipped: already "
              "exists\n");
      l.size = layer_size(l.chain_id);
      return store_.has_blob(l.blob) || fetch_into_store(l.blob, false, err);
    }
    auto dir = store_.make_temp_dir(err);
    if (dir.empty())
      return false;
    bool ok = unpack_into(l, dir, err);
    if (!ok)
      remove_dir(dir);
    return ok;
  }

  // Brings layer `l` into the store through the temporary directory
  // `dir`: its blob (fetched unless stored) and its unpacked tree.
  bool unpack_into(layer_record& l, const std::string& dir,
                   std::string& err) {
    auto diff = dir + "/diff";
    if (mkdir(diff.c_str(), 0755) < 0) {
      err = "creating " + diff + ": " + std::strerror(errno);
      return false;
    }
    unpack_stats st;
    bool have_blob = store_.has_blob(l.blob);
    if (have_blob) {
      if (!unpack_layer(store_.blob_path(l.blob), diff, st, err))
        return false;
    } else {
      auto blob = dir + "/blob";
      streamed_unpack su{diff};
      bool fetched = fetch_file(l.blob, blob, true, su.tap(), err);
      su.finish();
      if (!fetched)
        return false;
      struct stat bs;
      if (stat(blob.c_str(), &bs) < 0) {
        err = "reading " + blob + ": " + std::strerror(errno);
        return false;
      }
      if (su.saw_whole_blob(uint64_t(bs.st_size))) {
        if (!su.ok()) {
          err = su.error();
          return false;
        }
        st = su.stats();
      } else {
        // The stream did not carry exactly this blob: start again from the
        // verified file.
        remove_dir(diff);
        if (mkdir(diff.c_str(), 0755) < 0) {
          err = "creating " + diff + ": " + std::strerror(errno);
          return false;
        }
        if (!unpack_layer(blob, diff, st, err))
          return false;
      }
    }
    if (st.diff_id != l.diff_id) {
      err = "layer " + l.blob + ": content is " + st.diff_id +
            ", the image configuration says " + l.diff_id;
      return false;
    }
    l.size = int64_t(st.size);
    // One sync puts the blob and the tree on disk before either is renamed
    // into place.
    if (!store_.sync_dir(dir, err) ||
        (!have_blob && !store_.put_blob(l.blob, dir + "/blob", err, false)) ||
        !store_.put_layer(l.chain_id, dir, err, false))
      return false;
    ev_.log("Copying blob " + short_digest(l.blob) + " done\n");
    return true;
  }

  int64_t layer_size(const std::string& chain) {
    int64_t total = 0;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(
             store_.layer_path(chain), ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
      if (it->is_regular_file(ec) && !it->is_symlink(ec))
        total += int64_t(it->file_size(ec));
    return total;
  }

  image_store& store_;
  blob_source& source_;
  const pull_events& ev_;
};

registry_options options_for(const pull_request& req,
                             const image_reference& ref) {
  return options_for_registry(ref.registry, req.tls_verify,
                              req.insecure_registries, req.creds,
                              req.cert_dir);
}

// One registry's attempt at a pull.
bool pull_from(image_store& store, const image_reference& ref,
               const registry_options& opts, const pull_events& ev,
               image_record& out, std::string& err) {
  registry_client client{ref.registry, opts};
  manifest m;
  if (!client.get_manifest(ref.repository, ref.tag_or_digest(), m, err))
    return false;
  registry_source source{client, ref.repository};
  if (!store_image(store, source, m, ev, out, err))
    return false;
  out.names.push_back(ref.digest.empty() || !ref.tag.empty()
                          ? ref.str()
                          : ref.name() + "@" + ref.digest);
  return true;
}

} // namespace

bool store_image(image_store& store, blob_source& source, const manifest& m,
                 const pull_events& ev, image_record& out, std::string& err) {
  importer imp{store, source, ev};
  return imp.run(m, out, err);
}

bool pull_image(image_store& store, const pull_request& req,
                const pull_events& ev, image_record& out, std::string& err) {
  image_reference ref;
  if (!image_reference::parse(req.reference, ref, err))
    return false;
  std::vector<image_reference> tries;
  if (ref.has_registry_part) {
    tries.push_back(ref);
  } else {
    // No implicit docker.io: libpod refuses too, with these words.
    for (auto& reg : req.search_registries)
      tries.push_back(ref.qualified(reg));
    if (tries.empty()) {
      err = "image name provided is a short name and no search registries "
            "are defined in the registries config file.";
      return false;
    }
  }
  std::string errors;
  for (auto& t : tries) {
    ev.log("Trying to pull " + t.str() + "...\n");
    std::string e;
    if (pull_from(store, t, options_for(req, t), ev, out, e))
      return true;
    if (!errors.empty())
      errors += '\n';
    errors += "pulling " + t.str() + ": " + e;
    if (ev.cancelled())
      break;
  }
  err = errors;
  return false;
}

} // namespace berth::storage
