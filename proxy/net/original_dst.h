// The destination a connection had before iptables REDIRECT sent it to the proxy (SO_ORIGINAL_DST).
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include <optional>

namespace remora::proxy {

// IPv4 only, as Istio's REDIRECT mode; nullopt when the socket was not redirected.
std::optional<boost::asio::ip::tcp::endpoint> original_destination(int fd);

}  // namespace remora::proxy
