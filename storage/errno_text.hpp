// errno as text that sits inside a sentence ("no such file or directory").
#pragma once

#include <cstring>
#include <string>

namespace berth::storage {

/// strerror's text with its first letter lowercased.
inline std::string errno_text(int e) {
  std::string text = std::strerror(e);
  if (!text.empty() && text[0] >= 'A' && text[0] <= 'Z')
    text[0] = static_cast<char>(text[0] - 'A' + 'a');
  return text;
}

} // namespace berth::storage
