// The request target of an HTTP request, parsed and checked before anything uses it: the
// path and its segments, the query parameters, the file a static GET names, and the integer
// values of query parameters. Pure: no Beast, no Asio, no exceptions out of any function.
// Parsing is Boost.URL's origin-form grammar (RFC 9112 section 3.2.1, RFC 3986).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dispatch::net {

// Targets longer than this are refused (Beast's own header limit is larger).
inline constexpr std::size_t max_target_size = 8 * 1024;

struct RequestTarget {
  // Percent-decoded, starts with '/'. Always "/" followed by the segments joined with '/'
  // (an encoded '/' in a segment is refused by parse_target, so the two cannot disagree).
  std::string path;
  // The decoded path segments: "/" has none, "/a/b" has {"a","b"}, "/a/" has {"a",""}.
  std::vector<std::string> segments;
  // The decoded query, in order, repeats kept. '+' is a space (HTML forms); "%2B" is '+'.
  // A parameter without '=' has an empty value; empty pieces ("a=1&&b=2") are skipped.
  std::vector<std::pair<std::string, std::string>> params;

  // The first value of a query parameter, if present.
  const std::string* param(std::string_view name) const noexcept;
};

// Parses an origin-form request target ("/api/x?y=1"). Never throws; clears `error` first.
// On a malformed target returns nullopt and sets `error` to a short reason: empty, over
// max_target_size, not starting with '/' (absolute-form, authority-form, asterisk-form,
// relative), a fragment, characters the URL grammar does not allow (spaces, raw non-ASCII,
// '\', '"', ...), bad percent-escapes ("%zz", "%g1", "%", "%4"), an encoded '/' in the
// path ("%2F"), or a NUL or other control character (0x00-0x1F, 0x7F) in the path or the
// query after decoding.
// Dot segments are kept as they are (not resolved): static_file_path refuses them.
std::optional<RequestTarget> parse_target(std::string_view target, std::string& error);

// The file under `root` that a GET of this target names: "/" -> root/index.html, and a
// path ending in '/' names index.html in that folder. nullopt when the path would leave
// root: any segment "..", ".", empty (except the last), containing '/', '\' or NUL, or
// starting with '.' (hidden files are never served); or when, after resolving symlinks,
// the file is not inside root (canonical root + '/' as a prefix, so "<root>-secret" is
// outside); or when root does not exist. The returned path is the resolved one. With
// `must_exist`, also nullopt unless it is an existing regular file. Never throws.
std::optional<std::filesystem::path> static_file_path(const std::filesystem::path& root,
                                                      const RequestTarget& t,
                                                      bool must_exist = false);

// A whole decimal integer in [min, max]: an optional '-' then ASCII digits, nothing else
// (no '+', no spaces, no hex, no fraction, no overflow). Otherwise nullopt. Never throws.
std::optional<std::int64_t> parse_integer(std::string_view s, std::int64_t min, std::int64_t max) noexcept;

// The token in an Authorization header value: "Bearer TOKEN" (the scheme is
// case-insensitive, RFC 9110 section 11.1; spaces or tabs around TOKEN are dropped), TOKEN
// being one or more visible ASCII characters (0x21-0x7E; a superset of RFC 6750's token68,
// so no issued token is refused). nullopt for any other scheme or a malformed value.
std::optional<std::string_view> bearer_token(std::string_view authorization) noexcept;

// The token a request carries (contract section 3): the Authorization Bearer token when the
// header holds one, else the value of the first ?token= parameter; empty when neither gives
// one. The view points into `authorization` or into `t`.
std::string_view request_token(std::string_view authorization, const RequestTarget& t) noexcept;

}  // namespace dispatch::net
