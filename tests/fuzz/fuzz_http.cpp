// libFuzzer target for the HTTP side: any bytes through Beast's request parser with a
// server's limits (16 KiB of header, 256 KiB of body), pipelined requests one after the
// other, and for every request parsed: the target (parse_target), the static file it names
// under a real temporary web root with a sibling "<root>-secret" and symlinks leading out
// (static_file_path), the token (Authorization Bearer or ?token=) and every query value as
// an integer (parse_integer). Never a crash, never an exception out, and never a static
// path outside the root. The raw bytes are also tried as a target on their own, to reach
// what Beast's own grammar would have refused.
//
// Built with BOOST_ENABLE_ASSERT_HANDLER (tests/fuzz/run_http.sh), so that Boost's own debug
// assertions stay on and abort, except one known over-strict assertion of Beast 1.81 (see
// boost::assertion_failed below).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <string_view>

#include <stdlib.h>  // mkdtemp

#include <boost/assert.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/asio/buffer.hpp>

#include "net/http_target.hpp"

#ifdef BOOST_ENABLE_ASSERT_HANDLER
namespace boost {
// Beast 1.81's basic_parser::parse_chunk_header asserts `n >= 5` when the last chunk "0\r\n"
// was seen without the end of its trailer and put() is called again with fewer than 5 bytes
// (e.g. "0\r\n{"; Beast's own read loop does exactly this when the header and such a tail
// arrive together). The code after it is right (it answers need_more); only the assertion
// is wrong, and it is compiled out of NDEBUG builds such as RelWithDebInfo. Fixed upstream
// in boostorg/beast#2861 (May 2024). Every other assertion aborts, as assert() would.
void assertion_failed(char const* expr, char const* function, char const* file, long line) {
  if (std::string_view(expr) == "n >= 5" && std::string_view(file).ends_with("http/impl/basic_parser.ipp") &&
      std::string_view(function).find("parse_chunk_header") != std::string_view::npos)
    return;
  std::fprintf(stderr, "%s:%ld: %s: Assertion `%s' failed.\n", file, line, function, expr);
  std::abort();
}
void assertion_failed_msg(char const* expr, char const* msg, char const* function, char const* file, long line) {
  std::fprintf(stderr, "%s:%ld: %s: Assertion `%s' failed: %s\n", file, line, function, expr, msg);
  std::abort();
}
}  // namespace boost
#endif

namespace fs = std::filesystem;
namespace http = boost::beast::http;
using dispatch::net::RequestTarget;

namespace {

struct Root {
  fs::path tmp, web, prefix;
};

Root* g_root = nullptr;

void write_file(const fs::path& p, std::string_view text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

void remove_root() {
  if (!g_root) return;
  std::error_code ec;
  fs::remove_all(g_root->tmp, ec);
}

void check(bool ok) {
  if (!ok) std::abort();
}

bool has_control(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return true;
  return false;
}

// What the server does with a target once Beast has parsed the request.
void exercise_target(std::string_view target, std::string_view authorization) {
  std::string error;
  const auto t = dispatch::net::parse_target(target, error);
  if (!t) {
    check(!error.empty());
    return;
  }
  // The parsed target is consistent with itself.
  check(!t->path.empty() && t->path.front() == '/');
  check(!has_control(t->path));
  std::string joined;
  for (const auto& s : t->segments) {
    check(s.find('/') == std::string::npos);
    joined += '/';
    joined += s;
  }
  if (joined.empty()) joined = "/";
  check(joined == t->path);
  check(target.size() <= dispatch::net::max_target_size);

  // The static file, if any, lies strictly inside the canonical root and is never one of
  // the files placed outside it.
  for (bool must_exist : {false, true}) {
    const auto file = dispatch::net::static_file_path(g_root->web, *t, must_exist);
    if (!file) continue;
    const std::string& f = file->native();
    check(f.size() > g_root->prefix.native().size());
    check(f.compare(0, g_root->prefix.native().size(), g_root->prefix.native()) == 0);
    check(f.find("/../") == std::string::npos && f.find("/./") == std::string::npos);
    // An independent resolution agrees that it is inside.
    std::error_code ec;
    const fs::path again = fs::weakly_canonical(*file, ec);
    if (!ec) check(again.native().compare(0, g_root->prefix.native().size(), g_root->prefix.native()) == 0);
    if (must_exist) {
      check(fs::is_regular_file(*file, ec));
      check(!fs::equivalent(*file, g_root->tmp / "web-secret" / "secret.txt", ec));
      check(!fs::equivalent(*file, g_root->tmp / "outside.txt", ec));
    }
  }

  // The token, as authenticate() takes it.
  const std::string_view token = dispatch::net::request_token(authorization, *t);
  for (char c : token) check(c != '\0');

  // Every query value as the REST handlers take integers.
  constexpr auto lo = std::numeric_limits<std::int64_t>::min();
  constexpr auto hi = std::numeric_limits<std::int64_t>::max();
  for (const auto& [key, value] : t->params) {
    check(!has_control(key) && !has_control(value));
    const auto any = dispatch::net::parse_integer(value, lo, hi);
    const auto limit = dispatch::net::parse_integer(value, 1, 500);
    if (limit) check(*limit >= 1 && *limit <= 500 && any && *any == *limit);
    if (any) {
      // Only '-'? digits; and the value round-trips up to leading zeros and "-0".
      std::string_view digits = value;
      if (!digits.empty() && digits.front() == '-') digits.remove_prefix(1);
      check(!digits.empty());
      for (char c : digits) check(c >= '0' && c <= '9');
    } else if (!value.empty() && value.size() <= 18 && value.find_first_not_of("0123456789") == std::string::npos) {
      std::abort();  // a plain small decimal must parse
    }
  }
  (void)t->param("token");
  (void)t->param("state");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::string tmpl = (fs::temp_directory_path() / "fuzz-http-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) std::abort();
  g_root = new Root;
  g_root->tmp = fs::canonical(tmpl);
  g_root->web = g_root->tmp / "web";
  write_file(g_root->web / "index.html", "<html>");
  write_file(g_root->web / "app.js", "js");
  write_file(g_root->web / "css" / "site.css", "body{}");
  write_file(g_root->web / ".env", "hidden");
  write_file(g_root->tmp / "web-secret" / "secret.txt", "secret");
  write_file(g_root->tmp / "outside.txt", "outside");
  fs::create_directory_symlink(g_root->tmp / "web-secret", g_root->web / "to-secret");
  fs::create_symlink(g_root->tmp / "outside.txt", g_root->web / "outside-link.txt");
  fs::create_symlink(g_root->web / "app.js", g_root->web / "inside-link.js");
  g_root->prefix = g_root->web.native() + "/";
  std::atexit(remove_root);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);

  // The bytes as a target on their own, with and without a Bearer header.
  exercise_target(rest, "");
  exercise_target(rest.substr(0, 64), std::string("Bearer ") + std::string(rest.substr(0, 16)));

  // Then as a connection's bytes: request after request until an error or the end.
  for (int n = 0; n < 8 && !rest.empty(); ++n) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(16 * 1024);
    parser.body_limit(256 * 1024);
    parser.eager(true);
    boost::beast::error_code ec;
    while (!parser.is_done() && !rest.empty()) {
      const std::size_t used = parser.put(boost::asio::buffer(rest.data(), rest.size()), ec);
      rest.remove_prefix(used);
      if (ec == http::error::need_more) {
        ec = {};
        if (used == 0) break;  // the parser wants more than there is
        continue;
      }
      if (ec) break;
      if (used == 0) break;
    }
    if (!ec && !parser.is_done()) parser.put_eof(ec);  // no more bytes: the peer closed
    if (ec || !parser.is_done()) {
      // A server answers 400 (or 413, 431) here; what Beast has of the header is all it
      // could look at, and the target is checked the same way.
      if (parser.is_header_done()) {
        const auto& req = parser.get();
        exercise_target(req.target(), req[http::field::authorization]);
      }
      break;
    }
    const auto& req = parser.get();
    exercise_target(req.target(), req[http::field::authorization]);
  }
  return 0;
}
