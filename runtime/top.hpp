// The processes of a container as `podman top` shows them: psgo's ps-style
// descriptors, read from /proc for every task of the container's cgroup.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace berth::runtime {

/// Lists the processes of cgroup `cgroups_path` ("/berth/<id>") and of its
/// child cgroups, one row per process sorted by pid, columns joined by TAB,
/// the first row the header. Descriptors are psgo's, by name or AIX code,
/// and an entry may hold several separated by commas or blanks: user (%U),
/// ruser (%u), uid, group (%G), rgroup (%g), groups, pid (%p), ppid (%P),
/// pgid (%r), pcpu (%C), etime (%t), time (%x), stime, tty (%y), comm (%c),
/// args (%a), nice (%n), vsz (%z), rss, state, capamb, capinh, capprm,
/// capeff, capbnd, seccomp, label, hpid, huser, huid, hgroup, hgroups.
/// None given: user, pid, ppid, pcpu, etime, tty, time, comm. Pids are the
/// ones seen inside the container's pid namespace (a parent outside it
/// shows as 0); users and groups are named from the container's
/// /etc/passwd and /etc/group under `rootfs` (empty: the root of the first
/// process), symlinks resolved inside that root; h* columns use the host's
/// files. False with `err` for an unknown descriptor or an unreadable
/// cgroup.
bool list_processes(const std::string& cgroups_path, const std::string& rootfs,
                    const std::vector<std::string>& descriptors,
                    std::vector<std::string>& rows, std::string& err);

/// A duration as Go prints one, which is how psgo shows ELAPSED and TIME:
/// "0s", "750ms", "1.5µs", "59.25s", "2m3s", "1h0m5.1s".
std::string go_duration(uint64_t ns);

} // namespace berth::runtime
