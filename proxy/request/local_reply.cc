// Local replies in HTTP/1.1, HTTP/2 and gRPC.
#include "proxy/request/local_reply.h"

#include <string>

namespace remora::proxy {

LocalReply reply_for(ProxyError e) {
    const ErrorInfo info = describe(e);
    return LocalReply{info.status, info.flag, info.body, {}, std::nullopt};
}

void count_status(WorkerStats& stats, unsigned status) {
    if (status >= 500) stats.inc(Counter::downstream_rq_5xx);
    else if (status >= 400) stats.inc(Counter::downstream_rq_4xx);
    else if (status >= 300) stats.inc(Counter::downstream_rq_3xx);
    else if (status >= 200) stats.inc(Counter::downstream_rq_2xx);
}

void count_flag(WorkerStats& stats, std::string_view flag) {
    if (flag == "NR") stats.inc(Counter::rq_flag_nr);
    else if (flag == "UH") stats.inc(Counter::rq_flag_uh);
    else if (flag == "UF") stats.inc(Counter::rq_flag_uf);
    else if (flag == "UC") stats.inc(Counter::rq_flag_uc);
    else if (flag == "UT") stats.inc(Counter::rq_flag_ut);
    else if (flag == "FI") stats.inc(Counter::rq_flag_fi);
    else if (flag == "DI") stats.inc(Counter::rq_flag_di);
    else if (flag == "URX") stats.inc(Counter::rq_flag_urx);
    else if (flag == "UO") stats.inc(Counter::rq_flag_uo);
    else if (flag == "RBAC") stats.inc(Counter::rbac_denied);
}

namespace {

// grpc-message is percent-encoded (gRPC's HTTP/2 protocol spec); a trailing newline is dropped.
std::string grpc_message(std::string_view body) {
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.remove_suffix(1);
    std::string out;
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (unsigned char c : body) {
        if (c >= 0x20 && c <= 0x7e && c != '%') {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 15]);
        }
    }
    return out;
}

}  // namespace

boost::asio::awaitable<void> send_local_reply(http::ServerStream& down, const LocalReply& reply,
                                              RequestRecord& rec, WorkerStats& stats) {
    rec.status = reply.status;
    if (!reply.flag.empty()) rec.flags = reply.flag;
    count_status(stats, reply.status);
    count_flag(stats, reply.flag);
    if (down.head_sent()) {  // too late for a reply: the client sees the stream cut
        down.reset();
        co_return;
    }
    http::ResponseHead head;
    head.headers.add("server", "remora");
    if (!reply.flag.empty()) head.headers.add("x-remora-response-flags", reply.flag);
    if (http::is_grpc(down.head())) {
        // Trailers-only: the status rides in the head and the stream ends there.
        const uint32_t code = reply.grpc_status ? *reply.grpc_status : grpc_status_for_http(reply.status);
        rec.grpc_status = std::to_string(code);
        head.status = 200;
        head.headers.add("content-type", "application/grpc");
        head.headers.add("grpc-status", rec.grpc_status);
        const std::string message = grpc_message(reply.body);
        if (!message.empty()) head.headers.add("grpc-message", message);
        rec.response_body_bytes = 0;
        co_await down.send_head(head, true);
        co_return;
    }
    head.status = reply.status;
    head.headers.add("content-type", "text/plain");
    if (!reply.location.empty()) head.headers.add("location", reply.location);
    head.headers.add("content-length", std::to_string(reply.body.size()));
    rec.response_body_bytes = reply.body.size();
    if (reply.body.empty() || down.head().method == "HEAD") {
        co_await down.send_head(head, true);
        co_return;
    }
    if (auto ec = co_await down.send_head(head, false)) co_return;
    co_await down.send_body(reply.body, true);
}

}  // namespace remora::proxy
