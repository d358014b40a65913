// A container's files seen from the host: its root file system as a tar
// (what podman export writes) and what it changed over its image (what
// podman diff lists).
#pragma once

#include <string>
#include <vector>

namespace berth::storage {

/// Writes the tree at `dir` as an uncompressed pax tar to `out_path`.
///
/// Entries: directories, regular files, symlinks (stored, never followed),
/// character and block devices and fifos, with their modes, owners (ids
/// only), mtimes and extended attributes (trusted.overlay.* excepted).
/// Paths sharing an inode are stored once and then as tar hard links.
/// Sockets are skipped, as is the output itself should it lie in `dir`.
/// Names are relative without a leading "./" ("etc/passwd"), directories
/// end in '/', and `dir` itself has no entry, as in docker's and podman's
/// exports. UTF-8 names are stored as pax expects them; other names keep
/// their bytes under hdrcharset=BINARY.
///
/// The walk opens every entry relative to its parent directory with
/// O_NOFOLLOW, so a tree changing underneath (a running container) can
/// never lead it outside `dir`, and device nodes are never opened. File
/// contents are copied in bounded blocks; a file that grows while being
/// read is cut at the size it had, one that shrinks is padded with zeros.
///
/// The tar is built under a temporary name beside `out_path`, synced, made
/// 0644 and renamed over it: `out_path` holds the previous file or the
/// whole tar, never part of it. On failure returns false with `err` naming
/// the tree, the entry and the errno text.
bool export_tree(const std::string& dir, const std::string& out_path,
                 std::string& err);

/// What a container changed relative to its image: absolute paths as seen
/// inside it ("/etc/passwd"), each list sorted and free of duplicates.
struct tree_changes {
  std::vector<std::string> changed;
  std::vector<std::string> added;
  std::vector<std::string> deleted;
};

/// The changes an overlay upper directory `upper` makes over the image
/// layers `lower_top_first` (unpacked layer directories, topmost first),
/// with the rules of podman's diff (containers/storage's):
///
/// - A whiteout in `upper` (a 0:0 character device, or an AUFS-style
///   ".wh.NAME") means NAME was deleted. ".wh..wh.*" entries are skipped.
/// - Any other entry is changed when the layers hold that path, added
///   otherwise. A path the layers hold is one found in the topmost layer
///   that has it, without a whiteout for it or for a parent on the way,
///   and not below an opaque directory of a higher layer.
/// - A directory that the layers hold as a directory with the same mode,
///   owner, size and mtime (whole seconds match when either side has no
///   nanoseconds) is not itself a change: overlayfs copied it up because
///   something below it changed.
/// - Every parent directory of an added or deleted entry is reported as
///   changed, unless it is itself reported; "/" never is.
/// - An opaque directory (trusted.overlay.opaque "y") that the layers hold
///   is reported as changed, not as deleted as podman and docker do, and
///   what it hid is reported: each entry the layers hold in it that the
///   upper directory lacks is deleted. Directories below it that existed
///   before hide their old contents too, and are treated the same way.
///
/// Entries that vanish during the walk are skipped, as a running
/// container may be removing them. On failure returns false with `err`
/// naming the path and the errno text.
bool overlay_changes(const std::string& upper,
                     const std::vector<std::string>& lower_top_first,
                     tree_changes& out, std::string& err);

} // namespace berth::storage
