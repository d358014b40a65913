#include "storage/store.hpp"

#include <cerrno>
#include <dirent.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>

namespace berth::storage {

namespace {

std::string fs_name(long magic) {
  switch (static_cast<unsigned long>(magic)) {
    case EXT4_SUPER_MAGIC: return "extfs";
    case XFS_SUPER_MAGIC: return "xfs";
    case BTRFS_SUPER_MAGIC: return "btrfs";
    case TMPFS_MAGIC: return "tmpfs";
    case OVERLAYFS_SUPER_MAGIC: return "overlayfs";
    case 0x2fc12fc1: return "zfs";
    case 0x65735546: return "fuse";
    default: return "unknown";
  }
}

// d_type is supported when readdir reports types for a known entry.
bool has_d_type(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d)
    return false;
  bool known = false;
  while (auto* e = readdir(d)) {
    if (e->d_name == std::string_view{"."}) {
      known = e->d_type == DT_DIR;
      break;
    }
  }
  closedir(d);
  return known;
}

} // namespace

bool make_dirs(const std::string& path, unsigned mode) {
  for (size_t pos = 1; pos != std::string::npos;) {
    pos = path.find('/', pos + 1);
    auto part = path.substr(0, pos);
    if (mkdir(part.c_str(), mode) < 0 && errno != EEXIST)
      return false;
  }
  return true;
}

store_status probe_store(const std::string& root) {
  store_status st;
  make_dirs(root, 0700);
  struct statfs fs;
  if (statfs(root.c_str(), &fs) == 0)
    st.backing_filesystem = fs_name(fs.f_type);
  st.supports_d_type = has_d_type(root);
  return st;
}

} // namespace berth::storage
