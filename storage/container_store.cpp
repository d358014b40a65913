#include "storage/container_store.hpp"

#include "protocol/json_decode.hpp"
#include "storage/store.hpp"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <set>

namespace berth::storage {

namespace fs = std::filesystem;

namespace {

constexpr const char* schema = R"(
CREATE TABLE IF NOT EXISTS containers (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  image TEXT NOT NULL,
  image_id TEXT NOT NULL,
  create_json TEXT NOT NULL,
  command TEXT NOT NULL,
  layers TEXT NOT NULL,
  created INTEGER NOT NULL,
  state INTEGER NOT NULL,
  pid INTEGER NOT NULL,
  conmon_pid INTEGER NOT NULL,
  exit_code INTEGER NOT NULL,
  started INTEGER NOT NULL,
  finished INTEGER NOT NULL,
  boot_id TEXT NOT NULL,
  mounted INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS removed_exits (
  id TEXT PRIMARY KEY,
  exit_code INTEGER NOT NULL,
  removed INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
)";

/// How many exit codes of removed containers are remembered.
constexpr int64_t remembered_exits = 1000;

std::string to_json(const std::vector<std::string>& v) {
  json::writer w;
  json::encode(w, v);
  return w.take();
}

std::vector<std::string> from_json(const std::string& text) {
  std::vector<std::string> out;
  simdjson::dom::parser parser;
  simdjson::dom::element e;
  if (parser.parse(text).get(e) != simdjson::SUCCESS)
    return out;
  json::path p;
  json::decode_error err;
  json::decode(e, out, p, err);
  return out;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

} // namespace

const char* state_name(container_state s) {
  switch (s) {
    case container_state::configured: return "configured";
    case container_state::created: return "created";
    case container_state::running: return "running";
    case container_state::stopped: return "stopped";
    case container_state::paused: return "paused";
    case container_state::exited: return "exited";
    case container_state::removing: return "removing";
    case container_state::unknown: break;
  }
  return "unknown";
}

bool container_store::open(const std::string& root, std::string& err) {
  std::lock_guard lock{mu_};
  root_ = root;
  if (!make_dirs(root_ + "/containers", 0700)) {
    err = "creating " + root_ + "/containers: " + std::strerror(errno);
    return false;
  }
  if (!db_.open(root_ + "/containers.db", err))
    return false;
  if (!db_.exec(schema, err)) {
    err = "creating the container tables: " + err;
    return false;
  }
  // A directory without a row is a create that never committed.
  std::set<std::string> known;
  statement s{db_, "SELECT id FROM containers"};
  while (s.step())
    known.insert(s.text(0));
  std::error_code ec;
  for (auto& e : fs::directory_iterator(root_ + "/containers", ec))
    if (!known.count(e.path().filename().string()))
      fs::remove_all(e.path(), ec);
  return true;
}

std::string container_store::dir(const std::string& id) const {
  return root_ + "/containers/" + id;
}

std::vector<container_record> container_store::list() {
  std::lock_guard lock{mu_};
  std::vector<container_record> out;
  statement s{db_, "SELECT id, name, image, image_id, create_json, command, "
                   "layers, created, state, pid, conmon_pid, exit_code, "
                   "started, finished, boot_id, mounted FROM containers "
                   "ORDER BY created"};
  while (s.step()) {
    auto& c = out.emplace_back();
    c.id = s.text(0);
    c.name = s.text(1);
    c.image = s.text(2);
    c.image_id = s.text(3);
    c.create_json = s.text(4);
    c.command = from_json(s.text(5));
    c.layers = from_json(s.text(6));
    c.created = s.integer(7);
    c.state = container_state(s.integer(8));
    c.pid = s.integer(9);
    c.conmon_pid = s.integer(10);
    c.exit_code = s.integer(11);
    c.started = s.integer(12);
    c.finished = s.integer(13);
    c.boot_id = s.text(14);
    c.mounted = s.integer(15) != 0;
  }
  return out;
}

bool container_store::insert(const container_record& c, std::string& err) {
  std::lock_guard lock{mu_};
  statement s{db_, "INSERT INTO containers (id, name, image, image_id, "
                   "create_json, command, layers, created, state, pid, "
                   "conmon_pid, exit_code, started, finished, boot_id, "
                   "mounted) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"};
  s.bind(1, c.id).bind(2, c.name).bind(3, c.image).bind(4, c.image_id);
  s.bind(5, c.create_json).bind(6, to_json(c.command));
  s.bind(7, to_json(c.layers)).bind(8, c.created);
  s.bind(9, int64_t(c.state)).bind(10, c.pid).bind(11, c.conmon_pid);
  s.bind(12, c.exit_code).bind(13, c.started).bind(14, c.finished);
  s.bind(15, c.boot_id).bind(16, int64_t(c.mounted));
  if (!s.run()) {
    err = "recording container " + c.id + ": " + db_.last_error();
    return false;
  }
  return true;
}

bool container_store::update(const container_record& c, std::string& err) {
  std::lock_guard lock{mu_};
  statement s{db_, "UPDATE containers SET state=?, pid=?, conmon_pid=?, "
                   "exit_code=?, started=?, finished=?, boot_id=?, "
                   "mounted=? WHERE id=?"};
  s.bind(1, int64_t(c.state)).bind(2, c.pid).bind(3, c.conmon_pid);
  s.bind(4, c.exit_code).bind(5, c.started).bind(6, c.finished);
  s.bind(7, c.boot_id).bind(8, int64_t(c.mounted)).bind(9, c.id);
  if (!s.run()) {
    err = "recording the state of container " + c.id + ": " +
          db_.last_error();
    return false;
  }
  return true;
}

bool container_store::remove(const container_record& c, std::string& err) {
  std::lock_guard lock{mu_};
  transaction t{db_};
  statement del{db_, "DELETE FROM containers WHERE id=?"};
  del.bind(1, c.id);
  statement keep{db_, "INSERT OR REPLACE INTO removed_exits (id, exit_code, "
                      "removed) VALUES (?,?,?)"};
  keep.bind(1, c.id).bind(2, c.exit_code).bind(3, now_ns());
  statement trim{db_, "DELETE FROM removed_exits WHERE id NOT IN (SELECT id "
                      "FROM removed_exits ORDER BY removed DESC LIMIT ?)"};
  trim.bind(1, remembered_exits);
  if (!t.ok() || !del.run() || !keep.run() || !trim.run() || !t.commit(err)) {
    err = "removing container " + c.id + ": " +
          (err.empty() ? db_.last_error() : err);
    return false;
  }
  return true;
}

std::optional<int64_t>
container_store::removed_exit_code(const std::string& id) {
  std::lock_guard lock{mu_};
  statement s{db_, "SELECT exit_code FROM removed_exits WHERE id=?"};
  s.bind(1, id);
  if (s.step())
    return s.integer(0);
  return std::nullopt;
}

std::string container_store::meta(const std::string& key) {
  std::lock_guard lock{mu_};
  statement s{db_, "SELECT value FROM meta WHERE key=?"};
  s.bind(1, key);
  return s.step() ? s.text(0) : std::string{};
}

bool container_store::set_meta(const std::string& key,
                               const std::string& value, std::string& err) {
  std::lock_guard lock{mu_};
  statement s{db_, "INSERT OR REPLACE INTO meta (key, value) VALUES (?,?)"};
  s.bind(1, key).bind(2, value);
  if (!s.run()) {
    err = "recording " + key + ": " + db_.last_error();
    return false;
  }
  return true;
}

} // namespace berth::storage
