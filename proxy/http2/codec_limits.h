// Named bounds of the HTTP/2 codec (defaults as Envoy's) and the counters that say when each was
// hit; one Http2Stats per worker, shared by that worker's connections (single-threaded, no atomics).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace remora::proxy::http2 {

struct Http2Limits {
    // Advertised in SETTINGS; the server refuses streams beyond it with RST_STREAM(REFUSED_STREAM).
    // Clients assume it for the peer until the peer's SETTINGS arrive.
    uint32_t max_concurrent_streams = 100;
    uint32_t max_header_list_bytes = 60 * 1024;        // decoded size; over it: GOAWAY
    uint32_t header_table_bytes = 4096;                // HPACK dynamic table (SETTINGS)
    uint32_t initial_stream_window = 256 * 1024;       // per-stream receive window
    uint32_t initial_connection_window = 1024 * 1024;  // connection receive window
    // SETTINGS ACK, PING ACK and RST_STREAM queued but unsent (nghttp2's max_outbound_ack).
    std::size_t max_outbound_control_frames = 1000;
    std::size_t max_settings_entries = 32;                // per SETTINGS frame
    std::size_t max_continuation_frames = 8;              // per header block
    // Rapid reset (CVE-2023-44487): close once resets by the client before the response ended
    // exceed half of max(streams closed, this many).
    std::size_t premature_reset_min_streams = 500;
    // nghttp2's own token bucket on received RST_STREAM, as a backstop.
    uint64_t reset_rate_burst = 1000;
    uint64_t reset_rate_per_second = 33;
    // DATA frames without payload and without END_STREAM in a row (Envoy's
    // max_consecutive_inbound_frames_with_empty_payload).
    std::size_t max_consecutive_empty_frames = 1;
    // Received body bytes buffered for handlers plus bytes serialized but not yet written.
    std::size_t max_buffered_bytes = 1024 * 1024 + 128 * 1024;
    std::size_t read_chunk_bytes = 64 * 1024;      // one socket read
    std::size_t write_coalesce_bytes = 64 * 1024;  // frames gathered into one write
    std::chrono::milliseconds write_timeout{30'000};  // a peer that stops reading is dropped
};

struct Http2Stats {
    // Connections and streams.
    uint64_t connections_opened = 0;    // codec connections started (either side)
    uint64_t connections_closed = 0;
    uint64_t streams_inbound = 0;       // request streams a server connection accepted
    uint64_t streams_outbound = 0;      // streams a client connection opened
    uint64_t streams_refused = 0;       // client streams that failed retryably
    uint64_t streams_reset_by_peer = 0;
    uint64_t streams_refused_sent = 0;  // RST_STREAM(REFUSED_STREAM) sent (over the limit, GOAWAY)
    uint64_t goaway_received = 0;
    uint64_t goaway_sent = 0;
    // Limits hit (each closes the connection with GOAWAY, except where noted).
    uint64_t header_overflow = 0;          // header list over max_header_list_bytes (HPACK bomb)
    uint64_t continuation_flood = 0;       // more than max_continuation_frames
    uint64_t settings_flood = 0;           // more than max_settings_entries in one SETTINGS
    uint64_t outbound_control_flood = 0;   // over max_outbound_control_frames (closed, no GOAWAY)
    uint64_t rapid_reset = 0;              // premature resets over the threshold
    uint64_t empty_frame_flood = 0;        // over max_consecutive_empty_frames
    uint64_t buffer_overflow = 0;          // over max_buffered_bytes
    uint64_t protocol_errors = 0;          // other fatal errors nghttp2 reported
    uint64_t write_timeouts = 0;           // a write took longer than write_timeout
    uint64_t handler_exceptions = 0;       // a stream handler threw (stream reset)
    uint64_t peak_buffered_bytes = 0;      // gauge: the highest any connection buffered
    // Http2Pool.
    uint64_t pool_connections_opened = 0;
    uint64_t pool_connect_failures = 0;
    uint64_t pool_streams_opened = 0;
    uint64_t pool_streams_retried = 0;     // open() raced a GOAWAY/full connection: tried another
    uint64_t pool_overflow = 0;            // no room and no wait possible (or the wait timed out)
    uint64_t pool_pending = 0;             // requests that waited for a connection or a stream slot
    uint64_t pool_pending_timeouts = 0;    // ... and gave up after pending_timeout
    uint64_t pool_connections_drained = 0; // reached maxRequestsPerConnection: GOAWAY, no new streams
};

// Every counter with its name, for /stats (`remora.http2.<name>`) and the Prometheus page.
template <typename Fn>
void for_each_counter(const Http2Stats& s, Fn&& fn) {
    fn("connections_opened", s.connections_opened);
    fn("connections_closed", s.connections_closed);
    fn("streams_inbound", s.streams_inbound);
    fn("streams_outbound", s.streams_outbound);
    fn("streams_refused", s.streams_refused);
    fn("streams_reset_by_peer", s.streams_reset_by_peer);
    fn("streams_refused_sent", s.streams_refused_sent);
    fn("goaway_received", s.goaway_received);
    fn("goaway_sent", s.goaway_sent);
    fn("header_overflow", s.header_overflow);
    fn("continuation_flood", s.continuation_flood);
    fn("settings_flood", s.settings_flood);
    fn("outbound_control_flood", s.outbound_control_flood);
    fn("rapid_reset", s.rapid_reset);
    fn("empty_frame_flood", s.empty_frame_flood);
    fn("buffer_overflow", s.buffer_overflow);
    fn("protocol_errors", s.protocol_errors);
    fn("write_timeouts", s.write_timeouts);
    fn("handler_exceptions", s.handler_exceptions);
    fn("peak_buffered_bytes", s.peak_buffered_bytes);
    fn("pool_connections_opened", s.pool_connections_opened);
    fn("pool_connect_failures", s.pool_connect_failures);
    fn("pool_streams_opened", s.pool_streams_opened);
    fn("pool_streams_retried", s.pool_streams_retried);
    fn("pool_overflow", s.pool_overflow);
    fn("pool_pending", s.pool_pending);
    fn("pool_pending_timeouts", s.pool_pending_timeouts);
    fn("pool_connections_drained", s.pool_connections_drained);
}

}  // namespace remora::proxy::http2
