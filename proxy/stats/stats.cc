// Counter names and the merged rendering for /stats.
#include "proxy/stats/stats.h"

#include <sstream>

namespace remora::proxy {

const char* counter_name(Counter c) {
    static constexpr const char* kNames[] = {
        "downstream_cx_total",         "downstream_cx_active",
        "downstream_cx_passthrough",   "downstream_cx_refused_plaintext",
        "downstream_rq_total",         "downstream_rq_active",        "downstream_rq_2xx",
        "downstream_rq_3xx",           "downstream_rq_4xx",
        "downstream_rq_5xx",           "downstream_rq_bad_request",
        "downstream_rq_headers_too_large", "downstream_rq_header_timeout",
        "downstream_rq_idle_timeout", "downstream_rq_timeout",
        "upstream_cx_total",           "upstream_cx_connect_fail",
        "upstream_cx_pool_hit",        "upstream_cx_closed_dirty",
        "upstream_rq_total",
        "upstream_rq_reset",           "tls_handshake_ok",
        "tls_handshake_fail",          "rq_flag_NR",
        "rq_flag_UH",                  "rq_flag_UF",
        "rq_flag_UC",                  "rq_flag_UT",
        "rq_flag_FI",                  "rq_flag_DI",
        "rq_flag_URX",                 "upstream_rq_retry",
        "rq_flag_UO",                  "upstream_rq_retry_overflow",
        "outlier_detection.ejections_enforced_total", "outlier_detection.ejections_overflow",
        "retry_or_shadow_abandoned",   "upstream_rq_mirror",
        "upstream_rq_mirror_failed",   "upstream_rq_mirror_overflow",
        "rbac_allowed",                "rbac_denied",
        "rbac_audited",                "downstream_cx_blackhole",
        "downstream_rq_blackhole",
        "downstream_cx_tcp",           "downstream_cx_tcp_rbac_denied",
        "downstream_cx_peer_exchange_failed", "tcp_idle_timeout",
        "downstream_cx_detected_http1", "downstream_cx_detected_http2",
        "downstream_cx_detected_tls",  "downstream_cx_detected_tcp",
        "downstream_cx_detect_timeout", "downstream_cx_upgrades", "downstream_cx_http2",
        "downstream_rq_http2", "upstream_cx_http2", "upstream_rq_http2",
        "downstream_cx_tls_passthrough", "tls_sni_route",
    };
    static_assert(std::size(kNames) == static_cast<size_t>(Counter::kCount));
    return kNames[static_cast<size_t>(c)];
}

void WorkerStats::tls_failure(std::string_view reason) {
    inc(Counter::tls_handshake_fail);
    std::lock_guard lock(failures_mu_);
    auto it = failures_.find(reason);
    if (it == failures_.end()) it = failures_.emplace(std::string(reason), 0).first;
    ++it->second;
}

std::map<std::string, uint64_t> WorkerStats::tls_failures() const {
    std::lock_guard lock(failures_mu_);
    return {failures_.begin(), failures_.end()};
}

std::string render_stats(const std::vector<const WorkerStats*>& workers, bool json,
                         const std::map<std::string, uint64_t>& extra) {
    std::map<std::string, uint64_t> total = extra;
    for (size_t i = 0; i < static_cast<size_t>(Counter::kCount); ++i) {
        uint64_t sum = 0;
        for (const WorkerStats* w : workers) sum += w->get(static_cast<Counter>(i));
        total[std::string("remora.") + counter_name(static_cast<Counter>(i))] = sum;
    }
    for (const WorkerStats* w : workers) {
        for (const auto& [reason, n] : w->tls_failures()) {
            total["remora.tls_handshake_fail." + reason] += n;
        }
    }
    std::ostringstream out;
    if (json) {
        out << "{";
        bool first = true;
        for (const auto& [name, n] : total) {
            out << (first ? "" : ",") << "\"" << name << "\":" << n;
            first = false;
        }
        out << "}";
    } else {
        for (const auto& [name, n] : total) out << name << ": " << n << "\n";
    }
    return out.str();
}

std::string render_stats_prometheus(const std::vector<const WorkerStats*>& workers) {
    std::ostringstream out;
    for (size_t i = 0; i < static_cast<size_t>(Counter::kCount); ++i) {
        auto c = static_cast<Counter>(i);
        if (c == Counter::tls_handshake_fail) continue;  // by reason, below
        uint64_t sum = 0;
        for (const WorkerStats* w : workers) sum += w->get(c);
        std::string name = std::string("remora_") + counter_name(c);
        for (char& ch : name) ch = ch == '.' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        const bool gauge = c == Counter::downstream_cx_active || c == Counter::downstream_rq_active;
        if (!gauge && !name.ends_with("_total")) name += "_total";
        out << "# HELP " << name << " remora." << counter_name(c) << " of /stats, summed over workers.\n"
            << "# TYPE " << name << (gauge ? " gauge\n" : " counter\n") << name << " " << sum << "\n";
    }
    std::map<std::string, uint64_t> reasons;
    for (const WorkerStats* w : workers) {
        for (const auto& [reason, n] : w->tls_failures()) reasons[reason] += n;
    }
    out << "# HELP remora_tls_handshake_fail_total TLS handshakes refused, by reason.\n"
        << "# TYPE remora_tls_handshake_fail_total counter\n";
    if (reasons.empty()) out << "remora_tls_handshake_fail_total{reason=\"none\"} 0\n";
    for (const auto& [reason, n] : reasons) {
        out << "remora_tls_handshake_fail_total{reason=\"" << reason << "\"} " << n << "\n";
    }
    return out.str();
}

}  // namespace remora::proxy
