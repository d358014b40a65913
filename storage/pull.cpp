#include "storage/pull.hpp"

#include "storage/digest.hpp"
#include "storage/image_config.hpp"
#include "storage/layer.hpp"
#include "storage/reference.hpp"
#include "storage/registry.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <mutex>
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
  return type == "application/vnd.oci.image.manifest.v1+json" ||
         type == "application/vnd.docker.distribution.manifest.v2+json" ||
         type.empty();
}

/// One registry's attempt at a pull.
class puller {
public:
  puller(image_store& store, const image_reference& ref,
         registry_options opts, const pull_events& ev)
    : store_(store), ref_(ref), opts_(opts), client_(ref.registry, opts),
      ev_(ev) {
  }

  bool run(image_record& out, std::string& err) {
    manifest m;
    if (!client_.get_manifest(ref_.repository, ref_.tag_or_digest(), m, err))
      return false;
    if (!supported_manifest(m.media_type)) {
      err = "unsupported manifest type " + m.media_type;
      return false;
    }
    image_manifest im;
    if (!parse_image_manifest(m.body, im, err))
      return false;
    image_config cfg;
    std::string cfg_text;
    if (!fetch_small(im.config_digest, cfg_text, err) ||
        !parse_image_config(cfg_text, cfg, err))
      return false;
    if (cfg.diff_ids.size() != im.layers.size()) {
      err = "image configuration lists " + std::to_string(cfg.diff_ids.size())
            + " layers, the manifest " + std::to_string(im.layers.size());
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
    out.names.push_back(ref_.digest.empty() || !ref_.tag.empty()
                            ? ref_.str()
                            : ref_.name() + "@" + ref_.digest);
    return true;
  }

private:
  // Fetches a small blob (a config) into memory and the blob store.
  bool fetch_small(const std::string& digest, std::string& text,
                   std::string& err) {
    if (!store_.has_blob(digest)) {
      ev_.log("Copying config " + short_digest(digest) + "\n");
      std::string tmp;
      if (!download(client_, digest, tmp, err) ||
          !store_.put_blob(digest, tmp, err))
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
    if (!ok) {
      err = "writing manifest: " + std::string{std::strerror(errno)};
      return false;
    }
    ok = store_.put_blob(digest, tmp, err);
    std::error_code ec;
    fs::remove_all(dir, ec);
    return ok;
  }

  // Downloads a blob, verified against its digest, into a temporary file.
  bool download(registry_client& client, const std::string& digest,
                std::string& path, std::string& err) {
    auto dir = store_.make_temp_dir(err);
    if (dir.empty())
      return false;
    path = dir + "/blob";
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                    0600);
    if (fd < 0) {
      err = "creating " + path + ": " + std::strerror(errno);
      return false;
    }
    int last_tenth = -1;
    auto progress = [&](uint64_t done, uint64_t total) {
      if (total > 0) {
        int tenth = int(done * 10 / total);
        if (tenth != last_tenth) {
          last_tenth = tenth;
          ev_.log("Copying blob " + short_digest(digest) + " " +
                  std::to_string(done) + "/" + std::to_string(total) + "\n");
        }
      }
      return !ev_.cancelled();
    };
    bool ok = client.fetch_blob(ref_.repository, digest, fd, progress, err);
    ::close(fd);
    return ok;
  }

  // Downloads and unpacks the layers that are not here yet, a few at once,
  // each thread with a client of its own.
  bool fetch_layers(std::vector<layer_record>& layers, std::string& err) {
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex mtx;
    std::string first_error;
    auto work = [&] {
      registry_client client{ref_.registry, opts_};
      for (size_t i; (i = next++) < layers.size() && !failed;) {
        std::string e;
        if (!fetch_layer(client, layers[i], e)) {
          std::lock_guard guard{mtx};
          if (!failed.exchange(true))
            first_error = e;
        }
      }
    };
    std::vector<std::thread> threads;
    for (size_t t = 0; t < std::min(parallel_layers, layers.size()); ++t)
      threads.emplace_back(work);
    for (auto& t : threads)
      t.join();
    if (failed) {
      err = first_error;
      return false;
    }
    return true;
  }

  bool fetch_layer(registry_client& client, layer_record& l,
                   std::string& err) {
    if (ev_.cancelled()) {
      err = "cancelled";
      return false;
    }
    if (store_.has_layer(l.chain_id)) {
      ev_.log("Copying blob " + short_digest(l.blob) + " skipped: already "
              "exists\n");
      l.size = layer_size(l.chain_id);
      return true;
    }
    if (!store_.has_blob(l.blob)) {
      std::string tmp;
      if (!download(client, l.blob, tmp, err) ||
          !store_.put_blob(l.blob, tmp, err))
        return false;
    }
    auto dir = store_.make_temp_dir(err);
    if (dir.empty())
      return false;
    auto diff = dir + "/diff";
    unpack_stats st;
    bool ok = mkdir(diff.c_str(), 0755) == 0 &&
              unpack_layer(store_.blob_path(l.blob), diff, st, err);
    if (ok && st.diff_id != l.diff_id) {
      err = "layer " + l.blob + ": content is " + st.diff_id +
            ", the image configuration says " + l.diff_id;
      ok = false;
    }
    l.size = int64_t(st.size);
    ok = ok && store_.put_layer(l.chain_id, dir, err);
    if (!ok) {
      std::error_code ec;
      fs::remove_all(dir, ec);
      return false;
    }
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
  image_reference ref_;
  registry_options opts_;
  registry_client client_;
  const pull_events& ev_;
};

} // namespace

bool pull_image(image_store& store, const pull_request& req,
                const pull_events& ev, image_record& out, std::string& err) {
  image_reference ref;
  if (!image_reference::parse(req.reference, ref, err))
    return false;
  std::vector<image_reference> tries;
  if (ref.has_registry_part) {
    tries.push_back(ref);
  } else {
    for (auto& reg : req.search_registries)
      tries.push_back(ref.qualified(reg));
    if (tries.empty())
      tries.push_back(ref.qualified(default_registry));
  }
  std::string errors;
  for (auto& t : tries) {
    registry_options opts;
    auto insecure = std::find(req.insecure_registries.begin(),
                              req.insecure_registries.end(),
                              t.registry) != req.insecure_registries.end();
    opts.tls_verify = req.tls_verify.value_or(!insecure);
    opts.cert_dir = req.cert_dir;
    if (auto colon = req.creds.find(':'); colon != std::string::npos) {
      opts.username = req.creds.substr(0, colon);
      opts.password = req.creds.substr(colon + 1);
    } else {
      opts.username = req.creds;
    }
    ev.log("Trying to pull " + t.str() + "...\n");
    std::string e;
    puller p{store, t, std::move(opts), ev};
    if (p.run(out, e))
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
