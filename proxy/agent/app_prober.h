// The pod agent's pieces that the injected pod needs from its sidecar: kubelet's app probes,
// rewritten by the injector to /app-health/<container>/livez|readyz|startupz on the health port,
// run here against the app on 127.0.0.1 (plaintext, outside the mesh's mTLS), and a readiness
// wait for the postStart hook that holds the app until its proxy is ready.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace remora::proxy::agent {

struct AppProbe {
    enum class Kind { http, tcp, grpc };
    Kind kind = Kind::http;
    uint16_t port = 0;
    bool https = false;                                        // http: scheme HTTPS
    std::string path = "/";                                    // http only
    std::vector<std::pair<std::string, std::string>> headers;  // http only
    std::string grpc_service;                                  // grpc only ("" = the server)
    std::chrono::milliseconds timeout{1000};                   // kubelet's default timeoutSeconds
};

// The injector's ISTIO_KUBE_APP_PROBERS: {"/app-health/web/livez": {"httpGet": {"path": "/",
// "port": 8080, "scheme": "HTTPS", "httpHeaders": [...]}, "timeoutSeconds": 1},
// "/app-health/web/readyz": {"tcpSocket": {"port": 8080}}, "/app-health/web/startupz":
// {"grpc": {"port": 9090, "service": "x"}}, ...}.
class AppProbers {
  public:
    // Throws std::invalid_argument naming the probe and field that cannot be used.
    static AppProbers parse(std::string_view json_text);
    const AppProbe* find(std::string_view path) const;
    bool empty() const { return probes_.empty(); }
    size_t size() const { return probes_.size(); }

  private:
    std::map<std::string, AppProbe, std::less<>> probes_;
};

// GET http://host:port/path within `timeout`: the response status, or nullopt when the
// connection, the write or the read failed or timed out.
std::optional<unsigned> http_get(const std::string& host, uint16_t port, const std::string& path,
                                 const std::vector<std::pair<std::string, std::string>>& headers,
                                 std::chrono::milliseconds timeout);

// The same GET over TLS, without verifying the app's certificate (kubelet's HTTPS probes do not
// verify either: the app's certificate is usually not for 127.0.0.1).
std::optional<unsigned> https_get(const std::string& host, uint16_t port, const std::string& path,
                                  const std::vector<std::pair<std::string, std::string>>& headers,
                                  std::chrono::milliseconds timeout);

// gRPC's health check (grpc.health.v1.Health/Check for `service`) over plaintext HTTP/2 within
// `timeout`: the ServingStatus answered (1 is SERVING), or nullopt when the call failed (no
// connection, not HTTP/2, grpc-status other than 0, a response that is not a HealthCheckResponse).
std::optional<int> grpc_health_check(const std::string& host, uint16_t port,
                                     const std::string& service, std::chrono::milliseconds timeout);

// Runs a probe against 127.0.0.1 (blocking, bounded by its timeout) and answers as kubelet would
// judge it: 200 when the app's answer was 200-399 (HTTP, HTTPS), the TCP connect succeeded, or the
// gRPC health check answered SERVING; else 503.
unsigned run_probe(const AppProbe& probe);

}  // namespace remora::proxy::agent

namespace remora::common {
class HttpServer;
}

namespace remora::proxy::agent {

// Serves /app-health/... on the health server (before it starts): each probe runs on its own
// thread, at most kMaxProbesInFlight at once (more are answered 503);
// unknown paths are 404.
inline constexpr int kMaxProbesInFlight = 16;
void serve_app_probes(common::HttpServer& health, std::shared_ptr<const AppProbers> probers);

}  // namespace remora::proxy::agent
