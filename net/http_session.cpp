// The HTTP session over sockets: BasicHttpSession<beast::tcp_stream>, and the one
// non-template helper. The members are in http_session.ipp and rest.ipp.
#include "net/http_session.hpp"

#include "net/http_session.ipp"
#include "net/rest.ipp"

namespace dispatch::net {

std::string json_error_body(std::string_view code, std::string_view message) {
  std::string s;
  JsonWriter w(s);
  w.begin_object().field("code", code).field("message", message).end_object();
  return s;
}

template class BasicHttpSession<boost::beast::tcp_stream>;

}  // namespace dispatch::net
