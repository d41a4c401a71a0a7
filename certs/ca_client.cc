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
    call.result = {static_cast<int>(parser.get().result_int()), parser.get().body()};
    // The answer is complete; a truncated close is not an error here.
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
    co_await stream.async_shutdown(use_nothrow);
}

}  // namespace

CaClientResult call_control(const CaClientOptions& options, const std::string& method,
                            const std::string& target, const std::string& body,
                            const std::string& content_type) {
    asio::io_context io;
    ssl::context ctx(ssl::context::tls_client);
    configure_client_context(ctx, options);

    http::verb verb = http::string_to_verb(method);
    if (verb == http::verb::unknown) throw std::runtime_error("unknown HTTP method " + method);
    Call call{options, {verb, target, 11}, {}};
    call.req.set(http::field::host, options.host);
    call.req.set(http::field::user_agent, "remoractl");
    if (!body.empty() || verb == http::verb::post)
        call.req.set(http::field::content_type, content_type);
    call.req.keep_alive(false);
    if (options.bearer_token)
        call.req.set(http::field::authorization, "Bearer " + *options.bearer_token);
    call.req.body() = body;
    call.req.prepare_payload();

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
