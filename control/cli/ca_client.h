// remoractl's client for the CA API: TLS to remora-control, verifying the server's SVID against a
// trust bundle and the expected control-plane identity before any credential is sent.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "certs/keys.h"
#include "certs/verifier.h"

namespace remora::control {

struct CaClientOptions {
    std::string host;  // name or address; also the TLS SNI
    std::string port;
    certs::TrustBundle bundle;
    std::string trust_domain = "cluster.local";
    std::optional<std::string> bearer_token;
    // The current SVID, presented over mTLS for a renewal.
    std::vector<certs::Certificate> client_chain;
    std::optional<certs::PrivateKey> client_key;
};

struct CaClientResult {
    int status = 0;
    std::string body;
};

// POSTs `body` to /v1/certificates. Throws std::runtime_error for connection, TLS and
// server-identity failures, naming the reason.
CaClientResult post_certificate_request(const CaClientOptions& options, const std::string& body);

}  // namespace remora::control
