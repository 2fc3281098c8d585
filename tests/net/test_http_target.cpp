// Request targets on their own: parsing and decoding, the static file a GET names (with real
// folders and symlinks), query integers and the token lookup.
#include <doctest/doctest.h>

#include <stdlib.h>  // mkdtemp

#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

#include "net/http_target.hpp"

using namespace dispatch::net;
namespace fs = std::filesystem;

namespace {

RequestTarget ok(std::string_view target) {
  std::string error;
  auto t = parse_target(target, error);
  INFO("target: ", target, " error: ", error);
  REQUIRE(t.has_value());
  CHECK(error.empty());
  return *t;
}

std::string bad(std::string_view target) {
  std::string error;
  auto t = parse_target(target, error);
  INFO("target: ", target);
  CHECK_FALSE(t.has_value());
  CHECK_FALSE(error.empty());
  return error;
}

// A fresh folder under the system temp folder, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "http-target-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = fs::canonical(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

void write_file(const fs::path& p, std::string_view text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

// <tmp>/web (the root), <tmp>/web-secret (its sibling), <tmp>/outside.txt, and links.
struct WebRoot {
  TempDir tmp;
  fs::path root = tmp.path / "web";
  WebRoot() {
    write_file(root / "index.html", "<html>");
    write_file(root / "app.js", "js");
    write_file(root / "css" / "index.html", "css index");
    write_file(root / "css" / "site.css", "body{}");
    write_file(root / ".env", "SECRET=1");
    write_file(root / "a b.txt", "space");
    write_file(tmp.path / "web-secret" / "secret.txt", "secret");
    write_file(tmp.path / "outside.txt", "outside");
    fs::create_directory_symlink(tmp.path / "web-secret", root / "to-secret");  // leaves root
    fs::create_symlink(tmp.path / "outside.txt", root / "outside-link.txt");   // leaves root
    fs::create_symlink(root / "app.js", root / "inside-link.js");              // stays inside
    fs::create_directory_symlink(root / "css", root / "styles");                // stays inside
    fs::create_symlink(tmp.path / "missing.txt", root / "dangling.txt");        // nowhere
  }
  std::optional<fs::path> get(std::string_view target, bool must_exist = false) const {
    std::string error;
    auto t = parse_target(target, error);
    if (!t) return std::nullopt;
    return static_file_path(root, *t, must_exist);
  }
};

}  // namespace

TEST_CASE("a plain target: path, segments and query in order") {
  auto t = ok("/api/incidents?state=open&limit=20");
  CHECK(t.path == "/api/incidents");
  CHECK(t.segments == std::vector<std::string>{"api", "incidents"});
  REQUIRE(t.params.size() == 2);
  CHECK(t.params[0] == std::pair<std::string, std::string>{"state", "open"});
  CHECK(t.params[1] == std::pair<std::string, std::string>{"limit", "20"});
  REQUIRE(t.param("state"));
  CHECK(*t.param("state") == "open");
  CHECK(t.param("State") == nullptr);
  CHECK(t.param("before") == nullptr);

  auto root = ok("/");
  CHECK(root.path == "/");
  CHECK(root.segments.empty());
  CHECK(root.params.empty());

  // The error of an earlier call does not stay.
  std::string error = "stale";
  CHECK(parse_target("/x", error));
  CHECK(error.empty());

  auto dir = ok("/css/");
  CHECK(dir.segments == std::vector<std::string>{"css", ""});
}

TEST_CASE("percent-escapes decode; bad ones are refused, never a crash") {
  auto t = ok("/files/a%20b.txt?token=c%2Dsecret&note=%E6%B8%9D");
  CHECK(t.path == "/files/a b.txt");
  CHECK(t.segments.back() == "a b.txt");
  CHECK(*t.param("token") == "c-secret");
  CHECK(*t.param("note") == "\xE6\xB8\x9D");  // 渝
  CHECK(ok("/%7euser").path == "/~user");
  CHECK(ok("/x?k=%4a%4A").params[0].second == "JJ");  // either case of hex digit

  for (auto target : {"/?token=%zz", "/?token=%g1", "/?token=%", "/?token=%4", "/a%zz", "/a%g1/b",
                      "/a%", "/a%4", "/%%", "/?%=1", "/?a%=1", "/?token=abc%2", "/?token=%%41"})
    bad(target);
}

TEST_CASE("'+' in a query is a space; %2B is a plus; in a path '+' is itself") {
  auto t = ok("/api/x?q=a+b&p=a%2Bb&r=+&s=%20");
  CHECK(*t.param("q") == "a b");
  CHECK(*t.param("p") == "a+b");
  CHECK(*t.param("r") == " ");
  CHECK(*t.param("s") == " ");
  CHECK(ok("/a+b").path == "/a+b");
  CHECK(ok("/x?a+key=1").params[0].first == "a key");
}

TEST_CASE("repeated, empty and value-less parameters") {
  auto t = ok("/x?token=first&token=second&flag&empty=&=v&&batch=1");
  REQUIRE(t.params.size() == 6);
  CHECK(*t.param("token") == "first");
  CHECK(t.params[1] == std::pair<std::string, std::string>{"token", "second"});
  REQUIRE(t.param("flag"));
  CHECK(t.param("flag")->empty());
  CHECK(t.param("empty")->empty());
  CHECK(*t.param("") == "v");
  CHECK(*t.param("batch") == "1");
  CHECK(ok("/x?").params.empty());
  CHECK(ok("/x?&&").params.empty());
  // '=' and '?' inside a value belong to it.
  auto u = ok("/x?a=b=c&d=?e");
  CHECK(*u.param("a") == "b=c");
  CHECK(*u.param("d") == "?e");
  // An encoded '&' or '=' stays inside its key or value.
  auto w = ok("/x?a%26b=c%3Dd");
  REQUIRE(w.params.size() == 1);
  CHECK(w.params[0] == std::pair<std::string, std::string>{"a&b", "c=d"});
}

TEST_CASE("encoded '/', NUL and control characters") {
  CHECK(bad("/api%2Fincidents") == "encoded '/' in path");
  bad("/web/..%2Fsecret");
  bad("/a%2fb");
  bad("/index.html%00.js");
  bad("/%00");
  bad("/a%0Ab");
  bad("/a%0d%0aSet-Cookie:%20x");
  bad("/a%7F");
  bad("/?token=abc%00");
  bad("/?token%00=abc");
  bad("/?token=a%0Ab");
  bad("/?token=a%09b");
  // Other encoded characters are plain data: '\' decodes (static_file_path refuses it).
  CHECK(ok("/a%5Cb").segments[0] == "a\\b");
  CHECK(*ok("/x?p=a%2Fb").param("p") == "a/b");  // '/' in a query value is fine
  // Raw bytes the grammar does not allow.
  for (std::string_view target : {std::string_view("/a b"), std::string_view("/a\\b"), std::string_view("/a\"b"),
                                  std::string_view("/a\x01"), std::string_view("/a\x7f"), std::string_view("/\xE6\xB8\x9D"),
                                  std::string_view("/a\0b", 4), std::string_view("/x?a=<b>"),
                                  std::string_view("/x?a=b c")})
    bad(target);
}

TEST_CASE("targets that are not origin-form") {
  CHECK(bad("") == "empty target");
  CHECK(bad("-secret/secret.txt") == "target must start with '/'");
  bad("index.html");
  bad("*");
  bad("http://127.0.0.1:8080/api/units");
  bad("127.0.0.1:8080");
  bad("?token=x");
  bad("/index.html#top");
  // "//x" is a path whose first segment is empty, not a host.
  auto t = ok("//evil.example/x");
  CHECK(t.segments == std::vector<std::string>{"", "evil.example", "x"});
}

TEST_CASE("dot segments are kept as written, for static_file_path to refuse") {
  auto t = ok("/a/../b/./c");
  CHECK(t.segments == std::vector<std::string>{"a", "..", "b", ".", "c"});
  auto e = ok("/%2e%2e/%2E/x");
  CHECK(e.segments == std::vector<std::string>{"..", ".", "x"});
  CHECK(e.path == "/.././x");  // not normalised
  // Boost.URL hides a leading "/." in its own segment view; ours shows it.
  auto d = ok("/./app.js");
  CHECK(d.segments == std::vector<std::string>{".", "app.js"});
  CHECK(d.path == "/./app.js");
}

TEST_CASE("long targets") {
  const std::string at_limit = "/" + std::string(max_target_size - 1, 'a');
  CHECK(ok(at_limit).path.size() == max_target_size);
  CHECK(bad("/" + std::string(max_target_size, 'a')) == "target too long");
  CHECK(bad("/?token=" + std::string(100000, '%')) == "target too long");
  // Many parameters and segments within the limit.
  std::string many = "/x?";
  while (many.size() + 4 < max_target_size) many += "a=1&";
  CHECK(ok(many).params.size() > 1000);
  std::string deep;
  while (deep.size() + 2 < max_target_size) deep += "/a";
  CHECK(ok(deep).segments.size() > 4000);
}

TEST_CASE("static files: the root, folders, and ordinary names") {
  WebRoot w;
  const fs::path r = fs::canonical(w.root);
  CHECK(w.get("/") == r / "index.html");
  CHECK(w.get("/app.js") == r / "app.js");
  CHECK(w.get("/css/site.css") == r / "css" / "site.css");
  CHECK(w.get("/css/") == r / "css" / "index.html");
  CHECK(w.get("/a%20b.txt") == r / "a b.txt");
  CHECK(w.get("/app.js?token=x") == r / "app.js");
  // Not existing is fine unless asked.
  CHECK(w.get("/nope.js") == r / "nope.js");
  CHECK(w.get("/new/dir/file.js") == r / "new" / "dir" / "file.js");
  CHECK_FALSE(w.get("/nope.js", true));
  CHECK(w.get("/app.js", true) == r / "app.js");
  CHECK_FALSE(w.get("/css", true));  // a folder is not a file
  CHECK(w.get("/css", false) == r / "css");
  // A file in the middle of a path.
  CHECK_FALSE(w.get("/app.js/x"));
}

TEST_CASE("static files never leave the root") {
  WebRoot w;
  for (auto target : {"/..", "/../web-secret/secret.txt", "/css/../../outside.txt", "/./app.js", "/css/./site.css",
                      "/%2e%2e/web-secret/secret.txt", "/%2E%2E", "/.env", "/.git/config", "/css//site.css",
                      "//app.js", "/a%5C..%5Coutside.txt", "/..%5Coutside.txt", "/css/.", "/css/.."}) {
    INFO(std::string_view(target));
    CHECK_FALSE(w.get(target).has_value());
  }
  // The sibling folder: "<root>-secret" shares the root's name as a string prefix.
  CHECK_FALSE(w.get("-secret/secret.txt"));
  {
    RequestTarget t{.path = "-secret/secret.txt", .segments = {"-secret", "secret.txt"}, .params = {}};
    CHECK_FALSE(static_file_path(w.root, t));
  }
  // Hand-made targets with what parse_target would never give.
  for (const char* seg : {"a/b", "a\\b", "..", ".", ""}) {
    RequestTarget t{.path = "/x", .segments = {seg, "x"}, .params = {}};
    CHECK_FALSE(static_file_path(w.root, t));
  }
  RequestTarget nul{.path = "/x", .segments = {std::string("a\0b", 3)}, .params = {}};
  CHECK_FALSE(static_file_path(w.root, nul));
  // The root given with a trailing slash or through "..": same answers.
  CHECK(static_file_path(w.root.string() + "/", ok("/app.js")) == fs::canonical(w.root) / "app.js");
  CHECK(static_file_path(w.root / ".." / "web", ok("/app.js")) == fs::canonical(w.root) / "app.js");
  // A missing root serves nothing.
  CHECK_FALSE(static_file_path(w.tmp.path / "no-such-root", ok("/app.js")));
  CHECK_FALSE(static_file_path(fs::path(), ok("/app.js")));
}

TEST_CASE("symlinks: followed inside the root, refused when they lead out") {
  WebRoot w;
  const fs::path r = fs::canonical(w.root);
  CHECK_FALSE(w.get("/to-secret/secret.txt"));
  CHECK_FALSE(w.get("/to-secret/secret.txt", true));
  CHECK_FALSE(w.get("/to-secret/not-there.txt"));
  CHECK_FALSE(w.get("/to-secret"));
  CHECK_FALSE(w.get("/outside-link.txt"));
  CHECK_FALSE(w.get("/dangling.txt"));
  CHECK(w.get("/inside-link.js", true) == r / "app.js");
  CHECK(w.get("/styles/site.css", true) == r / "css" / "site.css");
  CHECK(w.get("/styles/") == r / "css" / "index.html");
  // The root itself may be a symlink: it is resolved first.
  fs::create_directory_symlink(w.root, w.tmp.path / "root-link");
  CHECK(static_file_path(w.tmp.path / "root-link", ok("/app.js"), true) == r / "app.js");
  CHECK_FALSE(static_file_path(w.tmp.path / "root-link", ok("/to-secret/secret.txt")));
}

TEST_CASE("integers: whole decimals in range, nothing else") {
  constexpr auto lo = std::numeric_limits<std::int64_t>::min();
  constexpr auto hi = std::numeric_limits<std::int64_t>::max();
  CHECK(parse_integer("0", 0, 10) == 0);
  CHECK(parse_integer("10", 0, 10) == 10);
  CHECK(parse_integer("007", 0, 10) == 7);
  CHECK(parse_integer("-5", -10, 10) == -5);
  CHECK(parse_integer("-0", 0, 10) == 0);
  CHECK(parse_integer("1764300000000", 0, hi) == 1764300000000);
  CHECK(parse_integer("9223372036854775807", lo, hi) == hi);
  CHECK(parse_integer("-9223372036854775808", lo, hi) == lo);
  CHECK_FALSE(parse_integer("11", 0, 10));
  CHECK_FALSE(parse_integer("-1", 0, 10));
  CHECK_FALSE(parse_integer("9223372036854775808", lo, hi));
  CHECK_FALSE(parse_integer("-9223372036854775809", lo, hi));
  CHECK_FALSE(parse_integer("99999999999999999999999999", lo, hi));
  for (auto s : {"", "-", "+", "+5", "--5", "-+5", " 5", "5 ", "5x", "x5", "0x10", "1e3", "1.0", "1,000", "５", "--",
                 "- 5", "\t5"})
    CHECK_FALSE(parse_integer(s, lo, hi));
  CHECK_FALSE(parse_integer(std::string_view("5\0", 2), lo, hi));
  CHECK_FALSE(parse_integer("5", 10, 0));  // an empty range
  // A '+' in a query decodes to a space, so "limit=+5" is refused too.
  CHECK_FALSE(parse_integer(*ok("/x?limit=+5").param("limit"), 1, 500));
}

TEST_CASE("the token: Authorization Bearer first, else ?token=") {
  CHECK(bearer_token("Bearer c-secret") == "c-secret");
  CHECK(bearer_token("bearer c-secret") == "c-secret");
  CHECK(bearer_token("BEARER   c-secret  ") == "c-secret");
  CHECK(bearer_token("Bearer\tabc+/=") == "abc+/=");
  CHECK_FALSE(bearer_token(""));
  CHECK_FALSE(bearer_token("Bearer"));
  CHECK_FALSE(bearer_token("Bearer "));
  CHECK_FALSE(bearer_token("Bearer    "));
  CHECK_FALSE(bearer_token("Bearerc-secret"));
  CHECK_FALSE(bearer_token("Basic YTpi"));
  CHECK_FALSE(bearer_token("Bearer a b"));
  CHECK_FALSE(bearer_token("Bearer a\x01"));
  CHECK_FALSE(bearer_token("Bearer \xE6\xB8\x9D"));

  CHECK(request_token("Bearer from-header", ok("/ws/console?token=from-query")) == "from-header");
  CHECK(request_token("", ok("/ws/console?token=from-query&token=second")) == "from-query");
  CHECK(request_token("Basic YTpi", ok("/ws/console?token=q%2Bx")) == "q+x");
  CHECK(request_token("", ok("/ws/console")).empty());
  CHECK(request_token("", ok("/ws/console?token=")).empty());
  CHECK(request_token("Bearer ", ok("/ws/console?tok=x")).empty());
}

TEST_CASE("parse_target and static_file_path never throw") {
  std::string error;
  CHECK_NOTHROW((void)parse_target(std::string_view("/\xff\xfe%ff%00", 8), error));
  CHECK_NOTHROW((void)static_file_path("/proc/self/root", ok("/etc/passwd")));
  // Names too long for the file system: refused, not thrown.
  const std::string long_name(5000, 'n');
  TempDir tmp;
  CHECK_NOTHROW((void)static_file_path(tmp.path, ok("/" + long_name + "/x")));
  CHECK_NOTHROW((void)static_file_path(tmp.path, ok("/" + long_name), true));
}
