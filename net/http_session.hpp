// An HTTP session: reads requests with limits (header 16 KiB, body --max-body, a deadline
// for each request), keep-alive, HEAD without a body, and either answers (REST by the
// route table, health, metrics, the console's files) or upgrades to a WebSocket, handing
// over every byte it has already read.
#pragma once

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>

#include "net/connection_slots.hpp"
#include "net/stream_ops.hpp"
#include "net/http_target.hpp"
#include "net/routes.hpp"
#include "net/server_impl.hpp"

namespace dispatch::net {

// Over beast::tcp_stream in dispatchd (http_session.cpp) and beast::test::stream in the
// tests; the members are defined in http_session.ipp and rest.ipp.
template <class Stream>
class BasicHttpSession : public Peer {
 public:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  using Ops = StreamOps<Stream>;

  BasicHttpSession(Server::Impl& srv, Stream&& stream, std::shared_ptr<ConnectionSlots::Ticket> ticket);
  void run();

  // From the engine thread: the answer to POST /api/incidents (payload Accepted or Error),
  // or a REST read rendered there (no payload: 200 with the text as JSON).
  void deliver(Text msg, const engine::Payload* payload) override;

 private:
  std::shared_ptr<BasicHttpSession> self() { return std::static_pointer_cast<BasicHttpSession>(shared_from_this()); }
  void do_read();
  void on_read(boost::system::error_code ec);
  void handle();
  std::shared_ptr<const engine::Principal> authenticate() const;
  void upgrade(std::shared_ptr<const engine::Principal> principal);
  void static_file();

  // REST (rest.cpp).
  void route(const RouteMatch& m, std::shared_ptr<const engine::Principal> principal);
  void get_metrics();
  void get_engine_view(bool stats);
  void get_incidents(bool csv);
  // The CSV export: headers, then one chunk per page of the store's rows (read on the
  // reads pool, written before the next page is read), then the last chunk.
  struct CsvExport;
  void csv_next_page(std::shared_ptr<CsvExport> x);
  void csv_finish();
  void get_incident(const std::string& id);
  void get_track(const std::string& unit);
  void get_route(const std::string& assignment);
  void post_incident(std::shared_ptr<const engine::Principal> principal);
  // Rural stations (rest_stations.ipp).
  void get_hazards();
  void get_vehicle(const std::string& plate);

  // Answers. Every answer goes through respond(), which drops the body for HEAD.
  void respond(unsigned status, std::string body, std::string_view type,
               std::vector<std::pair<std::string, std::string>> headers = {});
  void respond_error(unsigned status, std::string_view code, std::string_view message);
  // From another thread: posts the answer to this session's strand.
  void respond_later(unsigned status, std::string body, std::string_view type);
  template <class Message>
  void write(std::shared_ptr<Message> res);

  Server::Impl& srv_;
  Stream stream_;
  std::shared_ptr<ConnectionSlots::Ticket> ticket_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  Request req_;
  RequestTarget target_;
  bool head_ = false;
  bool keep_alive_ = true;
  bool first_request_ = true;
  std::shared_ptr<BasicHttpSession> waiting_;  // alive while the engine thread works on a request
};

using HttpSession = BasicHttpSession<boost::beast::tcp_stream>;
extern template class BasicHttpSession<boost::beast::tcp_stream>;

}  // namespace dispatch::net
