#include "actors/images.hpp"

#include "protocol/gen/io_podman.hpp"
#include "protocol/log.hpp"
#include "storage/image_config.hpp"
#include "storage/pull.hpp"
#include "storage/registries.hpp"

#include <caf/all.hpp>

#include <atomic>
#include <chrono>
#include <map>

namespace berth::actors {

namespace {

using namespace std::chrono_literals;

using progress_atom = caf::atom_constant<caf::atom("progress")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using done_atom = caf::atom_constant<caf::atom("done")>;
using leave_atom = caf::atom_constant<caf::atom("leave")>;

/// What a pull worker hands back.
struct pull_outcome {
  bool ok = false;
  storage::image_record image;
  std::string error;
};
using pull_outcome_ptr = std::shared_ptr<const pull_outcome>;

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

/// The io.podman image methods, run inside the images actor.
class image_api : public podman::service {
public:
  image_api(caf::event_based_actor* self, image_options opts)
    : self_(self), opts_(std::move(opts)) {
  }

  bool open(std::string& err) { return store_.open(opts_.root, err); }
  int64_t count() { return store_.count(); }

  void internal_error(const rpc::call_ptr& c,
                      const std::string& what) override {
    c->fail(podman::ErrorOccurred{std::string{c->method().name} + ": " +
                                  what});
  }

  void ListImages(const rpc::call_ptr& c,
                  const podman::ListImages_in&) override {
    podman::ListImages_out out;
    for (auto& img : store_.list())
      out.images.push_back(describe(img));
    c->reply(out);
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
    std::string err;
    if (in.tagged.empty() || !store_.tag(img.id, qualify_tag(in.tagged), err))
      return c->fail(podman::ErrorOccurred{
          err.empty() ? "tagging " + img.id + ": empty tag" : err});
    c->reply(podman::TagImage_out{img.id});
  }

  void RemoveImage(const rpc::call_ptr& c,
                   const podman::RemoveImage_in& in) override {
    storage::image_record img;
    if (!find(c, in.name, img))
      return;
    std::string err;
    // A name of an image that has several only loses that name.
    auto named = std::find_if(img.names.begin(), img.names.end(),
                              [&](auto& n) {
                                return n == in.name ||
                                       n == qualify_tag(in.name) ||
                                       n.ends_with("/" + in.name) ||
                                       n.ends_with("/" + in.name + ":latest");
                              });
    if (img.names.size() > 1 && !in.force) {
      if (named == img.names.end())
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
    auto key = in.name + '\n' + in.creds + '\n' + in.certDir + '\n' +
               (in.tlsVerify ? (*in.tlsVerify ? "1" : "0") : "-");
    auto& p = pulls_[key];
    p.waiters.push_back({c, {}});
    auto id = reinterpret_cast<uintptr_t>(c.get());
    c->on_cancel([me = caf::actor_cast<caf::actor>(self_), key, id] {
      caf::anon_send(me, leave_atom::value, key, uint64_t(id));
    });
    if (p.cancelled)
      return; // joins the pull in flight
    p.cancelled = std::make_shared<std::atomic<bool>>(false);
    storage::pull_request req;
    req.reference = in.name;
    req.tls_verify = in.tlsVerify;
    req.creds = in.creds;
    req.cert_dir = in.certDir;
    storage::registries_conf regs;
    std::string err;
    if (storage::load_registries_conf(opts_.registries_conf, regs, err)) {
      req.search_registries = regs.search;
      req.insecure_registries = regs.insecure();
    } else {
      log()->warn("{}", err);
    }
    start_worker(key, std::move(req), p.cancelled);
  }

  /// A line of progress from the worker of `key`.
  void progress(const std::string& key, std::string line) {
    auto it = pulls_.find(key);
    if (it == pulls_.end())
      return;
    auto& p = it->second;
    for (auto& w : p.waiters)
      w.pending.push_back(line);
    if (!p.flush_scheduled) {
      p.flush_scheduled = true;
      self_->delayed_send(self_, 100ms, flush_atom::value, key);
    }
  }

  /// Sends what progress there is to the callers that asked for `more`.
  void flush(const std::string& key) {
    auto it = pulls_.find(key);
    if (it == pulls_.end())
      return;
    it->second.flush_scheduled = false;
    for (auto& w : it->second.waiters) {
      if (!w.call->more() || w.pending.empty())
        continue;
      podman::PullImage_out out;
      out.reply.logs = std::move(w.pending);
      w.pending.clear();
      w.call->reply(out, true);
    }
  }

  void done(const std::string& key, const pull_outcome_ptr& r) {
    auto it = pulls_.find(key);
    if (it == pulls_.end())
      return;
    auto p = std::move(it->second);
    pulls_.erase(it);
    std::string err = r->error;
    bool ok = r->ok && store_.commit_image(r->image, err);
    if (ok)
      log()->info("pulled image {} as {}", r->image.id,
                  r->image.names.empty() ? "" : r->image.names.front());
    for (auto& w : p.waiters) {
      if (!ok) {
        w.call->fail(podman::ErrorOccurred{err});
        continue;
      }
      podman::PullImage_out out;
      out.reply.logs = std::move(w.pending);
      out.reply.id = r->image.id;
      w.call->reply(out);
    }
  }

  /// A caller hung up; the pull stops when nobody waits for it.
  void leave(const std::string& key, uint64_t id) {
    auto it = pulls_.find(key);
    if (it == pulls_.end())
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
  struct pull {
    std::vector<waiter> waiters;
    std::shared_ptr<std::atomic<bool>> cancelled;
    bool flush_scheduled = false;
  };

  void start_worker(const std::string& key, storage::pull_request req,
                    std::shared_ptr<std::atomic<bool>> cancelled) {
    auto me = caf::actor_cast<caf::actor>(self_);
    auto* store = &store_;
    // Downloads and unpacking block: they run on a thread of their own.
    self_->spawn<caf::detached>(
        [me, key, req, cancelled, store](caf::event_based_actor* w) {
          storage::pull_events ev;
          ev.log = [&](std::string line) {
            caf::anon_send(me, progress_atom::value, key, std::move(line));
          };
          ev.cancelled = [&] { return cancelled->load(); };
          auto r = std::make_shared<pull_outcome>();
          r->ok = storage::pull_image(*store, req, ev, r->image, r->error);
          caf::anon_send(me, done_atom::value, key, pull_outcome_ptr{r});
          w->quit();
        });
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

  bool prune(const rpc::call_ptr& c, bool dangling_only,
             std::vector<std::string>& removed) {
    for (auto& img : store_.list()) {
      if (dangling_only && !img.names.empty())
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
    storage::image_config cfg;
    std::string text, err;
    if (store_.read_blob("sha256:" + img.id, text, err) &&
        storage::parse_image_config(text, cfg, err))
      out.labels = cfg.labels;
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
  std::map<std::string, pull> pulls_;
};

} // namespace

} // namespace berth::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(berth::rpc::call_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(berth::actors::pull_outcome_ptr)

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
    [api](done_atom, const std::string& key, const pull_outcome_ptr& r) {
      api->done(key, r);
    },
    [api](leave_atom, const std::string& key, uint64_t id) {
      api->leave(key, id);
    },
    [api](count_atom) { return api->count(); },
  };
}

} // namespace berth::actors
