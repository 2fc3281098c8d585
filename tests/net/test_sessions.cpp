// The HTTP and WebSocket sessions alone, over beast::test::stream: no sockets, no threads
// but the store's writer, and a fixed clock for the rate limits. The test runs the I/O and
// engine contexts by hand (poll), so every step is deterministic.
#include <boost/beast/_experimental/test/stream.hpp>
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "net/stream_ops.hpp"

namespace dispatch::net {
// The test stream's deadlines are the test's own; closing it shows the peer EOF.
template <>
struct StreamOps<boost::beast::test::stream> {
  using S = boost::beast::test::stream;
  static void expires_after(S&, std::chrono::steady_clock::duration) {}
  static void expires_never(S&) {}
  static void shutdown_send(S& s) { s.close(); }
  static void close(S& s) { s.close(); }
};
}  // namespace dispatch::net

#include "net/http_session.hpp"
#include "net/http_session.ipp"
#include "net/rest.ipp"

namespace dispatch::net {
template class BasicHttpSession<boost::beast::test::stream>;
template class BasicWsSession<boost::beast::test::stream>;
}  // namespace dispatch::net

using namespace dispatch;
using namespace dispatch::net;
namespace test = boost::beast::test;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

std::int64_t fake_now_us = 1'000'000;
std::int64_t fake_clock() { return fake_now_us; }

const char* tokens_json = R"({"tokens": [
  {"token": "c-secret", "role": "console", "name": "desk"},
  {"token": "r-secret", "role": "reporter", "name": "callcentre"},
  {"token": "g-secret", "role": "gateway", "units": ["*"], "name": "avl"}
]})";

struct Rig {
  fs::path dir;
  std::unique_ptr<Server::Impl> impl;
  std::shared_ptr<ConnectionSlots> slots = ConnectionSlots::make({100, 100});

  explicit Rig(ServerOptions o = {}) {
    static int n = 0;
    dir = fs::temp_directory_path() / ("dispatch-sessions-" + std::to_string(::getpid()) + "-" + std::to_string(++n));
    fs::create_directories(dir);
    o.store.path = (dir / "t.db").string();
    o.web_root = (dir / "web").string();
    fs::create_directories(o.web_root);
    {
      std::FILE* f = std::fopen((dir / "web" / "index.html").c_str(), "w");
      std::fputs("<html>console</html>", f);
      std::fclose(f);
    }
    impl = std::make_unique<Server::Impl>(o);
    impl->tokens = parse_tokens(tokens_json, "test tokens");
    impl->store = std::make_unique<data::Store>(impl->opt.store);
    impl->store->add_units({engine::rec::Unit{"M1", engine::UnitKind::moto, "渝警保1", "", {}, {}, 0}});
    impl->engine.restore(impl->store->load(), wall_now());
    impl->clock_us = &fake_clock;
    fake_now_us = 1'000'000;
  }
  ~Rig() {
    impl->store->close();
    impl.reset();
    std::error_code ec;
    fs::remove_all(dir, ec);
  }

  // A new connection: the session runs on one end, the test holds the other.
  test::stream connect() {
    test::stream server_end(impl->ioc), client(impl->ioc);
    server_end.connect(client);
    std::shared_ptr<ConnectionSlots::Ticket> ticket;
    REQUIRE(slots->admit("test", ticket) == ConnectionSlots::Verdict::admitted);
    std::make_shared<BasicHttpSession<test::stream>>(*impl, std::move(server_end), ticket)->run();
    return client;
  }

  // Runs the I/O and engine contexts until pred() holds; false at the deadline (the store's
  // writer thread commits on its own, so this polls rather than runs to completion).
  template <class Pred>
  bool run_until(Pred pred, std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
      impl->ioc.restart();
      impl->engine_ioc.restart();
      const auto n = impl->ioc.poll() + impl->engine_ioc.poll();
      if (std::chrono::steady_clock::now() > deadline) return false;
      if (n == 0) std::this_thread::yield();
    }
    return true;
  }
  // The same with the I/O context alone: the engine thread stands still meanwhile.
  template <class Pred>
  bool run_io_until(Pred pred, std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
      impl->ioc.restart();
      const auto n = impl->ioc.poll();
      if (std::chrono::steady_clock::now() > deadline) return false;
      if (n == 0) std::this_thread::yield();
    }
    return true;
  }
  void settle() {
    for (int i = 0; i < 20; ++i) {
      impl->ioc.restart();
      impl->engine_ioc.restart();
      impl->ioc.poll();
      impl->engine_ioc.poll();
    }
  }
};

void send(test::stream& client, const std::string& bytes) {
  boost::asio::write(client, boost::asio::buffer(bytes));
}

// What the server wrote so far, and takes it out of the stream.
std::string take(test::stream& client) {
  std::string s = client.str();
  client.buffer().consume(client.buffer().size());
  return s;
}

std::string ws_frame(const std::string& text, bool binary = false) {
  std::string f;
  f += static_cast<char>(binary ? 0x82 : 0x81);
  if (text.size() < 126) {
    f += static_cast<char>(0x80 | text.size());
  } else {
    f += static_cast<char>(0x80 | 126);
    f += static_cast<char>((text.size() >> 8) & 0xff);
    f += static_cast<char>(text.size() & 0xff);
  }
  f += std::string(4, '\0');  // a zero mask key: the payload as it is
  return f + text;
}

std::string handshake(const std::string& path, const std::string& token) {
  return "GET " + path + " HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
         "Authorization: Bearer " + token + "\r\n\r\n";
}

// Sends the WebSocket upgrade and runs until its answer's headers are in; what was read.
std::string upgrade(Rig& rig, test::stream& client, const std::string& path, const std::string& token) {
  send(client, handshake(path, token));
  std::string got;
  REQUIRE(rig.run_until([&] {
    got += take(client);
    return got.find("\r\n\r\n") != std::string::npos;
  }));
  return got;
}

// The text frames in what the server wrote after its 101 answer.
std::vector<std::string> ws_texts(const std::string& bytes) {
  std::vector<std::string> out;
  std::size_t i = bytes.find("\r\n\r\n");
  i = i == std::string::npos ? 0 : i + 4;
  while (i + 2 <= bytes.size()) {
    const auto op = static_cast<unsigned char>(bytes[i]) & 0x0f;
    std::size_t len = static_cast<unsigned char>(bytes[i + 1]) & 0x7f;
    std::size_t head = 2;
    if (len == 126) {
      if (i + 4 > bytes.size()) break;
      len = (static_cast<std::size_t>(static_cast<unsigned char>(bytes[i + 2])) << 8) |
            static_cast<unsigned char>(bytes[i + 3]);
      head = 4;
    }
    if (i + head + len > bytes.size()) break;
    if (op == 1) out.push_back(bytes.substr(i + head, len));
    i += head + len;
  }
  return out;
}

std::size_t count(const std::string& hay, const std::string& needle) {
  std::size_t n = 0;
  for (auto p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("http session: HEAD has the GET's headers and no body; the connection stays in step") {
  Rig rig;
  auto client = rig.connect();
  send(client, "HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\nHEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
               "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
  std::string got;
  REQUIRE(rig.run_until([&] {
    got += take(client);
    return count(got, "HTTP/1.1 ") == 3 && got.ends_with("ok\n");
  }));
  // The first answer's headers are followed at once by the second answer.
  const auto first_end = got.find("\r\n\r\n");
  CHECK(got.substr(0, first_end).find("Content-Length: 3") != std::string::npos);
  CHECK(got.compare(first_end + 4, 9, "HTTP/1.1 ") == 0);
  const auto second_end = got.find("\r\n\r\n", first_end + 4);
  CHECK(got.substr(first_end, second_end - first_end).find("Content-Length: 20") != std::string::npos);
  CHECK(got.compare(second_end + 4, 15, "HTTP/1.1 200 OK") == 0);
  CHECK(got.find("<html>") == std::string::npos);
}

TEST_CASE("http session: malformed targets get 400 and the next request on the connection is served") {
  Rig rig;
  auto client = rig.connect();
  send(client,
       "GET /api/units?token=%zz HTTP/1.1\r\nHost: t\r\n\r\n"
       "GET /ws/console?batch=%g1 HTTP/1.1\r\nHost: t\r\n\r\n"
       "GET /a%00b HTTP/1.1\r\nHost: t\r\n\r\n"
       "GET -secret/secret.txt HTTP/1.1\r\nHost: t\r\n\r\n"
       "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
  std::string got;
  REQUIRE(rig.run_until([&] {
    got += take(client);
    return got.ends_with("ok\n");
  }));
  CHECK(count(got, "HTTP/1.1 400 Bad Request") == 4);
  CHECK(count(got, "HTTP/1.1 200 OK") == 1);
}

TEST_CASE("http session: a request line the parser refuses is answered 400 and the connection closes") {
  Rig rig;
  auto client = rig.connect();
  send(client, "GET / HTTP/1.1\r\nHost: t\r\nNo colon here\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
  std::string got;
  REQUIRE(rig.run_until([&] {
    got += take(client);
    return got.find("\r\n\r\n") != std::string::npos && got.find("}") != std::string::npos;
  }));
  CHECK(got.starts_with("HTTP/1.1 400"));
  CHECK_MESSAGE(got.find("Connection: close") != std::string::npos, got);
  rig.settle();
  got += take(client);
  CHECK(count(got, "HTTP/1.1 ") == 1);  // nothing after it: the stream was out of step
}

TEST_CASE("http session: /metrics is answered by posting to the engine thread, never by waiting on it") {
  Rig rig;
  auto client = rig.connect();
  send(client, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
  // Only the I/O context runs: the request is read and handed over, and the I/O thread is
  // free again (poll returns) with no answer yet.
  for (int i = 0; i < 10; ++i) {
    rig.impl->ioc.restart();
    rig.impl->ioc.poll();
  }
  CHECK(take(client).empty());
  std::string got;
  REQUIRE(rig.run_until([&] {
    got += take(client);
    return got.find("dispatch_outgoing_queue_bytes") != std::string::npos;
  }));
  CHECK(got.starts_with("HTTP/1.1 200"));
  CHECK(got.find("dispatch_stage_engine_seconds_count") != std::string::npos);
}

TEST_CASE("http session: POST /api/incidents answers 201 once the incident is durable") {
  Rig rig;
  auto client = rig.connect();
  const std::string body = R"({"id":"r-1","lat":29.56,"lon":106.55,"severity":"minor"})";
  send(client, "POST /api/incidents HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer r-secret\r\n"
               "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  std::string got;
  REQUIRE(rig.run_until([&] {
    got += take(client);
    return got.find("\"incident\"") != std::string::npos;
  }));
  CHECK(got.starts_with("HTTP/1.1 201"));
  // It is in the database: the store's own read finds it.
  CHECK(rig.impl->store->incident("I-000001").has_value());
}

TEST_CASE("websocket session: what a commit releases reaches the session from the writer, not via the engine thread") {
  Rig rig;
  auto client = rig.connect();
  std::string got = upgrade(rig, client, "/ws/report", "r-secret");
  send(client, ws_frame(R"({"type":"report","id":"w-1","lat":29.56,"lon":106.55,"severity":"minor"})"));
  // Until the engine thread has taken the report (its answer is rendered and held)...
  REQUIRE(rig.run_until([&] { return !rig.impl->report_started_us.empty(); }));
  // ...then the engine context is never run again: the answer still comes, once durable.
  REQUIRE(rig.run_io_until([&] {
    got += take(client);
    return got.find("\"type\":\"accepted\"") != std::string::npos;
  }));
  CHECK(rig.impl->store->incident("I-000001").has_value());
}

TEST_CASE("websocket session: a report does not wait behind a gateway's queued position frames") {
  Rig rig;
  auto gateway = rig.connect();
  auto reporter = rig.connect();
  upgrade(rig, gateway, "/ws/unit", "g-secret");
  upgrade(rig, reporter, "/ws/report", "r-secret");
  rig.settle();  // both registered on the engine thread
  auto position = [](int ts) {
    return R"({"type":"position","unit":"M1","lat":29.56,"lon":106.55,"ts":)" + std::to_string(1764300000000LL + ts) + "}";
  };
  // Two position frames (a gateway may have two in flight), then a report: all three read
  // and handed over, in that order, before the engine thread runs at all.
  auto read_until = [&](std::int64_t frames) {
    return rig.run_io_until([&] { return rig.impl->frames_to_engine.load() >= frames; }) &&
           rig.impl->frames_to_engine.load() == frames;
  };
  send(gateway, ws_frame(position(1)));
  send(gateway, ws_frame(position(2)));
  REQUIRE(read_until(2));
  send(reporter, ws_frame(R"({"type":"report","id":"q-1","lat":29.56,"lon":106.55,"severity":"minor"})"));
  REQUIRE(read_until(3));
  // The engine thread's first turn takes one position frame; its second, the report.
  rig.impl->engine_ioc.restart();
  REQUIRE(rig.impl->engine_ioc.run_one() == 1);
  CHECK(rig.impl->report_started_us.empty());
  REQUIRE(rig.impl->engine_ioc.run_one() == 1);
  CHECK(rig.impl->report_started_us.size() == 1);  // taken, with a position frame still queued
  CHECK(rig.impl->frames_to_engine.load() == 1);
  // The gateway's frames keep their order: the second position is the unit's last.
  REQUIRE(rig.run_until([&] { return rig.impl->frames_to_engine.load() == 0; }));
  CHECK(rig.impl->engine.units().front().pos_ts == 1764300000000LL + 2);
}

namespace {
struct WsFrame {
  bool fin;
  int op;
  std::string payload;
};
// Every whole frame the server wrote after its 101 answer (7-, 16- and 64-bit lengths).
std::vector<WsFrame> ws_frames(const std::string& bytes) {
  std::vector<WsFrame> out;
  std::size_t i = bytes.find("\r\n\r\n");
  i = i == std::string::npos ? 0 : i + 4;
  const auto at = [&](std::size_t k) { return static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[k])); };
  while (i + 2 <= bytes.size()) {
    std::uint64_t len = at(i + 1) & 0x7f;
    std::size_t head = 2;
    if (len == 126) {
      if (i + 4 > bytes.size()) break;
      len = (at(i + 2) << 8) | at(i + 3);
      head = 4;
    } else if (len == 127) {
      if (i + 10 > bytes.size()) break;
      len = 0;
      for (int k = 0; k < 8; ++k) len = (len << 8) | at(i + 2 + k);
      head = 10;
    }
    if (i + head + len > bytes.size()) break;
    out.push_back({(at(i) & 0x80) != 0, static_cast<int>(at(i) & 0x0f), bytes.substr(i + head, len)});
    i += head + len;
  }
  return out;
}
}  // namespace

TEST_CASE("websocket session: a message up to 64 KiB leaves as one frame; a longer one in 64 KiB fragments") {
  Rig rig;
  auto reporter = rig.connect();
  std::string answer = upgrade(rig, reporter, "/ws/report", "r-secret");
  rig.settle();
  // Open incidents with notes of 4,000 bytes make the console's snapshot long.
  const std::string note(4000, 'n');
  auto report = [&](int n) {
    send(reporter, ws_frame(R"({"type":"report","id":"big-)" + std::to_string(n) +
                            R"(","lat":29.56,"lon":106.55,"severity":"minor","note":")" + note + R"("})"));
    REQUIRE(rig.run_until([&] {
      answer += take(reporter);
      return count(answer, "\"type\":\"accepted\"") == static_cast<std::size_t>(n);
    }));
  };
  // The snapshot of a new console, as the frames it came in.
  auto snapshot_frames = [&] {
    auto console = rig.connect();
    std::string got = upgrade(rig, console, "/ws/console", "c-secret");
    std::vector<WsFrame> frames;
    REQUIRE(rig.run_until([&] {
      got += take(console);
      frames = ws_frames(got);
      return !frames.empty() && std::any_of(frames.begin(), frames.end(), [](auto& f) { return f.fin; });
    }));
    while (!frames.back().fin) frames.pop_back();  // anything after the snapshot's last frame
    return frames;
  };

  report(1);  // a snapshot of about 4.5 KiB: longer than Beast's default buffer, one frame
  auto one = snapshot_frames();
  REQUIRE(one.size() == 1);
  CHECK(one[0].fin);
  CHECK(one[0].op == 0x1);
  CHECK(one[0].payload.size() > 4096);
  CHECK(count(one[0].payload, note) == 1);

  for (int n = 2; n <= 20; ++n) report(n);  // about 85 KiB
  auto many = snapshot_frames();
  REQUIRE(many.size() == 2);
  CHECK_FALSE(many[0].fin);
  CHECK(many[0].op == 0x1);
  CHECK(many[0].payload.size() == 64 * 1024);
  CHECK(many[1].fin);
  CHECK(many[1].op == 0x0);  // a continuation
  const std::string whole = many[0].payload + many[1].payload;
  CHECK(whole.starts_with(R"({"type":"snapshot")"));
  CHECK(count(whole, note) == 20);
}

TEST_CASE("upgrade: a frame sent in the same write as the upgrade request is read, not dropped") {
  Rig rig;
  auto client = rig.connect();
  send(client, handshake("/ws/report", "r-secret") + ws_frame("{oops"));
  std::string got;
  REQUIRE(rig.run_until([&] {
    got += take(client);
    return !ws_texts(got).empty();
  }));
  CHECK(got.starts_with("HTTP/1.1 101"));
  const auto texts = ws_texts(got);
  REQUIRE(texts.size() == 1);
  CHECK(texts[0].find("\"code\":\"bad_json\"") != std::string::npos);
}

TEST_CASE("websocket session: messages are counted, and rate_limited is told at most once a second") {
  ServerOptions o;
  o.rate_per_s = 5;  // burst 10
  Rig rig(o);
  auto client = rig.connect();
  std::string got = upgrade(rig, client, "/ws/report", "r-secret");
  auto report = [](int i) {
    return R"({"type":"report","id":"b-)" + std::to_string(i) + R"(","lat":29.56,"lon":106.55,"severity":"minor"})";
  };
  // One frame, 12 messages: over the burst of 10, refused whole.
  std::string batch = "[";
  for (int i = 0; i < 12; ++i) batch += (i ? "," : "") + report(i);
  batch += "]";
  send(client, ws_frame(batch));
  REQUIRE(rig.run_until([&] {
    got += take(client);
    return count(got, "rate_limited") == 1;
  }));
  // A binary frame counts too; within the same second no second rate_limited is told.
  for (int i = 0; i < 11; ++i) send(client, ws_frame("x", true));
  rig.settle();
  got += take(client);
  CHECK(count(got, "rate_limited") == 1);
  CHECK(count(got, "frames must be UTF-8 JSON text") == 10);  // 10 taken from the burst
  // A second later: the bucket refilled (5/s) and the next refusal is told again.
  fake_now_us += 1'100'000;
  send(client, ws_frame(batch.substr(0, 1) + report(100) + "," + report(101) + "," + report(102) + "," +
                        report(103) + "," + report(104) + "," + report(105) + "]"));
  REQUIRE(rig.run_until([&] {
    got += take(client);
    return count(got, "rate_limited") == 2;
  }));
  // A single report within the refill is accepted, and only once it is durable.
  send(client, ws_frame(report(200)));
  REQUIRE(rig.run_until([&] {
    got += take(client);
    return got.find("\"type\":\"accepted\"") != std::string::npos;
  }));
  CHECK(got.find("\"id\":\"b-200\"") != std::string::npos);
  CHECK(got.find("\"id\":\"b-0\"") == std::string::npos);  // nothing of the refused batch
}

TEST_CASE("websocket session: a token that does not open the path gets 403 and no upgrade") {
  Rig rig;
  auto client = rig.connect();
  send(client, handshake("/ws/console", "r-secret"));
  std::string got;
  REQUIRE(rig.run_until([&] {
    got += take(client);
    return got.find("}") != std::string::npos;
  }));
  CHECK(got.starts_with("HTTP/1.1 403"));
  auto other = rig.connect();
  send(other, handshake("/ws/console", "nobody"));
  got.clear();
  REQUIRE(rig.run_until([&] {
    got += take(other);
    return got.find("}") != std::string::npos;
  }));
  CHECK(got.starts_with("HTTP/1.1 401"));
}
