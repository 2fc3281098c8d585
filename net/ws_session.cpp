// The WebSocket session over sockets: BasicWsSession<beast::tcp_stream>. The members are in
// ws_session.ipp.
#include "net/ws_session.hpp"

#include "net/ws_session.ipp"

namespace dispatch::net {

template class BasicWsSession<boost::beast::tcp_stream>;

}  // namespace dispatch::net
