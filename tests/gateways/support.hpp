// Test support for the gateways: child processes (gpsfake, the SNPP terminal,
// dispatchd, the gateway programs), a WebSocket server that records what a gateway
// sends, and small waiting helpers. Everything listens on 127.0.0.1 only.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

namespace dispatch::test {

using namespace std::chrono_literals;

// Polls `done` every 20 ms until it holds or `timeout` passes.
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout);

// A port that was free a moment ago, outside the ephemeral range: for servers that
// are restarted on the same port, and programs that cannot take port 0.
std::uint16_t free_port();

// A fresh empty folder under the build tree for one test's files.
std::filesystem::path scratch_dir(const std::string& name);

std::vector<std::string> read_lines(const std::filesystem::path& p);

// A child process in its own process group, stdout on a pipe, stderr to a file.
class Child {
 public:
  Child(std::vector<std::string> argv, std::filesystem::path stderr_file,
        std::vector<std::string> extra_env = {});
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // The next stdout line (without newline), or nullopt on timeout or EOF.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);
  // Waits for a stdout line "listening on HOST:PORT" and returns the port.
  std::optional<std::uint16_t> wait_listening(std::chrono::milliseconds timeout, std::string_view prefix = "listening on ");
  // SIGTERM, then SIGKILL to the group if it has not exited within `grace`.
  // Returns the exit status (as from waitpid), or -1 when it had to be killed.
  int stop(std::chrono::milliseconds grace = 5s);
  void kill_group();
  bool running();
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  int pid() const { return pid_; }
  std::string stderr_text() const;

 private:
  int pid_ = -1;
  int out_fd_ = -1;
  std::string pending_;
  std::filesystem::path stderr_file_;
  std::optional<int> status_;
};

// Runs an io_context on a thread of its own; call() runs f there and waits.
class IoThread {
 public:
  IoThread();
  ~IoThread();
  boost::asio::io_context& ioc() { return ioc_; }
  template <typename F>
  auto call(F f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto fut = task.get_future();
    boost::asio::post(ioc_, [&task] { task(); });
    return fut.get();
  }
  // Lets the loop run out of work (what was stopped finishes), then joins; after
  // 10 s it stops the loop outright.
  void join();

 private:
  boost::asio::io_context ioc_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard_;
  std::promise<void> done_;
  std::thread thread_;
  bool joined_ = false;
};

// A WebSocket server that records every text frame and the Authorization header,
// answers pings (Beast does), and can push frames to its clients. stop() drops all
// connections at once, as a crashing server would; a new one can take the same port.
class WsRecorder {
 public:
  // Port 0: a free_port(), so that a restart on the same port is safe.
  explicit WsRecorder(std::uint16_t port = 0);
  ~WsRecorder();
  std::uint16_t port() const { return port_; }
  void stop();

  struct Frame {
    std::string path;
    std::string text;
  };
  std::vector<Frame> frames() const;
  std::vector<std::string> authorizations() const;
  std::size_t connections() const;
  // Sends `text` to every client connected on `path`; returns how many got it queued.
  std::size_t send_all(const std::string& path, const std::string& text);
  // Called on each frame (on the server's thread); may return a reply to send back.
  void on_frame(std::function<std::optional<std::string>(const std::string& path, const std::string& text)> f);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::uint16_t port_ = 0;
};

// Debian's Net::SNPP::Server run by tests/gateways/snpp_server.pl.
class SnppTerminal {
 public:
  SnppTerminal(const std::filesystem::path& dir, std::uint16_t port = 0, int fail_sends = 0);
  std::uint16_t port() const { return port_; }
  // "capcode<TAB>message" per page accepted.
  std::vector<std::string> pages() const;
  void stop();

 private:
  std::filesystem::path log_;
  std::unique_ptr<Child> child_;
  std::uint16_t port_ = 0;
};

// gpsfake replaying a log into a gpsd of its own on `port`.
std::unique_ptr<Child> start_gpsfake(const std::filesystem::path& log, std::uint16_t port,
                                     const std::filesystem::path& dir, double cycle_s);

// A plain gpsd client on a thread: ?WATCH and every line it gets, as a reference.
class GpsdWatcher {
 public:
  explicit GpsdWatcher(std::uint16_t port);
  ~GpsdWatcher();
  std::vector<std::string> lines() const;
  bool connected() const;

 private:
  mutable std::mutex m_;
  std::vector<std::string> lines_;
  bool connected_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace dispatch::test
