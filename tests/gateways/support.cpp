#include "support.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

extern char** environ;

namespace dispatch::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using asio::ip::tcp;

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(20ms);
  }
}

std::uint16_t free_port() {
  // Below Linux's ephemeral range (32768-60999): a port taken from there could be
  // handed to someone else's connection or port-0 listener between a server's stop
  // and its restart on the same port. Other tests share the machine.
  static std::mt19937 rng(static_cast<unsigned>(::getpid()) ^
                          static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count()));
  for (int attempt = 0; attempt < 200; ++attempt) {
    const auto port = static_cast<std::uint16_t>(std::uniform_int_distribution<int>(20000, 32000)(rng));
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (ok) return port;
  }
  throw std::runtime_error("no free port");
}

std::filesystem::path scratch_dir(const std::string& name) {
  const auto dir = std::filesystem::path(DISPATCH_BINARY_DIR) / "tests" / "scratch" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::vector<std::string> read_lines(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// ---------------------------------------------------------------------------------------

Child::Child(std::vector<std::string> argv, std::filesystem::path stderr_file, std::vector<std::string> extra_env)
    : stderr_file_(std::move(stderr_file)) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, stderr_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  // Asio opens sockets without close-on-exec: a child must not inherit our
  // listeners, or it keeps their ports after we close them.
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  std::vector<std::string> env_store;
  for (char** e = environ; *e; ++e) env_store.emplace_back(*e);
  for (auto& e : extra_env) env_store.push_back(e);
  std::vector<char*> env;
  for (auto& e : env_store) env.push_back(e.data());
  env.push_back(nullptr);
  const int rc = ::posix_spawnp(&pid_, args[0], &fa, &attr, args.data(), env.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(pipefd[1]);
  out_fd_ = pipefd[0];
  if (rc != 0) {
    ::close(out_fd_);
    throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
  }
}

Child::~Child() {
  if (running()) kill_group();
  if (out_fd_ >= 0) ::close(out_fd_);
}

std::optional<std::string> Child::read_line(std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (const auto nl = pending_.find('\n'); nl != std::string::npos) {
      std::string line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      return line;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{out_fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    const auto n = ::read(out_fd_, buf, sizeof buf);
    if (n <= 0) return std::nullopt;
    pending_.append(buf, static_cast<std::size_t>(n));
  }
}

std::optional<std::uint16_t> Child::wait_listening(std::chrono::milliseconds timeout, std::string_view prefix) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    const auto line = read_line(std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now()));
    if (!line) return std::nullopt;
    if (line->starts_with(prefix)) {
      const auto colon = line->rfind(':');
      return static_cast<std::uint16_t>(std::stoi(line->substr(colon + 1)));
    }
  }
  return std::nullopt;
}

bool Child::running() {
  if (status_ || pid_ <= 0) return false;
  int st = 0;
  if (::waitpid(pid_, &st, WNOHANG) == pid_) {
    status_ = st;
    return false;
  }
  return true;
}

std::optional<int> Child::wait_exit(std::chrono::milliseconds timeout) {
  wait_until([&] { return !running(); }, timeout);
  return status_;
}

void Child::kill_group() {
  if (pid_ <= 0) return;
  ::kill(-pid_, SIGKILL);
  if (!status_) {
    int st = 0;
    ::waitpid(pid_, &st, 0);
    status_ = st;
  }
}

int Child::stop(std::chrono::milliseconds grace) {
  if (!running()) return status_.value_or(-1);
  ::kill(pid_, SIGTERM);
  if (wait_exit(grace)) {
    ::kill(-pid_, SIGKILL);  // whatever it started (gpsfake's gpsd) goes too
    return *status_;
  }
  kill_group();
  return -1;
}

std::string Child::stderr_text() const {
  std::ifstream in(stderr_file_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---------------------------------------------------------------------------------------

IoThread::IoThread() : guard_(asio::make_work_guard(ioc_)) {
  thread_ = std::thread([this] {
    ioc_.run();
    done_.set_value();
  });
}

void IoThread::join() {
  if (joined_) return;
  joined_ = true;
  guard_.reset();
  if (done_.get_future().wait_for(10s) != std::future_status::ready) ioc_.stop();
  thread_.join();
}

IoThread::~IoThread() { join(); }

// ---------------------------------------------------------------------------------------

struct WsRecorder::Impl {
  struct Session {
    explicit Session(tcp::socket s) : ws(std::move(s)) {}
    websocket::stream<beast::tcp_stream> ws;
    std::string path;
    std::deque<std::string> out;
    bool writing = false;
    bool open = true;
  };

  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::thread thread;
  std::atomic<bool> ran_out{false};  // ioc.run() has returned
  mutable std::mutex m;
  std::vector<Frame> frames;
  std::vector<std::string> auths;
  std::vector<std::shared_ptr<Session>> sessions;  // server thread only: handshake done
  std::vector<std::shared_ptr<Session>> live;      // server thread only: every open socket
  std::function<std::optional<std::string>(const std::string&, const std::string&)> on_frame;
  std::size_t connections = 0;

  void kick(const std::shared_ptr<Session>& s) {
    if (s->writing || s->out.empty() || !s->open) return;
    s->writing = true;
    s->ws.text(true);
    s->ws.async_write(asio::buffer(s->out.front()), [this, s](beast::error_code ec, std::size_t) {
      s->writing = false;
      if (ec) return;
      s->out.pop_front();
      kick(s);
    });
  }

  asio::awaitable<void> session(tcp::socket socket) {
    auto s = std::make_shared<Session>(std::move(socket));
    live.push_back(s);  // stop() closes it, even mid-handshake
    co_await serve(s);
    std::erase(live, s);
  }

  asio::awaitable<void> serve(std::shared_ptr<Session> s) {
    constexpr auto tuple = asio::as_tuple(asio::use_awaitable);
    beast::flat_buffer buffer;
    http::request<http::string_body> req;
    if (auto [ec, n] = co_await http::async_read(s->ws.next_layer(), buffer, req, tuple); ec) co_return;
    s->path = std::string(req.target());
    {
      std::lock_guard lock(m);
      auths.emplace_back(req[http::field::authorization]);
    }
    if (auto [ec] = co_await s->ws.async_accept(req, tuple); ec) co_return;
    if (!s->open) co_return;  // stopped meanwhile
    sessions.push_back(s);
    {
      // Counted only now: once connections() shows it, send_all() reaches it.
      std::lock_guard lock(m);
      ++connections;
    }
    for (;;) {
      beast::flat_buffer msg;
      auto [ec, n] = co_await s->ws.async_read(msg, tuple);
      if (ec) break;
      std::string text = beast::buffers_to_string(msg.data());
      std::optional<std::string> reply;
      {
        std::lock_guard lock(m);
        frames.push_back({s->path, text});
      }
      if (on_frame) reply = on_frame(s->path, text);
      if (reply) {
        s->out.push_back(std::move(*reply));
        kick(s);
      }
    }
    s->open = false;
    std::erase(sessions, s);
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      asio::co_spawn(ioc, session(std::move(socket)), asio::detached);
    }
  }
};

WsRecorder::WsRecorder(std::uint16_t port) : impl_(std::make_unique<Impl>()) {
  const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port ? port : free_port());
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
  beast::error_code ec;
  for (int attempt = 0; attempt < 50; ++attempt) {
    impl_->acceptor.bind(ep, ec);
    if (!ec) break;
    std::this_thread::sleep_for(100ms);
  }
  if (ec) {
    std::fprintf(stderr, "WsRecorder: bind %u: %s\n", ep.port(), ec.message().c_str());
    [[maybe_unused]] int rc = std::system(("ss -tanp | grep ':" + std::to_string(ep.port()) + " ' >&2").c_str());
    throw beast::system_error(ec);
  }
  impl_->acceptor.listen();
  port_ = impl_->acceptor.local_endpoint().port();
  asio::co_spawn(impl_->ioc, impl_->accept_loop(), asio::detached);
  impl_->thread = std::thread([this] {
    impl_->ioc.run();
    impl_->ran_out = true;
  });
}

WsRecorder::~WsRecorder() { stop(); }

void WsRecorder::stop() {
  if (!impl_->thread.joinable()) return;
  std::promise<void> closed;
  asio::post(impl_->ioc, [this, &closed] {
    beast::error_code ignored;
    impl_->acceptor.close(ignored);
    for (auto& s : impl_->live) {
      s->open = false;
      beast::get_lowest_layer(s->ws).socket().close(ignored);
    }
    closed.set_value();
  });
  if (closed.get_future().wait_for(20s) != std::future_status::ready)
    std::fprintf(stderr, "WsRecorder: the server thread did not close its sockets\n");
  // With the acceptor and every socket closed, the sessions end and the loop runs out
  // of work by itself; stopped outright only if it has not after 10 s.
  if (!wait_until([&] { return impl_->ran_out.load(); }, 10s))
    std::fprintf(stderr, "WsRecorder: the server loop did not run out of work; stopping it\n");
  impl_->ioc.stop();
  impl_->thread.join();
  impl_->sessions.clear();
}

std::vector<WsRecorder::Frame> WsRecorder::frames() const {
  std::lock_guard lock(impl_->m);
  return impl_->frames;
}

std::vector<std::string> WsRecorder::authorizations() const {
  std::lock_guard lock(impl_->m);
  return impl_->auths;
}

std::size_t WsRecorder::connections() const {
  std::lock_guard lock(impl_->m);
  return impl_->connections;
}

std::size_t WsRecorder::send_all(const std::string& path, const std::string& text) {
  std::promise<std::size_t> done;
  asio::post(impl_->ioc, [&] {
    std::size_t n = 0;
    for (auto& s : impl_->sessions)
      if (s->path == path && s->open) {
        s->out.push_back(text);
        impl_->kick(s);
        ++n;
      }
    done.set_value(n);
  });
  return done.get_future().get();
}

void WsRecorder::on_frame(std::function<std::optional<std::string>(const std::string&, const std::string&)> f) {
  std::promise<void> done;
  asio::post(impl_->ioc, [&] {
    impl_->on_frame = std::move(f);
    done.set_value();
  });
  done.get_future().get();
}

// ---------------------------------------------------------------------------------------

SnppTerminal::SnppTerminal(const std::filesystem::path& dir, std::uint16_t port, int fail_sends)
    : log_(dir / "pages.log") {
  if (port == 0) port = free_port();
  const auto script = std::filesystem::path(DISPATCH_SOURCE_DIR) / "tests/gateways/snpp_server.pl";
  child_ = std::make_unique<Child>(
      std::vector<std::string>{"perl", script.string(), "--log", log_.string(), "--port", std::to_string(port),
                               "--fail-sends", std::to_string(fail_sends)},
      dir / "snpp_server.err");
  const auto p = child_->wait_listening(10s);
  if (!p) throw std::runtime_error("the SNPP server did not start: " + child_->stderr_text());
  port_ = *p;
}

std::vector<std::string> SnppTerminal::pages() const { return read_lines(log_); }

void SnppTerminal::stop() { child_->stop(2s); }

std::unique_ptr<Child> start_gpsfake(const std::filesystem::path& log, std::uint16_t port,
                                     const std::filesystem::path& dir, double cycle_s) {
  // -1: play the log once; -W 1: end a second after it ran out; -c: seconds per
  // sentence, slow enough for gpsd to report every cycle.
  return std::make_unique<Child>(
      std::vector<std::string>{"gpsfake", "-1", "-q", "-W", "1", "-c", std::to_string(cycle_s), "-P",
                               std::to_string(port), log.string()},
      dir / "gpsfake.err");
}

// ---------------------------------------------------------------------------------------

GpsdWatcher::GpsdWatcher(std::uint16_t port) {
  thread_ = std::thread([this, port] {
    int fd = -1;
    while (fd < 0) {
      {
        std::lock_guard lock(m_);
        if (stop_) return;
      }
      fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(port);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        fd = -1;
        std::this_thread::sleep_for(10ms);
      }
    }
    const std::string watch = "?WATCH={\"enable\":true,\"json\":true}\n";
    if (::write(fd, watch.data(), watch.size()) < 0) {
      ::close(fd);
      return;
    }
    {
      std::lock_guard lock(m_);
      connected_ = true;
    }
    std::string pending;
    for (;;) {
      {
        std::lock_guard lock(m_);
        if (stop_) break;
      }
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[8192];
      const auto n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      pending.append(buf, static_cast<std::size_t>(n));
      for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n')) {
        std::lock_guard lock(m_);
        lines_.push_back(pending.substr(0, nl));
        pending.erase(0, nl + 1);
      }
    }
    ::close(fd);
  });
}

GpsdWatcher::~GpsdWatcher() {
  {
    std::lock_guard lock(m_);
    stop_ = true;
  }
  thread_.join();
}

std::vector<std::string> GpsdWatcher::lines() const {
  std::lock_guard lock(m_);
  return lines_;
}

bool GpsdWatcher::connected() const {
  std::lock_guard lock(m_);
  return connected_;
}

}  // namespace dispatch::test
