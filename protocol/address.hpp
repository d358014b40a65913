// varlink addresses: unix:/path, unix:@abstract, tcp:host:port.
#pragma once

#include <optional>
#include <string>

namespace berth::varlink {

struct address {
  enum class kind { unix_path, unix_abstract, tcp };
  kind type = kind::unix_path;
  std::string path; ///< file path, or abstract name without the `@`
  std::string host; ///< tcp host, brackets of IPv6 literals removed
  int port = 0;

  /// Parses an address; anything after `;` is ignored. nullopt if invalid.
  static std::optional<address> parse(std::string_view text);
  std::string str() const;
};

/// Connects a blocking, close-on-exec client socket to `a`; -errno on
/// failure.
int connect_to(const address& a);

/// Opens a listening socket on `a`; -errno on failure. A unix path whose
/// file is a stale socket (nobody accepts) is replaced; a live one is
/// EADDRINUSE. `mode` applies to a unix path socket file.
int listen_on(const address& a, unsigned mode);

} // namespace berth::varlink
