// BasicHttpSession's members (see http_session.hpp); included where it is instantiated.
#pragma once

#include "net/http_session.hpp"

#include <boost/beast/websocket/rfc6455.hpp>
#include <fmt/format.h>

#include "net/json_writer.hpp"
#include "net/ws_session.hpp"
#include "net/ws_session.ipp"

namespace dispatch::net {

namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;
using tcp = asio::ip::tcp;

namespace detail {

inline std::string_view mime_type(const std::string& path) {
  const auto dot = path.rfind('.');
  const std::string_view ext = dot == std::string::npos ? std::string_view() : std::string_view(path).substr(dot);
  if (ext == ".html") return "text/html; charset=utf-8";
  if (ext == ".js" || ext == ".mjs") return "text/javascript; charset=utf-8";
  if (ext == ".css") return "text/css; charset=utf-8";
  if (ext == ".json" || ext == ".geojson" || ext == ".map") return "application/json";
  if (ext == ".png") return "image/png";
  if (ext == ".svg") return "image/svg+xml";
  if (ext == ".ico") return "image/x-icon";
  if (ext == ".woff2") return "font/woff2";
  return "application/octet-stream";
}

inline Method method_of(http::verb v) {
  switch (v) {
    case http::verb::get: return Method::get;
    case http::verb::head: return Method::head;
    case http::verb::post: return Method::post;
    default: return Method::other;
  }
}

}  // namespace detail

template <class Stream>
BasicHttpSession<Stream>::BasicHttpSession(Server::Impl& srv, Stream&& stream, std::shared_ptr<ConnectionSlots::Ticket> ticket)
    : srv_(srv), stream_(std::move(stream)), ticket_(std::move(ticket)) {}

template <class Stream>
void BasicHttpSession<Stream>::run() {
  // At the connection cap, a connection that has not yet shown a token makes room.
  std::weak_ptr<BasicHttpSession> weak = self();
  ticket_->on_evict([weak] {
    if (auto s = weak.lock())
      asio::post(s->stream_.get_executor(), [s] { Ops::close(s->stream_); });
  });
  asio::dispatch(stream_.get_executor(), [s = self()] { s->do_read(); });
}

template <class Stream>
void BasicHttpSession<Stream>::do_read() {
  parser_.emplace();
  parser_->body_limit(srv_.opt.max_body_bytes);
  parser_->header_limit(16 * 1024);
  // The first request must come whole within the request timeout; later ones on a
  // keep-alive connection within the idle timeout.
  Ops::expires_after(stream_, first_request_ ? std::chrono::steady_clock::duration(srv_.opt.request_timeout)
                                             : std::chrono::steady_clock::duration(srv_.opt.http_idle_timeout));
  http::async_read(stream_, buffer_, *parser_, [s = self()](error_code ec, std::size_t) { s->on_read(ec); });
}

template <class Stream>
void BasicHttpSession<Stream>::on_read(error_code ec) {
  if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::operation_aborted ||
      ec == asio::error::connection_reset || ec == asio::error::eof || ec == asio::error::bad_descriptor) {
    Ops::shutdown_send(stream_);
    return;
  }
  if (ec) {
    // Whatever the parser refused: a 4xx, and the connection closes (the stream is no
    // longer in step with requests).
    inc(srv_.metrics.http_bad_requests);
    keep_alive_ = false;
    head_ = false;
    if (ec == http::error::body_limit)
      return respond_error(413, "bad_message", "request body over the size limit");
    if (ec == http::error::header_limit) return respond_error(431, "bad_message", "request header over its limit");
    if (ec == http::error::buffer_overflow) return respond_error(414, "bad_message", "request too long");
    return respond_error(400, "bad_message", "malformed request: " + ec.message());
  }
  first_request_ = false;
  req_ = parser_->release();
  keep_alive_ = req_.keep_alive();
  head_ = req_.method() == http::verb::head;
  inc(srv_.metrics.http_requests);
  handle();
}

template <class Stream>
std::shared_ptr<const engine::Principal> BasicHttpSession<Stream>::authenticate() const {
  const std::string_view token = request_token(req_[http::field::authorization], target_);
  if (token.empty()) return nullptr;
  return srv_.tokens.share(std::string(token));
}

template <class Stream>
void BasicHttpSession<Stream>::handle() {
  std::string why;
  auto parsed = parse_target(req_.target(), why);
  if (!parsed) {
    inc(srv_.metrics.http_bad_requests);
    return respond_error(400, "bad_message", "bad request target: " + why);
  }
  target_ = std::move(*parsed);
  const Method method = detail::method_of(req_.method());
  if (!srv_.serving()) {  // contract section 9: a standby serves nothing
    if (target_.path == "/healthz") return respond(503, "standby", "text/plain");
    return respond_error(503, "unavailable", "standby: this server is not the active one");
  }

  if (beast::websocket::is_upgrade(req_) || is_ws_path(target_.path)) {
    if (!is_ws_path(target_.path)) return respond_error(404, "not_found", "no such path");
    if (!beast::websocket::is_upgrade(req_))
      return respond_error(400, "bad_message", "this path needs a WebSocket upgrade");
    auto principal = authenticate();
    if (!principal) return respond_error(401, "unauthorized", "a valid token is required");
    return upgrade(std::move(principal));
  }

  const RouteMatch m = match_route(method, target_.segments);
  if (m.kind == RouteMatch::Kind::method_not_allowed) {
    respond(405, json_error_body("method_not_allowed", "method not allowed"), "application/json",
            {{"Allow", m.allow}});
    return;
  }
  if (m.kind == RouteMatch::Kind::found) {
    std::shared_ptr<const engine::Principal> principal;
    if (m.route->roles != 0) {
      principal = authenticate();
      if (!principal) return respond_error(401, "unauthorized", "a valid token is required");
      const auto token_role = parse_role(principal->role);
      if (!token_role || !(m.route->roles & mask(*token_role)))
        return respond_error(403, "forbidden", "this token's role may not use this path");
      ticket_->authenticated();
    }
    return route(m, std::move(principal));
  }
  if (target_.segments.size() >= 1 && (target_.segments[0] == "api" || target_.segments[0] == "geo"))
    return respond_error(404, "not_found", "no such path");
  if (method != Method::get && method != Method::head) {
    respond(405, json_error_body("method_not_allowed", "method not allowed"), "application/json",
            {{"Allow", "GET, HEAD"}});
    return;
  }
  static_file();
}

template <class Stream>
void BasicHttpSession<Stream>::upgrade(std::shared_ptr<const engine::Principal> principal) {
  const auto token_role = parse_role(principal->role);
  const auto ws_role = token_role ? role_for_path(*token_role, target_.path) : std::nullopt;
  if (!ws_role) return respond_error(403, "forbidden", "this token's role does not open " + target_.path);
  // The request as received and every byte read after it go to the WebSocket.
  std::string raw;
  raw.reserve(512 + buffer_.size());
  raw += std::string_view(req_.method_string());
  raw += ' ';
  raw += std::string_view(req_.target());
  raw += " HTTP/1.1\r\n";
  for (const auto& f : req_) {
    raw += std::string_view(f.name_string());
    raw += ": ";
    raw += std::string_view(f.value());
    raw += "\r\n";
  }
  raw += "\r\n";
  const auto rest = buffer_.cdata();
  raw.append(static_cast<const char*>(rest.data()), rest.size());
  buffer_.consume(buffer_.size());
  ticket_->authenticated();
  auto ws = std::make_shared<BasicWsSession<Stream>>(srv_, std::move(stream_), std::move(ticket_));
  ws->id = srv_.next_conn.fetch_add(1);
  ws->role = *ws_role;
  ws->who = std::move(principal);
  const std::string* batch = target_.param("batch");
  ws->batch_frames = batch && *batch == "1";
  ws->start(std::move(raw));
}

template <class Stream>
void BasicHttpSession<Stream>::static_file() {
  if (srv_.opt.web_root.empty()) return respond_error(404, "not_found", "no such path");
  const auto file = static_file_path(srv_.opt.web_root, target_);
  if (!file) return respond_error(404, "not_found", "no such path");
  std::error_code fec;
  if (!std::filesystem::is_regular_file(*file, fec)) return respond_error(404, "not_found", "no such path");
  const std::string name = file->string();
  const auto type = detail::mime_type(name);
  if (head_) {
    const auto size = std::filesystem::file_size(*file, fec);
    if (fec) return respond_error(404, "not_found", "no such path");
    auto res = std::make_shared<http::response<http::empty_body>>(http::status::ok, req_.version());
    res->set(http::field::server, "dispatchd");
    res->set(http::field::content_type, type);
    res->set(http::field::cache_control, "no-cache");
    res->content_length(size);
    res->keep_alive(keep_alive_);
    return write(res);
  }
  http::file_body::value_type body;
  error_code ec;
  body.open(name.c_str(), beast::file_mode::scan, ec);
  if (ec) return respond_error(404, "not_found", "no such path");
  auto res = std::make_shared<http::response<http::file_body>>(
      std::piecewise_construct, std::make_tuple(std::move(body)), std::make_tuple(http::status::ok, req_.version()));
  res->set(http::field::server, "dispatchd");
  res->set(http::field::content_type, type);
  res->set(http::field::cache_control, "no-cache");
  res->keep_alive(keep_alive_);
  res->prepare_payload();
  write(res);
}

template <class Stream>
void BasicHttpSession<Stream>::deliver(Text msg, const engine::Payload* payload) {
  unsigned status = 200;
  std::string body;
  if (!payload) {
    body = msg ? *msg : std::string();
  } else if (auto* a = std::get_if<engine::ev::Accepted>(payload)) {
    status = 201;
    JsonWriter w(body);
    w.begin_object().field("incident", a->incident).field("id", a->report_id).end_object();
  } else if (auto* e = std::get_if<engine::ev::Error>(payload)) {
    status = info(e->code).http_status;
    body = json_error_body(info(e->code).wire, e->message);
  } else {
    return;
  }
  asio::post(stream_.get_executor(), [s = self(), status, body = std::move(body)]() mutable {
    if (s->id) s->srv_.unregister_peer(s->id, s->role);
    s->waiting_.reset();
    s->respond(status, std::move(body), "application/json");
  });
}

template <class Stream>
void BasicHttpSession<Stream>::respond_error(unsigned status, std::string_view code, std::string_view message) {
  respond(status, json_error_body(code, message), "application/json");
}

template <class Stream>
void BasicHttpSession<Stream>::respond_later(unsigned status, std::string body, std::string_view type) {
  asio::post(stream_.get_executor(), [s = self(), status, body = std::move(body), type]() mutable {
    s->waiting_.reset();
    s->respond(status, std::move(body), type);
  });
}

template <class Stream>
void BasicHttpSession<Stream>::respond(unsigned status, std::string body, std::string_view type,
                          std::vector<std::pair<std::string, std::string>> headers) {
  if (head_) {
    // HEAD: the headers a GET would get, Content-Length included, and no body, so that a
    // keep-alive connection stays in step.
    auto res = std::make_shared<http::response<http::empty_body>>(static_cast<http::status>(status), req_.version());
    res->set(http::field::server, "dispatchd");
    res->set(http::field::content_type, type);
    for (const auto& [k, v] : headers) res->set(k, v);
    res->content_length(body.size());
    res->keep_alive(keep_alive_);
    return write(res);
  }
  auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(status), req_.version());
  res->set(http::field::server, "dispatchd");
  res->set(http::field::content_type, type);
  for (const auto& [k, v] : headers) res->set(k, v);
  res->keep_alive(keep_alive_);
  res->body() = std::move(body);
  res->prepare_payload();
  write(res);
}

template <class Stream>
template <class Message>
void BasicHttpSession<Stream>::write(std::shared_ptr<Message> res) {
  Ops::expires_after(stream_, std::chrono::seconds(30));
  http::async_write(stream_, *res, [s = self(), res](error_code ec, std::size_t) {
    if (ec) return;
    if (!s->keep_alive_ || res->need_eof()) return Ops::shutdown_send(s->stream_);
    s->do_read();
  });
}

}  // namespace dispatch::net
