// A small asynchronous HTTP/1.1 server (Boost.Beast, C++20 coroutines) for the control plane's
// TLS API and its plaintext monitoring port: bounded headers and bodies, deadlines on every read
// and write, keep-alive, and the client's certificate chain handed to the handler.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "certs/keys.h"

namespace remora::common {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;

struct PeerInfo {
    std::string remote;                          // "ip:port"
    std::vector<certs::Certificate> peer_chain;  // empty without TLS or without a client cert
    uint64_t connection_id = 0;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&, const PeerInfo&)>;

// The answer to a request that comes later (a long-poll): the handler keeps the Responder and
// calls respond() once, from any thread. If the client goes away first (its connection becomes
// readable: closed or reset), the function given to on_gone() runs instead, once, and respond()
// does nothing. The server answers 504 itself when neither happens within its deferral limit.
class Responder : public std::enable_shared_from_this<Responder> {
  public:
    explicit Responder(const boost::asio::any_io_executor& connection_executor);
    // True when this call gave the answer; false when one was given already or the client left.
    bool respond(HttpResponse res);
    // The same, with a body shared by many answers (one push's snapshot message, written to every
    // proxy of a class without a copy each): `res` is the head, its own body is ignored.
    bool respond(HttpResponse res, std::shared_ptr<const std::string> shared_body);
    // Runs `fn` when the client has gone away (at once, if it has already).
    void on_gone(std::function<void()> fn);
    // Runs `fn` once the answer has been written to the client, or its write failed (at once, if
    // that happened already): a long-poll's registration grace starts then, not while a large
    // answer is still on its way to a slow reader.
    void on_written(std::function<void()> fn);
    // Runs `fn` once the answer's connection is done with this request: it has read its next
    // request and handed it to a handler, or it has ended (closed, reset, idle past the read
    // timeout, or the answer was the last); at once if that happened already. A kept-alive
    // long-poll lives until then: a client whose next poll waits unread in this server's queue
    // (its threads busy) is not gone, and remora-control's registry does not start its grace.
    void on_released(std::function<void()> fn);
    bool finished() const;

    // The server's side.
    void client_gone();
    void written();
    void released();
    std::optional<HttpResponse> take();
    std::shared_ptr<const std::string> shared_body() const;
    boost::asio::steady_timer& timer() { return timer_; }

  private:
    mutable std::mutex mu_;
    bool finished_ = false;
    bool gone_ = false;
    bool written_ = false;
    bool released_ = false;
    std::optional<HttpResponse> response_;
    std::shared_ptr<const std::string> shared_body_;
    std::function<void()> on_gone_, on_written_, on_released_;
    boost::asio::steady_timer timer_;
};

using DeferredHandler =
    std::function<void(const HttpRequest&, const PeerInfo&, std::shared_ptr<Responder>)>;
using LogFn = std::function<void(const std::string&)>;

struct HttpLimits {
    uint32_t header_bytes = 16 * 1024;
    uint64_t body_bytes = 64 * 1024;
    // Other limits for targets that start with a prefix (first match wins), e.g. the config
    // API's YAML bodies on the CA's port. A declared Content-Length over the limit is refused
    // (413) before any of the body is read.
    std::vector<std::pair<std::string, uint64_t>> body_bytes_by_prefix;
    std::chrono::seconds handshake_timeout{10};
    std::chrono::seconds read_timeout{30};  // also the keep-alive idle timeout
    std::chrono::seconds write_timeout{30};
    std::chrono::seconds max_deferral{120};  // a deferred answer later than this is a 504
};

// Holds the TLS context new connections use; swapped atomically when the server's certificate is
// renewed, while live connections keep the context they started with.
class TlsContextSlot {
  public:
    void set(std::shared_ptr<boost::asio::ssl::context> ctx) { ctx_.store(std::move(ctx)); }
    std::shared_ptr<boost::asio::ssl::context> get() const { return ctx_.load(); }

  private:
    std::atomic<std::shared_ptr<boost::asio::ssl::context>> ctx_;
};

// A TLS 1.2+ server context with `chain` (leaf first) and `key`, asking for (not requiring) a
// client certificate, whose verification is the handler's business (certs::verify_svid).
std::shared_ptr<boost::asio::ssl::context> make_server_tls_context(
    const std::vector<certs::Certificate>& chain, const certs::PrivateKey& key);

// JSON response with `status` and `body`.
HttpResponse json_response(unsigned status, std::string body, unsigned version = 11);

// The Server header of the responses json_response makes: "remora-control" unless a program sets
// its own name (before it starts serving).
void set_server_header(std::string name);

// Accepts on `endpoint` and serves every connection with `handler`; with `tls` set, every
// connection does a TLS handshake first. Throws at start-up if the address cannot be bound.
class HttpServer {
  public:
    HttpServer(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& endpoint,
               HttpHandler handler, const TlsContextSlot* tls, HttpLimits limits, LogFn log);
    // Requests whose target starts with `prefix` go to `handler` (before start()).
    void defer(std::string prefix, DeferredHandler handler);
    void start();
    void stop();
    boost::asio::ip::tcp::endpoint local_endpoint() const;

    struct State;  // defined in the .cc; public so the connection coroutines there can name it

  private:
    std::shared_ptr<State> state_;
};

}  // namespace remora::common
