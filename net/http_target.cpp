#include "net/http_target.hpp"

#include <charconv>
#include <exception>
#include <system_error>

#include <boost/url/encoding_opts.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/pct_string_view.hpp>
#include <boost/url/url_view.hpp>

namespace dispatch::net {
namespace {

bool is_control(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

bool has_control(std::string_view s) noexcept {
  for (char c : s)
    if (is_control(c)) return true;
  return false;
}

bool ascii_iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::optional<RequestTarget> fail(std::string& error, const char* why) {
  try {
    error = why;
  } catch (...) {
  }
  return std::nullopt;
}

// A segment that may name a file or folder under the web root.
bool safe_segment(std::string_view s) noexcept {
  if (s.empty() || s.front() == '.') return false;  // also "." and ".."
  for (char c : s)
    if (c == '/' || c == '\\' || c == '\0') return false;
  return true;
}

}  // namespace

const std::string* RequestTarget::param(std::string_view name) const noexcept {
  for (const auto& [k, v] : params)
    if (k == name) return &v;
  return nullptr;
}

std::optional<RequestTarget> parse_target(std::string_view target, std::string& error) {
  error.clear();
  try {
    if (target.empty()) return fail(error, "empty target");
    if (target.size() > max_target_size) return fail(error, "target too long");
    if (target.front() != '/') return fail(error, "target must start with '/'");
    // "//host/x" is a valid origin-form path ("" then "host"), not a network path: the
    // grammar below reads it as a path, which is what we want.
    auto parsed = boost::urls::parse_origin_form(target);
    if (!parsed) {
      if (target.find('#') != std::string_view::npos) return fail(error, "fragment in target");
      if (target.find('%') != std::string_view::npos) return fail(error, "bad percent-escape or character in target");
      return fail(error, "bad character in target");
    }
    const boost::urls::url_view& u = *parsed;

    RequestTarget t;
    t.path = u.path();
    if (t.path.empty() || t.path.front() != '/') return fail(error, "target must start with '/'");
    if (has_control(t.path)) return fail(error, "control character in path");
    // The segments are split here rather than taken from u.segments(): Boost.URL hides a
    // leading "/." segment (its marker for a path starting with "//"), and "/./x" must show
    // its "." to be refused by static_file_path.
    std::string_view rest = u.encoded_path();
    rest.remove_prefix(1);
    if (!rest.empty()) {
      while (true) {
        const std::size_t slash = rest.find('/');
        auto seg = boost::urls::make_pct_string_view(rest.substr(0, slash));
        if (!seg) return fail(error, "bad percent-escape in path");
        std::string decoded = seg->decode();
        if (decoded.find('/') != std::string::npos) return fail(error, "encoded '/' in path");
        t.segments.push_back(std::move(decoded));
        if (slash == std::string_view::npos) break;
        rest.remove_prefix(slash + 1);
      }
    }

    if (u.has_query()) {
      for (auto p : u.params(boost::urls::encoding_opts(/*space_as_plus=*/true))) {
        if (p.key.empty() && !p.has_value) continue;  // "?", "a=1&&b=2"
        if (has_control(p.key) || has_control(p.value)) return fail(error, "control character in query");
        t.params.emplace_back(std::move(p.key), std::move(p.value));
      }
    }
    return t;
  } catch (const std::exception&) {
    return fail(error, "target not parsed");
  } catch (...) {
    return fail(error, "target not parsed");
  }
}

std::optional<std::filesystem::path> static_file_path(const std::filesystem::path& root,
                                                      const RequestTarget& t, bool must_exist) {
  namespace fs = std::filesystem;
  try {
    if (t.path.empty() || t.path.front() != '/') return std::nullopt;
    if (root.empty()) return std::nullopt;
    std::error_code ec;
    const fs::path base = fs::canonical(root, ec);
    if (ec || !fs::is_directory(base, ec) || ec) return std::nullopt;

    std::vector<std::string_view> parts;
    const std::size_t n = t.segments.size();
    for (std::size_t i = 0; i < n; ++i) {
      const std::string& s = t.segments[i];
      if (s.empty() && i + 1 == n) break;  // "/css/" -> css/index.html
      if (!safe_segment(s)) return std::nullopt;
      parts.push_back(s);
    }
    if (n == 0 || t.segments.back().empty()) parts.push_back("index.html");

    // Walk down from the canonical root, following each symlink met on the way (a dangling
    // one or a loop is refused), appending what does not exist yet as it is. Then require
    // the result to lie strictly inside the root: "<root>/" as a prefix, never "<root>-secret".
    fs::path resolved = base;
    bool exists = true;
    for (std::string_view part : parts) {
      resolved /= part;
      if (!exists) continue;
      const fs::file_status st = fs::symlink_status(resolved, ec);
      if (ec && ec != std::errc::no_such_file_or_directory) return std::nullopt;  // ENOTDIR, EACCES, ENAMETOOLONG, ...
      if (ec || !fs::exists(st)) {
        exists = false;
        ec.clear();
        continue;
      }
      if (fs::is_symlink(st)) {
        resolved = fs::canonical(resolved, ec);
        if (ec) return std::nullopt;
      }
    }
    std::string prefix = base.native();
    if (prefix.empty() || prefix.back() != '/') prefix += '/';
    const std::string& r = resolved.native();
    if (r.size() <= prefix.size() || r.compare(0, prefix.size(), prefix) != 0) return std::nullopt;

    if (must_exist) {
      if (!fs::is_regular_file(resolved, ec) || ec) return std::nullopt;
    }
    return resolved;
  } catch (...) {
    return std::nullopt;
  }
}

std::optional<std::int64_t> parse_integer(std::string_view s, std::int64_t min, std::int64_t max) noexcept {
  if (s.empty() || min > max) return std::nullopt;
  const char* first = s.data();
  const char* last = s.data() + s.size();
  // from_chars accepts a leading '-' and nothing else in front of the digits.
  if (*first == '-' && (s.size() == 1 || first[1] < '0' || first[1] > '9')) return std::nullopt;
  std::int64_t v = 0;
  const auto [ptr, ec] = std::from_chars(first, last, v, 10);
  if (ec != std::errc{} || ptr != last) return std::nullopt;
  if (v < min || v > max) return std::nullopt;
  return v;
}

std::optional<std::string_view> bearer_token(std::string_view authorization) noexcept {
  constexpr std::string_view scheme = "bearer";
  if (authorization.size() <= scheme.size()) return std::nullopt;
  if (!ascii_iequals(authorization.substr(0, scheme.size()), scheme)) return std::nullopt;
  std::string_view rest = authorization.substr(scheme.size());
  if (rest.front() != ' ' && rest.front() != '\t') return std::nullopt;  // "Bearerx ..."
  while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
  while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\t')) rest.remove_suffix(1);
  if (rest.empty()) return std::nullopt;
  for (char c : rest) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7e) return std::nullopt;
  }
  return rest;
}

std::string_view request_token(std::string_view authorization, const RequestTarget& t) noexcept {
  if (auto b = bearer_token(authorization)) return *b;
  if (const std::string* q = t.param("token")) return *q;
  return {};
}

}  // namespace dispatch::net
