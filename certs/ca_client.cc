// Beast HTTPS client for remoractl and the proxy's agents: a blocking call for its caller, run on
// a private io_context so that every step has a deadline and another thread can cancel it.
#include "certs/ca_client.h"
#include "certs/ca_client_async.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/ssl.h>

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <optional>
#include <stdexcept>

namespace remora::certs {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

CaClientResult post_certificate_request(const CaClientOptions& options, const std::string& body) {
    return call_control(options, "POST", "/v1/certificates", body);
}

void CallCanceller::cancel() {
    std::function<void()> fn;
    {
        std::lock_guard lock(mu_);
        cancelled_ = true;
        fn = cancel_fn_;
    }
    if (fn) fn();
}

bool CallCanceller::cancelled() const {
    std::lock_guard lock(mu_);
    return cancelled_;
}

bool CallCanceller::attach(std::function<void()> fn) {
    std::lock_guard lock(mu_);
    if (cancelled_) return false;
    cancel_fn_ = std::move(fn);
    return true;
}

void CallCanceller::detach() {
    std::lock_guard lock(mu_);
    cancel_fn_ = nullptr;
}

std::vector<ControlAddress> parse_control_addresses(const std::string& text) {
    std::vector<ControlAddress> out;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        std::size_t comma = text.find(',', pos);
        std::string item =
            text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        pos = comma == std::string::npos ? text.size() + 1 : comma + 1;
        if (item.empty()) continue;
        std::size_t colon = item.rfind(':');
        if (colon == std::string::npos || colon == 0 || colon + 1 == item.size() ||
            item.find_first_not_of("0123456789", colon + 1) != std::string::npos) {
            throw std::invalid_argument("\"" + item + "\": expected HOST:PORT");
        }
        std::string host = item.substr(0, colon);
        if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
        out.push_back({host, item.substr(colon + 1)});
    }
    if (out.empty()) throw std::invalid_argument("\"" + text + "\": expected HOST:PORT[,HOST:PORT...]");
    return out;
}

ControlFailover::ControlFailover(std::string host, std::string port, std::vector<ControlAddress> more) {
    all_.push_back({std::move(host), std::move(port)});
    for (ControlAddress& a : more) {
        if (!(a == all_.front())) all_.push_back(std::move(a));
    }
}

bool ControlFailover::failed() {
    at_ = (at_ + 1) % all_.size();
    failures_ += 1;
    if (failures_ < all_.size()) return false;
    failures_ = 0;
    return true;
}

namespace {

constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

struct Call {
    const CaClientOptions& options;
    http::request<http::string_body> req;
    CaClientResult result;
};

}  // namespace

asio::awaitable<void> connect_control(beast::ssl_stream<beast::tcp_stream>& stream,
                                      const CaClientOptions& options) {
    auto fail = [](const std::string& what, const beast::error_code& ec) {
        std::string why = ec == beast::error::timeout ? std::string("timed out") : ec.message();
        throw std::runtime_error(what + ": " + why);
    };
    tcp::resolver resolver(co_await asio::this_coro::executor);
    auto [rec, endpoints] = co_await resolver.async_resolve(options.host, options.port, use_nothrow);
    if (rec) throw std::runtime_error("cannot resolve " + options.host + ": " + rec.message());
    beast::get_lowest_layer(stream).expires_after(options.timeout);
    auto [cec, ep] = co_await beast::get_lowest_layer(stream).async_connect(endpoints, use_nothrow);
    if (cec) fail("cannot connect to " + options.host + ":" + options.port, cec);
    beast::get_lowest_layer(stream).expires_after(options.timeout);
    auto [hec] = co_await stream.async_handshake(ssl::stream_base::client, use_nothrow);
    if (hec) fail("TLS handshake with " + options.host + " failed", hec);

    std::vector<Certificate> server_chain;
    if (STACK_OF(X509)* chain = SSL_get_peer_cert_chain(stream.native_handle())) {
        // On a client the peer chain starts with the server's leaf.
        for (int i = 0; i < sk_X509_num(chain); ++i) {
            server_chain.push_back(Certificate::share(sk_X509_value(chain, i)));
        }
    }
    auto id = verify_svid(server_chain, options.bundle, {{options.trust_domain}},
                          std::chrono::system_clock::now());
    if (!id) throw std::runtime_error("server certificate refused: " + id.error().message());
    auto expected = SpiffeId::for_service_account(options.trust_domain, "remora-system",
                                                  "remora-control");
    if (!expected || !(*id == *expected)) {
        throw std::runtime_error("server identity is " + id->str() + ", expected " +
                                 (expected ? expected->str() : std::string("the control plane")));
    }
}

void configure_client_context(ssl::context& ctx, const CaClientOptions& options) {
    SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
    // The server's SVID is checked with the SPIFFE rules, which OpenSSL's hostname-based
    // verification does not know; no request is written before that check passes.
    ctx.set_verify_mode(ssl::verify_none);
    if (options.client_key) {
        SSL_CTX* raw = ctx.native_handle();
        if (options.client_chain.empty() ||
            SSL_CTX_use_certificate(raw, options.client_chain.front().get()) != 1 ||
            SSL_CTX_use_PrivateKey(raw, options.client_key->get()) != 1) {
            throw std::runtime_error("client certificate and key do not match");
        }
        for (size_t i = 1; i < options.client_chain.size(); ++i) {
            SSL_CTX_add1_chain_cert(raw, options.client_chain[i].get());
        }
    }
}

namespace {

// Every step on the stream's own deadline (Beast's timeouts apply to asynchronous operations
// only, so the blocking API would wait forever on a silent server).
asio::awaitable<void> run_call(beast::ssl_stream<beast::tcp_stream>& stream, Call& call) {
    const CaClientOptions& options = call.options;
    auto fail = [](const std::string& what, const beast::error_code& ec) {
        std::string why = ec == beast::error::timeout ? std::string("timed out") : ec.message();
        throw std::runtime_error(what + ": " + why);
    };
    co_await connect_control(stream, options);

    beast::get_lowest_layer(stream).expires_after(options.timeout);
    auto [wec, wn] = co_await http::async_write(stream, call.req, use_nothrow);
    if (wec) fail("sending the request failed", wec);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);  // a config listing can be large
    beast::get_lowest_layer(stream).expires_after(options.timeout);
    auto [xec, xn] = co_await http::async_read(stream, buffer, parser, use_nothrow);
    if (xec) fail("reading the answer failed", xec);
    call.result = {static_cast<int>(parser.get().result_int()), parser.get().body(),
                   std::string(parser.get()[http::field::content_encoding])};
    // The answer is complete; a truncated close is not an error here.
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
    co_await stream.async_shutdown(use_nothrow);
}

}  // namespace

namespace {

http::request<http::string_body> make_request(const CaClientOptions& options,
                                              const std::string& method, const std::string& target,
                                              const std::string& body,
                                              const std::string& content_type, bool keep_alive) {
    http::verb verb = http::string_to_verb(method);
    if (verb == http::verb::unknown) throw std::runtime_error("unknown HTTP method " + method);
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, options.host);
    req.set(http::field::user_agent, "remoractl");
    if (!body.empty() || verb == http::verb::post) req.set(http::field::content_type, content_type);
    req.keep_alive(keep_alive);
    if (options.bearer_token) req.set(http::field::authorization, "Bearer " + *options.bearer_token);
    if (!options.accept_encoding.empty()) req.set(http::field::accept_encoding, options.accept_encoding);
    req.body() = body;
    req.prepare_payload();
    return req;
}

}  // namespace

CaClientResult call_control(const CaClientOptions& options, const std::string& method,
                            const std::string& target, const std::string& body,
                            const std::string& content_type) {
    asio::io_context io;
    ssl::context ctx(ssl::context::tls_client);
    configure_client_context(ctx, options);

    Call call{options, make_request(options, method, target, body, content_type, false), {}};

    beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
    SSL_set_tlsext_host_name(stream.native_handle(), options.host.c_str());
    if (options.canceller) {
        bool attached = options.canceller->attach([&io, &stream] {
            asio::post(io, [&stream] { beast::get_lowest_layer(stream).cancel(); });
        });
        if (!attached) throw std::runtime_error("cancelled");
    }
    std::exception_ptr error;
    asio::co_spawn(io, run_call(stream, call), [&error](std::exception_ptr e) { error = e; });
    io.run();
    if (options.canceller) options.canceller->detach();
    if (error) {
        if (options.canceller && options.canceller->cancelled()) throw std::runtime_error("cancelled");
        std::rethrow_exception(error);
    }
    return call.result;
}

struct ControlConnection::State {
    asio::io_context io{1};
    // The kept connection, the address it goes to and the client certificate it presented.
    std::shared_ptr<ssl::context> ctx;
    std::optional<beast::ssl_stream<beast::tcp_stream>> stream;
    beast::flat_buffer buffer;
    ControlAddress address;
    std::optional<Certificate> client_leaf;
    uint64_t call_seq = 0;  // a cancel posted for an earlier call must not end a later one
    std::atomic<uint64_t> calls{0}, opened{0}, reused{0}, closed_by_server{0};

    void drop() {
        if (stream) {
            boost::system::error_code ignored;
            beast::get_lowest_layer(*stream).socket().close(ignored);
        }
        stream.reset();
        buffer.clear();
    }

    // The kept connection is closed (EOF or reset waiting) or has something unasked for on it
    // (a TLS alert): the server ended it between calls. Looked at without blocking.
    bool closed_by_peer() {
        int fd = beast::get_lowest_layer(*stream).socket().native_handle();
        char c;
        ssize_t n = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    }

    bool same_client(const CaClientOptions& options) const {
        if (options.client_chain.empty() || !options.client_key) return !client_leaf;
        return client_leaf && X509_cmp(client_leaf->get(), options.client_chain.front().get()) == 0;
    }
};

namespace {

bool ended_by_peer(const beast::error_code& ec) {
    return ec == http::error::end_of_stream || ec == asio::error::eof ||
           ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
           ec == ssl::error::stream_truncated;
}

asio::awaitable<void> run_kept_call(ControlConnection::State& st, const CaClientOptions& options,
                                    http::request<http::string_body>& req, CaClientResult& result) {
    auto fail = [](const std::string& what, const beast::error_code& ec) {
        std::string why = ec == beast::error::timeout ? std::string("timed out") : ec.message();
        throw std::runtime_error(what + ": " + why);
    };
    for (int attempt = 0;; ++attempt) {
        bool kept = st.stream.has_value();
        if (kept && st.closed_by_peer()) {
            st.drop();
            st.closed_by_server += 1;
            kept = false;
        }
        if (!kept) {
            st.stream.emplace(st.io, *st.ctx);
            SSL_set_tlsext_host_name(st.stream->native_handle(), options.host.c_str());
            try {
                co_await connect_control(*st.stream, options);
            } catch (...) {
                st.drop();
                throw;
            }
            st.opened += 1;
        } else {
            st.reused += 1;
        }
        // A cancel posted while no operation was pending cancelled nothing: look before each
        // one (the flag is set before the cancel is posted, and this runs on the same thread).
        auto check_cancel = [&options] {
            if (options.canceller && options.canceller->cancelled()) {
                throw std::runtime_error("cancelled");
            }
        };
        check_cancel();
        auto& stream = *st.stream;
        // Only a kept connection's first failure, before any of the answer came, is the server
        // having closed it between calls; once is enough (a second is a real failure).
        const bool may_retry = kept && attempt == 0;
        beast::get_lowest_layer(stream).expires_after(options.timeout);
        auto [wec, wn] = co_await http::async_write(stream, req, use_nothrow);
        if (wec) {
            st.drop();
            if (may_retry && ended_by_peer(wec)) {
                st.closed_by_server += 1;
                continue;
            }
            fail("sending the request failed", wec);
        }
        http::response_parser<http::string_body> parser;
        parser.body_limit(64 * 1024 * 1024);
        check_cancel();
        beast::get_lowest_layer(stream).expires_after(options.timeout);
        auto [xec, xn] = co_await http::async_read(stream, st.buffer, parser, use_nothrow);
        if (xec) {
            const bool nothing_came = !parser.got_some();
            st.drop();
            if (may_retry && nothing_came && ended_by_peer(xec)) {
                st.closed_by_server += 1;
                continue;
            }
            fail("reading the answer failed", xec);
        }
        result = {static_cast<int>(parser.get().result_int()), parser.get().body(),
                  std::string(parser.get()[http::field::content_encoding])};
        if (!parser.get().keep_alive()) {
            beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
            co_await stream.async_shutdown(use_nothrow);
            st.drop();
        }
        co_return;
    }
}

}  // namespace

ControlConnection::ControlConnection() : state_(std::make_unique<State>()) {}

ControlConnection::~ControlConnection() {
    close();
}

void ControlConnection::close() {
    state_->drop();
}

ControlConnection::Counts ControlConnection::counts() const {
    return Counts{state_->calls.load(), state_->opened.load(), state_->reused.load(),
                  state_->closed_by_server.load()};
}

CaClientResult ControlConnection::call(const CaClientOptions& options, const std::string& method,
                                       const std::string& target, const std::string& body,
                                       const std::string& content_type) {
    State& st = *state_;
    auto req = make_request(options, method, target, body, content_type, true);
    const ControlAddress address{options.host, options.port};
    if (!st.ctx || !st.same_client(options)) {
        // A new (or the first) SVID: a new TLS context, and the kept connection, which presented
        // the old one, is closed.
        auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
        configure_client_context(*ctx, options);
        st.drop();
        st.ctx = std::move(ctx);
        st.client_leaf.reset();
        if (!options.client_chain.empty() && options.client_key) {
            st.client_leaf = options.client_chain.front();
        }
    }
    if (st.stream && !(st.address == address)) st.drop();
    st.address = address;

    const uint64_t seq = ++st.call_seq;
    if (options.canceller) {
        bool attached = options.canceller->attach([&st, seq] {
            asio::post(st.io, [&st, seq] {
                if (st.call_seq == seq && st.stream) beast::get_lowest_layer(*st.stream).cancel();
            });
        });
        if (!attached) throw std::runtime_error("cancelled");
    }
    CaClientResult result;
    std::exception_ptr error;
    asio::co_spawn(st.io, run_kept_call(st, options, req, result),
                   [&error](std::exception_ptr e) { error = e; });
    st.io.restart();
    st.io.run();
    ++st.call_seq;  // a cancel posted from now on finds no call of its own
    if (options.canceller) options.canceller->detach();
    if (error) {
        st.drop();
        if (options.canceller && options.canceller->cancelled()) throw std::runtime_error("cancelled");
        std::rethrow_exception(error);
    }
    st.calls += 1;
    return result;
}

IssuedSvid request_svid(const CaClientOptions& options, std::optional<std::chrono::seconds> ttl) {
    namespace json = boost::json;
    PrivateKey key = PrivateKey::generate_p256();
    json::object req;
    req["csr"] = Csr::create(key).to_pem();
    if (ttl) req["ttlSeconds"] = ttl->count();
    CaClientResult res = post_certificate_request(options, json::serialize(req));

    json::error_code jec;
    json::value doc = json::parse(res.body, jec);
    const json::object* obj = jec ? nullptr : doc.if_object();
    if (res.status != 200) {
        std::string why = res.body;
        if (obj && obj->if_contains("error") && obj->at("error").is_string()) {
            why = std::string(obj->at("error").as_string());
        }
        throw CaRefused(res.status, why);
    }
    const json::value* chain_v = obj ? obj->if_contains("certChain") : nullptr;
    if (!chain_v || !chain_v->is_array() || chain_v->as_array().empty()) {
        throw std::runtime_error("the CA's answer has no certChain array");
    }
    std::vector<Certificate> chain;
    for (const json::value& v : chain_v->as_array()) {
        if (!v.is_string()) throw std::runtime_error("certChain holds a non-string");
        auto c = Certificate::chain_from_pem(std::string(v.as_string()));
        if (!c) throw std::runtime_error("certChain entry: " + c.error().message());
        chain.insert(chain.end(), c->begin(), c->end());
    }
    // Check what came back before anyone uses it: it must be ours and it must verify.
    if (!(chain.front().public_key() == key.public_key())) {
        throw std::runtime_error("the issued certificate is not for the key this request generated");
    }
    auto id = verify_svid(chain, options.bundle, {{options.trust_domain}},
                          std::chrono::system_clock::now());
    if (!id) throw std::runtime_error("the issued certificate does not verify: " + id.error().message());
    return IssuedSvid{std::move(key), std::move(chain), *id};
}

}  // namespace remora::certs
