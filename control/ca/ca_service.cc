// CA request handling: JSON in, authentication, issuance, JSON out.
#include "control/ca/ca_service.h"

#include <boost/json.hpp>

#include <sstream>

namespace remora::control {
using namespace remora::certs;
namespace json = boost::json;

namespace {

std::string error_json(std::string_view message) {
    json::object o;
    o["error"] = message;
    return json::serialize(o);
}

std::string prom_escape(std::string_view v) {
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

}  // namespace

void CaMetrics::refused(std::string_view reason) {
    std::lock_guard lock(mu_);
    auto it = refused_.find(reason);
    if (it == refused_.end()) it = refused_.emplace(std::string(reason), 0).first;
    ++it->second;
}

uint64_t CaMetrics::refused_count(std::string_view reason) const {
    std::lock_guard lock(mu_);
    auto it = refused_.find(reason);
    return it == refused_.end() ? 0 : it->second;
}

std::string CaMetrics::prometheus(const Certificate& root) const {
    std::ostringstream out;
    out << "# HELP remora_ca_certificates_issued_total Workload certificates the CA signed.\n"
        << "# TYPE remora_ca_certificates_issued_total counter\n"
        << "remora_ca_certificates_issued_total " << issued_count() << "\n";
    out << "# HELP remora_ca_requests_refused_total Certificate requests refused, by reason.\n"
        << "# TYPE remora_ca_requests_refused_total counter\n";
    {
        std::lock_guard lock(mu_);
        for (const auto& [reason, n] : refused_) {
            out << "remora_ca_requests_refused_total{reason=\"" << prom_escape(reason) << "\"} "
                << n << "\n";
        }
    }
    out << "# HELP remora_ca_root_cert_expiry_timestamp_seconds When the root certificate "
           "expires.\n"
        << "# TYPE remora_ca_root_cert_expiry_timestamp_seconds gauge\n"
        << "remora_ca_root_cert_expiry_timestamp_seconds "
        << std::chrono::duration_cast<std::chrono::seconds>(root.not_after().time_since_epoch())
               .count()
        << "\n";
    return out.str();
}

CertificateAuthority::CertificateAuthority(Signer signer, Jwks trusted_keys, CaConfig config,
                                           Clock clock, Logger log)
    : signer_(std::move(signer)),
      bundle_({signer_.root()}),
      trusted_keys_(std::move(trusted_keys)),
      config_(std::move(config)),
      clock_(std::move(clock)),
      log_(std::move(log)) {}

Result<SpiffeId> CertificateAuthority::authenticate(const Caller& caller, Refusal& why) const {
    if (caller.authorization) {
        std::string_view auth = *caller.authorization;
        constexpr std::string_view kBearer = "Bearer ";
        if (auth.size() <= kBearer.size() ||
            !std::equal(kBearer.begin(), kBearer.end(), auth.begin(),
                        [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
            why = {401, "bad_authorization", "Authorization must be \"Bearer <JWT>\""};
            return make_reason(JwtErrc::malformed);
        }
        auto sa = verify_service_account_token(auth.substr(kBearer.size()), trusted_keys_,
                                               JwtPolicy{}, clock_());
        if (!sa) {
            why = {401, "jwt_" + std::string(reason_token(sa.error())),
                   "bootstrap token refused: " + sa.error().message()};
            return sa.error();
        }
        auto id = SpiffeId::for_service_account(config_.trust_domain, sa->ns, sa->name);
        if (!id) {
            why = {403, "identity_invalid",
                   "token names a service account that is not a valid SPIFFE ID: " +
                       id.error().message()};
            return id.error();
        }
        return id;
    }
    if (!caller.peer_chain.empty()) {
        auto id = verify_svid(caller.peer_chain, bundle_, VerifyOptions{{config_.trust_domain}},
                              clock_());
        if (!id) {
            why = {401, "svid_" + std::string(reason_token(id.error())),
                   "client certificate refused: " + id.error().message()};
            return id.error();
        }
        if (!id->ns() || !id->service_account()) {
            why = {403, "identity_not_workload",
                   "client certificate identity " + id->str() + " is not ns/<ns>/sa/<sa>"};
            return make_reason(SvidErrc::invalid_spiffe_id);
        }
        return id;
    }
    why = {401, "no_credentials",
           "no credentials: send Authorization: Bearer <JWT>, or renew over mTLS with the current "
           "certificate"};
    return make_reason(JwtErrc::malformed);
}

CaResponse CertificateAuthority::refuse(const Caller& caller, const Refusal& why) {
    metrics_.refused(why.reason);
    log_("refused certificate request from " + caller.remote + ": " + why.reason + ": " +
         why.message);
    return {why.status, error_json(why.message)};
}

CaResponse CertificateAuthority::sign(const Caller& caller, std::string_view body) {
    Refusal why;
    auto id = authenticate(caller, why);
    if (!id) return refuse(caller, why);

    if (body.size() > config_.max_body_bytes) {
        return refuse(caller, {413, "body_too_large", "request body is larger than 64 KiB"});
    }
    json::error_code jec;
    json::value doc = json::parse(body, jec);
    if (jec || !doc.is_object()) {
        return refuse(caller, {400, "malformed_request", "request body must be a JSON object"});
    }
    const json::object& req = doc.as_object();
    const json::value* csr_v = req.if_contains("csr");
    if (!csr_v || !csr_v->is_string()) {
        return refuse(caller, {400, "malformed_request", "\"csr\" must be a PEM string"});
    }
    std::chrono::seconds ttl = config_.default_ttl;
    if (const json::value* t = req.if_contains("ttlSeconds")) {
        if (!t->is_int64() && !t->is_uint64()) {
            return refuse(caller, {400, "malformed_request", "\"ttlSeconds\" must be an integer"});
        }
        int64_t v = t->is_int64()
                        ? t->as_int64()
                        : static_cast<int64_t>(std::min<uint64_t>(t->as_uint64(), INT64_MAX));
        if (v <= 0) return refuse(caller, {400, "bad_ttl", "\"ttlSeconds\" must be positive"});
        if (v > config_.max_ttl.count()) {
            return refuse(caller, {400, "ttl_too_large",
                                   "\"ttlSeconds\" " + std::to_string(v) + " exceeds the maximum " +
                                       std::to_string(config_.max_ttl.count())});
        }
        ttl = std::chrono::seconds(v);
    }
    auto csr = Csr::parse_pem(json::string_view(csr_v->as_string()));
    if (!csr) {
        return refuse(caller, {400, "csr_" + std::string(reason_token(csr.error())),
                               "CSR refused: " + csr.error().message()});
    }

    auto leaf = issue_svid(signer_, csr->public_key(), *id, clock_(), {ttl, {}});
    if (!leaf) {
        return refuse(caller, {500, "issue_" + std::string(reason_token(leaf.error())),
                               "cannot issue: " + leaf.error().message()});
    }
    metrics_.issued();
    std::string asked;
    for (const std::string& uri : csr->requested_uris()) {
        if (uri != id->str()) asked = " (CSR asked for " + uri + ", ignored)";
    }
    log_("issued certificate serial=" + leaf->serial_hex() + " identity=" + id->str() +
         " not_after=" + format_time(leaf->not_after()) + " to " + caller.remote + asked);

    json::array chain;
    for (const Certificate& c : chain_for(signer_, *leaf))
        chain.emplace_back(c.to_pem());
    json::object out;
    out["certChain"] = std::move(chain);
    return {200, json::serialize(out)};
}

Certificate CertificateAuthority::issue_own(const PublicKey& key, const SpiffeId& id,
                                            std::chrono::seconds ttl,
                                            const std::vector<std::string>& dns) {
    auto leaf = issue_svid(signer_, key, id, clock_(), {ttl, dns});
    if (!leaf)
        throw std::runtime_error("cannot issue the control plane's own certificate: " +
                                 leaf.error().message());
    return *leaf;
}

}  // namespace remora::control
