// Untrusted text (process names, hostnames) checked byte by byte: comm is cut
// at 15 bytes, so a name can end in the middle of a UTF-8 character.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace depgraph {

// Length of the valid UTF-8 sequence starting at text[i], or 0 if there is none.
size_t utf8_sequence_length(std::string_view text, size_t i);

inline constexpr std::string_view kReplacementCharacter = "\xef\xbf\xbd";  // U+FFFD in UTF-8

// The text with every invalid byte replaced by U+FFFD.
std::string valid_utf8(std::string_view text);

// The text with ASCII letters in lower case (host names and file extensions
// are compared that way).
std::string lower_case(std::string_view text);

}  // namespace depgraph
