// TLS contexts whose peer verification is the SPIFFE check from certs/, not OpenSSL's hostname one.
#include "proxy/tls/tls_store.h"

#include <openssl/ssl.h>

#include <stdexcept>
#include <string_view>

namespace remora::proxy {
namespace ssl = boost::asio::ssl;

namespace {

thread_local certs::error_code t_last_verify_error;

// What the verify callback needs; owned by the snapshot's contexts through ex_data-free capture:
// the callback argument points at it and the contexts keep it alive via the shared_ptr below.
struct VerifyState {
    certs::TrustBundle bundle;
    certs::VerifyOptions options;
    WallClock clock;
};

int verify_peer(X509_STORE_CTX* ctx, void* arg) {
    auto* state = static_cast<VerifyState*>(arg);
    std::vector<certs::Certificate> chain;
    if (X509* leaf = X509_STORE_CTX_get0_cert(ctx)) chain.push_back(certs::Certificate::share(leaf));
    if (STACK_OF(X509)* rest = X509_STORE_CTX_get0_untrusted(ctx)) {
        for (int i = 0; i < sk_X509_num(rest); ++i) {
            X509* c = sk_X509_value(rest, i);
            if (!chain.empty() && X509_cmp(c, chain.front().get()) == 0) continue;
            chain.push_back(certs::Certificate::share(c));
        }
    }
    auto id = certs::verify_svid(chain, state->bundle, state->options, state->clock());
    if (!id) {
        t_last_verify_error = id.error();
        X509_STORE_CTX_set_error(ctx, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    t_last_verify_error = {};
    return 1;
}

void configure(SSL_CTX* raw, const std::vector<certs::Certificate>& chain,
               const certs::PrivateKey& key, VerifyState* state) {
    SSL_CTX_set_min_proto_version(raw, TLS1_2_VERSION);
    SSL_CTX_set_options(raw, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    if (SSL_CTX_use_certificate(raw, chain.front().get()) != 1 ||
        SSL_CTX_use_PrivateKey(raw, key.get()) != 1 || SSL_CTX_check_private_key(raw) != 1) {
        throw std::runtime_error("TLS context: certificate and key do not match: " +
                                 certs::ossl::last_error());
    }
    for (size_t i = 1; i < chain.size(); ++i) SSL_CTX_add1_chain_cert(raw, chain[i].get());
    SSL_CTX_set_verify(raw, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    SSL_CTX_set_cert_verify_callback(raw, verify_peer, state);
}

// The inbound side's ALPN choice among what the peer sidecar offers, in this order: a TCP tunnel
// with the metadata exchange, a plain TCP tunnel, HTTP/2 (multiplexed requests), HTTP/1.1.
// Offering none of them (or no ALPN at all) means HTTP/1.1, as before ALPN was used.
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
    static constexpr std::string_view kPreference[] = {"istio-peer-exchange", "istio", "h2", "http/1.1"};
    for (std::string_view want : kPreference) {
        for (unsigned int i = 0; i < inlen;) {
            const unsigned int len = in[i];
            if (i + 1 + len > inlen) break;
            if (std::string_view(reinterpret_cast<const char*>(in + i + 1), len) == want) {
                *out = in + i + 1;
                *outlen = static_cast<unsigned char>(len);
                return SSL_TLSEXT_ERR_OK;
            }
            i += 1 + len;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace

std::shared_ptr<const TlsSnapshot> make_tls_snapshot(std::vector<certs::Certificate> chain,
                                                     certs::PrivateKey key,
                                                     certs::TrustBundle bundle,
                                                     std::string trust_domain, WallClock clock) {
    if (chain.empty()) throw std::runtime_error("TLS context: empty certificate chain");
    auto id = certs::verify_svid(chain, bundle, {{trust_domain}}, clock());
    if (!id) {
        throw std::runtime_error("own certificate does not verify against the trust bundle: " +
                                 id.error().message());
    }
    // Drop a trailing self-signed root: peers have it already.
    if (chain.size() > 1 && chain.back().is_self_signed()) chain.pop_back();
    auto state = std::make_shared<VerifyState>(VerifyState{bundle, {{trust_domain}}, clock});

    auto server = std::shared_ptr<ssl::context>(new ssl::context(ssl::context::tls_server),
                                                [state](ssl::context* c) { delete c; });
    configure(server->native_handle(), chain, key, state.get());
    // No TLS 1.3 session tickets: upstream connections are long-lived and pooled, so resumption
    // buys little, and a ticket arriving on an idle pooled connection would look like a dead one.
    SSL_CTX_set_num_tickets(server->native_handle(), 0);
    SSL_CTX_set_options(server->native_handle(), SSL_OP_NO_TICKET);
    SSL_CTX_set_alpn_select_cb(server->native_handle(), select_alpn, nullptr);

    auto client = std::shared_ptr<ssl::context>(new ssl::context(ssl::context::tls_client),
                                                [state](ssl::context* c) { delete c; });
    configure(client->native_handle(), chain, key, state.get());

    return std::make_shared<const TlsSnapshot>(TlsSnapshot{*id, std::move(chain), std::move(key),
                                                           std::move(bundle), std::move(trust_domain),
                                                           std::move(server), std::move(client)});
}

certs::error_code last_verify_error() { return t_last_verify_error; }

std::optional<std::string> peer_spiffe_id(SSL* ssl) {
    X509* leaf = SSL_get0_peer_certificate(ssl);
    if (!leaf) return std::nullopt;
    auto uris = certs::Certificate::share(leaf).uri_sans();
    if (uris.size() != 1) return std::nullopt;
    return uris.front();
}

}  // namespace remora::proxy
