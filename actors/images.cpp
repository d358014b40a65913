#include "actors/images.hpp"

#include "actors/containers.hpp"

#include "protocol/gen/io_podman.hpp"
#include "protocol/log.hpp"
#include "runtime/host.hpp"
#include "storage/archive.hpp"
#include "storage/image_config.hpp"
#include "storage/pull.hpp"
#include "storage/push.hpp"
#include "storage/reference.hpp"
#include "storage/registries.hpp"
#include "storage/search.hpp"
#include "storage/store.hpp"

#include <caf/all.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <unistd.h>

namespace berth::actors {

namespace {

using namespace std::chrono_literals;

/// How ImageSave names its results in ROOT/uploads.
constexpr std::string_view save_prefix = "image-save-";

using progress_atom = caf::atom_constant<caf::atom("progress")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using done_atom = caf::atom_constant<caf::atom("done")>;
using leave_atom = caf::atom_constant<caf::atom("leave")>;

/// The kinds of work that run on worker actors.
enum class job_kind { pull, load, save, push, import, export_, search };

/// What a worker hands back to the images actor.
struct job_outcome {
  bool ok = false;
  /// The failure is ImageNotFound for `missing` (else ErrorOccurred).
  bool not_found = false;
  std::string missing;
  std::string error;
  /// Images to commit, in order, before the callers hear of them.
  std::vector<storage::image_record> images;
  /// The final `id` (or the single output) of the reply.
  std::string id;
  std::vector<podman::ImageSearchResult> results;
};
using job_outcome_ptr = std::shared_ptr<const job_outcome>;

/// The blocking part of a job, run on a worker actor.
using job_work =
    std::function<void(const storage::pull_events&, job_outcome&)>;

std::shared_ptr<spdlog::logger> log() {
  static auto l = logger("image");
  return l;
}

// The repository part of a stored name: "docker.io/library/a:1" ->
// "docker.io/library/a".
std::string repository_of(const std::string& name) {
  auto at = name.find('@');
  if (at != std::string::npos)
    return name.substr(0, at);
  auto slash = name.rfind('/');
  auto colon = name.rfind(':');
  if (colon != std::string::npos &&
      (slash == std::string::npos || colon > slash))
    return name.substr(0, colon);
  return name;
}

// "busybox:mine" -> "localhost/busybox:mine", as podman tags short names.
std::string qualify_tag(std::string name) {
  auto first = name.substr(0, name.find('/'));
  bool has_registry = name.find('/') != std::string::npos &&
                      (first.find_first_of(".:") != std::string::npos ||
                       first == "localhost");
  if (!has_registry)
    name = "localhost/" + name;
  auto slash = name.rfind('/');
  auto colon = name.rfind(':');
  if (name.find('@') == std::string::npos &&
      (colon == std::string::npos || colon < slash))
    name += ":latest";
  return name;
}

/// A name for an image as TagImage, ExportImage's tags and ImageSave's
/// moreTags take it: a valid reference without a transport or digest,
/// qualified by `qualify_tag`. False with `err` in the reference parser's
/// words otherwise.
bool tag_name(const std::string& given, std::string& out, std::string& err) {
  storage::image_reference ref;
  if (given.empty()) {
    err = "invalid reference format: the name is empty";
    return false;
  }
  if (given.find("://") != std::string::npos ||
      given.find('@') != std::string::npos) {
    err = "parsing reference \"" + given + "\": invalid reference format: "
          "a name to tag with carries no transport or digest";
    return false;
  }
  out = qualify_tag(given);
  return storage::image_reference::parse(out, ref, err);
}

/// A job's own actor: runs the blocking work, then reports to `images`.
void run_job(caf::event_based_actor* self, caf::actor images, std::string key,
             job_work work, std::shared_ptr<std::atomic<bool>> cancelled,
             bool report) {
  storage::pull_events ev;
  ev.log = [&](std::string line) {
    if (report)
      caf::anon_send(images, progress_atom::value, key, std::move(line));
  };
  ev.cancelled = [&] { return cancelled->load(); };
  auto r = std::make_shared<job_outcome>();
  try {
    work(ev, *r);
  } catch (const std::exception& e) {
    r->ok = false;
    r->error = e.what();
  }
  caf::anon_send(images, done_atom::value, key, job_outcome_ptr{r});
  self->quit();
}

/// The io.podman image methods, run inside the images actor.
class image_api : public podman::service {
public:
  image_api(caf::event_based_actor* self, image_options opts)
    : self_(self), opts_(std::move(opts)), store_(opts_.image_count) {
  }

  bool open(std::string& err) {
    if (!store_.open(opts_.root, err))
      return false;
    remove_stale_saves();
    return true;
  }
  int64_t count() { return store_.count(); }

  void internal_error(const rpc::call_ptr& c,
                      const std::string& what) override {
    c->fail(podman::ErrorOccurred{std::string{c->method().name} + ": " +
                                  what});
  }

  /// The images are read once per generation of the store and the reply
  /// rendered once per change of those or of the containers' use of them:
  /// until the next change, listing hundreds of images costs one copy of
  /// the text, and a container created or removed costs no store read.
  void ListImages(const rpc::call_ptr& c,
                  const podman::ListImages_in&) override {
    auto generation = store_.generation();
    if (!described_ || described_generation_ != generation) {
      described_.emplace();
      for (auto& img : store_.list())
        described_->images.push_back(describe(img));
      described_generation_ = generation;
      listed_.reset();
    }
    if (!listed_ || listed_users_generation_ != users_generation_) {
      for (auto& img : described_->images)
        img.containers = containers_of(img.id);
      json::writer w;
      encode(w, *described_);
      listed_ = w.take();
      listed_users_generation_ = users_generation_;
    }
    c->reply_json(*listed_);
  }

  void GetImage(const rpc::call_ptr& c,
                const podman::GetImage_in& in) override {
    storage::image_record img;
    if (find(c, in.id, img))
      c->reply(podman::GetImage_out{describe(img)});
  }

  void ImageExists(const rpc::call_ptr& c,
                   const podman::ImageExists_in& in) override {
    storage::image_record img;
    std::string why;
    switch (store_.resolve(in.name, img, why)) {
      case storage::lookup::found: return c->reply(podman::ImageExists_out{0});
      case storage::lookup::not_found:
        return c->reply(podman::ImageExists_out{1});
      case storage::lookup::ambiguous:
        return c->fail(podman::ErrorOccurred{why});
    }
  }

  void InspectImage(const rpc::call_ptr& c,
                    const podman::InspectImage_in& in) override {
    storage::image_record img;
    storage::image_config cfg;
    if (find(c, in.name, img) && config(c, img, cfg))
      c->reply(podman::InspectImage_out{inspect_json(img, cfg)});
  }

  void HistoryImage(const rpc::call_ptr& c,
                    const podman::HistoryImage_in& in) override {
    storage::image_record img;
    storage::image_config cfg;
    if (!find(c, in.name, img) || !config(c, img, cfg))
      return;
    podman::HistoryImage_out out;
    size_t layer = 0;
    for (auto& h : cfg.history) {
      podman::ImageHistory e;
      e.id = "<missing>";
      e.created = h.created;
      e.createdBy = h.created_by;
      e.tags = img.names;
      e.comment = h.comment;
      if (!h.empty_layer && layer < img.layers.size())
        e.size = img.layers[layer++].size;
      out.history.push_back(std::move(e));
    }
    std::reverse(out.history.begin(), out.history.end());
    if (!out.history.empty())
      out.history.front().id = img.id;
    c->reply(out);
  }

  void TagImage(const rpc::call_ptr& c,
                const podman::TagImage_in& in) override {
    storage::image_record img;
    if (!find(c, in.name, img))
      return;
    std::string err, name;
    if (!tag_name(in.tagged, name, err))
      return c->fail(podman::ErrorOccurred{"tagging " + img.id + ": " + err});
    if (!store_.tag(img.id, name, err))
      return c->fail(podman::ErrorOccurred{err});
    c->reply(podman::TagImage_out{img.id});
  }

  /// Containers made from the image need its layers: without force it
  /// stays while they exist; with force they are removed first (running
  /// ones killed), as libpod does, and no create may take the image
  /// meanwhile.
  void RemoveImage(const rpc::call_ptr& c,
                   const podman::RemoveImage_in& in) override {
    storage::image_record img;
    if (!find(c, in.name, img))
      return;
    // Removing one of several names leaves the layers alone: only that
    // name goes, forced or not, as libpod does.
    if ((img.names.size() > 1 && (!in.force || given_name(img, in.name))) ||
        !in_use(img.id))
      return remove_image(c, in, img);
    if (!in.force)
      return c->fail(podman::ErrorOccurred{in_use_reason(img.id)});
    if (!catalog_)
      return c->fail(podman::ErrorOccurred{
          "removing image " + img.id + ": its containers cannot be removed "
          "before the containers are recovered"});
    removing_.insert(img.id);
    auto settle = [this, id = img.id] { removing_.erase(removing_.find(id)); };
    self_->request(catalog_, caf::infinite, remove_users_atom::value, img.id)
        .then(
            [this, c, in, id = img.id, settle](const std::string& err) {
              settle();
              if (!err.empty())
                return c->fail(podman::ErrorOccurred{
                    "removing image " + id + ": removing its containers: " +
                    err});
              // Another call may have untagged or removed it meanwhile.
              storage::image_record now;
              if (!find(c, id, now))
                return;
              if (in_use(id))
                return c->fail(podman::ErrorOccurred{in_use_reason(id)});
              remove_image(c, in, now);
            },
            [this, c, id = img.id, settle](caf::error& e) {
              settle();
              c->fail(podman::ErrorOccurred{
                  "removing image " + id + ": removing its containers: " +
                  self_->system().render(e)});
            });
  }

  void set_catalog(caf::actor a) { catalog_ = std::move(a); }

  /// The catalog recovered container `ctr`, made from image `image`.
  void used(const std::string& image, const std::string& ctr) {
    users_[image].insert(ctr);
    ++users_generation_;
  }

  /// The create that image_for gave `image` has ended, with container
  /// `ctr` or ("") without one.
  void handed(const std::string& image, const std::string& ctr) {
    if (auto it = handed_.find(image); it != handed_.end() && --it->second <= 0)
      handed_.erase(it);
    if (!ctr.empty())
      used(image, ctr);
  }

  /// Container `ctr`, made from image `image`, is gone.
  void unused(const std::string& image, const std::string& ctr) {
    auto it = users_.find(image);
    if (it == users_.end() || !it->second.erase(ctr))
      return;
    if (it->second.empty())
      users_.erase(it);
    ++users_generation_;
  }

  /// The name of `img` that `given` (as RemoveImage got it) names, if it
  /// names one rather than the ID.
  static std::optional<std::string>
  given_name(const storage::image_record& img, const std::string& given) {
    for (auto& n : img.names)
      if (n == given || n == qualify_tag(given) || n.ends_with("/" + given) ||
          n.ends_with("/" + given + ":latest"))
        return n;
    return std::nullopt;
  }

  void remove_image(const rpc::call_ptr& c, const podman::RemoveImage_in& in,
                    const storage::image_record& img) {
    std::string err;
    // A name of an image that has several only loses that name; its ID
    // removes it whole, with force.
    auto named = given_name(img, in.name);
    if (img.names.size() > 1 && (named || !in.force)) {
      if (!named)
        return c->fail(podman::ErrorOccurred{
            "unable to delete image " + img.id +
            " (must force) - image is referenced in multiple repositories"});
      if (!store_.untag(*named, err) && !err.empty())
        return c->fail(podman::ErrorOccurred{err});
      return c->reply(podman::RemoveImage_out{img.id});
    }
    if (!store_.remove(img.id, err))
      return c->fail(podman::ErrorOccurred{err});
    log()->info("removed image {}", img.id);
    c->reply(podman::RemoveImage_out{img.id});
  }

  void DeleteUnusedImages(const rpc::call_ptr& c,
                          const podman::DeleteUnusedImages_in&) override {
    podman::DeleteUnusedImages_out out;
    if (prune(c, false, out.images))
      c->reply(out);
  }

  void ImagesPrune(const rpc::call_ptr& c,
                   const podman::ImagesPrune_in& in) override {
    podman::ImagesPrune_out out;
    if (prune(c, !in.all, out.pruned))
      c->reply(out);
  }

  void PullImage(const rpc::call_ptr& c,
                 const podman::PullImage_in& in) override {
    auto key = "pull\n" + in.name + '\n' + in.creds + '\n' + in.certDir +
               '\n' + (in.tlsVerify ? (*in.tlsVerify ? "1" : "0") : "-");
    if (join(key, c, job_kind::pull))
      return; // joins the pull in flight
    auto* store = &store_;
    storage::archive_reference local;
    if (storage::parse_archive_reference(in.name, local)) {
      storage::load_request req{local.path, local.ref};
      return start(key, [store, req](auto& ev, job_outcome& out) {
        out.ok = storage::load_images(*store, req, ev, out.images, out.error);
        if (out.ok)
          out.id = out.images.front().id;
      });
    }
    storage::pull_request req;
    req.reference = in.name;
    req.tls_verify = in.tlsVerify;
    req.creds = in.creds;
    req.cert_dir = in.certDir;
    start_pull(key, std::move(req));
  }

  /// The image a container is made from: found locally, or pulled (with
  /// the registries' defaults) and shared with any pull of it in flight.
  caf::result<container_image_ptr> image_for(const std::string& ref) {
    storage::image_record img;
    std::string why;
    switch (store_.resolve(ref, img, why)) {
      case storage::lookup::found: return hand_out(img);
      case storage::lookup::ambiguous: return failed_image(why);
      case storage::lookup::not_found: break;
    }
    storage::archive_reference local;
    if (ref.empty() || storage::parse_archive_reference(ref, local))
      return failed_image(ref.empty() ? "no image given" : why);
    auto rp = self_->make_response_promise<container_image_ptr>();
    auto key = "pull\n" + ref + "\n\n\n-";
    auto& j = jobs_[key];
    j.kind = job_kind::pull;
    j.internal.push_back([this, rp, ref](bool ok, const std::string& err)
                             mutable {
      storage::image_record pulled;
      std::string why;
      if (!ok)
        rp.deliver(failed_image("pulling " + ref + ": " + err));
      else if (store_.resolve(ref, pulled, why) != storage::lookup::found)
        rp.deliver(failed_image(why));
      else
        rp.deliver(hand_out(pulled));
    });
    if (!j.cancelled) {
      storage::pull_request req;
      req.reference = ref;
      start_pull(key, std::move(req));
    }
    return rp;
  }

  void start_pull(const std::string& key, storage::pull_request req) {
    auto regs = registries();
    req.search_registries = regs.search;
    req.insecure_registries = regs.insecure();
    auto* store = &store_;
    start(key, [store, req](auto& ev, job_outcome& out) {
      out.images.resize(1);
      out.ok = storage::pull_image(*store, req, ev, out.images[0], out.error);
      out.id = out.images[0].id;
    });
  }

  /// The image for a create, held (see `handed`) until the catalog has
  /// recorded the container or given up: a prune or removal in between
  /// leaves it alone.
  container_image_ptr hand_out(const storage::image_record& img) {
    if (removing_.count(img.id))
      return failed_image("image " + img.id + " is being removed");
    auto r = describe_for_container(img);
    if (r->ok)
      ++handed_[img.id];
    return r;
  }

  static container_image_ptr failed_image(std::string why) {
    auto r = std::make_shared<container_image>();
    r->error = std::move(why);
    return r;
  }

  container_image_ptr describe_for_container(const storage::image_record& img) {
    auto r = std::make_shared<container_image>();
    std::string text;
    if (!store_.read_blob("sha256:" + img.id, text, r->error) ||
        !storage::parse_image_config(text, r->config, r->error)) {
      r->error = "reading image " + img.id + ": " + r->error;
      return r;
    }
    r->ok = true;
    r->id = img.id;
    for (auto& l : img.layers) {
      r->chain_ids.push_back(l.chain_id);
      r->layer_dirs.push_back(store_.layer_path(l.chain_id) + "/diff");
    }
    return r;
  }

  void LoadImage(const rpc::call_ptr& c,
                 const podman::LoadImage_in& in) override {
    auto key = unique_key("load", c);
    join(key, c, job_kind::load);
    auto* store = &store_;
    storage::load_request req{in.inputFile, in.name};
    bool remove_input = in.deleteFile;
    start(
        key,
        [store, req, remove_input](auto& ev, job_outcome& out) {
          out.ok =
              storage::load_images(*store, req, ev, out.images, out.error);
          if (remove_input && ::unlink(req.path.c_str()) < 0)
            log()->warn("removing {}: {}", req.path, std::strerror(errno));
          for (auto& img : out.images) {
            auto names = img.names.empty() ? std::vector{img.id} : img.names;
            for (auto& n : names)
              out.id += (out.id.empty() ? "" : ", ") + n;
          }
        },
        !in.quiet);
  }

  void ImageSave(const rpc::call_ptr& c,
                 const podman::ImageSave_in& in) override {
    auto& o = in.options;
    storage::save_request req;
    if (!save_format(o.format, req)) {
      return c->fail(podman::ErrorOccurred{
          "unknown format \"" + o.format + "\": choose oci-archive, "
          "docker-archive, oci-dir or docker-dir"});
    }
    if (!find(c, o.name, req.image))
      return;
    req.names = names_for(o.name, req.image);
    if (!add_tags(c, o.moreTags, req.names))
      return;
    // The client fetches one file: directories are tarred.
    req.as_tar = true;
    req.compress = o.compress;
    std::string err;
    if (!reserve_upload(std::string{save_prefix} + "XXXXXX", req.destination,
                        err))
      return c->fail(podman::ErrorOccurred{err});
    auto key = unique_key("save", c);
    join(key, c, job_kind::save);
    auto* store = &store_;
    start(
        key,
        [store, req](auto& ev, job_outcome& out) {
          out.ok = storage::save_image(*store, req, ev, out.error);
          if (!out.ok)
            ::unlink(req.destination.c_str());
          out.id = req.destination;
        },
        !o.quiet);
  }

  void ExportImage(const rpc::call_ptr& c,
                   const podman::ExportImage_in& in) override {
    storage::archive_reference dest;
    if (!storage::parse_archive_reference(in.destination, dest))
      return c->fail(podman::ErrorOccurred{
          "exporting to \"" + in.destination + "\": the destination must "
          "be docker-archive:PATH[:NAME], oci-archive:PATH[:REF], "
          "oci:DIR[:REF] or dir:DIR"});
    storage::save_request req;
    if (!find(c, in.name, req.image))
      return;
    req.format = dest.format;
    req.destination = dest.path;
    req.compress = in.compress;
    std::string name;
    if (dest.ref.empty())
      req.names = names_for(in.name, req.image);
    else if (dest.format != storage::image_format::docker_archive)
      req.names.push_back(dest.ref); // an OCI ref name, as given
    else if (storage::archive_name(dest.ref, name))
      req.names.push_back(name);
    else
      return c->fail(podman::ErrorOccurred{"exporting to \"" +
                                           in.destination + "\": invalid "
                                           "name " + dest.ref});
    if (!add_tags(c, in.tags, req.names))
      return;
    auto key = unique_key("export", c);
    join(key, c, job_kind::export_);
    auto* store = &store_;
    start(key, [store, req](auto& ev, job_outcome& out) {
      out.ok = storage::save_image(*store, req, ev, out.error);
      out.id = req.image.id;
    });
  }

  void ImportImage(const rpc::call_ptr& c,
                   const podman::ImportImage_in& in) override {
    std::string name, err;
    if (!in.reference.empty()) {
      name = qualify_tag(in.reference);
      storage::image_reference ref;
      if (!storage::image_reference::parse(name, ref, err)) {
        // The source is the client's upload when it asks for it to go:
        // it goes on failure too.
        if (in.delete_ && ::unlink(in.source.c_str()) < 0 && errno != ENOENT)
          log()->warn("removing {}: {}", in.source, std::strerror(errno));
        return c->fail(podman::ErrorOccurred{"importing " + in.source +
                                             ": " + err});
      }
    }
    storage::import_request req;
    req.source = in.source;
    req.changes = in.changes;
    req.message = in.message;
    req.architecture = runtime::go_arch();
    bool remove_source = in.delete_;
    auto key = unique_key("import", c);
    join(key, c, job_kind::import);
    auto* store = &store_;
    start(key, [store, req, name, remove_source](auto& ev, job_outcome& out) {
      out.images.resize(1);
      out.ok = storage::import_rootfs(*store, req, ev, out.images[0],
                                      out.error);
      if (remove_source && ::unlink(req.source.c_str()) < 0)
        log()->warn("removing {}: {}", req.source, std::strerror(errno));
      if (!name.empty())
        out.images[0].names.push_back(name);
      out.id = out.images[0].id;
    });
  }

  void PushImage(const rpc::call_ptr& c,
                 const podman::PushImage_in& in) override {
    storage::image_record img;
    if (!find(c, in.name, img))
      return;
    storage::push_request req;
    req.image = in.name;
    req.destination = in.tag.empty() ? in.name : in.tag;
    req.tls_verify = in.tlsverify;
    req.creds = in.creds;
    req.cert_dir = in.certDir;
    req.format = in.format;
    // podman's compress only concerns dir: destinations; a registry gets
    // gzip layers either way.
    req.insecure_registries = registries().insecure();
    auto key = unique_key("push", c);
    join(key, c, job_kind::push);
    auto* store = &store_;
    start(key, [store, req](auto& ev, job_outcome& out) {
      storage::push_failure why = storage::push_failure::none;
      out.ok = storage::push_image(*store, req, ev, out.error, why);
      out.not_found = why == storage::push_failure::image_not_found;
      out.missing = req.image;
    });
  }

  void SearchImages(const rpc::call_ptr& c,
                    const podman::SearchImages_in& in) override {
    storage::search_request req;
    req.query = in.query;
    req.limit = in.limit;
    req.tls_verify = in.tlsVerify;
    req.is_official = in.filter.is_official;
    req.is_automated = in.filter.is_automated;
    req.star_count = in.filter.star_count;
    auto regs = registries();
    req.search_registries = regs.search;
    req.insecure_registries = regs.insecure();
    auto key = unique_key("search", c);
    join(key, c, job_kind::search);
    start(key, [req](auto&, job_outcome& out) {
      std::vector<storage::search_result> found;
      out.ok = storage::search_images(req, found, out.error);
      for (auto& r : found)
        out.results.push_back({r.description, r.is_official, r.is_automated,
                               r.registry, r.name, r.star_count});
    });
  }

  /// A line of progress from the worker of `key`.
  void progress(const std::string& key, std::string line) {
    auto it = jobs_.find(key);
    if (it == jobs_.end())
      return;
    auto& j = it->second;
    for (auto& w : j.waiters)
      w.pending.push_back(line);
    if (!j.flush_scheduled) {
      j.flush_scheduled = true;
      self_->delayed_send(self_, 100ms, flush_atom::value, key);
    }
  }

  /// Sends what progress there is to the callers that asked for `more`.
  void flush(const std::string& key) {
    auto it = jobs_.find(key);
    if (it == jobs_.end())
      return;
    auto& j = it->second;
    j.flush_scheduled = false;
    for (auto& w : j.waiters) {
      if (!w.call->more() || w.pending.empty())
        continue;
      send_more(j.kind, w.call, std::move(w.pending), {}, true);
      w.pending.clear();
    }
  }

  /// A worker finished: commits what it made, then answers its callers.
  void done(const std::string& key, const job_outcome_ptr& r) {
    auto it = jobs_.find(key);
    if (it == jobs_.end())
      return;
    auto j = std::move(it->second);
    jobs_.erase(it);
    std::string err = r->error;
    bool ok = r->ok;
    for (size_t i = 0; ok && i < r->images.size(); ++i)
      ok = store_.commit_image(r->images[i], err);
    if (ok)
      for (auto& img : r->images)
        log()->info("stored image {} as {}", img.id,
                    img.names.empty() ? "<none>" : img.names.front());
    // Nobody is left to fetch a saved image.
    if (ok && j.kind == job_kind::save && j.waiters.empty())
      ::unlink(r->id.c_str());
    for (auto& f : j.internal)
      f(ok, err);
    for (auto& w : j.waiters) {
      if (!ok && r->not_found)
        w.call->fail(podman::ImageNotFound{r->missing, err});
      else if (!ok)
        w.call->fail(podman::ErrorOccurred{err});
      else
        answer(j.kind, w, *r);
    }
  }

  /// A caller hung up; the job stops when nobody waits for it.
  void leave(const std::string& key, uint64_t id) {
    auto it = jobs_.find(key);
    if (it == jobs_.end())
      return;
    auto& ws = it->second.waiters;
    std::erase_if(ws, [&](auto& w) {
      return reinterpret_cast<uintptr_t>(w.call.get()) == id;
    });
    if (ws.empty())
      it->second.cancelled->store(true);
  }

private:
  struct waiter {
    rpc::call_ptr call;
    std::vector<std::string> pending;
  };
  struct job {
    job_kind kind = job_kind::pull;
    std::vector<waiter> waiters;
    /// Other actors waiting for a pull: told whether it worked.
    std::vector<std::function<void(bool, const std::string&)>> internal;
    std::shared_ptr<std::atomic<bool>> cancelled;
    bool flush_scheduled = false;
  };

  static std::string unique_key(const char* kind, const rpc::call_ptr& c) {
    return std::string{kind} + '\n' +
           std::to_string(reinterpret_cast<uintptr_t>(c.get()));
  }

  /// Adds `c` to the callers of job `key`; true when that job runs
  /// already.
  bool join(const std::string& key, const rpc::call_ptr& c, job_kind kind) {
    auto& j = jobs_[key];
    j.kind = kind;
    j.waiters.push_back({c, {}});
    auto id = reinterpret_cast<uintptr_t>(c.get());
    c->on_cancel([me = caf::actor_cast<caf::actor>(self_), key, id] {
      caf::anon_send(me, leave_atom::value, key, uint64_t(id));
    });
    return j.cancelled != nullptr;
  }

  /// Runs `work` for job `key` on an actor of its own: downloads,
  /// unpacking and archive writing block. With `report`, its progress
  /// lines go to the callers.
  void start(const std::string& key, job_work work, bool report = true) {
    auto cancelled = std::make_shared<std::atomic<bool>>(false);
    jobs_[key].cancelled = cancelled;
    auto me = caf::actor_cast<caf::actor>(self_);
    // The work travels as spawn arguments: CAF 0.17 dereferences a null
    // argument tuple when a detached actor's function takes none.
    self_->spawn<caf::detached>(run_job, me, key, std::move(work), cancelled,
                                report);
  }

  /// A reply of a streaming method (its output is always `reply`).
  static void send_more(job_kind kind, const rpc::call_ptr& c,
                        std::vector<std::string> logs, std::string id,
                        bool continues) {
    podman::MoreResponse r{std::move(logs), std::move(id)};
    switch (kind) {
      case job_kind::load: return c->reply(podman::LoadImage_out{r}, continues);
      case job_kind::save: return c->reply(podman::ImageSave_out{r}, continues);
      case job_kind::push: return c->reply(podman::PushImage_out{r}, continues);
      default: return c->reply(podman::PullImage_out{r}, continues);
    }
  }

  static void answer(job_kind kind, waiter& w, const job_outcome& r) {
    switch (kind) {
      case job_kind::import:
        return w.call->reply(podman::ImportImage_out{r.id});
      case job_kind::export_:
        return w.call->reply(podman::ExportImage_out{r.id});
      case job_kind::search:
        return w.call->reply(podman::SearchImages_out{r.results});
      default:
        return send_more(kind, w.call, std::move(w.pending), r.id, false);
    }
  }

  storage::registries_conf registries() {
    storage::registries_conf regs;
    std::string err;
    if (!storage::load_registries_conf(opts_.registries_conf, regs, err))
      log()->warn("{}", err);
    return regs;
  }

  /// ImageSave's formats as podman names them: oci-dir and docker-dir are
  /// both "dir:" directories, with an OCI or a Docker schema 2 manifest.
  static bool save_format(const std::string& format,
                          storage::save_request& req) {
    using storage::image_format;
    if (format.empty() || format == "oci-archive")
      req.format = image_format::oci_archive;
    else if (format == "docker-archive")
      req.format = image_format::docker_archive;
    else if (format == "oci-dir" || format == "docker-dir")
      req.format = image_format::directory;
    else
      return false;
    if (format == "oci-dir")
      req.manifest_type = storage::oci_manifest_type;
    if (format == "docker-dir")
      req.manifest_type = storage::docker_manifest_type;
    return true;
  }

  /// The stored name `given` stands for, when it names the image by name
  /// (none for an ID).
  static std::vector<std::string> names_for(const std::string& given,
                                            const storage::image_record& img) {
    for (auto& n : img.names)
      if (n == given || n == qualify_tag(given) || n.ends_with("/" + given) ||
          n.ends_with("/" + given + ":latest"))
        return {n};
    return {};
  }

  static void add_name(std::vector<std::string>& names, std::string name) {
    if (std::find(names.begin(), names.end(), name) == names.end())
      names.push_back(std::move(name));
  }

  /// Adds the extra names a save or export writes; an invalid one fails
  /// the call (with ErrorOccurred) and nothing is written.
  static bool add_tags(const rpc::call_ptr& c,
                       const std::vector<std::string>& tags,
                       std::vector<std::string>& names) {
    for (auto& t : tags) {
      std::string name, err;
      if (!tag_name(t, name, err)) {
        c->fail(podman::ErrorOccurred{err});
        return false;
      }
      add_name(names, std::move(name));
    }
    return true;
  }

  /// ImageSave results nobody fetched before the daemon stopped (or
  /// crashed): no client can ask for them any more.
  void remove_stale_saves() {
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator(
             opts_.root + "/uploads", ec))
      if (e.path().filename().string().starts_with(save_prefix))
        std::filesystem::remove(e.path(), ec);
  }

  /// A fresh file name under ROOT/uploads, where ReceiveFile fetches
  /// results from.
  bool reserve_upload(const std::string& pattern, std::string& path,
                      std::string& err) {
    auto dir = opts_.root + "/uploads";
    path = dir + "/" + pattern;
    int fd = -1;
    if (!storage::make_dirs(dir, 0700) || (fd = mkstemp(path.data())) < 0) {
      err = "creating a file in " + dir + ": " + std::strerror(errno);
      return false;
    }
    ::close(fd);
    return true;
  }

  bool find(const rpc::call_ptr& c, const std::string& name,
            storage::image_record& img) {
    std::string why;
    switch (store_.resolve(name, img, why)) {
      case storage::lookup::found: return true;
      case storage::lookup::not_found:
        c->fail(podman::ImageNotFound{name, why});
        return false;
      case storage::lookup::ambiguous:
        c->fail(podman::ErrorOccurred{why});
        return false;
    }
    return false;
  }

  bool config(const rpc::call_ptr& c, const storage::image_record& img,
              storage::image_config& cfg) {
    std::string text, err;
    if (!store_.read_blob("sha256:" + img.id, text, err) ||
        !storage::parse_image_config(text, cfg, err)) {
      c->fail(podman::ErrorOccurred{"reading image " + img.id + ": " + err});
      return false;
    }
    return true;
  }

  int64_t containers_of(const std::string& id) const {
    auto it = users_.find(id);
    return it == users_.end() ? 0 : int64_t(it->second.size());
  }

  /// Whether a container, or a create under way, uses image `id`.
  bool in_use(const std::string& id) const {
    return users_.count(id) || handed_.count(id);
  }

  std::string in_use_reason(const std::string& id) const {
    auto it = users_.find(id);
    if (it == users_.end())
      return "image " + id + " is in use by a container being created";
    return "image " + id + " is in use by container " + *it->second.begin() +
           (it->second.size() > 1 ? " and others" : "") +
           ": remove the container first";
  }

  bool prune(const rpc::call_ptr& c, bool dangling_only,
             std::vector<std::string>& removed) {
    for (auto& img : store_.list()) {
      if ((dangling_only && !img.names.empty()) || in_use(img.id))
        continue;
      std::string err;
      if (!store_.remove(img.id, err)) {
        c->fail(podman::ErrorOccurred{err});
        return false;
      }
      removed.push_back(img.id);
    }
    return true;
  }

  podman::Image describe(const storage::image_record& img) {
    podman::Image out;
    out.id = img.id;
    out.repoTags = img.names;
    for (auto& n : img.names) {
      auto d = repository_of(n) + "@" + img.manifest_digest;
      if (std::find(out.repoDigests.begin(), out.repoDigests.end(), d) ==
          out.repoDigests.end())
        out.repoDigests.push_back(d);
    }
    out.created = img.created;
    out.size = img.size;
    out.virtualSize = img.size;
    out.labels = img.labels;
    out.containers = containers_of(img.id);
    return out;
  }

  std::string inspect_json(const storage::image_record& img,
                           const storage::image_config& cfg) {
    auto d = describe(img);
    json::writer w;
    auto strings = [&](const char* key, const std::vector<std::string>& v) {
      w.key(key);
      encode(w, v);
    };
    auto set = [&](const char* key, const std::vector<std::string>& v) {
      w.key(key);
      w.begin_object();
      for (auto& x : v) {
        w.key(x);
        w.begin_object();
        w.end_object();
      }
      w.end_object();
    };
    w.begin_object();
    w.key("Id"), w.value(img.id);
    w.key("Digest"), w.value(img.manifest_digest);
    strings("RepoTags", d.repoTags);
    strings("RepoDigests", d.repoDigests);
    w.key("Parent"), w.value("");
    w.key("Comment"), w.value("");
    w.key("Created"), w.value(cfg.created);
    w.key("Config"), w.begin_object();
    w.key("User"), w.value(cfg.user);
    set("ExposedPorts", cfg.exposed_ports);
    strings("Env", cfg.env);
    strings("Entrypoint", cfg.entrypoint);
    strings("Cmd", cfg.cmd);
    set("Volumes", cfg.volumes);
    w.key("WorkingDir"), w.value(cfg.working_dir);
    w.key("Labels"), encode(w, cfg.labels);
    w.key("StopSignal"), w.value(cfg.stop_signal);
    w.end_object();
    w.key("Version"), w.value("");
    w.key("Author"), w.value(cfg.author);
    w.key("Architecture"), w.value(cfg.architecture);
    w.key("Os"), w.value(cfg.os);
    w.key("Size"), w.value(img.size);
    w.key("VirtualSize"), w.value(img.size);
    w.key("GraphDriver"), w.begin_object();
    w.key("Name"), w.value("overlay");
    w.key("Data"), w.begin_object();
    std::string lower;
    for (auto it = img.layers.rbegin(); it != img.layers.rend(); ++it)
      lower += (lower.empty() ? "" : ":") + store_.layer_path(it->chain_id);
    w.key("LowerDir"), w.value(lower);
    w.end_object();
    w.end_object();
    w.key("RootFS"), w.begin_object();
    w.key("Type"), w.value("layers");
    strings("Layers", cfg.diff_ids);
    w.end_object();
    w.key("Labels"), encode(w, cfg.labels);
    w.key("Annotations"), w.begin_object(), w.end_object();
    w.key("ManifestType"), w.value(img.manifest_type);
    w.key("User"), w.value(cfg.user);
    w.key("History"), w.begin_array();
    for (auto& h : cfg.history) {
      w.element();
      w.begin_object();
      w.key("created"), w.value(h.created);
      w.key("created_by"), w.value(h.created_by);
      if (!h.author.empty())
        w.key("author"), w.value(h.author);
      if (!h.comment.empty())
        w.key("comment"), w.value(h.comment);
      if (h.empty_layer)
        w.key("empty_layer"), w.value(true);
      w.end_object();
    }
    w.end_array();
    w.end_object();
    return w.take();
  }

  caf::event_based_actor* self_;
  image_options opts_;
  storage::image_store store_;
  /// ListImages' images as of `described_generation_` of the store, and
  /// its reply as of `listed_users_generation_` of `users_`.
  std::optional<podman::ListImages_out> described_;
  uint64_t described_generation_ = 0;
  std::optional<std::string> listed_;
  uint64_t listed_users_generation_ = 0;
  std::map<std::string, job> jobs_;
  caf::actor catalog_;
  /// The containers of each image, as the catalog reports them.
  std::map<std::string, std::set<std::string>> users_;
  uint64_t users_generation_ = 0;
  /// Creates image_for answered and the catalog has not settled, by image.
  std::map<std::string, int> handed_;
  /// Images whose containers a forced RemoveImage is removing.
  std::multiset<std::string> removing_;
};

} // namespace

} // namespace berth::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(berth::rpc::call_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(berth::actors::job_outcome_ptr)

namespace berth::actors {

caf::behavior images_actor(caf::event_based_actor* self, image_options opts) {
  auto api = std::make_shared<image_api>(self, std::move(opts));
  std::string err;
  if (!api->open(err)) {
    log()->error("opening the image store: {}", err);
    self->quit(caf::sec::runtime_error);
    return {};
  }
  return {
    [api](const rpc::call_ptr& c) {
      try {
        api->invoke(c);
      } catch (const std::exception& e) {
        api->internal_error(c, e.what());
      }
    },
    [api](progress_atom, const std::string& key, std::string& line) {
      api->progress(key, std::move(line));
    },
    [api](flush_atom, const std::string& key) { api->flush(key); },
    [api](done_atom, const std::string& key, const job_outcome_ptr& r) {
      api->done(key, r);
    },
    [api](leave_atom, const std::string& key, uint64_t id) {
      api->leave(key, id);
    },
    [api](count_atom) { return api->count(); },
    [api](catalog_atom, caf::actor a) { api->set_catalog(std::move(a)); },
    [api](used_atom, const std::string& image, const std::string& ctr) {
      api->used(image, ctr);
    },
    [api](handed_atom, const std::string& image, const std::string& ctr) {
      api->handed(image, ctr);
    },
    [api](unused_atom, const std::string& image, const std::string& ctr) {
      api->unused(image, ctr);
    },
    [api](image_for_atom, const std::string& ref) {
      return api->image_for(ref);
    },
  };
}

} // namespace berth::actors
