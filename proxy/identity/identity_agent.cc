// SVID loading, issuance and renewal for the proxy.
#include "proxy/identity/identity_agent.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace remora::proxy {
namespace {

std::string slurp(const std::string& path, const char* flag) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(std::string(flag) + " " + path + ": cannot read");
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string trim(std::string s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    return s;
}

}  // namespace

IdentityAgent::IdentityAgent(IdentityOptions options, TlsStore& store, WallClock clock, LogFn log,
                             uint64_t seed)
    : options_(std::move(options)), store_(store), clock_(std::move(clock)), log_(std::move(log)),
      rng_(seed),
      controls_(options_.control_host, options_.control_port, options_.more_controls) {
    auto bundle = certs::TrustBundle::from_pem(slurp(options_.trust_bundle_file, "--trust-bundle"));
    if (!bundle) {
        throw std::runtime_error("--trust-bundle " + options_.trust_bundle_file + ": " +
                                 bundle.error().message());
    }
    bundle_ = *bundle;
}

IdentityAgent::~IdentityAgent() { stop(); }

certs::SystemTime IdentityAgent::renewal_time(certs::SystemTime received, certs::SystemTime na,
                                              double jitter01) {
    auto life = na - received;
    if (life < std::chrono::seconds(2)) return received + std::chrono::seconds(1);
    auto jitter =
        std::chrono::duration_cast<certs::SystemTime::duration>(life * 0.01 * (2 * jitter01 - 1));
    return received + life / 2 + jitter;
}

void IdentityAgent::start() {
    if (options_.control_host.empty()) {
        auto chain = certs::Certificate::chain_from_pem(slurp(options_.cert_chain_file, "--cert-chain"));
        if (!chain) throw std::runtime_error("--cert-chain " + options_.cert_chain_file + ": " + chain.error().message());
        auto key = certs::PrivateKey::from_pem(slurp(options_.key_file, "--key"));
        if (!key) throw std::runtime_error("--key " + options_.key_file + ": " + key.error().message());
        auto snap = make_tls_snapshot(*chain, *key, bundle_, options_.trust_domain, clock_);
        log_("identity " + snap->id.str() + " from files, serial=" + snap->leaf().serial_hex() +
             " not_after=" + certs::format_time(snap->leaf().not_after()));
        store_.publish(std::move(snap));
        return;
    }
    thread_ = std::thread([this] { run(); });
}

void IdentityAgent::stop() {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

bool IdentityAgent::sleep_until(certs::SystemTime deadline) {
    std::unique_lock lock(mu_);
    // The wall clock decides certificate times; waiting in steady time for the same span keeps a
    // clock step from turning into a busy loop.
    auto span = deadline - clock_();
    if (span < std::chrono::milliseconds(0)) span = std::chrono::milliseconds(0);
    cv_.wait_for(lock, span, [this] { return stopping_; });
    return !stopping_;
}

void IdentityAgent::publish(const certs::IssuedSvid& svid) {
    auto snap = make_tls_snapshot(svid.chain, svid.key, bundle_, options_.trust_domain, clock_);
    log_("identity " + snap->id.str() + " from the CA, serial=" + snap->leaf().serial_hex() +
         " not_after=" + certs::format_time(snap->leaf().not_after()));
    store_.publish(std::move(snap));
}

bool IdentityAgent::fetch(bool renewal) {
    certs::CaClientOptions opts;
    opts.bundle = bundle_;
    opts.trust_domain = options_.trust_domain;
    auto current = store_.current();
    if (renewal && current) {
        opts.client_chain = current->chain;
        opts.client_key = current->key;
    } else {
        opts.bearer_token = trim(slurp(options_.token_file, "--token-file"));
    }
    // Each replica once: one that cannot be reached hands over to the next at once; the caller
    // backs off when none answered.
    for (std::size_t tried = 0; tried < controls_.size(); ++tried) {
        const certs::ControlAddress& control = controls_.current();
        opts.host = control.host;
        opts.port = control.port;
        const std::string where = controls_.size() > 1 ? " (" + control.str() + ")" : std::string();
        try {
            certs::IssuedSvid svid = certs::request_svid(opts, options_.ttl);
            controls_.succeeded();
            if ((!options_.expected_ns.empty() && svid.id.ns() != options_.expected_ns) ||
                (!options_.expected_sa.empty() && svid.id.service_account() != options_.expected_sa)) {
                log_("the CA issued " + svid.id.str() + ", but this proxy runs as ns " +
                     options_.expected_ns + " sa " + options_.expected_sa + "; not using it");
                (renewal ? renewal_failures_ : request_failures_).fetch_add(1, std::memory_order_relaxed);
                return false;
            }
            publish(svid);
            (renewal ? renewals_ : requests_).fetch_add(1, std::memory_order_relaxed);
            return true;
        } catch (const certs::CaRefused& e) {
            (renewal ? renewal_failures_ : request_failures_).fetch_add(1, std::memory_order_relaxed);
            log_(std::string(renewal ? "certificate renewal" : "certificate request") + where + " failed: " + e.what());
            if (e.status() < 500) return false;  // a refusal: another replica says the same
        } catch (const std::exception& e) {
            (renewal ? renewal_failures_ : request_failures_).fetch_add(1, std::memory_order_relaxed);
            log_(std::string(renewal ? "certificate renewal" : "certificate request") + where + " failed: " + e.what());
        }
        if (controls_.size() == 1) return false;
        controls_.failed();
    }
    return false;
}

void IdentityAgent::run() {
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    auto backoff = std::chrono::seconds(1);
    for (;;) {
        auto current = store_.current();
        bool ok;
        if (!current) {
            ok = fetch(false);
        } else {
            // Renew with the current certificate; if the CA no longer takes it, the token may.
            ok = fetch(true) || fetch(false);
        }
        certs::SystemTime next;
        if (ok) {
            backoff = std::chrono::seconds(1);
            auto snap = store_.current();
            next = renewal_time(clock_(), snap->leaf().not_after(), unit(rng_));
        } else {
            next = clock_() + backoff;
            backoff = std::min(backoff * 2, std::chrono::seconds(30));
            // Never wait past the current certificate's expiry without trying again.
            if (current && current->leaf().not_after() < next) next = current->leaf().not_after();
        }
        if (!sleep_until(next)) return;
    }
}

}  // namespace remora::proxy
