// Owning handles for libarchive readers and writers, and the one reader
// configuration shared by layers and image archives: a compressed stream
// read back as its single, uncompressed entry.
#pragma once

#include <archive.h>

#include <cstddef>
#include <memory>
#include <string>

namespace berth::storage {

struct archive_reader_deleter {
  void operator()(archive* a) const { archive_read_free(a); }
};

struct archive_writer_deleter {
  void operator()(archive* a) const { archive_write_free(a); }
};

using archive_reader = std::unique_ptr<archive, archive_reader_deleter>;
using archive_writer = std::unique_ptr<archive, archive_writer_deleter>;

/// libarchive's last error on `a`, or `fallback` when it has none.
inline std::string archive_error(archive* a, const char* fallback) {
  auto* text = archive_error_string(a);
  return text ? text : fallback;
}

/// Sets reader `a` up to read a compressed stream (gzip, zstd, bzip2, xz or
/// none) as its single, uncompressed entry.
inline void support_compressed_stream(archive* a) {
  archive_read_support_filter_gzip(a);
  archive_read_support_filter_zstd(a);
  archive_read_support_filter_bzip2(a);
  archive_read_support_filter_xz(a);
  archive_read_support_format_raw(a);
}

/// A reader of `fd` that undoes gzip, zstd, bzip2 or xz compression (or
/// none), positioned on its one entry: the whole uncompressed stream. Null
/// with `err` set ("out of memory", libarchive's text, else `fallback`).
inline archive_reader open_decompressing(int fd, size_t block, std::string& err,
                                         const char* fallback) {
  archive_reader a{archive_read_new()};
  if (!a) {
    err = "out of memory";
    return nullptr;
  }
  support_compressed_stream(a.get());
  archive_entry* entry = nullptr;
  if (archive_read_open_fd(a.get(), fd, block) != ARCHIVE_OK ||
      archive_read_next_header(a.get(), &entry) != ARCHIVE_OK) {
    err = archive_error(a.get(), fallback);
    return nullptr;
  }
  return a;
}

} // namespace berth::storage
