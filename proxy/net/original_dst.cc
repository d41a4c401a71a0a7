// getsockopt(SOL_IP, SO_ORIGINAL_DST) on a redirected socket.
#include "proxy/net/original_dst.h"

#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <sys/socket.h>

namespace remora::proxy {

std::optional<boost::asio::ip::tcp::endpoint> original_destination(int fd) {
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    if (::getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &addr, &len) != 0 || addr.sin_family != AF_INET) {
        return std::nullopt;
    }
    boost::asio::ip::address_v4 ip(ntohl(addr.sin_addr.s_addr));
    return boost::asio::ip::tcp::endpoint(ip, ntohs(addr.sin_port));
}

}  // namespace remora::proxy
