// Port 15020, Istio's pilot-agent status port: what the app asks of its own sidecar. A Job's last
// step POSTs /quitquitquit so the proxy drains and exits and the pod can complete.
#pragma once

#include "common/http_server.h"

#include <functional>
#include <string>

namespace remora::proxy::agent {

struct StatusPortActions {
    std::function<bool()> ready;  // certificate and configuration loaded, not draining
    std::function<void()> quit;   // drain (no new connections) and exit 0
};

// True for a "ip:port" (or "[ip]:port") peer on 127.0.0.0/8 or ::1, or ::ffff:127.x.
bool is_loopback_peer(const std::string& remote);

// The answer for one request on the status port:
//   POST /quitquitquit  200 "OK" and quit(), from localhost only (403 from anywhere else, as
//                       Istio's agent: a caller outside the pod must not stop it); 405 for
//                       another method
//   GET /healthz/ready  200 or 503, as the health port
//   anything else       404 naming the paths
common::HttpResponse status_port_answer(const common::HttpRequest& req,
                                        const common::PeerInfo& peer,
                                        const StatusPortActions& actions);

}  // namespace remora::proxy::agent
