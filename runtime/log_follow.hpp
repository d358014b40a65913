// Following container log files: one thread owns an io_uring ring that
// reads every followed file in bounded chunks, and an inotify descriptor
// (read through the same ring) that wakes a follower when its file grows.
// Nothing polls: a follower at the end of its file sleeps until inotify
// says the file changed, or until its writer is declared finished.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace berth::runtime {

/// Where a follower's lines go. Called on the hub's thread, in order.
class log_sink {
public:
  virtual ~log_sink() = default;
  /// Complete lines, each with its newline. Returning false pauses the
  /// follower until `log_hub::resume` (the reader cannot keep up).
  virtual bool on_lines(std::vector<std::string>&& lines) = 0;
  /// The end: everything was delivered (`error` empty) or reading failed.
  /// Nothing follows it.
  virtual void on_end(const std::string& error) = 0;
};

class log_hub {
public:
  using id = uint64_t;

  log_hub();
  ~log_hub();
  log_hub(const log_hub&) = delete;
  log_hub& operator=(const log_hub&) = delete;

  /// Starts the hub's thread and ring.
  bool start(std::string& err);
  void stop();

  /// Delivers `path` from its start. Without `follow` the follower ends at
  /// the end of the file; with it, it keeps reading what is appended until
  /// `finish`. A missing file counts as empty (and is waited for).
  id add(const std::string& path, bool follow, std::shared_ptr<log_sink> sink);
  /// The same with an ID taken from `next_id` first (so the sink can know
  /// its follower before its first lines arrive).
  void add(id f, const std::string& path, bool follow,
           std::shared_ptr<log_sink> sink);
  id next_id();
  /// Continues a follower whose sink returned false.
  void resume(id f);
  /// The writer is done: the follower delivers the rest, including a last
  /// line without a newline, then ends.
  void finish(id f);
  /// Drops a follower at once; its sink hears nothing more once the hub
  /// handles this (on_end is not called).
  void cancel(id f);

  /// Followers alive, for tests and leak checks.
  size_t followers() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace berth::runtime
