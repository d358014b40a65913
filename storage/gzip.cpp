#include "storage/gzip.hpp"

#include "protocol/unique_fd.hpp"

#include "storage/archive_handles.hpp"
#include "storage/digest.hpp"
#include "storage/errno_text.hpp"

#include <archive.h>
#include <archive_entry.h>

#include <cerrno>
#include <fcntl.h>
#include <memory>
#include <unistd.h>

namespace berth::storage {

namespace {

constexpr size_t read_block = 1 << 16;

/// Where libarchive's compressed output goes: a file, hashed on the way.
struct hashing_sink {
  int fd = -1;
  sha256 hash;
  int64_t size = 0;
  int error = 0; ///< errno of a failed write
};

la_ssize_t write_out(archive*, void* data, const void* buf, size_t size) {
  auto* sink = static_cast<hashing_sink*>(data);
  auto* p = static_cast<const char*>(buf);
  for (size_t left = size; left > 0;) {
    auto n = ::write(sink->fd, p, left);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      sink->error = n < 0 ? errno : EIO;
      return -1;
    }
    p += n;
    left -= size_t(n);
  }
  sink->hash.update(buf, size);
  sink->size += int64_t(size);
  return la_ssize_t(size);
}

} // namespace

bool gzip_layer(const std::string& source, const std::string& dest,
                gzipped_layer& out, std::string& err) {
  auto fail = [&](const std::string& why) {
    err = "compressing " + source + ": " + why;
    return false;
  };
  unique_fd in{::open(source.c_str(), O_RDONLY | O_CLOEXEC)};
  if (!in)
    return fail(errno_text(errno));
  std::string why;
  auto reader = open_decompressing(in.get(), read_block, why, "unreadable");
  if (!reader)
    return fail(why);
  hashing_sink sink;
  unique_fd fd{
      ::open(dest.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)};
  if (!fd)
    return fail("creating " + dest + ": " + errno_text(errno));
  sink.fd = fd.get();

  // One raw entry through the gzip filter: the file is the gzip stream.
  archive_writer a{archive_write_new()};
  std::unique_ptr<archive_entry, decltype(&archive_entry_free)> entry{
      archive_entry_new(), archive_entry_free};
  archive_write_add_filter_gzip(a.get());
  archive_write_set_format_raw(a.get());
  archive_write_set_bytes_in_last_block(a.get(), 1);
  archive_write_set_filter_option(a.get(), "gzip", "timestamp", nullptr);
  archive_entry_set_pathname(entry.get(), "layer.tar");
  archive_entry_set_filetype(entry.get(), AE_IFREG);
  if (archive_write_open(a.get(), &sink, nullptr, write_out, nullptr) !=
          ARCHIVE_OK ||
      archive_write_header(a.get(), entry.get()) != ARCHIVE_OK)
    return fail(archive_error(a.get(), "cannot start the gzip stream"));

  // Copies the uncompressed stream, hashing it for the diff ID.
  sha256 plain;
  for (;;) {
    const void* buf = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    auto rc = archive_read_data_block(reader.get(), &buf, &size, &offset);
    if (rc == ARCHIVE_EOF)
      break;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN)
      return fail(archive_error(reader.get(), "corrupt input"));
    plain.update(buf, size);
    if (size > 0 && archive_write_data(a.get(), buf, size) != la_ssize_t(size))
      return fail(sink.error ? "writing " + dest + ": " + errno_text(sink.error)
                             : archive_error(a.get(), "write failed"));
  }
  if (archive_write_close(a.get()) != ARCHIVE_OK)
    return fail(sink.error ? "writing " + dest + ": " + errno_text(sink.error)
                           : archive_error(a.get(), "write failed"));
  out.digest = sink.hash.digest();
  out.diff_id = plain.digest();
  out.size = sink.size;
  return true;
}

} // namespace berth::storage
