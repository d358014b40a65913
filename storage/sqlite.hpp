// A thin RAII layer over SQLite: a connection, prepared statements, and
// transactions that roll back unless committed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace berth::storage {

class statement;

class database {
public:
  database() = default;
  ~database();
  database(const database&) = delete;
  database& operator=(const database&) = delete;

  /// Opens (creating) `path` in WAL mode with synchronous=FULL.
  bool open(const std::string& path, std::string& err);
  /// Runs one or more statements without results.
  bool exec(std::string_view sql, std::string& err);
  std::string last_error() const;
  /// Rows changed by the last statement.
  int changes() const;
  sqlite3* handle() const { return db_; }

private:
  sqlite3* db_ = nullptr;
};

class statement {
public:
  statement(database& db, std::string_view sql);
  ~statement();
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;

  bool ok() const { return stmt_ != nullptr; }
  statement& bind(int i, std::string_view v);
  statement& bind(int i, int64_t v);
  /// Steps once: true while a row is available.
  bool step();
  /// Steps to completion; false on error.
  bool run();
  std::string text(int col) const;
  int64_t integer(int col) const;
  void reset();

private:
  database& db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = 0;
};

/// BEGIN IMMEDIATE on construction; ROLLBACK on destruction unless
/// `commit` succeeded.
class transaction {
public:
  explicit transaction(database& db);
  ~transaction();
  bool commit(std::string& err);
  bool ok() const { return began_; }

private:
  database& db_;
  bool began_ = false;
  bool done_ = false;
};

} // namespace berth::storage
