#include "storage/sqlite.hpp"

#include <sqlite3.h>

namespace berth::storage {

database::~database() {
  if (db_)
    sqlite3_close_v2(db_);
}

bool database::open(const std::string& path, std::string& err) {
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
              SQLITE_OPEN_FULLMUTEX;
  if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
    err = "opening " + path + ": " + last_error();
    return false;
  }
  sqlite3_busy_timeout(db_, 5000);
  return exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
              "PRAGMA foreign_keys=ON;",
              err);
}

bool database::exec(std::string_view sql, std::string& err) {
  char* msg = nullptr;
  std::string text{sql};
  if (sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
    err = msg ? msg : "sqlite error";
    sqlite3_free(msg);
    return false;
  }
  return true;
}

int database::changes() const {
  return sqlite3_changes(db_);
}

std::string database::last_error() const {
  return db_ ? sqlite3_errmsg(db_) : "no database";
}

statement::statement(database& db, std::string_view sql) : db_(db) {
  sqlite3_prepare_v2(db.handle(), sql.data(), int(sql.size()), &stmt_,
                     nullptr);
}

statement::~statement() {
  sqlite3_finalize(stmt_);
}

statement& statement::bind(int i, std::string_view v) {
  sqlite3_bind_text(stmt_, i, v.data(), int(v.size()), SQLITE_TRANSIENT);
  return *this;
}

statement& statement::bind(int i, int64_t v) {
  sqlite3_bind_int64(stmt_, i, v);
  return *this;
}

bool statement::step() {
  if (!stmt_)
    return false;
  rc_ = sqlite3_step(stmt_);
  return rc_ == SQLITE_ROW;
}

bool statement::run() {
  while (step()) {
  }
  return rc_ == SQLITE_DONE;
}

std::string statement::text(int col) const {
  auto* p = sqlite3_column_text(stmt_, col);
  return p ? std::string{reinterpret_cast<const char*>(p),
                         size_t(sqlite3_column_bytes(stmt_, col))}
           : std::string{};
}

int64_t statement::integer(int col) const {
  return sqlite3_column_int64(stmt_, col);
}

void statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

transaction::transaction(database& db) : db_(db) {
  std::string err;
  began_ = db_.exec("BEGIN IMMEDIATE", err);
}

transaction::~transaction() {
  std::string err;
  if (began_ && !done_)
    db_.exec("ROLLBACK", err);
}

bool transaction::commit(std::string& err) {
  if (!began_) {
    err = "transaction did not start: " + db_.last_error();
    return false;
  }
  done_ = db_.exec("COMMIT", err);
  return done_;
}

} // namespace berth::storage
