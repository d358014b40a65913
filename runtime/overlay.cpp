// overlayfs through mount(2) while the options fit in one page, else
// through the new mount API one layer at a time.
#include "runtime/overlay.hpp"

#include "runtime/process.hpp"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

namespace berth::runtime {

namespace {

/// The kernel copies at most one page of mount data.
size_t mount_data_limit() {
  return static_cast<size_t>(::sysconf(_SC_PAGESIZE)) - 1;
}

// Overlay splits options at ',' and layers at ':'; a backslash escapes.
std::string escape(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (c == ':' || c == ',' || c == '\\')
      out += '\\';
    out += c;
  }
  return out;
}

std::string mount_data(const std::vector<std::string>& lowers,
                       const std::string& upper, const std::string& work) {
  std::string data = "lowerdir=";
  for (size_t i = 0; i < lowers.size(); ++i) {
    if (i > 0)
      data += ':';
    data += escape(lowers[i]);
  }
  if (!upper.empty())
    data += ",upperdir=" + escape(upper) + ",workdir=" + escape(work);
  return data;
}

std::string errno_text() { return std::strerror(errno); }

bool mount_legacy(const std::string& data, const std::string& merged,
                  std::string& err) {
  if (::mount("overlay", merged.c_str(), "overlay", 0, data.c_str()) == 0)
    return true;
  err = errno_text();
  return false;
}

// The kernel's own explanation, queued on the file system context.
std::string context_message(int fs_fd, const std::string& fallback) {
  char buf[512];
  ssize_t n = ::read(fs_fd, buf, sizeof buf - 1);
  if (n <= 2)
    return fallback;
  // Lines read "e overlay: message"; drop the severity letter.
  return fallback + " (" + std::string{buf + 2, size_t(n - 2)} + ")";
}

bool mount_by_layers(const std::vector<std::string>& lowers,
                     const std::string& upper, const std::string& work,
                     const std::string& merged, std::string& err) {
  unique_fd fs_fd{::fsopen("overlay", FSOPEN_CLOEXEC)};
  if (fs_fd.get() < 0) {
    err = "fsopen: " + errno_text();
    return false;
  }
  auto set = [&](const char* key, const std::string& value) {
    if (::fsconfig(fs_fd.get(), FSCONFIG_SET_STRING, key, value.c_str(), 0) ==
        0)
      return true;
    err = context_message(fs_fd.get(),
                          std::string{key} + " " + value + ": " + errno_text());
    return false;
  };
  for (const auto& layer : lowers)
    if (!set("lowerdir+", layer))
      return false;
  if (!upper.empty() && (!set("upperdir", upper) || !set("workdir", work)))
    return false;
  if (::fsconfig(fs_fd.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    err = context_message(fs_fd.get(), errno_text());
    return false;
  }
  unique_fd mnt{::fsmount(fs_fd.get(), FSMOUNT_CLOEXEC, 0)};
  if (mnt.get() < 0 || ::move_mount(mnt.get(), "", AT_FDCWD, merged.c_str(),
                                    MOVE_MOUNT_F_EMPTY_PATH) != 0) {
    err = errno_text();
    return false;
  }
  return true;
}

// Octal escapes of /proc/self/mountinfo ("\040" for a space).
std::string unescape_mountinfo(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out += static_cast<char>(std::strtol(s.substr(i + 1, 3).c_str(),
                                           nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

} // namespace

bool mount_overlay(const std::vector<std::string>& lower_top_first,
                   const std::string& upper, const std::string& work,
                   const std::string& merged, std::string& err) {
  auto fail = [&](const std::string& why) {
    err = "mounting overlay at " + merged + ": " + why;
    return false;
  };
  if (lower_top_first.empty())
    return fail("no lower layers");
  if (upper.empty() && lower_top_first.size() < 2)
    return fail("a read-only overlay needs two lower layers");

  auto data = mount_data(lower_top_first, upper, work);
  if (data.size() <= mount_data_limit())
    return mount_legacy(data, merged, err) || fail(err);

  // Short names for long paths: the layers opened here, named through
  // /proc/self/fd (relative paths would need a chdir, which is per process).
  std::vector<unique_fd> opened;
  std::vector<std::string> names;
  opened.reserve(lower_top_first.size());
  for (const auto& layer : lower_top_first) {
    opened.emplace_back(
        ::open(layer.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (opened.back().get() < 0)
      return fail(layer + ": " + errno_text());
    names.push_back("/proc/self/fd/" + std::to_string(opened.back().get()));
  }
  data = mount_data(names, upper, work);
  if (data.size() <= mount_data_limit())
    return mount_legacy(data, merged, err) || fail(err);
  return mount_by_layers(lower_top_first, upper, work, merged, err) ||
         fail(err);
}

bool is_mounted(const std::string& path) {
  // statx says so directly (Linux 5.8 and later); reading the whole mount
  // table per question made recovery after a reboot cost a read per
  // container.
  struct statx stx {};
  if (::statx(AT_FDCWD, path.c_str(), 0, 0, &stx) < 0)
    return false;
  if (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)
    return (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
  char resolved[PATH_MAX];
  if (::realpath(path.c_str(), resolved) == nullptr)
    return false;
  std::ifstream in{"/proc/self/mountinfo"};
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields{line};
    std::string id, parent, dev, root, mount_point;
    fields >> id >> parent >> dev >> root >> mount_point;
    if (unescape_mountinfo(mount_point) == resolved)
      return true;
  }
  return false;
}

bool unmount(const std::string& merged, std::string& err) {
  if (!is_mounted(merged))
    return true;
  if (::umount2(merged.c_str(), 0) == 0)
    return true;
  if (errno == EINVAL || errno == ENOENT)
    return true;
  if (errno == EBUSY && ::umount2(merged.c_str(), MNT_DETACH) == 0)
    return true;
  err = "unmounting " + merged + ": " + errno_text();
  return false;
}

bool mount_shm(const std::string& path, int64_t size, std::string& err) {
  if (is_mounted(path))
    return true;
  if (::mkdir(path.c_str(), 0700) < 0 && errno != EEXIST) {
    err = "creating " + path + ": " + std::strerror(errno);
    return false;
  }
  auto data = "mode=1777,size=" + std::to_string(size);
  if (::mount("shm", path.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              data.c_str()) < 0) {
    err = "mounting a tmpfs at " + path + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

} // namespace berth::runtime
