// Beast HTTP/1.1 server loop with coroutines; one coroutine per connection.
#include "common/http_server.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/ssl.h>

#include <algorithm>
#include <cerrno>
#include <sys/socket.h>
#include <array>

namespace remora::common {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

struct HttpServer::State : std::enable_shared_from_this<HttpServer::State> {
    State(asio::io_context& io, const tcp::endpoint& ep, HttpHandler h, const TlsContextSlot* t,
          HttpLimits l, LogFn lg)
        : acceptor(io), handler(std::move(h)), tls(t), limits(l), log(std::move(lg)) {
        boost::system::error_code ec;
        acceptor.open(ep.protocol(), ec);
        if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
        if (!ec) acceptor.bind(ep, ec);
        if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
        if (ec) {
            throw std::runtime_error("cannot listen on " + ep.address().to_string() + ":" +
                                     std::to_string(ep.port()) + ": " + ec.message());
        }
    }

    tcp::acceptor acceptor;
    HttpHandler handler;
    std::vector<std::pair<std::string, DeferredHandler>> deferred;
    const TlsContextSlot* tls;
    HttpLimits limits;
    LogFn log;
    std::atomic<uint64_t> next_id{1};
};

namespace {

std::string remote_of(const tcp::socket& sock) {
    boost::system::error_code ec;
    tcp::endpoint ep = sock.remote_endpoint(ec);
    if (ec) return "unknown";
    return ep.address().to_string() + ":" + std::to_string(ep.port());
}

// The status for a request the parser refused, or 0 when the connection just ended.
unsigned status_for_read_error(const boost::system::error_code& ec) {
    if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == beast::error::timeout ||
        ec == asio::error::connection_reset || ec == asio::ssl::error::stream_truncated ||
        ec == asio::error::operation_aborted) {
        return 0;
    }
    if (ec == http::error::body_limit) return 413;
    if (ec == http::error::header_limit) return 431;
    if (ec == http::error::partial_message) return 0;  // the client went away mid-request
    if (ec.category() == make_error_code(http::error::bad_method).category()) return 400;
    return 0;
}

std::string reason_for(unsigned status) {
    switch (status) {
        case 413:
            return "request body too large";
        case 431:
            return "request header fields too large";
        default:
            return "malformed HTTP request";
    }
}

// After refusing a request whose body was not read, keep reading (and discarding) before closing:
// closing with unread data makes the kernel reset the connection, which destroys the error
// response before the client reads it (RFC 9112, section 9.6), and a client still writing its
// body sees only "Connection reset by peer". A declared body is drained whole, whatever its size,
// as long as it keeps arriving (each read has its own deadline); a body of unknown length up to
// kMaxDrainBytes.
template <class Stream>
asio::awaitable<void> drain_before_close(Stream& stream, std::optional<uint64_t> declared) {
    constexpr uint64_t kMaxDrainBytes = 16 * 1024 * 1024;
    constexpr std::chrono::seconds kDrainIdle{5};
    const uint64_t limit = declared ? *declared : kMaxDrainBytes;
    std::array<char, 16 * 1024> sink;
    uint64_t drained = 0;
    while (drained < limit) {
        beast::get_lowest_layer(stream).expires_after(kDrainIdle);
        auto [ec, n] = co_await stream.async_read_some(asio::buffer(sink), use_nothrow);
        if (ec) break;
        drained += n;
    }
}

uint64_t body_limit_for(const HttpLimits& limits, std::string_view target) {
    for (const auto& [prefix, bytes] : limits.body_bytes_by_prefix) {
        if (target.substr(0, prefix.size()) == prefix) return bytes;
    }
    return limits.body_bytes;
}

const DeferredHandler* deferred_for(const HttpServer::State& st, std::string_view target) {
    for (const auto& [prefix, handler] : st.deferred) {
        if (target.substr(0, prefix.size()) == prefix) return &handler;
    }
    return nullptr;
}

// Calls client_gone() once the peer has closed or reset the connection. A readiness report alone
// is not proof (the reactor reports edges it saw while the TLS layer was reading), so a
// non-consuming peek decides: end of stream or an error is a hangup, "would block" re-arms, and
// bytes from a client that should be waiting in silence (a TLS close_notify) count as leaving.
void watch_for_hangup(tcp::socket& sock, std::shared_ptr<Responder> responder) {
    sock.async_wait(tcp::socket::wait_read, [&sock, responder](boost::system::error_code ec) {
        if (ec) return;  // cancelled: the answer went out
        char byte;
        ssize_t n = ::recv(sock.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            watch_for_hangup(sock, responder);
            return;
        }
        responder->client_gone();
    });
}

// Waits for a deferred answer while watching the connection: a client that closes or resets it
// (nothing else arrives from an HTTP/1.1 client waiting for its answer) is gone. nullopt then.
template <class Stream>
asio::awaitable<std::optional<HttpResponse>> await_deferred(Stream& stream,
                                                            std::shared_ptr<Responder> responder,
                                                            std::chrono::seconds limit) {
    auto& sock = beast::get_lowest_layer(stream).socket();
    beast::get_lowest_layer(stream).expires_never();
    watch_for_hangup(sock, responder);
    responder->timer().expires_after(limit);
    while (!responder->finished()) {
        auto [ec] = co_await responder->timer().async_wait(use_nothrow);
        if (!ec) {  // the limit passed with no answer
            if (responder->respond(json_response(504, R"({"error":"no answer in time"})"))) break;
        }
    }
    boost::system::error_code ignored;
    sock.cancel(ignored);
    co_return responder->take();
}

// `carried`: the deferred request this connection answered last and keeps open (keep-alive),
// released once the next request has been handed on or the connection ends (serve_requests).
template <class Stream>
asio::awaitable<void> serve_request_loop(Stream& stream, std::shared_ptr<HttpServer::State> st,
                                         const PeerInfo& peer, std::shared_ptr<Responder>& carried) {
    auto release_carried = [&carried] {
        if (carried) std::exchange(carried, nullptr)->released();
    };
    beast::flat_buffer buffer;
    for (;;) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(st->limits.header_bytes);
        // No limit while the header is read: Beast would refuse a Content-Length over it inside
        // the header, before content_length() is known, and the body could not be drained.
        parser.body_limit(boost::none);
        beast::get_lowest_layer(stream).expires_after(st->limits.read_timeout);
        auto [rec, nread] = co_await http::async_read_header(stream, buffer, parser, use_nothrow);
        if (!rec) {
            // The target decides the body limit; the header said how long the body is.
            uint64_t limit = body_limit_for(st->limits, parser.get().target());
            parser.body_limit(limit);
            if (parser.content_length() && *parser.content_length() > limit) {
                rec = http::error::body_limit;
            } else if (!parser.is_done()) {
                auto [bec, bread] = co_await http::async_read(stream, buffer, parser, use_nothrow);
                rec = bec;
            }
        }
        HttpResponse res;
        std::shared_ptr<Responder> deferred;  // told when its answer is written
        bool keep_alive = false;
        std::optional<uint64_t> unread;  // body bytes the client will still send, when known
        if (rec == http::error::body_limit && parser.content_length()) {
            uint64_t buffered = std::min<uint64_t>(buffer.size(), *parser.content_length());
            unread = *parser.content_length() - buffered;
        }
        if (rec) {
            unsigned status = status_for_read_error(rec);
            if (status == 0) co_return;
            st->log("conn=" + std::to_string(peer.connection_id) + " " + peer.remote +
                    " bad request: " + rec.message());
            res = json_response(status, "{\"error\":\"" + reason_for(status) + "\"}");
            release_carried();
        } else {
            const HttpRequest& req = parser.get();
            if (const DeferredHandler* later = deferred_for(*st, req.target())) {
                auto responder = std::make_shared<Responder>(co_await asio::this_coro::executor);
                (*later)(req, peer, responder);
                release_carried();  // after the handler has taken the next one (a new poll)
                std::optional<HttpResponse> answer =
                    co_await await_deferred(stream, responder, st->limits.max_deferral);
                if (!answer) co_return;  // the client went away
                res = std::move(*answer);
                deferred = std::move(responder);
            } else {
                // A handler's exception would end the coroutine silently (co_spawn's detached
                // drops it) and the client would see a truncated stream: answer 500 instead.
                try {
                    res = st->handler(req, peer);
                } catch (const std::exception& e) {
                    st->log("conn=" + std::to_string(peer.connection_id) + " " + peer.remote +
                            " " + std::string(req.method_string()) + " " +
                            std::string(req.target()) + ": internal error: " + e.what());
                    res = json_response(500, "{\"error\":\"internal error (the server's log "
                                             "says more)\"}");
                }
                release_carried();
            }
            keep_alive = req.keep_alive();
            res.version(req.version());
        }
        res.keep_alive(keep_alive);
        res.prepare_payload();
        beast::get_lowest_layer(stream).expires_after(st->limits.write_timeout);
        boost::system::error_code wec;
        if (auto shared = deferred ? deferred->shared_body() : nullptr) {
            // The head, then the shared body as it is (no copy into this answer).
            res.content_length(shared->size());
            http::response_serializer<http::string_body> sr(res);
            auto [hec, hn] = co_await http::async_write_header(stream, sr, use_nothrow);
            wec = hec;
            if (!wec) {
                auto [bec, bn] = co_await asio::async_write(stream, asio::buffer(*shared), use_nothrow);
                wec = bec;
            }
        } else {
            auto [ec, nwritten] = co_await http::async_write(stream, res, use_nothrow);
            wec = ec;
        }
        if (deferred) {
            deferred->written();
            if (!wec && keep_alive) {
                carried = std::move(deferred);
            } else {
                deferred->released();
            }
        }
        if (!wec && rec) co_await drain_before_close(stream, unread);
        if (wec || !keep_alive) co_return;
    }
}

template <class Stream>
asio::awaitable<void> serve_requests(Stream& stream, std::shared_ptr<HttpServer::State> st,
                                     const PeerInfo& peer) {
    std::shared_ptr<Responder> carried;
    co_await serve_request_loop(stream, st, peer, carried);
    if (carried) carried->released();  // the connection ends
}

asio::awaitable<void> serve_plain(tcp::socket sock, std::shared_ptr<HttpServer::State> st) {
    PeerInfo peer{remote_of(sock), {}, st->next_id++};
    beast::tcp_stream stream(std::move(sock));
    co_await serve_requests(stream, st, peer);
    boost::system::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

asio::awaitable<void> serve_tls(tcp::socket sock, std::shared_ptr<HttpServer::State> st) {
    PeerInfo peer{remote_of(sock), {}, st->next_id++};
    std::shared_ptr<ssl::context> ctx = st->tls->get();
    beast::ssl_stream<beast::tcp_stream> stream(std::move(sock), *ctx);
    beast::get_lowest_layer(stream).expires_after(st->limits.handshake_timeout);
    auto [hec] = co_await stream.async_handshake(ssl::stream_base::server, use_nothrow);
    if (hec) {
        st->log("conn=" + std::to_string(peer.connection_id) + " " + peer.remote +
                " TLS handshake failed: " + hec.message());
        co_return;
    }
    SSL* ssl_handle = stream.native_handle();
    if (X509* leaf = SSL_get0_peer_certificate(ssl_handle)) {
        peer.peer_chain.push_back(certs::Certificate::share(leaf));
        // On a server the peer chain excludes the leaf: these are the intermediates sent.
        if (STACK_OF(X509)* rest = SSL_get_peer_cert_chain(ssl_handle)) {
            for (int i = 0; i < sk_X509_num(rest); ++i) {
                peer.peer_chain.push_back(certs::Certificate::share(sk_X509_value(rest, i)));
            }
        }
    }
    co_await serve_requests(stream, st, peer);
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
    co_await stream.async_shutdown(use_nothrow);
}

asio::awaitable<void> accept_loop(std::shared_ptr<HttpServer::State> st) {
    for (;;) {
        // Each connection gets its own strand: the stream's timer and I/O never run concurrently.
        auto [ec, sock] = co_await st->acceptor.async_accept(
            asio::make_strand(st->acceptor.get_executor()), use_nothrow);
        if (ec == asio::error::operation_aborted) co_return;
        if (ec) {
            // EMFILE and friends: log, pause briefly so a full fd table does not spin the loop.
            st->log(std::string("accept failed: ") + ec.message());
            asio::steady_timer t(st->acceptor.get_executor(), std::chrono::milliseconds(50));
            co_await t.async_wait(use_nothrow);
            continue;
        }
        sock.set_option(tcp::no_delay(true), ec);
        auto exec = sock.get_executor();
        if (st->tls) {
            asio::co_spawn(exec, serve_tls(std::move(sock), st), asio::detached);
        } else {
            asio::co_spawn(exec, serve_plain(std::move(sock), st), asio::detached);
        }
    }
}

}  // namespace

std::shared_ptr<ssl::context> make_server_tls_context(const std::vector<certs::Certificate>& chain,
                                                      const certs::PrivateKey& key) {
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
    SSL_CTX* raw = ctx->native_handle();
    SSL_CTX_set_min_proto_version(raw, TLS1_2_VERSION);
    SSL_CTX_set_options(raw, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate(raw, chain.front().get()) != 1 ||
        SSL_CTX_use_PrivateKey(raw, key.get()) != 1 || SSL_CTX_check_private_key(raw) != 1) {
        throw std::runtime_error("TLS server context: " + certs::ossl::last_error());
    }
    // Intermediates (not the root) go on the wire after the leaf.
    for (size_t i = 1; i + 1 < chain.size(); ++i) {
        SSL_CTX_add1_chain_cert(raw, chain[i].get());
    }
    // Ask for a client certificate but let the handler decide: a first request has only a token.
    SSL_CTX_set_verify(raw, SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
    return ctx;
}

namespace {
std::string& server_header() {
    static std::string name = "remora-control";
    return name;
}
}  // namespace

void set_server_header(std::string name) {
    server_header() = std::move(name);
}

HttpResponse json_response(unsigned status, std::string body, unsigned version) {
    HttpResponse res{static_cast<http::status>(status), version};
    res.set(http::field::content_type, "application/json");
    res.set(http::field::server, server_header());
    res.body() = std::move(body);
    return res;
}

Responder::Responder(const asio::any_io_executor& connection_executor)
    : timer_(connection_executor) {}

bool Responder::respond(HttpResponse res) {
    return respond(std::move(res), nullptr);
}

bool Responder::respond(HttpResponse res, std::shared_ptr<const std::string> shared_body) {
    {
        std::lock_guard lock(mu_);
        if (finished_) return false;
        finished_ = true;
        response_ = std::move(res);
        if (shared_body) {
            response_->body().clear();
            shared_body_ = std::move(shared_body);
        }
    }
    // Wake the connection on its own strand.
    asio::post(timer_.get_executor(), [self = shared_from_this()] { self->timer_.cancel(); });
    return true;
}

void Responder::on_gone(std::function<void()> fn) {
    std::unique_lock lock(mu_);
    if (gone_) {
        lock.unlock();
        fn();
        return;
    }
    on_gone_ = std::move(fn);
}

void Responder::on_written(std::function<void()> fn) {
    std::unique_lock lock(mu_);
    if (written_) {
        lock.unlock();
        fn();
        return;
    }
    on_written_ = std::move(fn);
}

void Responder::written() {
    std::function<void()> fn;
    {
        std::lock_guard lock(mu_);
        if (written_) return;
        written_ = true;
        fn = std::move(on_written_);
    }
    if (fn) fn();
}

void Responder::on_released(std::function<void()> fn) {
    std::unique_lock lock(mu_);
    if (released_) {
        lock.unlock();
        fn();
        return;
    }
    on_released_ = std::move(fn);
}

void Responder::released() {
    std::function<void()> fn;
    {
        std::lock_guard lock(mu_);
        if (released_) return;
        released_ = true;
        fn = std::move(on_released_);
    }
    if (fn) fn();
}

bool Responder::finished() const {
    std::lock_guard lock(mu_);
    return finished_;
}

void Responder::client_gone() {
    std::function<void()> fn;
    {
        std::lock_guard lock(mu_);
        if (finished_) return;
        finished_ = gone_ = true;
        fn = std::move(on_gone_);
    }
    timer_.cancel();  // runs on the connection's strand (the socket wait's handler)
    if (fn) fn();
}

std::shared_ptr<const std::string> Responder::shared_body() const {
    std::lock_guard lock(mu_);
    return shared_body_;
}

std::optional<HttpResponse> Responder::take() {
    std::lock_guard lock(mu_);
    if (gone_) return std::nullopt;
    return std::move(response_);
}

void HttpServer::defer(std::string prefix, DeferredHandler handler) {
    state_->deferred.emplace_back(std::move(prefix), std::move(handler));
}

HttpServer::HttpServer(asio::io_context& io, const tcp::endpoint& endpoint, HttpHandler handler,
                       const TlsContextSlot* tls, HttpLimits limits, LogFn log)
    : state_(
          std::make_shared<State>(io, endpoint, std::move(handler), tls, limits, std::move(log))) {}

void HttpServer::start() {
    asio::co_spawn(state_->acceptor.get_executor(), accept_loop(state_), asio::detached);
}

void HttpServer::stop() {
    boost::system::error_code ec;
    state_->acceptor.close(ec);
}

tcp::endpoint HttpServer::local_endpoint() const {
    return state_->acceptor.local_endpoint();
}

}  // namespace remora::common
