// End to end, the network edge (issue 11): regression tests against the real dispatchd for
// the attacks that stopped, swelled or fooled the old server. Some requests are written
// as raw bytes on a plain TCP socket, because Beast's client would not build them.
#include <doctest/doctest.h>

#include <sys/resource.h>
#include <sys/time.h>

#include <algorithm>
#include <map>
#include <set>

#include "tests/e2e/harness.hpp"

using namespace e2e;

namespace {

const char* fleet = R"({"units": [
  {"id": "M1", "kind": "moto", "callsign": "渝警保01", "capcode": "1200001"},
  {"id": "M2", "kind": "moto", "callsign": "渝警保02", "capcode": "1200002"},
  {"id": "M3", "kind": "moto", "callsign": "渝警保03"}
]})";

// The default tokens, plus reporters for the id-scoping and naming tests.
const char* edge_tokens = R"({"tokens": [
  {"token": "c-secret", "role": "console", "name": "desk1"},
  {"token": "r-secret", "role": "reporter", "name": "callcentre"},
  {"token": "r-online", "role": "reporter", "name": "online"},
  {"token": "r-bars", "role": "reporter"},
  {"token": "r-bars-b", "role": "reporter"},
  {"token": "g-secret", "role": "gateway", "units": ["*"], "name": "avl"},
  {"token": "u-m1", "role": "unit", "units": ["M1"]},
  {"token": "u-m2", "role": "unit", "units": ["M2"]},
  {"token": "p-secret", "role": "pager", "name": "paging"}
]})";

constexpr double XLAT = 29.560, XLON = 106.550;

struct Fixture {
  TempDir dir;
  std::string db = dir.file("dispatch.db");
  std::string tokens = dir.file("tokens.json", edge_tokens);
  std::string fleet_file = dir.file("fleet.json", fleet);
  std::vector<std::string> args;
  std::optional<Server> server;

  explicit Fixture(std::vector<std::string> extra = {}, bool start = true) {
    args = {"--db", db, "--tokens", tokens, "--fleet", fleet_file};
    args.insert(args.end(), extra.begin(), extra.end());
    if (start) server.emplace(args);
  }
  unsigned short port() const { return server->port(); }
};

std::string msg(json::object o) { return json::serialize(o); }

using Clock = std::chrono::steady_clock;

// A plain TCP connection with a deadline on every operation.
class Raw {
 public:
  explicit Raw(unsigned short port, int rcvbuf = 0) : sock_(ioc_) {
    sock_.open(tcp::v4());
    if (rcvbuf > 0) sock_.set_option(asio::socket_base::receive_buffer_size(rcvbuf));
    sock_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }

  enum class Io { done, timeout, error };

  // Writes every byte, or gives up at the timeout (the write is then cancelled).
  Io write(std::string_view bytes, std::chrono::milliseconds timeout = 10s) {
    bool finished = false;
    beast::error_code result;
    asio::async_write(sock_, asio::buffer(bytes.data(), bytes.size()), [&](beast::error_code ec, std::size_t) {
      finished = true;
      result = ec;
    });
    run_until(finished, timeout);
    if (!finished) {
      beast::error_code ignored;
      sock_.cancel(ignored);
      run_until(finished, 5s);
      return Io::timeout;
    }
    return result ? Io::error : Io::done;
  }

  // Reads into data() until `enough(data())` holds, the peer closes, or the timeout.
  bool read_until(const std::function<bool(const std::string&)>& enough, std::chrono::milliseconds timeout = 10s) {
    const auto deadline = Clock::now() + timeout;
    while (!enough(data_)) {
      if (eof_ || Clock::now() >= deadline) return false;
      bool finished = false;
      beast::error_code result;
      std::size_t n = 0;
      sock_.async_read_some(asio::buffer(chunk_), [&](beast::error_code ec, std::size_t got) {
        finished = true;
        result = ec;
        n = got;
      });
      run_until(finished, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
      if (!finished) {
        beast::error_code ignored;
        sock_.cancel(ignored);
        run_until(finished, 5s);
      }
      data_.append(chunk_.data(), n);
      if (result && result != asio::error::operation_aborted) eof_ = true;
    }
    return true;
  }
  bool read_to_eof(std::chrono::milliseconds timeout = 10s) {
    return read_until([this](const std::string&) { return eof_; }, timeout);
  }

  std::string& data() { return data_; }
  bool eof() const { return eof_; }
  tcp::socket& socket() { return sock_; }

 private:
  void run_until(bool& flag, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!flag && Clock::now() < deadline) {
      ioc_.restart();
      ioc_.run_one_for(deadline - Clock::now());
    }
  }

  asio::io_context ioc_;
  tcp::socket sock_;
  std::array<char, 16384> chunk_{};
  std::string data_;
  bool eof_ = false;
};

// One HTTP response parsed from raw bytes.
struct RawResponse {
  int status = 0;
  std::string headers;  // the status line and the headers, without the blank line
  std::string body;
  std::size_t end = 0;  // offset just past this response in the bytes it came from
  std::optional<std::size_t> content_length;
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// The response starting at `pos`, if its headers (and, unless `head`, its Content-Length
// body) are all there. A response without Content-Length runs to the end of the bytes.
std::optional<RawResponse> parse_response(const std::string& bytes, std::size_t pos, bool head, bool at_eof) {
  const auto blank = bytes.find("\r\n\r\n", pos);
  if (blank == std::string::npos) return std::nullopt;
  RawResponse r;
  r.headers = bytes.substr(pos, blank - pos);
  if (r.headers.rfind("HTTP/1.", 0) != 0 || r.headers.size() < 12) {
    r.status = -1;  // not a response: out of step
    r.end = blank + 4;
    return r;
  }
  r.status = std::atoi(r.headers.c_str() + 9);
  const std::string lh = lower(r.headers);
  const auto cl = lh.find("\r\ncontent-length:");
  if (cl != std::string::npos) r.content_length = std::stoul(lh.substr(cl + 17));
  const std::size_t body_at = blank + 4;
  if (head) {
    r.end = body_at;
    return r;
  }
  if (r.content_length) {
    if (bytes.size() < body_at + *r.content_length) return std::nullopt;
    r.body = bytes.substr(body_at, *r.content_length);
    r.end = body_at + *r.content_length;
    return r;
  }
  if (!at_eof) return std::nullopt;
  r.body = bytes.substr(body_at);
  r.end = bytes.size();
  return r;
}

// Sends `request` (raw bytes) on a fresh connection and reads one whole response.
RawResponse raw_http(unsigned short port, const std::string& request, std::chrono::milliseconds timeout = 15s) {
  Raw c(port);
  REQUIRE(c.write(request) == Raw::Io::done);
  std::optional<RawResponse> r;
  c.read_until(
      [&](const std::string& d) {
        r = parse_response(d, 0, false, c.eof());
        return r.has_value();
      },
      timeout);
  if (!r) {
    r = parse_response(c.data(), 0, false, true);
    if (!r) return RawResponse{};  // status 0: no response at all
  }
  return *r;
}

std::string get(const std::string& target, const std::string& extra_headers = {}) {
  return "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra_headers + "Connection: close\r\n\r\n";
}

const char* upgrade_headers =
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n";

std::string ws_handshake(const std::string& path, const std::string& token) {
  return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + upgrade_headers + "Authorization: Bearer " + token +
         "\r\n\r\n";
}

// A client frame (masked, FIN set): opcode 1 text, 2 binary.
std::string ws_frame(std::string_view payload, unsigned opcode = 1) {
  std::string f;
  f += static_cast<char>(0x80 | opcode);
  const std::size_t n = payload.size();
  if (n < 126) {
    f += static_cast<char>(0x80 | n);
  } else if (n < 65536) {
    f += static_cast<char>(0x80 | 126);
    f += static_cast<char>((n >> 8) & 0xff);
    f += static_cast<char>(n & 0xff);
  } else {
    f += static_cast<char>(0x80 | 127);
    for (int i = 7; i >= 0; --i) f += static_cast<char>((n >> (8 * i)) & 0xff);
  }
  const unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
  for (unsigned char k : key) f += static_cast<char>(k);
  for (std::size_t i = 0; i < n; ++i) f += static_cast<char>(payload[i] ^ key[i % 4]);
  return f;
}

// A server frame (unmasked) at `pos`: {opcode, payload, end}, if whole.
struct ServerFrame {
  unsigned opcode = 0;
  std::string payload;
  std::size_t end = 0;
};
std::optional<ServerFrame> parse_server_frame(const std::string& b, std::size_t pos) {
  if (b.size() < pos + 2) return std::nullopt;
  const auto b0 = static_cast<unsigned char>(b[pos]), b1 = static_cast<unsigned char>(b[pos + 1]);
  std::size_t len = b1 & 0x7f, at = pos + 2;
  if (len == 126) {
    if (b.size() < at + 2) return std::nullopt;
    len = (static_cast<unsigned char>(b[at]) << 8) | static_cast<unsigned char>(b[at + 1]);
    at += 2;
  } else if (len == 127) {
    if (b.size() < at + 8) return std::nullopt;
    len = 0;
    for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(b[at + i]);
    at += 8;
  }
  if (b1 & 0x80) at += 4;  // a server never masks, but be tolerant
  if (b.size() < at + len) return std::nullopt;
  return ServerFrame{b0 & 0x0fu, b.substr(at, len), at + len};
}

long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

int healthz(unsigned short port) { return http_request(port, http::verb::get, "/healthz").status; }

// Polls `cond` until it holds or the timeout passes.
bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds timeout = 15s) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (cond()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(50ms);
  }
}

// Sends a report and waits for its answer (accepted or error with that ref).
std::optional<json::object> report_answer(Ws& ws, const std::string& id, double lat, double lon,
                                          std::chrono::milliseconds timeout = 15s) {
  ws.send(report(id, lat, lon));
  return ws.recv_until(
      [&](const json::object& o) {
        return (str(o, "type") == "accepted" || str(o, "type") == "error") && str(o, "id") + str(o, "ref") == id;
      },
      timeout);
}

std::vector<std::string> ids_of(const json::value& incidents) {
  std::vector<std::string> out;
  for (const auto& i : incidents.as_array()) out.push_back(std::string(i.at("id").as_string()));
  return out;
}

json::value get_json(unsigned short port, const std::string& target, int expect = 200) {
  auto r = http_request(port, http::verb::get, target, {}, "c-secret");
  REQUIRE_MESSAGE(r.status == expect, target << " -> " << r.status << " " << r.body);
  return json::parse(r.body);
}

}  // namespace

TEST_CASE("edge: malformed requests get a 4xx and never stop the server") {
  Fixture f;
  struct Case {
    std::string name, request;
  };
  const std::string console_auth = "Authorization: Bearer c-secret\r\n";
  const std::vector<Case> cases{
      {"token=%zz on REST", get("/api/units?token=%zz")},
      {"token=%zz on an upgrade", get("/ws/unit?token=%zz", upgrade_headers)},
      {"state=%zz with a console token", get("/api/incidents?state=%zz", console_auth)},
      {"batch=%g1 on a console upgrade", get("/ws/console?batch=%g1", std::string(upgrade_headers) + console_auth)},
      {"a lone %", get("/%")},
      {"an encoded NUL", get("/a%00b")},
      {"no leading slash", get("-secret/secret.txt")},
      {"a truncated escape in the query", get("/api/incidents?state=open%2", console_auth)},
      {"an absolute-form target to nowhere", get("http://127.0.0.1:1/%zz")},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    const auto r = raw_http(f.port(), c.request);
    CHECK(r.status >= 400);
    CHECK(r.status < 500);
    REQUIRE(f.server->alive());
  }
  // Beast's own client for the ones it builds.
  CHECK(http_request(f.port(), http::verb::get, "/api/units?token=%zz").status / 100 == 4);
  CHECK(http_request(f.port(), http::verb::get, "/api/incidents?state=%zz", {}, "c-secret").status / 100 == 4);
  CHECK(Ws::try_upgrade(f.port(), "/ws/console?batch=%g1", "c-secret") / 100 == 4);
  CHECK(Ws::try_upgrade(f.port(), "/ws/unit?token=%zz", "") / 100 == 4);

  CHECK(healthz(f.port()) == 200);
  CHECK(f.server->alive());
  // And it still serves what it should.
  CHECK(http_request(f.port(), http::verb::get, "/api/units", {}, "c-secret").status == 200);
}

TEST_CASE("edge: static files never escape the web root") {
  TempDir web_parent;
  fs::create_directories(web_parent.path / "web");
  fs::create_directories(web_parent.path / "web-secret");
  const std::string index = "<!doctype html><title>console</title>index-marker\n";
  const std::string secret = "TOP-SECRET-CONTENT-7f3a\n";
  std::ofstream(web_parent.path / "web" / "index.html") << index;
  std::ofstream(web_parent.path / "web-secret" / "secret.txt") << secret;
  Fixture f({"--web-root", (web_parent.path / "web").string()});

  for (const std::string target : {"-secret/secret.txt", "/../web-secret/secret.txt", "/%2e%2e/web-secret/secret.txt",
                                   "/..%2fweb-secret/secret.txt", "/%2E%2E/web-secret/secret.txt",
                                   "../web-secret/secret.txt", "/./../web-secret/secret.txt"}) {
    CAPTURE(target);
    const auto r = raw_http(f.port(), get(target));
    CHECK(r.status / 100 == 4);
    CHECK(r.body.find("TOP-SECRET") == std::string::npos);
  }
  const auto root = raw_http(f.port(), get("/"));
  CHECK(root.status == 200);
  CHECK(root.body == index);
  const auto named = raw_http(f.port(), get("/index.html"));
  CHECK(named.status == 200);
  CHECK(named.body == index);
  CHECK(healthz(f.port()) == 200);
}

TEST_CASE("edge: report ids are scoped to the token that sent them") {
  Fixture f;
  Ws a(f.port(), "/ws/report", "r-secret");
  Ws b(f.port(), "/ws/report", "r-online");
  const auto a1 = report_answer(a, "same-1", XLAT, XLON);
  REQUIRE(a1);
  REQUIRE(str(*a1, "type") == "accepted");
  const auto b1 = report_answer(b, "same-1", XLAT + 0.05, XLON + 0.05);
  REQUIRE(b1);
  REQUIRE(str(*b1, "type") == "accepted");
  const std::string ia = str(*a1, "incident"), ib = str(*b1, "incident");
  CHECK(ia != ib);

  // Each token sending it again gets its own incident back, and nothing new.
  const auto a2 = report_answer(a, "same-1", XLAT, XLON);
  REQUIRE(a2);
  CHECK(str(*a2, "type") == "accepted");
  CHECK(str(*a2, "incident") == ia);
  const auto b2 = report_answer(b, "same-1", XLAT + 0.05, XLON + 0.05);
  REQUIRE(b2);
  CHECK(str(*b2, "type") == "accepted");
  CHECK(str(*b2, "incident") == ib);

  // Both accidents are kept, each where it was reported.
  const auto all = get_json(f.port(), "/api/incidents?state=all");
  CHECK(all.as_array().size() == 2);
  const auto inc_b = get_json(f.port(), "/api/incidents/" + ib);
  CHECK(inc_b.at("lat").to_number<double>() == doctest::Approx(XLAT + 0.05));
  const auto inc_a = get_json(f.port(), "/api/incidents/" + ia);
  CHECK(inc_a.at("lat").to_number<double>() == doctest::Approx(XLAT));
}

TEST_CASE("edge: tokens without a name that share a prefix are different actors") {
  Fixture f;
  std::map<std::string, std::string> incident_of;
  for (const std::string token : {"r-bars", "r-bars-b"}) {
    Ws rep(f.port(), "/ws/report", token);
    const auto acc = report_answer(rep, "prefix-1", XLAT, XLON);
    REQUIRE(acc);
    REQUIRE(str(*acc, "type") == "accepted");
    incident_of[token] = str(*acc, "incident");
  }
  // Same report id from two tokens: two incidents (ids are the token's own).
  CHECK(incident_of["r-bars"] != incident_of["r-bars-b"]);
  auto reported_by = [&](const std::string& iid) {
    const auto inc = get_json(f.port(), "/api/incidents/" + iid);
    for (const auto& t : inc.at("timeline").as_array())
      if (t.at("event").as_string() == "reported" && t.as_object().if_contains("by"))
        return std::string(t.at("by").as_string());
    return std::string();
  };
  const std::string by1 = reported_by(incident_of["r-bars"]), by2 = reported_by(incident_of["r-bars-b"]);
  CAPTURE(by1);
  CAPTURE(by2);
  CHECK(!by1.empty());
  CHECK(!by2.empty());
  CHECK(by1 != by2);
  CHECK(by1.rfind("reporter", 0) == 0);
  CHECK(by2.rfind("reporter", 0) == 0);
}

TEST_CASE("edge: HEAD on a keep-alive connection keeps it in step") {
  TempDir web_parent;
  fs::create_directories(web_parent.path / "web");
  const std::string index = "<!doctype html><title>console</title><p>a page of some length</p>\n";
  std::ofstream(web_parent.path / "web" / "index.html") << index;
  Fixture f({"--web-root", (web_parent.path / "web").string()});

  Raw c(f.port());
  auto request = [](const char* method, const char* target) {
    return std::string(method) + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  };
  std::size_t pos = 0;
  auto next = [&](bool head) {
    std::optional<RawResponse> r;
    c.read_until(
        [&](const std::string& d) {
          r = parse_response(d, pos, head, false);
          return r.has_value();
        },
        15s);
    REQUIRE(r);
    pos = r->end;
    return *r;
  };

  REQUIRE(c.write(request("HEAD", "/healthz")) == Raw::Io::done);
  const auto h1 = next(true);
  CHECK(h1.status == 200);
  REQUIRE(h1.content_length);
  CHECK(*h1.content_length == 3);  // "ok\n"

  REQUIRE(c.write(request("HEAD", "/")) == Raw::Io::done);
  const auto h2 = next(true);
  CHECK(h2.status == 200);  // a body of HEAD /healthz here would show as a bad status line
  REQUIRE(h2.content_length);
  CHECK(*h2.content_length == index.size());

  REQUIRE(c.write(request("GET", "/healthz")) == Raw::Io::done);
  const auto g = next(false);
  CHECK(g.status == 200);
  CHECK(g.body == "ok\n");
  // Nothing more than the three answers came (no stray body bytes anywhere).
  CHECK(c.data().size() == pos);
}

TEST_CASE("edge: a frame in the same TCP write as the upgrade is answered") {
  Fixture f;
  Raw c(f.port());
  REQUIRE(c.write(ws_handshake("/ws/report", "r-secret") + ws_frame("{oops")) == Raw::Io::done);
  std::size_t frames_at = 0;
  REQUIRE(c.read_until([&](const std::string& d) {
    const auto blank = d.find("\r\n\r\n");
    if (blank == std::string::npos) return false;
    frames_at = blank + 4;
    return true;
  }));
  REQUIRE(c.data().rfind("HTTP/1.1 101", 0) == 0);
  std::optional<ServerFrame> frame;
  c.read_until(
      [&](const std::string& d) {
        frame = parse_server_frame(d, frames_at);
        return frame.has_value();
      },
      15s);
  REQUIRE(frame);
  CHECK(frame->opcode == 1);
  const auto v = json::parse(frame->payload);
  CHECK(str(v.as_object(), "type") == "error");
  CHECK(str(v.as_object(), "code") == "bad_json");
}

TEST_CASE("edge: a unit token learns nothing about other units' existence") {
  Fixture f;
  Ws unit(f.port(), "/ws/unit", "u-m1");
  for (const std::string other : {"M2", "ZZZ"}) {
    CAPTURE(other);
    unit.send(position(other, XLAT, XLON));
    const auto e = unit.recv_type("error", 15s);
    REQUIRE(e);
    CHECK(str(*e, "code") == "forbidden");
    CHECK(str(*e, "ref") == other);
    unit.send(msg({{"type", "status"}, {"unit", other}, {"status", "off_duty"}}));
    const auto e2 = unit.recv_type("error", 15s);
    REQUIRE(e2);
    CHECK(str(*e2, "code") == "forbidden");
  }
}

TEST_CASE("edge: GET /api/incidents?state=all pages with limit and before") {
  Fixture f;
  Ws rep(f.port(), "/ws/report", "r-secret");
  std::vector<std::string> created;
  for (int i = 0; i < 25; ++i) rep.send(report("page-" + std::to_string(i), XLAT + i * 0.001, XLON));
  while (created.size() < 25) {
    const auto acc = rep.recv_type("accepted", 15s);
    REQUIRE(acc);
    created.push_back(str(*acc, "incident"));
  }
  std::vector<std::string> newest_first(created.rbegin(), created.rend());

  std::vector<std::string> paged;
  std::vector<std::size_t> sizes;
  std::string before;
  for (int page = 0; page < 4; ++page) {
    const auto ids = ids_of(get_json(f.port(), "/api/incidents?state=all&limit=10" +
                                                    (before.empty() ? std::string() : "&before=" + before)));
    sizes.push_back(ids.size());
    paged.insert(paged.end(), ids.begin(), ids.end());
    if (!ids.empty()) before = ids.back();
  }
  CHECK(sizes == std::vector<std::size_t>{10, 10, 5, 0});
  CHECK(paged == newest_first);  // every id exactly once, newest first
  CHECK(std::set<std::string>(paged.begin(), paged.end()).size() == 25);

  CHECK(ids_of(get_json(f.port(), "/api/incidents?state=all")) == newest_first);
  for (const std::string bad : {"0", "abc", "-1", "", "1e3"}) {
    CAPTURE(bad);
    CHECK(http_request(f.port(), http::verb::get, "/api/incidents?state=all&limit=" + bad, {}, "c-secret").status ==
          400);
  }
}

TEST_CASE("edge: rate limits count messages, binary frames too, and are told at most once a second") {
  Fixture f({"--rate", "50"});
  SUBCASE("one frame of 200 messages is over a rate of 50") {
    Ws rep(f.port(), "/ws/report", "r-secret");
    std::string batch = "[";
    for (int i = 0; i < 200; ++i) batch += (i ? "," : "") + report("flood-" + std::to_string(i), XLAT, XLON);
    batch += "]";
    rep.send(batch);
    int accepted = 0;
    const auto limited = rep.recv_until(
        [&](const json::object& o) {
          if (str(o, "type") == "accepted") ++accepted;
          return str(o, "type") == "error" && str(o, "code") == "rate_limited";
        },
        15s);
    CHECK(limited);
    CHECK(accepted == 0);
    CHECK(get_json(f.port(), "/api/incidents?state=all").as_array().empty());
  }
  SUBCASE("binary frames count, and rate_limited is told at most once a second") {
    Ws unit(f.port(), "/ws/unit", "u-m1");
    auto& s = unit.stream();
    const std::string payload = "binary";
    int sent = 0;
    const auto start = Clock::now();
    // 500 binary frames spread over about 1.5 s (10x the rate of 50 a second).
    while (sent < 500) {
      s.binary(true);
      s.write(asio::buffer(payload));
      ++sent;
      const auto due = start + std::chrono::microseconds(3000 * sent);
      if (due > Clock::now()) std::this_thread::sleep_until(due);
    }
    // A sentinel once the bucket has room again: every answer to the binary frames comes
    // before its answer (forbidden: u-m1 does not speak for ZZZ).
    int limited = 0, bad_json = 0;
    bool sentinel = false;
    const auto deadline = Clock::now() + 20s;
    auto next_probe = Clock::now();
    while (!sentinel && Clock::now() < deadline) {
      if (Clock::now() >= next_probe) {
        unit.send(msg({{"type", "status"}, {"unit", "ZZZ"}, {"status", "available"}}));
        next_probe = Clock::now() + 500ms;
      }
      auto text = unit.recv(200ms);
      if (!text) continue;
      const auto o = json::parse(*text).as_object();
      const auto code = str(o, "code");
      if (code == "rate_limited") ++limited;
      if (code == "bad_json") ++bad_json;
      if (code == "forbidden") sentinel = true;
    }
    REQUIRE(sentinel);
    // Told at most once a second over the whole exchange (about 1.5 s of sending, then the
    // sentinel): 3 at most, unless this machine stalled the test for longer.
    const auto span_s = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - start).count();
    CAPTURE(span_s);
    CAPTURE(bad_json);
    CHECK(limited >= 1);
    CHECK(limited <= std::max<long>(3, span_s + 1));
    CHECK(bad_json >= 1);
    CHECK(bad_json + limited < sent);  // not every frame answered: most were dropped
  }
}

TEST_CASE("edge: a client that never reads is bounded") {
  // A rate far above what is sent, so that every message of every frame is answered.
  Fixture f({"--rate", "100000000"});
  REQUIRE(healthz(f.port()) == 200);
  const pid_t pid = f.server->pid();
  const long start_kib = rss_kib(pid);
  REQUIRE(start_kib > 0);
  long max_kib = start_kib;

  Raw c(f.port(), 4096);
  REQUIRE(c.write(ws_handshake("/ws/pager", "p-secret")) == Raw::Io::done);
  REQUIRE(c.read_until([](const std::string& d) { return d.find("\r\n\r\n") != std::string::npos; }));
  REQUIRE(c.data().rfind("HTTP/1.1 101", 0) == 0);

  // 60 KiB of [1,1,1,...]: every element is a bad message, answered with an error each.
  std::string payload = "[1";
  while (payload.size() < 60 * 1024 - 3) payload += ",1";
  payload += "]";
  const std::string frame = ws_frame(payload);

  bool closed = false, stalled = false;
  std::size_t frames = 0;
  const auto deadline = Clock::now() + 30s;
  while (Clock::now() < deadline) {
    const auto io = c.write(frame, 3s);
    max_kib = std::max(max_kib, rss_kib(pid));
    if (io == Raw::Io::error) {
      closed = true;
      break;
    }
    if (io == Raw::Io::timeout) {
      stalled = true;  // the server stopped taking frames from this client
      break;
    }
    ++frames;
  }
  CAPTURE(frames);
  CAPTURE(start_kib);
  CAPTURE(max_kib);
  CHECK((closed || stalled));
  // Keep watching a little while the server works through what it took.
  eventually(
      [&] {
        max_kib = std::max(max_kib, rss_kib(pid));
        return false;
      },
      2s);
  CHECK(max_kib < start_kib + 256 * 1024);
  CHECK(f.server->alive());
  CHECK(healthz(f.port()) == 200);
}

TEST_CASE("edge: idle sockets without a token do not keep a gateway out") {
  Fixture f({"--max-connections", "20"});
  std::vector<std::unique_ptr<Raw>> idle;
  for (int i = 0; i < 20; ++i) idle.push_back(std::make_unique<Raw>(f.port()));
  // Each idle socket is connected (in the kernel's backlog if not yet accepted), and the
  // listener takes them in order: the gateway below is the 21st, whichever came first.
  const auto t0 = Clock::now();
  Raw gw(f.port());
  REQUIRE(gw.write(ws_handshake("/ws/unit", "g-secret")) == Raw::Io::done);
  REQUIRE(gw.read_until([](const std::string& d) { return d.find("\r\n\r\n") != std::string::npos; }, 5s));
  const auto took = Clock::now() - t0;
  CAPTURE(gw.data().substr(0, gw.data().find("\r\n")));
  CHECK(gw.data().rfind("HTTP/1.1 101", 0) == 0);
  CHECK(took < 5s);
  // It works as a gateway: a position for an unknown unit is answered.
  REQUIRE(gw.write(ws_frame(position("ZZZ", XLAT, XLON))) == Raw::Io::done);
  const std::size_t frames_at = gw.data().find("\r\n\r\n") + 4;
  std::optional<ServerFrame> fr;
  gw.read_until(
      [&](const std::string& d) {
        fr = parse_server_frame(d, frames_at);
        return fr.has_value();
      },
      15s);
  REQUIRE(fr);
  CHECK(fr->payload.find("unknown_unit") != std::string::npos);
  // The room was made by evicting a connection without a token, and /metrics says so.
  const auto m = http_request(f.port(), http::verb::get, "/metrics").body;
  CHECK(m.find("dispatch_connections_evicted_total 0") == std::string::npos);
  CHECK(m.find("dispatch_connections_evicted_total") != std::string::npos);
}

TEST_CASE("edge: the open-incident cap per token") {
  Fixture f({"--max-open-per-token", "3"});
  Ws rep(f.port(), "/ws/report", "r-secret");
  for (int i = 0; i < 3; ++i) {
    const auto a = report_answer(rep, "cap-" + std::to_string(i), XLAT + i * 0.01, XLON);
    REQUIRE(a);
    CHECK(str(*a, "type") == "accepted");
  }
  const auto fourth = report_answer(rep, "cap-3", XLAT + 0.03, XLON);
  REQUIRE(fourth);
  CHECK(str(*fourth, "type") == "error");
  CHECK(str(*fourth, "code") == "rate_limited");
  CHECK(str(*fourth, "ref") == "cap-3");
  CHECK(get_json(f.port(), "/api/incidents?state=all").as_array().size() == 3);
  // Another token has its own cap.
  Ws other(f.port(), "/ws/report", "r-online");
  const auto o = report_answer(other, "cap-0", XLAT, XLON);
  REQUIRE(o);
  CHECK(str(*o, "type") == "accepted");
}

TEST_CASE("edge: the status-change cap per unit") {
  Fixture f({"--max-status-changes-per-min", "5"});
  Ws unit(f.port(), "/ws/unit", "u-m1");
  // The roster's units start available. Twenty toggles in one batch: off, on, off, ...
  std::string batch = "[";
  for (int i = 0; i < 20; ++i)
    batch += std::string(i ? "," : "") +
             msg({{"type", "status"}, {"unit", "M1"}, {"status", i % 2 == 0 ? "off_duty" : "available"}});
  batch += "]";
  unit.send(batch);
  unit.send(msg({{"type", "status"}, {"unit", "ZZZ"}, {"status", "available"}}));  // sentinel: forbidden
  int limited = 0, other_errors = 0;
  const auto sentinel = unit.recv_until(
      [&](const json::object& o) {
        if (str(o, "type") == "error" && str(o, "ref") == "ZZZ") return true;
        if (str(o, "code") == "rate_limited") ++limited;
        else if (str(o, "type") == "error") ++other_errors;
        return false;
      },
      15s);
  REQUIRE(sentinel);
  // Five changes are taken (off, on, off, on, off); of the 15 messages after them, the 8
  // that ask for a change (available) are refused with rate_limited, and the 7 that ask
  // for the status the unit already has (off_duty) change nothing. Either way, at most 5
  // changes, and the unit ends off duty (20 changes would have left it available).
  CHECK(limited == 8);
  CHECK(other_errors == 0);
  std::string status;
  const auto units = get_json(f.port(), "/api/units");
  for (const auto& u : units.as_array())
    if (u.at("id").as_string() == "M1") status = std::string(u.at("status").as_string());
  CHECK(status == "off_duty");
  // The window is still open: one more change is refused too.
  unit.send(msg({{"type", "status"}, {"unit", "M1"}, {"status", "available"}}));
  const auto again = unit.recv_type("error", 15s);
  REQUIRE(again);
  CHECK(str(*again, "code") == "rate_limited");
}

TEST_CASE("edge: SIGTERM while the disk fails; only durable state is ever shown") {
  Fixture f;
  const pid_t pid = f.server->pid();
  std::set<std::string> accepted_incidents, accepted_reports, refused_reports, seen_by_consoles;
  auto watch = [&](Ws& console, std::chrono::milliseconds timeout) {
    // Records every incident a console is shown until it is quiet for `timeout`.
    while (auto text = console.recv(timeout)) {
      const auto v = json::parse(*text);
      std::vector<json::object> items;
      if (v.is_array())
        for (const auto& e : v.as_array()) items.push_back(e.as_object());
      else
        items.push_back(v.as_object());
      for (const auto& o : items) {
        if (str(o, "type") == "snapshot")
          for (const auto& i : o.at("incidents").as_array()) seen_by_consoles.insert(std::string(i.at("id").as_string()));
        if (str(o, "type") == "incident") seen_by_consoles.insert(str(o, "id"));
        if (str(o, "type") == "unit" && !str(o, "incident").empty()) seen_by_consoles.insert(str(o, "incident"));
      }
    }
  };

  Ws console1(f.port(), "/ws/console", "c-secret");
  REQUIRE(console1.recv_type("snapshot", 15s));
  Ws rep(f.port(), "/ws/report", "r-secret");
  for (int i = 0; i < 2; ++i) {
    const std::string id = "before-" + std::to_string(i);
    const auto a = report_answer(rep, id, XLAT + i * 0.01, XLON);
    REQUIRE(a);
    REQUIRE(str(*a, "type") == "accepted");
    accepted_incidents.insert(str(*a, "incident"));
    accepted_reports.insert(id);
  }

  // The disk fails for real: no file of dispatchd's may grow past what is there now.
  const auto size_of = [](const std::string& p) {
    std::error_code ec;
    const auto n = fs::file_size(p, ec);
    return ec ? std::uintmax_t{0} : n;
  };
  const rlim_t limit = size_of(f.db) + size_of(f.db + "-wal");
  const struct rlimit rl{limit, limit};
  REQUIRE(::prlimit(pid, RLIMIT_FSIZE, &rl, nullptr) == 0);

  // Reports until one is not accepted: the disk is full from then on. A report still
  // unanswered after a while is taken as the first one the disk refused only once
  // /healthz says so (a loaded machine may just be slow).
  bool failing = false;
  for (int i = 0; i < 2000 && !failing; ++i) {
    const std::string id = "fill-" + std::to_string(i);
    std::optional<json::object> a;
    for (int wait = 0; wait < 6 && !a && !failing; ++wait) {
      a = wait == 0 ? report_answer(rep, id, XLAT + (i % 100) * 0.001, XLON + 0.02, 3s)
                    : rep.recv_until(
                          [&](const json::object& o) { return str(o, "id") + str(o, "ref") == id; }, 3s);
      REQUIRE_MESSAGE(f.server->alive(), "dispatchd died when its disk failed (SIGXFSZ not ignored?)");
      if (!a && healthz(f.port()) == 503) failing = true;
    }
    REQUIRE_MESSAGE((a || failing), "no answer to " << id << " and the store is healthy");
    if (a && str(*a, "type") == "accepted") {
      accepted_incidents.insert(str(*a, "incident"));
      accepted_reports.insert(id);
    } else if (a) {
      CHECK(str(*a, "code") == "unavailable");
      if (str(*a, "code") == "unavailable") refused_reports.insert(id);
      failing = true;
    }
  }
  REQUIRE(failing);
  REQUIRE(f.server->alive());  // SIGXFSZ is not a death
  CHECK(eventually([&] { return healthz(f.port()) == 503; }, 15s));

  // While commits fail, nothing new is accepted.
  for (int i = 0; i < 3; ++i) {
    const std::string id = "during-" + std::to_string(i);
    const auto a = report_answer(rep, id, XLAT - 0.01 * i, XLON - 0.02, 3s);
    if (a) {
      CHECK_MESSAGE(str(*a, "type") != "accepted", "accepted while the disk fails: " << id);
      if (str(*a, "code") == "unavailable") refused_reports.insert(id);
    }
  }
  // A console connected now, and the one connected all along, see only durable state.
  Ws console2(f.port(), "/ws/console", "c-secret");
  watch(console2, 2s);
  watch(console1, 1s);
  const auto shown = get_json(f.port(), "/api/incidents?state=all");
  for (const auto& id : shown.as_array())
    seen_by_consoles.insert(std::string(id.at("id").as_string()));

  const auto code = f.server->stop_within(10s);
  CHECK_MESSAGE(code.has_value(), "dispatchd did not exit within 10 s of SIGTERM (then killed)");
  if (code) CHECK(*code == 0);

  // Restarted without the limit, on the same database.
  f.server.emplace(f.args);
  const auto all = get_json(f.port(), "/api/incidents?state=all");
  std::set<std::string> kept, kept_reports;
  for (const auto& i : all.as_array()) {
    kept.insert(std::string(i.at("id").as_string()));
    kept_reports.insert(std::string(i.at("report_id").as_string()));
  }
  for (const auto& id : accepted_incidents) CHECK_MESSAGE(kept.count(id), "accepted but lost: " << id);
  for (const auto& id : seen_by_consoles) CHECK_MESSAGE(kept.count(id), "shown but not durable: " << id);
  for (const auto& r : refused_reports) CHECK_MESSAGE(!kept_reports.count(r), "answered unavailable but kept: " << r);
  CHECK(accepted_reports.size() >= 2);
  CHECK(healthz(f.port()) == 200);
}
