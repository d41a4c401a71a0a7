// The HTTP/2 codec's errors as boost::system::error_code values, with the one question the router
// asks of them: may this request be retried on another connection?
#pragma once

#include <boost/system/error_code.hpp>

#include <type_traits>

namespace remora::proxy::http2 {

enum class Http2Error {
    refused_stream = 1,  // peer sent REFUSED_STREAM, or the stream was above GOAWAY's last id, or
                         // its HEADERS never left: the peer did not process it, safe to retry
    going_away,          // open() on a connection that sent or received GOAWAY: nothing was sent
    no_capacity,         // open() on a connection at the peer's SETTINGS_MAX_CONCURRENT_STREAMS
    stream_reset,        // the peer reset the stream (other than REFUSED_STREAM)
    connection_closed,   // the connection ended before the stream completed
    stream_closed,       // a write after this side already ended the stream
    head_not_sent,       // write_body/write_trailers before write_head (or after end_stream)
    submit_failed,       // nghttp2 refused to queue a frame (bad header field, ids exhausted)
    protocol_error,      // the peer broke HTTP/2; the connection is closed with GOAWAY
    limit_exceeded,      // the peer hit one of Http2Limits; the connection is closed with GOAWAY
    connect_failed,      // the pool's connect function failed
    pool_overflow,       // the pool is at max_connections_per_key and every connection is full
};

const boost::system::error_category& http2_category() noexcept;

inline boost::system::error_code make_error_code(Http2Error e) noexcept {
    return {static_cast<int>(e), http2_category()};
}

// True when the request did not reach the peer's application and may be sent again elsewhere.
bool is_retryable(const boost::system::error_code& ec) noexcept;

}  // namespace remora::proxy::http2

template <>
struct boost::system::is_error_code_enum<remora::proxy::http2::Http2Error> : std::true_type {};
