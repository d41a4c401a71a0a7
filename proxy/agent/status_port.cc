// The status port's answers, kept apart from the proxy's main so they are tested without sockets.
#include "proxy/agent/status_port.h"

#include <boost/asio/ip/address.hpp>

namespace remora::proxy::agent {

namespace http = boost::beast::http;

bool is_loopback_peer(const std::string& remote) {
    // "ip:port", "[v6]:port", or the server's unbracketed "v6:port": drop the port, then parse.
    std::string host = remote;
    if (size_t colon = host.rfind(':');
        colon != std::string::npos && colon + 1 < host.size() &&
        host.find_first_not_of("0123456789", colon + 1) == std::string::npos)
        host = host.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    boost::system::error_code ec;
    auto address = boost::asio::ip::make_address(host, ec);
    if (ec) address = boost::asio::ip::make_address(remote, ec);
    if (ec) return false;
    if (address.is_v6() && address.to_v6().is_v4_mapped())
        address = boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, address.to_v6());
    return address.is_loopback();
}

common::HttpResponse status_port_answer(const common::HttpRequest& req,
                                        const common::PeerInfo& peer,
                                        const StatusPortActions& actions) {
    auto text = [&](unsigned status, std::string body) {
        auto res = common::json_response(status, std::move(body), req.version());
        res.set(http::field::content_type, "text/plain");
        return res;
    };
    std::string_view target = req.target();
    std::string_view path = target.substr(0, target.find('?'));
    if (path == "/quitquitquit") {
        if (req.method() != http::verb::post) {
            auto res = text(405, "use POST /quitquitquit\n");
            res.set(http::field::allow, "POST");
            return res;
        }
        if (!is_loopback_peer(peer.remote))
            return text(403, "only requests from localhost may stop the proxy (from " +
                                 peer.remote + ")\n");
        if (actions.quit) actions.quit();
        return text(200, "OK\n");
    }
    if (path == "/healthz/ready") {
        bool ok = actions.ready && actions.ready();
        return common::json_response(ok ? 200 : 503,
                                     ok ? R"({"status":"ready"})" : R"({"status":"not ready"})",
                                     req.version());
    }
    return text(404, "status port: POST /quitquitquit, GET /healthz/ready\n");
}

}  // namespace remora::proxy::agent
