// Layers recompressed with gzip for destinations that ask for it: a push
// with `compress`, a directory save with `compress`.
#pragma once

#include <cstdint>
#include <string>

namespace berth::storage {

/// What `gzip_layer` wrote.
struct gzipped_layer {
  std::string digest;  ///< "sha256:..." of the gzip file
  std::string diff_id; ///< "sha256:..." of the uncompressed stream
  int64_t size = 0;    ///< bytes of the gzip file
};

/// Writes the layer at `source` (uncompressed, gzip, zstd, bzip2 or xz)
/// into the new file `dest` as gzip. No name or time goes into the gzip
/// header, so one layer always gives the same bytes. False with `err`
/// naming `source` on failure; `dest` may then be left partly written.
bool gzip_layer(const std::string& source, const std::string& dest,
                gzipped_layer& out, std::string& err);

} // namespace berth::storage
