// The http2 error category: messages and the retryable rule.
#include "proxy/http2/errors.h"

#include <string>

namespace remora::proxy::http2 {

namespace {

class Category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "remora.http2"; }
    std::string message(int ev) const override {
        switch (static_cast<Http2Error>(ev)) {
            case Http2Error::refused_stream: return "stream refused by the peer (safe to retry)";
            case Http2Error::going_away: return "connection is going away";
            case Http2Error::no_capacity: return "connection has no stream capacity";
            case Http2Error::stream_reset: return "stream reset by the peer";
            case Http2Error::connection_closed: return "connection closed";
            case Http2Error::stream_closed: return "stream already ended";
            case Http2Error::head_not_sent: return "no open body on this stream";
            case Http2Error::submit_failed: return "could not queue the frame";
            case Http2Error::protocol_error: return "HTTP/2 protocol error";
            case Http2Error::limit_exceeded: return "HTTP/2 limit exceeded by the peer";
            case Http2Error::connect_failed: return "upstream connect failed";
            case Http2Error::pool_overflow: return "HTTP/2 pool overflow";
        }
        return "unknown http2 error";
    }
};

}  // namespace

const boost::system::error_category& http2_category() noexcept {
    static const Category category;
    return category;
}

bool is_retryable(const boost::system::error_code& ec) noexcept {
    return ec == Http2Error::refused_stream || ec == Http2Error::going_away ||
           ec == Http2Error::no_capacity;
}

}  // namespace remora::proxy::http2
