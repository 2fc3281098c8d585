// The console's configuration (issue 17): --tiles reaches the console in the snapshot's
// "config" object and in GET /api/config; the real dispatchd over loopback.
#include <doctest/doctest.h>

#include "tests/e2e/harness.hpp"

using namespace e2e;

TEST_CASE("--tiles: in the snapshot's config and GET /api/config; default none (null)") {
  TempDir dir;
  const std::string tokens = dir.file("tokens.json", default_tokens);
  const std::string tiles = "https://tiles.example.cn/{z}/{x}/{y}.png";
  {
    Server srv({"--db", dir.file("a.db"), "--tokens", tokens, "--tiles", tiles, "--tiles-attribution", "© 示例"});
    Ws console(srv.port(), "/ws/console", "c-secret");
    auto snap = console.recv_type("snapshot");
    REQUIRE(snap);
    REQUIRE(snap->contains("config"));
    const auto& cfg = snap->at("config").as_object();
    CHECK(str(cfg, "tiles") == tiles);
    CHECK(str(cfg, "tiles_attribution") == "© 示例");
    CHECK(str(cfg, "lang_default") == "zh-CN");
    CHECK(snap->contains("units"));

    auto r = http_request(srv.port(), http::verb::get, "/api/config", {}, "c-secret");
    CHECK(r.status == 200);
    const auto api = r.json().as_object();
    CHECK(str(api, "tiles") == tiles);
    CHECK(str(api, "lang_default") == "zh-CN");
    CHECK(api.at("version").is_string());
    CHECK(http_request(srv.port(), http::verb::get, "/api/config").status == 401);
    CHECK(http_request(srv.port(), http::verb::get, "/api/config", {}, "r-secret").status == 403);
  }
  {
    Server srv({"--db", dir.file("b.db"), "--tokens", tokens});
    auto r = http_request(srv.port(), http::verb::get, "/api/config", {}, "c-secret");
    CHECK(r.status == 200);
    CHECK(r.json().as_object().at("tiles").is_null());
    Ws console(srv.port(), "/ws/console", "c-secret");
    auto snap = console.recv_type("snapshot");
    REQUIRE(snap);
    CHECK(snap->at("config").as_object().at("tiles").is_null());
  }
}

TEST_CASE("--tiles refuses what is not a tile URL template, and says why") {
  TempDir dir;
  const std::string tokens = dir.file("tokens.json", default_tokens);
  for (const std::string bad : {"ftp://x/{z}/{x}/{y}", "https://x/{z}/{x}.png", "javascript:alert(1)//{z}{x}{y}",
                                "https://x/{z}/{x}/{y}\".png"}) {
    CAPTURE(bad);
    const std::string cmd = std::string(DISPATCHD_PATH) + " --tokens " + tokens + " --db " + dir.file("c.db") +
                            " --tiles '" + bad + "' 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    REQUIRE(p);
    std::string out;
    char buf[512];
    while (fgets(buf, sizeof buf, p)) out += buf;
    const int status = pclose(p);
    CHECK(WEXITSTATUS(status) == 2);
    CHECK(out.find("--tiles must be") != std::string::npos);
  }
}
