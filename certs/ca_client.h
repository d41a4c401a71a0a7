// remoractl's client for the CA API: TLS to remora-control, verifying the server's SVID against a
// trust bundle and the expected control-plane identity before any credential is sent.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "certs/keys.h"
#include "certs/spiffe_id.h"
#include "certs/verifier.h"

namespace remora::certs {

// Lets another thread end a call_control in progress (a proxy shutting down while its long-poll
// waits). Thread-safe; a cancelled canceller makes later calls fail at once.
class CallCanceller {
public:
    void cancel();
    bool cancelled() const;
    // Used by call_control: `fn` is what cancel() runs while the call is in progress.
    bool attach(std::function<void()> fn);
    void detach();

private:
    mutable std::mutex mu_;
    bool cancelled_ = false;
    std::function<void()> cancel_fn_;
};

// One control-plane address, HOST:PORT ([v6]:PORT).
struct ControlAddress {
    std::string host, port;
    std::string str() const { return host + ":" + port; }
    bool operator==(const ControlAddress&) const = default;
};
// "a:15012,b:15012" (several replicas) or "name:15012" (a DNS name with several addresses is tried
// address by address on connect). Throws std::invalid_argument naming the entry that is wrong.
std::vector<ControlAddress> parse_control_addresses(const std::string& text);

// The replicas a proxy's agents talk to, and the one in use: a failure moves to the next, a
// success stays. Not thread-safe: one per agent thread.
class ControlFailover {
public:
    ControlFailover(std::string host, std::string port, std::vector<ControlAddress> more);
    const ControlAddress& current() const { return all_[at_]; }
    // The call to current() failed: use the next address. True when it wrapped around (every
    // address failed once since the last success): time to back off.
    bool failed();
    void succeeded() { failures_ = 0; }
    std::size_t size() const { return all_.size(); }

private:
    std::vector<ControlAddress> all_;
    std::size_t at_ = 0, failures_ = 0;
};

struct CaClientOptions {
    std::string host;  // name or address; also the TLS SNI
    std::string port;
    TrustBundle bundle;
    std::string trust_domain = "cluster.local";
    std::optional<std::string> bearer_token;
    // The current SVID, presented over mTLS for a renewal.
    std::vector<Certificate> client_chain;
    std::optional<PrivateKey> client_key;
    // Deadline for each step: connect, TLS handshake, sending, and reading the whole answer.
    std::chrono::milliseconds timeout{30000};
    std::shared_ptr<CallCanceller> canceller;  // optional
    // Sent as Accept-Encoding when not empty (the subscriber's "gzip"); the answer's body is
    // returned as it came, with its Content-Encoding.
    std::string accept_encoding;
};

struct CaClientResult {
    int status = 0;
    std::string body;
    std::string content_encoding;  // the answer's Content-Encoding ("" = none)
};

// One request to the control plane's TLS API (`method` "GET", "POST", "DELETE"; `target` a path
// with an optional query). The server's SVID is verified as the control plane's before anything
// is sent. Throws std::runtime_error for connection, TLS and server-identity failures, naming the
// reason.
CaClientResult call_control(const CaClientOptions& options, const std::string& method,
                            const std::string& target, const std::string& body,
                            const std::string& content_type = "application/json");

// A connection to the control plane kept across calls (HTTP/1.1 keep-alive), for a caller that
// calls again and again: the proxy's config subscriber long-polls, and a new TLS connection per
// poll made every push cost the control plane one handshake per proxy. Each call is a blocking
// call_control on the kept connection: it connects and verifies the server's SVID when there is
// none, and connects anew when the address or the client SVID (options.client_chain's leaf)
// differs from the connection's, so a renewed SVID is presented on the next call. A kept
// connection the server closed between calls is replaced at once, once, without an error (found
// closed before the request is written, or ended before any byte of the answer came). Any other
// failure drops the connection and throws as call_control does; so does a cancel (the server
// may still answer the abandoned request, so that connection is never reused). One thread at a
// time; counts() from any thread.
class ControlConnection {
  public:
    ControlConnection();
    ~ControlConnection();
    ControlConnection(const ControlConnection&) = delete;
    ControlConnection& operator=(const ControlConnection&) = delete;

    CaClientResult call(const CaClientOptions& options, const std::string& method,
                        const std::string& target, const std::string& body,
                        const std::string& content_type = "application/json");
    // Closes the kept connection (the next call connects anew).
    void close();

    struct Counts {
        uint64_t calls = 0;             // answered
        uint64_t opened = 0;            // connections opened (TCP + TLS handshake + SVID check)
        uint64_t reused = 0;            // calls sent on a connection a previous call opened
        uint64_t closed_by_server = 0;  // kept connections found closed: replaced at once
    };
    Counts counts() const;

    struct State;  // defined in the .cc; public so the call's coroutine there can name it

  private:
    std::unique_ptr<State> state_;
};

// POSTs `body` to /v1/certificates (call_control).
CaClientResult post_certificate_request(const CaClientOptions& options, const std::string& body);

// The CA answered, and said no.
class CaRefused : public std::runtime_error {
public:
    CaRefused(int status, const std::string& why)
        : std::runtime_error("the CA refused (HTTP " + std::to_string(status) + "): " + why),
          status_(status) {}
    int status() const { return status_; }

private:
    int status_;
};

// A certificate the CA issued, checked: it is for `key` and verifies against the bundle.
struct IssuedSvid {
    PrivateKey key;
    std::vector<Certificate> chain;  // leaf first, as returned (ends with the root)
    SpiffeId id;
};

// Generates an ECDSA P-256 key and CSR, asks the CA, and checks the answer. Throws CaRefused when
// the CA says no, std::runtime_error for everything else (transport, malformed or wrong answer).
IssuedSvid request_svid(const CaClientOptions& options, std::optional<std::chrono::seconds> ttl);

}  // namespace remora::certs
