// End-to-end test harness: runs the real dispatchd binary on a free loopback port and
// speaks to it over real WebSockets and HTTP (Beast clients).
#pragma once

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <thread>
#include <stdexcept>
#include <string>
#include <sys/wait.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <vector>

namespace e2e {

namespace fs = std::filesystem;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace asio = boost::asio;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

inline std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A fresh temporary folder, removed at the end.
struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/dispatch-e2e-XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name, const std::string& content = {}) const {
    const auto p = path / name;
    if (!content.empty()) std::ofstream(p) << content;
    return p.string();
  }
};

inline const char* default_tokens = R"({"tokens": [
  {"token": "c-secret", "role": "console", "name": "desk1"},
  {"token": "r-secret", "role": "reporter", "name": "callcentre"},
  {"token": "g-secret", "role": "gateway", "units": ["*"], "name": "avl"},
  {"token": "u-m1", "role": "unit", "units": ["M1"]},
  {"token": "u-m2", "role": "unit", "units": ["M2"]},
  {"token": "p-secret", "role": "pager", "name": "paging"},
  {"token": "i-picc", "role": "insurer", "insurer": "PICC", "name": "picc-claims"},
  {"token": "i-pingan", "role": "insurer", "insurer": "平安", "name": "pingan-claims"}
]})";

// The real server binary, started with the given flags plus --listen 127.0.0.1:0.
class Server {
 public:
  Server(std::vector<std::string> args) : args_(std::move(args)) { start(); }
  ~Server() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  void start() {
    int out[2];
    if (pipe(out) != 0) throw std::runtime_error("pipe");
    pid_ = fork();
    if (pid_ == 0) {
      // A test that crashes takes its server with it (no orphan holding the output open).
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      dup2(out[1], 1);
      close(out[0]);
      close(out[1]);
      std::vector<std::string> all{DISPATCHD_PATH, "--listen", "127.0.0.1:0"};
      all.insert(all.end(), args_.begin(), args_.end());
      std::vector<char*> argv;
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out[1]);
    // Read the "listening on HOST:PORT" line.
    std::string line;
    char c;
    while (read(out[0], &c, 1) == 1 && c != '\n') line += c;
    close(out[0]);
    const std::string prefix = "listening on 127.0.0.1:";
    if (line.rfind(prefix, 0) != 0) throw std::runtime_error("dispatchd did not start: '" + line + "'");
    port_ = static_cast<unsigned short>(std::stoi(line.substr(prefix.size())));
  }

  // SIGTERM and wait: returns the exit status.
  int stop() {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  void kill9() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  unsigned short port() const { return port_; }
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // Is the process still there (not exited)? Reaps it when it has exited.
  bool alive() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == 0) return true;
    pid_ = -1;
    return false;
  }
  // SIGTERM, then wait up to `timeout`: the exit status (as stop()), or nullopt when it
  // did not exit in time (it is then killed with SIGKILL).
  std::optional<int> stop_within(std::chrono::milliseconds timeout) {
    if (pid_ <= 0) return std::nullopt;
    ::kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        kill9();
        return std::nullopt;
      }
      std::this_thread::sleep_for(10ms);
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  std::vector<std::string> args_;
  pid_t pid_ = -1;
  unsigned short port_ = 0;
};

struct HttpResult {
  int status = 0;
  std::string body;
  std::string header(const std::string&) const;
  json::value json() const { return json::parse(body); }
};

inline HttpResult http_request(unsigned short port, http::verb method, const std::string& target,
                               const std::string& body = {}, const std::string& token = {}) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  http::request<http::string_body> req{method, target, 11};
  req.set(http::field::host, "127.0.0.1");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  if (!body.empty()) {
    req.body() = body;
    req.set(http::field::content_type, "application/json");
  }
  req.prepare_payload();
  http::write(stream, req);
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  http::read(stream, buf, parser);
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  return {static_cast<int>(parser.get().result_int()), parser.get().body()};
}

// A WebSocket client with timeouts on every read.
class Ws {
 public:
  Ws(unsigned short port, const std::string& path, const std::string& token) : ws_(ioc_) {
    connect(port, path, token);
  }

  // The HTTP status of a refused upgrade, or 101.
  static int try_upgrade(unsigned short port, const std::string& path, const std::string& token) {
    asio::io_context ioc;
    websocket::stream<beast::tcp_stream> ws(ioc);
    beast::get_lowest_layer(ws).connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    websocket::response_type res;
    beast::error_code ec;
    ws.set_option(websocket::stream_base::decorator([&](websocket::request_type& req) {
      if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    }));
    ws.handshake(res, "127.0.0.1", path, ec);
    return static_cast<int>(res.result_int());
  }

  void send(const std::string& text) {
    ws_.text(true);
    ws_.write(asio::buffer(text));
  }
  void send(const json::value& v) { send(json::serialize(v)); }

  // The next frame's text, or nullopt after the timeout (or when the server closed).
  // One read is always pending; a timeout leaves it pending for the next call.
  std::optional<std::string> recv(std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (inbox_.empty() && !closed_) {
      if (!reading_) start_read();
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) break;
      ioc_.restart();
      ioc_.run_one_for(deadline - now);
    }
    if (inbox_.empty()) return std::nullopt;
    std::string s = std::move(inbox_.front());
    inbox_.erase(inbox_.begin());
    return s;
  }

  // Reads frames (and the messages in array frames) until pred matches one.
  std::optional<json::object> recv_until(const std::function<bool(const json::object&)>& pred,
                                         std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      auto text = recv(left);
      if (!text) {
        if (closed_) return std::nullopt;
        continue;
      }
      json::value v = json::parse(*text);
      std::vector<json::value> items;
      if (v.is_array())
        for (auto& e : v.get_array()) items.push_back(e);
      else
        items.push_back(v);
      for (auto& e : items)
        if (e.is_object() && pred(e.get_object())) return e.get_object();
    }
    return std::nullopt;
  }
  std::optional<json::object> recv_type(const std::string& type, std::chrono::milliseconds timeout = 5s) {
    return recv_until([&](const json::object& o) { return o.at("type").as_string() == type; }, timeout);
  }

  bool closed() const { return closed_; }
  // Waits (up to the timeout) for the server to close the connection, discarding frames.
  bool wait_closed(std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!closed_ && std::chrono::steady_clock::now() < deadline) {
      inbox_.clear();
      recv(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
    }
    return closed_;
  }
  int close_code() const { return close_code_; }
  const std::string& close_reason() const { return close_reason_; }

  void close() {
    beast::error_code ec;
    ws_.close(websocket::close_code::normal, ec);
  }
  websocket::stream<beast::tcp_stream>& stream() { return ws_; }

 private:
  void connect(unsigned short port, const std::string& path, const std::string& token) {
    beast::get_lowest_layer(ws_).connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    ws_.set_option(websocket::stream_base::decorator([token](websocket::request_type& req) {
      if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    }));
    ws_.read_message_max(64 * 1024 * 1024);
    ws_.handshake("127.0.0.1", path);
  }

  void start_read() {
    reading_ = true;
    ws_.async_read(buffer_, [this](beast::error_code ec, std::size_t) {
      reading_ = false;
      if (ec) {
        closed_ = true;
        close_code_ = ws_.reason().code;
        close_reason_ = std::string(ws_.reason().reason.c_str());
        return;
      }
      inbox_.push_back(beast::buffers_to_string(buffer_.data()));
      buffer_.consume(buffer_.size());
      start_read();
    });
  }

  asio::io_context ioc_;
  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buffer_;
  std::vector<std::string> inbox_;
  bool reading_ = false;
  bool closed_ = false;
  int close_code_ = 0;
  std::string close_reason_;
};

inline std::string str(const json::object& o, const char* k) {
  const auto* v = o.if_contains(k);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

inline std::string position(const std::string& unit, double lat, double lon, std::int64_t ts = 0) {
  return json::serialize(json::object{{"type", "position"}, {"unit", unit}, {"lat", lat}, {"lon", lon},
                                      {"ts", ts ? ts : now_ms()}});
}

inline std::string report(const std::string& id, double lat, double lon, const std::string& severity = "injury") {
  return json::serialize(json::object{{"type", "report"}, {"id", id}, {"lat", lat}, {"lon", lon},
                                      {"severity", severity}});
}

}  // namespace e2e
