#include "storage/image_store.hpp"

#include "storage/digest.hpp"
#include "storage/image_config.hpp"
#include "storage/store.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <sys/stat.h>
#include <thread>
#include <unordered_map>
#include <unistd.h>

namespace berth::storage {

namespace fs = std::filesystem;

namespace {

constexpr const char* schema = R"(
CREATE TABLE IF NOT EXISTS images (
  id TEXT PRIMARY KEY,
  manifest_digest TEXT NOT NULL,
  manifest_type TEXT NOT NULL,
  created TEXT NOT NULL,
  added INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS image_names (
  name TEXT PRIMARY KEY,
  image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS layers (
  chain_id TEXT PRIMARY KEY,
  diff_id TEXT NOT NULL,
  blob TEXT NOT NULL,
  media_type TEXT NOT NULL,
  size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS image_layers (
  image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  chain_id TEXT NOT NULL REFERENCES layers(chain_id),
  PRIMARY KEY (image_id, position)
);
CREATE TABLE IF NOT EXISTS image_labels (
  image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (image_id, key)
);
CREATE TABLE IF NOT EXISTS image_blobs (
  image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
  digest TEXT NOT NULL,
  chain_id TEXT NOT NULL,
  media_type TEXT NOT NULL,
  PRIMARY KEY (image_id, digest)
);
CREATE INDEX IF NOT EXISTS image_names_by_image ON image_names(image_id);
CREATE INDEX IF NOT EXISTS image_layers_by_layer ON image_layers(chain_id);
CREATE INDEX IF NOT EXISTS image_blobs_by_digest ON image_blobs(digest);
CREATE INDEX IF NOT EXISTS image_blobs_by_layer ON image_blobs(chain_id);
)";

/// PRAGMA user_version of a store whose tables are all filled: 1 since
/// image_blobs records every blob of every image.
constexpr int64_t schema_version = 1;

bool is_hex(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789abcdef") ==
                           std::string_view::npos;
}

std::string hex_of(const std::string& digest) {
  auto colon = digest.find(':');
  return colon == std::string::npos ? digest : digest.substr(colon + 1);
}

bool fsync_path(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0)
    return false;
  bool ok = fsync(fd) == 0;
  ::close(fd);
  return ok;
}

// Names a short reference may stand for, most specific first.
std::vector<std::string> candidates(const std::string& name) {
  auto slash = name.rfind('/');
  auto colon = name.rfind(':');
  bool tagged = colon != std::string::npos &&
                (slash == std::string::npos || colon > slash);
  bool digested = name.find('@') != std::string::npos;
  std::string full = name;
  if (!tagged && !digested)
    full += ":latest";
  std::vector<std::string> out{full, "localhost/" + full};
  auto first = name.substr(0, name.find('/'));
  bool has_registry = name.find('/') != std::string::npos &&
                      (first.find_first_of(".:") != std::string::npos ||
                       first == "localhost");
  if (!has_registry) {
    if (name.find('/') == std::string::npos)
      out.push_back("docker.io/library/" + full);
    out.push_back("docker.io/" + full);
  }
  return out;
}

// The repository of a stored name: without its tag or digest.
std::string repository_part(std::string name) {
  if (auto at = name.find('@'); at != std::string::npos)
    name.resize(at);
  auto slash = name.rfind('/');
  auto colon = name.rfind(':');
  if (colon != std::string::npos &&
      (slash == std::string::npos || colon > slash))
    name.resize(colon);
  return name;
}

// The blobs `img` uses as its record describes them: its config, its
// manifest and the blob of each layer.
std::vector<blob_use> blobs_of(const image_record& img) {
  std::vector<blob_use> out{{"sha256:" + img.id, "", ""}};
  if (!img.manifest_digest.empty())
    out.push_back({img.manifest_digest, "", img.manifest_type});
  for (auto& l : img.layers)
    out.push_back({l.blob, l.chain_id, l.media_type});
  return out;
}

// The fields of `out` in the images row `s` is on, selected as "id,
// manifest_digest, manifest_type, created".
void read_image_row(statement& s, image_record& out) {
  out.id = s.text(0);
  out.manifest_digest = s.text(1);
  out.manifest_type = s.text(2);
  out.created = s.text(3);
}

} // namespace

std::string chain_id(const std::string& parent_chain,
                     const std::string& diff_id) {
  if (parent_chain.empty())
    return hex_of(diff_id);
  sha256 h;
  auto text = "sha256:" + parent_chain + " " + diff_id;
  h.update(text.data(), text.size());
  return h.hex();
}

image_store::image_store(std::shared_ptr<std::atomic<int64_t>> count)
  : count_(count ? std::move(count)
                 : std::make_shared<std::atomic<int64_t>>(0)) {
}

bool image_store::open(const std::string& root, std::string& err) {
  root_ = root;
  for (auto* sub : {"", "/blobs/sha256", "/layers", "/tmp"}) {
    if (!make_dirs(root_ + sub, 0700)) {
      err = "creating " + root_ + sub + ": " + std::strerror(errno);
      return false;
    }
  }
  if (!db_.open(root_ + "/state.db", err) || !migrate(err))
    return false;
  reconcile();
  changed();
  return true;
}

void image_store::changed() {
  statement s{db_, "SELECT count(*) FROM images"};
  count_->store(s.step() ? s.integer(0) : 0);
  ++generation_;
}

bool image_store::migrate(std::string& err) {
  if (!db_.exec(schema, err)) {
    err = "creating the image tables: " + err;
    return false;
  }
  int64_t version = 0;
  {
    statement s{db_, "PRAGMA user_version"};
    if (s.step())
      version = s.integer(0);
  }
  if (version >= schema_version)
    return true;
  // A store from before image_blobs: each image gets the blobs its stored
  // manifest names (its records' otherwise), in the transaction that
  // raises the version.
  transaction tx{db_};
  std::vector<std::string> ids;
  {
    statement s{db_, "SELECT id FROM images"};
    while (s.step())
      ids.push_back(s.text(0));
  }
  for (auto& id : ids) {
    image_record img;
    if (!get(id, img))
      continue;
    std::string text, why;
    image_manifest m;
    if (read_blob(img.manifest_digest, text, why) &&
        parse_image_manifest(text, m, why) &&
        m.layers.size() == img.layers.size()) {
      for (size_t i = 0; i < m.layers.size(); ++i) {
        img.layers[i].blob = m.layers[i].digest;
        img.layers[i].media_type = m.layers[i].media_type;
      }
    }
    if (!record_blobs(img.id, blobs_of(img), err))
      return false;
  }
  if (!db_.exec("PRAGMA user_version = " + std::to_string(schema_version),
                err)) {
    err = "recording the image store's version: " + err;
    return false;
  }
  return tx.commit(err);
}

bool image_store::record_blobs(const std::string& id,
                               const std::vector<blob_use>& blobs,
                               std::string& err) {
  statement add{db_, "INSERT OR IGNORE INTO image_blobs "
                     "(image_id, digest, chain_id, media_type) "
                     "VALUES (?, ?, ?, ?)"};
  for (auto& b : blobs) {
    add.reset();
    add.bind(1, id).bind(2, b.digest).bind(3, b.chain_id).bind(4, b.media_type);
    if (!add.run()) {
      err = "recording the blobs of image " + id + ": " + db_.last_error();
      return false;
    }
  }
  return true;
}

// Removes temporary files, layer directories and blobs that no committed
// image owns: the remains of operations a crash or a failure interrupted.
void image_store::reconcile() {
  std::error_code ec;
  for (auto& e : fs::directory_iterator(root_ + "/tmp", ec))
    discard(e.path().string(), "tmp-" + e.path().filename().string());
  std::set<std::string> known;
  statement s{db_, "SELECT chain_id FROM layers"};
  while (s.step())
    known.insert(s.text(0));
  for (auto& e : fs::directory_iterator(root_ + "/layers", ec)) {
    if (!known.count(e.path().filename().string()))
      discard(e.path().string(), "layer-" + e.path().filename().string());
  }
  empty_trash();
  // Blobs no image refers to: what a failed pull or load had fetched, and
  // what a removal had committed but not yet deleted.
  std::set<std::string> used;
  statement images{db_, "SELECT id, manifest_digest FROM images"};
  while (images.step()) {
    used.insert(images.text(0));
    used.insert(hex_of(images.text(1)));
  }
  statement blobs{db_, "SELECT blob FROM layers UNION "
                       "SELECT digest FROM image_blobs"};
  while (blobs.step())
    used.insert(hex_of(blobs.text(0)));
  for (auto& e : fs::directory_iterator(root_ + "/blobs/sha256", ec)) {
    if (!used.count(e.path().filename().string()))
      fs::remove(e.path(), ec);
  }
}

void image_store::discard(const std::string& path, const std::string& as) {
  // A pull killed half way can leave hundreds of megabytes: deleting them
  // before the daemon answers would hold up its start.
  std::error_code ec;
  auto trash = root_ + "/trash";
  fs::create_directory(trash, ec);
  if (::rename(path.c_str(), (trash + "/" + as).c_str()) < 0)
    fs::remove_all(path, ec);
}

void image_store::empty_trash() {
  auto trash = root_ + "/trash";
  std::error_code ec;
  if (!fs::exists(trash, ec))
    return;
  // Nothing else uses trash/: the thread may outlive the store, and a
  // daemon stopped before it is done finishes at its next start.
  std::thread{[trash] {
    std::error_code e;
    fs::remove_all(trash, e);
  }}.detach();
}

std::string image_store::blob_path(const std::string& digest) const {
  return root_ + "/blobs/sha256/" + hex_of(digest);
}

std::string image_store::layer_path(const std::string& chain) const {
  return root_ + "/layers/" + chain;
}

std::string image_store::make_temp_dir(std::string& err) const {
  std::string tmpl = root_ + "/tmp/work-XXXXXX";
  if (!mkdtemp(tmpl.data())) {
    err = "creating a temporary directory: " + std::string{strerror(errno)};
    return {};
  }
  return tmpl;
}

bool image_store::has_blob(const std::string& digest) const {
  struct stat st;
  return stat(blob_path(digest).c_str(), &st) == 0;
}

bool image_store::sync_dir(const std::string& dir, std::string& err) const {
  // The whole tree must be on disk before a rename publishes it; one
  // syncfs of the store's file system is far cheaper than a fsync a file.
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  bool synced = fd >= 0 && syncfs(fd) == 0;
  if (fd >= 0)
    ::close(fd);
  if (!synced)
    err = "syncing " + dir + ": " + std::strerror(errno);
  return synced;
}

bool image_store::put_blob(const std::string& digest, const std::string& file,
                           std::string& err, bool sync) {
  auto dest = blob_path(digest);
  if ((sync && !fsync_path(file, O_RDONLY)) || rename(file.c_str(), dest.c_str()) < 0 ||
      !fsync_path(root_ + "/blobs/sha256", O_RDONLY | O_DIRECTORY)) {
    err = "storing blob " + digest + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

bool image_store::read_blob(const std::string& digest, std::string& out,
                            std::string& err) const {
  std::ifstream in{blob_path(digest), std::ios::binary};
  if (!in) {
    err = "reading blob " + digest + ": " + std::strerror(errno);
    return false;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

bool image_store::has_layer(const std::string& chain) {
  statement s{db_, "SELECT 1 FROM layers WHERE chain_id = ?"};
  s.bind(1, chain);
  return s.step();
}

bool image_store::put_layer(const std::string& chain, const std::string& dir,
                            std::string& err, bool sync) {
  auto dest = layer_path(chain);
  if (sync && !sync_dir(dir, err))
    return false;
  if (rename(dir.c_str(), dest.c_str()) < 0) {
    if (errno == EEXIST || errno == ENOTEMPTY) {
      // Another pull unpacked the same layer first: keep theirs.
      std::error_code ec;
      fs::remove_all(dir, ec);
      return true;
    }
    err = "storing layer " + chain + ": " + std::strerror(errno);
    return false;
  }
  return fsync_path(root_ + "/layers", O_RDONLY | O_DIRECTORY) ||
         (err = "syncing layers: " + std::string{strerror(errno)}, false);
}

bool image_store::commit_image(const image_record& img, std::string& err) {
  // A removal while the image was being stored may have taken a blob or
  // layer it found here; committing would make a broken image visible.
  auto blobs = blobs_of(img);
  for (auto& b : blobs)
    if (!has_blob(b.digest)) {
      err = "recording image " + img.id + ": blob " + b.digest +
            " was removed while the image was stored";
      return false;
    }
  for (auto& l : img.layers)
    if (::access(layer_path(l.chain_id).c_str(), F_OK) < 0) {
      err = "recording image " + img.id + ": layer " + l.chain_id +
            " was removed while the image was stored";
      return false;
    }
  transaction tx{db_};
  statement add{db_, "INSERT OR IGNORE INTO images "
                     "(id, manifest_digest, manifest_type, created, added) "
                     "VALUES (?, ?, ?, ?, strftime('%s','now'))"};
  add.bind(1, img.id).bind(2, img.manifest_digest).bind(3, img.manifest_type)
      .bind(4, img.created);
  bool ok = add.run();
  for (size_t i = 0; ok && i < img.layers.size(); ++i) {
    auto& l = img.layers[i];
    statement layer{db_, "INSERT OR IGNORE INTO layers "
                         "(chain_id, diff_id, blob, media_type, size) "
                         "VALUES (?, ?, ?, ?, ?)"};
    layer.bind(1, l.chain_id).bind(2, l.diff_id).bind(3, l.blob)
        .bind(4, l.media_type).bind(5, l.size);
    statement link{db_, "INSERT OR IGNORE INTO image_layers "
                        "(image_id, position, chain_id) VALUES (?, ?, ?)"};
    link.bind(1, img.id).bind(2, int64_t(i)).bind(3, l.chain_id);
    ok = layer.run() && link.run();
  }
  // The labels are kept beside the image: listing never reads configs.
  image_config cfg;
  std::string text, cfg_err;
  if (ok && read_blob("sha256:" + img.id, text, cfg_err) &&
      parse_image_config(text, cfg, cfg_err)) {
    for (auto& [key, value] : cfg.labels) {
      statement label{db_, "INSERT OR REPLACE INTO image_labels "
                           "(image_id, key, value) VALUES (?, ?, ?)"};
      label.bind(1, img.id).bind(2, key).bind(3, value);
      ok = ok && label.run();
    }
  }
  for (size_t i = 0; ok && i < img.names.size(); ++i) {
    statement name{db_, "INSERT OR REPLACE INTO image_names (name, image_id) "
                        "VALUES (?, ?)"};
    name.bind(1, img.names[i]).bind(2, img.id);
    ok = name.run();
  }
  if (!ok) {
    err = "recording image " + img.id + ": " + db_.last_error();
    return false;
  }
  // Every blob this image brought belongs to it, also when the image was
  // here already (under another manifest): they go when it goes.
  if (!record_blobs(img.id, blobs, err) || !tx.commit(err))
    return false;
  changed();
  return true;
}

void image_store::load(statement& s, image_record& out) {
  out = {};
  read_image_row(s, out);
  statement names{db_, "SELECT name FROM image_names WHERE image_id = ? "
                       "ORDER BY name"};
  names.bind(1, out.id);
  while (names.step())
    out.names.push_back(names.text(0));
  statement layers{db_, "SELECT l.chain_id, l.diff_id, l.blob, l.media_type,"
                        " l.size FROM image_layers il JOIN layers l "
                        "ON l.chain_id = il.chain_id WHERE il.image_id = ? "
                        "ORDER BY il.position"};
  layers.bind(1, out.id);
  while (layers.step()) {
    out.layers.push_back({layers.text(0), layers.text(1), layers.text(2),
                          layers.text(3), layers.integer(4)});
    out.size += out.layers.back().size;
  }
  statement labels{db_, "SELECT key, value FROM image_labels "
                        "WHERE image_id = ?"};
  labels.bind(1, out.id);
  while (labels.step())
    out.labels.emplace(labels.text(0), labels.text(1));
}

bool image_store::get(const std::string& id, image_record& out) {
  statement s{db_, "SELECT id, manifest_digest, manifest_type, created "
                   "FROM images WHERE id = ?"};
  s.bind(1, id);
  if (!s.step())
    return false;
  load(s, out);
  return true;
}

// Three queries for the whole list, not three per image: listing stays
// cheap with hundreds of images.
std::vector<image_record> image_store::list() {
  std::vector<image_record> out;
  std::unordered_map<std::string, size_t> index;
  statement s{db_, "SELECT id, manifest_digest, manifest_type, created "
                   "FROM images ORDER BY added, id"};
  while (s.step()) {
    auto& img = out.emplace_back();
    read_image_row(s, img);
    index.emplace(img.id, out.size() - 1);
  }
  statement names{db_, "SELECT image_id, name FROM image_names ORDER BY name"};
  while (names.step())
    if (auto it = index.find(names.text(0)); it != index.end())
      out[it->second].names.push_back(names.text(1));
  statement labels{db_, "SELECT image_id, key, value FROM image_labels"};
  while (labels.step())
    if (auto it = index.find(labels.text(0)); it != index.end())
      out[it->second].labels.emplace(labels.text(1), labels.text(2));
  statement layers{db_, "SELECT il.image_id, l.chain_id, l.diff_id, l.blob, "
                        "l.media_type, l.size FROM image_layers il JOIN "
                        "layers l ON l.chain_id = il.chain_id "
                        "ORDER BY il.image_id, il.position"};
  while (layers.step()) {
    auto it = index.find(layers.text(0));
    if (it == index.end())
      continue;
    auto& img = out[it->second];
    img.layers.push_back({layers.text(1), layers.text(2), layers.text(3),
                          layers.text(4), layers.integer(5)});
    img.size += img.layers.back().size;
  }
  return out;
}

lookup image_store::resolve(const std::string& given, image_record& out,
                            std::string& why) {
  std::string name = given;
  for (auto* prefix : {"docker://", "containers-storage:"})
    if (name.starts_with(prefix))
      name = name.substr(std::strlen(prefix));
  auto id = name.starts_with("sha256:") ? name.substr(7) : name;
  if (id.size() == 64 && is_hex(id) && get(id, out))
    return lookup::found;
  statement by_name{db_, "SELECT image_id FROM image_names WHERE name = ?"};
  for (auto& cand : candidates(name)) {
    by_name.reset();
    by_name.bind(1, cand);
    if (by_name.step() && get(by_name.text(0), out))
      return lookup::found;
  }
  if (auto at = name.find('@');
      at != std::string::npos && valid_digest(name.substr(at + 1))) {
    // "repository@digest" as RepoDigests shows it: an image stored from
    // that manifest under a name in that repository, whatever its tag.
    auto repo = repository_part(name.substr(0, at));
    statement by_digest{db_,
                        "SELECT id FROM images WHERE manifest_digest = ?"};
    by_digest.bind(1, name.substr(at + 1));
    std::set<std::string> hits;
    while (by_digest.step()) {
      image_record img;
      if (!get(by_digest.text(0), img))
        continue;
      for (auto& n : img.names) {
        auto r = repository_part(n);
        if (r == repo || r.ends_with("/" + repo))
          hits.insert(img.id);
      }
    }
    if (hits.size() > 1) {
      why = "more than one image matches " + given;
      return lookup::ambiguous;
    }
    if (hits.size() == 1 && get(*hits.begin(), out))
      return lookup::found;
  }
  if (is_hex(id) && id.size() < 64) {
    statement prefix{db_, "SELECT id FROM images WHERE substr(id, 1, ?) = ?"};
    prefix.bind(1, int64_t(id.size())).bind(2, id);
    std::vector<std::string> hits;
    while (prefix.step())
      hits.push_back(prefix.text(0));
    if (hits.size() > 1) {
      why = "more than one image matches ID prefix " + id;
      return lookup::ambiguous;
    }
    if (hits.size() == 1 && get(hits[0], out))
      return lookup::found;
  }
  // A short name matches the end of a stored name: "busybox" is
  // "127.0.0.1:5000/busybox:latest" when only that one is here.
  auto tail = "/" + candidates(name).front();
  statement all{db_, "SELECT name, image_id FROM image_names"};
  std::set<std::string> hits;
  while (all.step())
    if (all.text(0).ends_with(tail))
      hits.insert(all.text(1));
  if (hits.size() == 1 && get(*hits.begin(), out))
    return lookup::found;
  if (hits.size() > 1) {
    why = "more than one image matches " + given;
    return lookup::ambiguous;
  }
  why = "unable to find '" + given + "' in local storage: no such image";
  return lookup::not_found;
}

bool image_store::tag(const std::string& id, const std::string& name,
                      std::string& err) {
  statement s{db_, "INSERT OR REPLACE INTO image_names (name, image_id) "
                   "VALUES (?, ?)"};
  s.bind(1, name).bind(2, id);
  if (!s.run()) {
    err = "tagging " + id + " as " + name + ": " + db_.last_error();
    return false;
  }
  changed();
  return true;
}

bool image_store::untag(const std::string& name, std::string& err) {
  statement s{db_, "DELETE FROM image_names WHERE name = ?"};
  s.bind(1, name);
  if (!s.run()) {
    err = "untagging " + name + ": " + db_.last_error();
    return false;
  }
  if (db_.changes() == 0)
    return false;
  changed();
  return true;
}

bool image_store::remove(const std::string& id, std::string& err) {
  std::vector<std::string> orphans;
  std::set<std::string> candidates;
  {
    transaction tx{db_};
    auto fail = [&] {
      err = "removing image " + id + ": " + db_.last_error();
      return false;
    };
    statement own{db_, "SELECT digest FROM image_blobs WHERE image_id = ? "
                       "UNION SELECT manifest_digest FROM images WHERE id = ?"};
    own.bind(1, id).bind(2, id);
    candidates.insert("sha256:" + id);
    while (own.step())
      candidates.insert(own.text(0));
    statement del{db_, "DELETE FROM images WHERE id = ?"};
    del.bind(1, id);
    if (!del.run())
      return fail();

    // Layers no image uses any more go with their blobs.
    statement unused{db_, "SELECT chain_id, blob FROM layers WHERE chain_id "
                          "NOT IN (SELECT chain_id FROM image_layers)"};
    while (unused.step()) {
      orphans.push_back(unused.text(0));
      candidates.insert(unused.text(1));
    }
    statement drop{db_, "DELETE FROM layers WHERE chain_id NOT IN "
                        "(SELECT chain_id FROM image_layers)"};
    if (!drop.run())
      return fail();

    // A layer that stays but whose recorded blob no image names any more
    // takes the blob another image has for it (other compression).
    statement stale{db_, "SELECT blob FROM layers WHERE NOT EXISTS "
                         "(SELECT 1 FROM image_blobs b WHERE b.digest = "
                         "layers.blob) AND EXISTS (SELECT 1 FROM image_blobs "
                         "b WHERE b.chain_id = layers.chain_id)"};
    while (stale.step())
      candidates.insert(stale.text(0));
    statement repoint{db_, "UPDATE layers SET (blob, media_type) = "
                           "(SELECT digest, media_type FROM image_blobs b "
                           "WHERE b.chain_id = layers.chain_id "
                           "ORDER BY digest LIMIT 1) "
                           "WHERE NOT EXISTS (SELECT 1 FROM image_blobs b "
                           "WHERE b.digest = layers.blob) AND EXISTS "
                           "(SELECT 1 FROM image_blobs b "
                           "WHERE b.chain_id = layers.chain_id)"};
    if (!repoint.run())
      return fail();

    // What is still named elsewhere stays.
    statement in_use{db_, "SELECT EXISTS (SELECT 1 FROM image_blobs WHERE "
                          "digest = ?1) OR EXISTS (SELECT 1 FROM layers "
                          "WHERE blob = ?1) OR EXISTS (SELECT 1 FROM images "
                          "WHERE manifest_digest = ?1 OR 'sha256:' || id = "
                          "?1)"};
    for (auto it = candidates.begin(); it != candidates.end();) {
      in_use.reset();
      in_use.bind(1, *it);
      if (!in_use.step())
        return fail();
      it = in_use.integer(0) ? candidates.erase(it) : std::next(it);
    }
    in_use.reset();
    if (!tx.commit(err))
      return false;
  }
  changed();
  // Files go after the commit; a crash in between leaves files that the
  // next `open` removes.
  std::error_code ec;
  for (auto& chain : orphans)
    fs::remove_all(layer_path(chain), ec);
  for (auto& blob : candidates)
    if (valid_digest(blob))
      fs::remove(blob_path(blob), ec);
  return true;
}

} // namespace berth::storage
