#include "runtime/ring_loop.hpp"

#include <cerrno>
#include <cstring>
#include <sys/eventfd.h>
#include <unistd.h>

namespace berth::runtime {

namespace {

constexpr uint64_t wakeup_tag = ~uint64_t{0};

} // namespace

ring_loop::~ring_loop() {
  stop();
  if (ring_ok_)
    io_uring_queue_exit(&ring_);
  if (event_fd_ >= 0)
    ::close(event_fd_);
}

bool ring_loop::start(unsigned entries, std::string& err) {
  int rc = io_uring_queue_init(entries, &ring_, 0);
  if (rc < 0) {
    err = std::string{"setting up io_uring: "} + std::strerror(-rc);
    return false;
  }
  ring_ok_ = true;
  event_fd_ = eventfd(0, EFD_CLOEXEC);
  if (event_fd_ < 0) {
    err = std::string{"creating an eventfd: "} + std::strerror(errno);
    return false;
  }
  thread_ = std::thread{[this] { run(); }};
  return true;
}

void ring_loop::stop() {
  if (!thread_.joinable())
    return;
  stopping_ = true;
  post([] {});
  thread_.join();
}

void ring_loop::post(std::function<void()> f) {
  {
    std::lock_guard lock{mu_};
    posted_.push_back(std::move(f));
  }
  uint64_t one = 1;
  while (::write(event_fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

io_uring_sqe* ring_loop::submission(uint64_t tag) {
  auto* s = io_uring_get_sqe(&ring_);
  if (!s) {
    io_uring_submit(&ring_);
    s = io_uring_get_sqe(&ring_);
  }
  io_uring_sqe_set_data64(s, tag);
  return s;
}

void ring_loop::arm_wakeup() {
  auto* s = submission(wakeup_tag);
  io_uring_prep_read(s, event_fd_, &event_value_, sizeof event_value_, 0);
}

void ring_loop::run() {
  arm_wakeup();
  on_start();
  while (!stopping_.load()) {
    io_uring_submit(&ring_);
    io_uring_cqe* cqe = nullptr;
    int rc = io_uring_wait_cqe(&ring_, &cqe);
    if (rc == -EINTR)
      continue;
    if (rc < 0)
      break;
    // Handlers may submit more: collect first, then advance, then run.
    struct done {
      uint64_t tag;
      int res;
    };
    std::vector<done> batch;
    unsigned head;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      batch.push_back({io_uring_cqe_get_data64(cqe), cqe->res});
    }
    io_uring_cq_advance(&ring_, unsigned(batch.size()));
    for (auto& d : batch) {
      if (d.tag != wakeup_tag) {
        on_completion(d.tag, d.res);
        continue;
      }
      std::vector<std::function<void()>> work;
      {
        std::lock_guard lock{mu_};
        work.swap(posted_);
      }
      for (auto& f : work)
        f();
      if (!stopping_.load())
        arm_wakeup();
    }
  }
}

} // namespace berth::runtime
