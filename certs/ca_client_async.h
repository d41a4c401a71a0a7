// The asynchronous steps under call_control, for a caller that runs many calls on its own
// io_context (tests/bench/sim_proxies.cc: a thousand proxies' subscriptions in one process).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>

#include "certs/ca_client.h"

namespace remora::certs {

// TLS 1.2+, the client SVID of `options` when it has one, no OpenSSL hostname check (the server's
// SVID is checked by connect_control). Throws std::runtime_error when chain and key do not match.
void configure_client_context(boost::asio::ssl::context& ctx, const CaClientOptions& options);

// Resolves, connects and handshakes on `stream`, each step within options.timeout, then verifies
// the server's SVID as the control plane's (nothing may be written before). Throws
// std::runtime_error naming the step that failed.
boost::asio::awaitable<void> connect_control(
    boost::beast::ssl_stream<boost::beast::tcp_stream>& stream, const CaClientOptions& options);

}  // namespace remora::certs
