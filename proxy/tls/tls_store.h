// The proxy's TLS state: the current SVID and trust bundle as an immutable snapshot with ready-made
// server and client contexts, published through an atomic shared_ptr. A connection takes the
// newest snapshot when it starts and keeps it; before the first certificate, there is none, and
// every mTLS handshake is refused.
#pragma once

#include <boost/asio/ssl/context.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "certs/keys.h"
#include "certs/spiffe_id.h"
#include "certs/verifier.h"

namespace remora::proxy {

using WallClock = std::function<certs::SystemTime()>;

struct TlsSnapshot {
    certs::SpiffeId id;
    std::vector<certs::Certificate> chain;  // leaf first, without the root
    certs::PrivateKey key;
    certs::TrustBundle bundle;
    std::string trust_domain;
    // Inbound: require a client SVID. Outbound: verify the server's SVID.
    std::shared_ptr<boost::asio::ssl::context> server;
    std::shared_ptr<boost::asio::ssl::context> client;

    const certs::Certificate& leaf() const { return chain.front(); }
};

// Builds both contexts; verification of peers uses certs::verify_svid with `clock`.
std::shared_ptr<const TlsSnapshot> make_tls_snapshot(std::vector<certs::Certificate> chain,
                                                     certs::PrivateKey key,
                                                     certs::TrustBundle bundle,
                                                     std::string trust_domain, WallClock clock);

// The reason the last peer verification on this thread failed (for counters and logs).
certs::error_code last_verify_error();

// The SPIFFE ID in a verified peer's leaf certificate, if any.
std::optional<std::string> peer_spiffe_id(SSL* ssl);

class TlsStore {
public:
    std::shared_ptr<const TlsSnapshot> current() const { return snapshot_.load(); }
    void publish(std::shared_ptr<const TlsSnapshot> s) { snapshot_.store(std::move(s)); }

private:
    std::atomic<std::shared_ptr<const TlsSnapshot>> snapshot_;
};

}  // namespace remora::proxy
