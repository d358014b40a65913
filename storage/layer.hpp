// Unpacking an image layer (a tar stream, gzip- or zstd-compressed or not)
// into a directory that overlayfs then uses as a lower layer.
#pragma once

#include <cstdint>
#include <string>

namespace berth::storage {

/// What unpacking a layer measured.
struct unpack_stats {
  uint64_t size = 0;   ///< bytes of file content written
  std::string diff_id; ///< "sha256:..." of the uncompressed tar stream
};

/// Reads the layer from `archive_fd` (compression detected from content:
/// gzip, zstd, bzip2, xz or none) and writes it into the existing directory
/// `dest`, hashing the uncompressed stream on the way into `out.diff_id`.
///
/// Whiteouts become overlayfs ones: `.wh.NAME` a 0:0 character device NAME,
/// `.wh..wh..opq` the xattr trusted.overlay.opaque=y on its directory; other
/// `.wh..wh.*` entries are dropped. Ownership, modes, mtimes, device nodes
/// and xattrs are kept (as root), except security.* and trusted.* xattrs the
/// kernel refuses and any trusted.overlay.* carried by the archive.
///
/// Nothing outside `dest` is ever written: paths resolve as if `dest` were
/// the root (`..` stops there, absolute paths start there) and symlinks,
/// those of the layer included, resolve inside it too. Needs Linux >= 5.6
/// (openat2). On failure returns false with `err` naming the entry and the
/// errno text; `dest` then holds a partial layer for the caller to remove.
bool unpack_layer(int archive_fd, const std::string& dest, unpack_stats& out,
                  std::string& err);

/// As above, reading the layer from the file at `archive_path`.
bool unpack_layer(const std::string& archive_path, const std::string& dest,
                  unpack_stats& out, std::string& err);

} // namespace berth::storage
