// The HTTP/2 codec core: nghttp2 callbacks, the reader and writer coroutines, flow control and the
// hardening limits. Everything runs on the connection's io_context thread; callbacks only run inside
// mem_recv/mem_send/consume calls made here, so `this` is alive whenever nghttp2 calls back.
#include "proxy/http2/connection.h"

#include <nghttp2/nghttp2.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/core/error.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <exception>

#include "proxy/http2/server.h"

namespace remora::proxy::http2::detail {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

Connection& self(void* user_data) { return *static_cast<Connection*>(user_data); }

int cb_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* u) {
    return self(u).on_begin_frame(hd);
}
int cb_begin_headers(nghttp2_session*, const nghttp2_frame* f, void* u) {
    return self(u).on_begin_headers(f);
}
int cb_header(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name, size_t namelen,
              const uint8_t* value, size_t valuelen, uint8_t, void* u) {
    return self(u).on_header(f, {reinterpret_cast<const char*>(name), namelen},
                             {reinterpret_cast<const char*>(value), valuelen});
}
int cb_frame_recv(nghttp2_session*, const nghttp2_frame* f, void* u) {
    return self(u).on_frame_recv(f);
}
int cb_data_chunk(nghttp2_session*, uint8_t flags, int32_t id, const uint8_t* data, size_t len,
                  void* u) {
    return self(u).on_data_chunk(flags, id, data, len);
}
int cb_stream_close(nghttp2_session*, int32_t id, uint32_t code, void* u) {
    return self(u).on_stream_close(id, code);
}
int cb_frame_send(nghttp2_session*, const nghttp2_frame* f, void* u) {
    return self(u).on_frame_send(f);
}
int cb_frame_not_send(nghttp2_session*, const nghttp2_frame* f, int lib_error, void* u) {
    return self(u).on_frame_not_send(f, lib_error);
}
ssize_t cb_read_data(nghttp2_session*, int32_t id, uint8_t* buf, size_t len, uint32_t* flags,
                     nghttp2_data_source* source, void* u) {
    return self(u).read_data(id, buf, len, flags, *static_cast<StreamState*>(source->ptr));
}

nghttp2_nv make_nv(std::string_view name, std::string_view value) {
    return {const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(name.data())),
            const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(value.data())), name.size(),
            value.size(), NGHTTP2_NV_FLAG_NONE};
}

// Fields HTTP/2 must not carry (RFC 9113 §8.2.2), Host (sent as :authority) and stray pseudo-fields.
bool dropped_on_send(const http::HeaderMap::Entry& e) {
    if (e.name.empty() || e.name[0] == ':' || e.name == "host") return true;
    if (http::is_connection_specific(e.name)) return true;
    return e.name == "te" && !http::iequals(e.value, "trailers");
}

// Fields whose value is new on every request (ids and trace context). Entering them into the
// HPACK dynamic table would only push out the fields that do repeat (the peer metadata, the
// authority, the user agent), which then go out as literals again: between two sidecars that
// cost more than the rest of encoding the header block. They are sent as literals never indexed.
bool unique_per_request(std::string_view name) noexcept {
    static constexpr std::string_view kNames[] = {
        "x-request-id", "traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid",
        "x-b3-parentspanid", "x-client-trace-id", "x-ot-span-context", "x-cloud-trace-context"};
    for (std::string_view n : kNames)
        if (n.size() == name.size() && http::iequals(n, name)) return true;
    return false;
}

void add_fields(std::vector<nghttp2_nv>& nv, const http::HeaderMap& headers) {
    for (const auto& e : headers) {
        if (dropped_on_send(e)) continue;
        nv.push_back(make_nv(e.name, e.value));
        if (unique_per_request(e.name)) nv.back().flags = NGHTTP2_NV_FLAG_NO_INDEX;
    }
}

}  // namespace

Connection::Connection(Side side, std::unique_ptr<ByteStream> io, const Http2Limits& limits,
                       std::shared_ptr<Http2Stats> stats, Handler handler)
    : side_(side),
      io_(std::move(io)),
      executor_(io_->get_executor()),
      limits_(limits),
      stats_(stats ? std::move(stats) : std::make_shared<Http2Stats>()),
      handler_(std::move(handler)),
      write_signal_(executor_),
      write_timer_(executor_) {
    if (!start_session()) finished_ = true;
}

Connection::~Connection() {
    if (session_) nghttp2_session_del(session_);
}

bool Connection::start_session() {
    nghttp2_session_callbacks* cbs = nullptr;
    if (nghttp2_session_callbacks_new(&cbs) != 0) return false;
    nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, cb_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, cb_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, cb_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, cb_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cb_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cb_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, cb_frame_send);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, cb_frame_not_send);

    nghttp2_option* opt = nullptr;
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cbs);
        return false;
    }
    // Window goes back only as handlers read (read_body → nghttp2_session_consume).
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_outbound_ack(opt, limits_.max_outbound_control_frames);
    // Our on_begin_frame enforces max_settings_entries (and counts it); nghttp2 checks before
    // calling back, so its own bound is only the frame size here.
    nghttp2_option_set_max_settings(opt, 16384 / 6 + 1);
    nghttp2_option_set_max_continuations(opt, limits_.max_continuation_frames);
    nghttp2_option_set_peer_max_concurrent_streams(opt, limits_.max_concurrent_streams);
    nghttp2_option_set_no_closed_streams(opt, 1);
    if (side_ == Side::server)
        nghttp2_option_set_stream_reset_rate_limit(opt, limits_.reset_rate_burst,
                                                   limits_.reset_rate_per_second);
    int rv = side_ == Side::server ? nghttp2_session_server_new2(&session_, cbs, this, opt)
                                   : nghttp2_session_client_new2(&session_, cbs, this, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0) {
        session_ = nullptr;
        return false;
    }

    std::vector<nghttp2_settings_entry> iv = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits_.max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, limits_.initial_stream_window},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, limits_.max_header_list_bytes},
        {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, limits_.header_table_bytes},
    };
    if (side_ == Side::client) iv.push_back({NGHTTP2_SETTINGS_ENABLE_PUSH, 0});
    if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv.data(), iv.size()) != 0)
        return false;
    if (limits_.initial_connection_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE)
        nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                              int32_t(limits_.initial_connection_window));
    return true;
}

uint32_t Connection::peer_max_concurrent_streams() const noexcept {
    if (!session_) return 0;
    return nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

StreamState* Connection::find(int32_t id) noexcept {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
}

// ---- Running ------------------------------------------------------------------------------

asio::awaitable<error_code> Connection::run() {
    auto keep = shared_from_this();
    if (started_) co_return make_error_code(Http2Error::connection_closed);
    started_ = true;
    if (!session_) co_return make_error_code(Http2Error::protocol_error);
    ++stats_->connections_opened;
    using namespace asio::experimental::awaitable_operators;
    co_await (read_loop() && write_loop());
    co_return error_;
}

asio::awaitable<void> Connection::read_loop() {
    std::vector<uint8_t> buf(std::max<std::size_t>(limits_.read_chunk_bytes, 16 * 1024));
    while (!closing_ && !finished_ && nghttp2_session_want_read(session_)) {
        auto [ec, n] = co_await io_->read_some(asio::buffer(buf));
        if (closing_ || finished_) break;
        if (ec) {
            if (!error_ && ec != asio::error::eof) error_ = ec;
            break;
        }
        auto rv = nghttp2_session_mem_recv(session_, buf.data(), n);
        if (rv < 0) {
            handle_recv_error(rv);
            break;
        }
        want_write();
    }
    read_done_ = true;
    want_write();
}

asio::awaitable<void> Connection::write_loop() {
    for (;;) {
        if (aborted_) break;
        // Coalesce: everything nghttp2 has (up to the bound) goes out in one write.
        while (out_.size() < limits_.write_coalesce_bytes) {
            const uint8_t* data = nullptr;
            auto n = nghttp2_session_mem_send(session_, &data);
            if (n < 0) {
                if (!error_) error_ = make_error_code(Http2Error::protocol_error);
                ++stats_->protocol_errors;
                aborted_ = true;
                break;
            }
            if (n == 0) break;
            out_.insert(out_.end(), data, data + n);
        }
        if (aborted_) break;
        note_buffered();
        if (out_.empty()) {
            if (closing_ || read_done_) break;
            if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_))
                break;
            co_await write_signal_.wait();
            continue;
        }
        // A deadline on every write: a peer that stops reading is dropped, not buffered for.
        writing_ = true;
        auto generation = ++write_generation_;
        write_timer_.expires_after(limits_.write_timeout);
        write_timer_.async_wait([weak = weak_from_this(), generation](error_code ec) {
            if (ec) return;
            auto conn = weak.lock();
            if (!conn || !conn->writing_ || conn->write_generation_ != generation) return;
            ++conn->stats_->write_timeouts;
            if (!conn->error_) conn->error_ = asio::error::timed_out;
            conn->abort();
        });
        auto [ec, n] = co_await io_->write(asio::buffer(out_));
        writing_ = false;
        write_timer_.cancel();
        out_.clear();
        if (ec) {
            if (!error_ && !closing_) error_ = ec;
            break;
        }
    }
    finished_ = true;
    out_.clear();
    io_->close();
    write_timer_.cancel();
    fail_all_streams();
    ++stats_->connections_closed;
}

void Connection::abort() noexcept {
    if (finished_) return;
    closing_ = true;
    aborted_ = true;
    io_->close();
    want_write();
}

void Connection::close() { abort(); }

void Connection::goaway(int32_t last_stream_id) {
    if (!session_ || finished_ || closing_ || goaway_sent_) return;
    if (side_ == Side::server) {
        if (last_stream_id < 0) last_stream_id = nghttp2_session_get_last_proc_stream_id(session_);
    } else {
        last_stream_id = 0;  // no server-initiated streams (push is off)
    }
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, last_stream_id, NGHTTP2_NO_ERROR, nullptr,
                          0);
    goaway_sent_ = true;
    if (side_ == Side::server) {
        std::vector<int32_t> above;
        for (const auto& [id, s] : streams_)
            if (id > last_stream_id) above.push_back(id);
        for (int32_t id : above)
            nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
    }
    want_write();
}

void Connection::terminate(uint32_t h2_error, Http2Error reason) {
    if (!error_) error_ = make_error_code(reason);
    terminated_by_us_ = true;
    nghttp2_session_terminate_session(session_, h2_error);
    closing_ = true;  // the writer flushes the GOAWAY, then closes
    want_write();
}

void Connection::handle_recv_error(long rv) {
    auto fatal = fatal_;
    if (fatal == Fatal::none && rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS)
        fatal = Fatal::continuation_flood;
    switch (fatal) {
        case Fatal::header_overflow: ++stats_->header_overflow; break;
        case Fatal::continuation_flood: ++stats_->continuation_flood; break;
        case Fatal::settings_flood: ++stats_->settings_flood; break;
        case Fatal::empty_frame_flood: ++stats_->empty_frame_flood; break;
        case Fatal::rapid_reset: ++stats_->rapid_reset; break;
        case Fatal::buffer_overflow: ++stats_->buffer_overflow; break;
        case Fatal::none:
            if (rv == NGHTTP2_ERR_FLOODED) {
                // The peer does not read our ACKs: a GOAWAY would queue behind them. Just close.
                ++stats_->outbound_control_flood;
                if (!error_) error_ = make_error_code(Http2Error::limit_exceeded);
                abort();
                return;
            }
            ++stats_->protocol_errors;
            terminate(NGHTTP2_PROTOCOL_ERROR, Http2Error::protocol_error);
            return;
    }
    terminate(NGHTTP2_ENHANCE_YOUR_CALM, Http2Error::limit_exceeded);
}

void Connection::fail_all_streams() {
    auto streams = std::move(streams_);
    streams_.clear();
    if (on_capacity_) on_capacity_();
    for (auto& [id, s] : streams) {
        if (!s->closed) {
            s->closed = true;
            if (!s->close_error) {
                if (side_ == Side::client && !s->headers_sent) {
                    s->close_error = make_error_code(Http2Error::refused_stream);
                    ++stats_->streams_refused;
                } else {
                    s->close_error = make_error_code(Http2Error::connection_closed);
                }
            }
        }
        s->signal.notify();
    }
}

void Connection::note_buffered() {
    auto now = buffered_bytes();
    peak_buffered_ = std::max(peak_buffered_, now);
    stats_->peak_buffered_bytes = std::max<uint64_t>(stats_->peak_buffered_bytes, now);
}

// ---- Stream operations --------------------------------------------------------------------

boost::system::result<std::shared_ptr<StreamState>> Connection::submit_request(
    const http::RequestHead& head, bool end_stream) {
    if (finished_ || closing_) return make_error_code(Http2Error::connection_closed);
    if (goaway_sent_ || goaway_received_) return make_error_code(Http2Error::going_away);
    if (streams_.size() >= std::min(peer_max_concurrent_streams(), limits_.max_concurrent_streams))
        return make_error_code(Http2Error::no_capacity);
    auto s = std::make_shared<StreamState>(executor_);
    std::string_view authority = head.authority;
    if (authority.empty()) authority = head.headers.get("host").value_or("");
    std::vector<nghttp2_nv> nv;
    nv.reserve(head.headers.size() + 4);
    nv.push_back(make_nv(":method", head.method));
    std::string_view scheme = head.scheme.empty() ? std::string_view("http") : head.scheme;
    std::string_view path = head.path.empty() ? std::string_view("/") : head.path;
    nv.push_back(make_nv(":scheme", scheme));
    if (!authority.empty()) nv.push_back(make_nv(":authority", authority));
    nv.push_back(make_nv(":path", path));
    add_fields(nv, head.headers);
    nghttp2_data_provider provider{};
    provider.source.ptr = s.get();
    provider.read_callback = cb_read_data;
    int32_t id = nghttp2_submit_request(session_, nullptr, nv.data(), nv.size(),
                                        end_stream ? nullptr : &provider, s.get());
    if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) return make_error_code(Http2Error::going_away);
    if (id < 0) return make_error_code(Http2Error::submit_failed);
    s->id = id;
    s->head_submitted = true;
    s->body_open = !end_stream;
    s->end_requested = end_stream;
    streams_.emplace(id, s);
    ++requests_submitted_;
    ++stats_->streams_outbound;
    want_write();
    return s;
}

error_code Connection::submit_response(StreamState& s, const http::ResponseHead& head,
                                       bool end_stream) {
    if (s.closed || finished_) return s.close_error ? s.close_error
                                                    : make_error_code(Http2Error::stream_closed);
    if (s.head_submitted || s.end_requested) return make_error_code(Http2Error::stream_closed);
    auto status = std::to_string(head.status);
    std::vector<nghttp2_nv> nv;
    nv.reserve(head.headers.size() + 1);
    nv.push_back(make_nv(":status", status));
    add_fields(nv, head.headers);
    nghttp2_data_provider provider{};
    provider.source.ptr = &s;
    provider.read_callback = cb_read_data;
    int rv = nghttp2_submit_response(session_, s.id, nv.data(), nv.size(),
                                     end_stream ? nullptr : &provider);
    if (rv != 0) return make_error_code(Http2Error::submit_failed);
    s.head_submitted = true;
    s.body_open = !end_stream;
    s.end_requested = end_stream;
    want_write();
    return {};
}

void Connection::resume(StreamState& s) {
    if (s.deferred && session_ && !finished_) {
        s.deferred = false;
        nghttp2_session_resume_data(session_, s.id);
    }
    want_write();
}

asio::awaitable<error_code> Connection::write_body(std::shared_ptr<StreamState> s,
                                                   std::span<const uint8_t> data,
                                                   bool end_stream) {
    if (s->closed || finished_)
        co_return s->close_error ? s->close_error : make_error_code(Http2Error::stream_closed);
    if (!s->body_open) co_return make_error_code(Http2Error::head_not_sent);
    if (s->end_requested || s->out_left > 0) co_return make_error_code(Http2Error::stream_closed);
    s->out_data = data.empty() ? nullptr : data.data();
    s->out_left = data.size();
    if (end_stream) s->end_requested = true;
    resume(*s);
    // Backpressure: done only once nghttp2 has copied every byte into a frame.
    while (s->out_left > 0 && !s->closed && !finished_) co_await s->signal.wait();
    if (s->out_left > 0) {
        s->out_data = nullptr;
        s->out_left = 0;
        co_return s->close_error ? s->close_error : make_error_code(Http2Error::connection_closed);
    }
    co_return error_code{};
}

error_code Connection::write_trailers(StreamState& s, http::Trailers trailers) {
    if (s.closed || finished_)
        return s.close_error ? s.close_error : make_error_code(Http2Error::stream_closed);
    if (!s.body_open) return make_error_code(Http2Error::head_not_sent);
    if (s.end_requested) return make_error_code(Http2Error::stream_closed);
    if (!trailers.empty()) s.out_trailers = std::move(trailers);
    s.end_requested = true;
    resume(s);
    return {};
}

long Connection::read_data(int32_t stream_id, uint8_t* buf, std::size_t length, uint32_t* flags,
                           StreamState& s) {
    std::size_t n = 0;
    if (s.out_left > 0) {
        n = std::min(length, s.out_left);
        std::memcpy(buf, s.out_data, n);
        s.out_data += n;
        s.out_left -= n;
        if (s.out_left == 0) {
            s.out_data = nullptr;
            s.signal.notify();
        }
    }
    if (s.out_left == 0 && s.end_requested) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (s.out_trailers) {
            std::vector<nghttp2_nv> nv;
            add_fields(nv, *s.out_trailers);
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            if (nghttp2_submit_trailer(session_, stream_id, nv.data(), nv.size()) != 0)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets the stream
            s.out_trailers.reset();
        }
        return long(n);
    }
    if (n > 0) return long(n);
    s.deferred = true;
    return NGHTTP2_ERR_DEFERRED;
}

asio::awaitable<BodyEvent> Connection::read_body(std::shared_ptr<StreamState> s,
                                                 std::chrono::steady_clock::duration wait) {
    // A bounded wait arms a timer only once this read has to wait; it wakes the stream's waiters
    // (who re-check their own conditions) and marks this read as timed out.
    std::optional<asio::steady_timer> timer;
    s->read_timed_out = false;
    const uint32_t generation = ++s->read_generation;
    for (;;) {
        if (!s->body.empty()) {
            BodyEvent ev;
            ev.kind = BodyEvent::Kind::data;
            ev.data = std::move(s->body.front());
            s->body.pop_front();
            s->body_bytes -= ev.data.size();
            inbound_bytes_ -= ev.data.size();
            // The handler took it: give the window back to the peer (stream and connection).
            if (session_ && !finished_) {
                nghttp2_session_consume(session_, s->id, ev.data.size());
                want_write();
            }
            co_return ev;
        }
        if (s->recv_end) {
            BodyEvent ev;
            ev.kind = BodyEvent::Kind::end;
            if (!s->end_delivered) {
                s->end_delivered = true;
                ev.trailers = std::move(s->trailers);
            }
            co_return ev;
        }
        if (s->closed || finished_) {
            BodyEvent ev;
            ev.kind = BodyEvent::Kind::reset;
            ev.error = s->close_error ? s->close_error
                                      : make_error_code(Http2Error::connection_closed);
            ev.h2_error = s->h2_error;
            co_return ev;
        }
        if (s->read_timed_out) {
            BodyEvent ev;
            ev.kind = BodyEvent::Kind::reset;
            ev.error = boost::beast::error::timeout;
            co_return ev;
        }
        if (!timer && wait != std::chrono::steady_clock::duration::max()) {
            timer.emplace(executor_);
            timer->expires_after(wait);
            timer->async_wait([s, generation](error_code ec) {
                if (ec || s->read_generation != generation) return;
                s->read_timed_out = true;
                s->signal.notify();
            });
        }
        co_await s->signal.wait();
    }
}

asio::awaitable<boost::system::result<http::ResponseHead>> Connection::read_head(
    std::shared_ptr<StreamState> s) {
    for (;;) {
        if (s->head_received) co_return std::move(s->response);  // read once, by one stream
        if (s->closed || finished_)
            co_return s->close_error ? s->close_error
                                     : make_error_code(Http2Error::connection_closed);
        co_await s->signal.wait();
    }
}

void Connection::reset(StreamState& s, uint32_t h2_error) {
    if (s.closed || finished_ || !session_) return;
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id, h2_error);
    s.end_requested = true;
    s.out_data = nullptr;
    s.out_left = 0;
    s.signal.notify();
    want_write();
}

void Connection::release(StreamState& s) noexcept {
    s.abandoned = true;
    s.out_data = nullptr;
    s.out_left = 0;
    if (finished_ || !session_) return;
    if (!s.closed) {
        if (!s.end_requested) {
            reset(s, side_ == Side::server ? NGHTTP2_INTERNAL_ERROR : NGHTTP2_CANCEL);
        } else if (side_ == Side::server && s.end_sent && !s.recv_end) {
            // Response complete, request body unwanted: tell the client to stop (RFC 9113 §8.1).
            nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_NO_ERROR);
        }
    }
    if (s.body_bytes > 0) {
        nghttp2_session_consume(session_, s.id, s.body_bytes);
        inbound_bytes_ -= s.body_bytes;
        s.body_bytes = 0;
        s.body.clear();
    }
    want_write();
}

void Connection::spawn_handler(std::shared_ptr<StreamState> s) {
    if (!handler_) {
        nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_REFUSED_STREAM);
        return;
    }
    auto stream = std::make_shared<ServerStream>(shared_from_this(), std::move(s));
    asio::co_spawn(executor_, handler_(stream),
                   [stats = stats_, stream](std::exception_ptr e) mutable {
                       if (e) {
                           ++stats->handler_exceptions;
                           stream->reset();
                       }
                       stream.reset();
                   });
}

// ---- nghttp2 callbacks --------------------------------------------------------------------

int Connection::on_begin_frame(const void* p) {
    const auto& hd = *static_cast<const nghttp2_frame_hd*>(p);
    switch (hd.type) {
        case NGHTTP2_HEADERS: continuations_ = 0; break;
        case NGHTTP2_CONTINUATION:
            if (++continuations_ > limits_.max_continuation_frames) {
                fatal_ = Fatal::continuation_flood;
                return NGHTTP2_ERR_CALLBACK_FAILURE;
            }
            break;
        case NGHTTP2_SETTINGS:
            if (!(hd.flags & NGHTTP2_FLAG_ACK) && hd.length / 6 > limits_.max_settings_entries) {
                fatal_ = Fatal::settings_flood;
                return NGHTTP2_ERR_CALLBACK_FAILURE;
            }
            break;
        default: break;
    }
    return 0;
}

int Connection::on_begin_headers(const void* p) {
    const auto& f = *static_cast<const nghttp2_frame*>(p);
    if (f.hd.type != NGHTTP2_HEADERS) return 0;
    int32_t id = f.hd.stream_id;
    if (side_ == Side::server && f.headers.cat == NGHTTP2_HCAT_REQUEST) {
        auto s = std::make_shared<StreamState>(executor_);
        s->id = id;
        streams_[id] = s;
        nghttp2_session_set_stream_user_data(session_, id, s.get());
        ++stats_->streams_inbound;
    }
    if (auto* s = find(id)) {
        s->block.clear();
        s->block_bytes = 0;
        s->pseudo_method.clear();
        s->pseudo_scheme.clear();
        s->pseudo_authority.clear();
        s->pseudo_path.clear();
        s->pseudo_status.clear();
    }
    return 0;
}

int Connection::on_header(const void* p, std::string_view name, std::string_view value) {
    const auto& f = *static_cast<const nghttp2_frame*>(p);
    auto* s = find(f.hd.stream_id);
    if (!s) return 0;
    // RFC 9113 §6.5.2 measure; an HPACK bomb trips it long before memory does.
    s->block_bytes += name.size() + value.size() + 32;
    if (s->block_bytes > limits_.max_header_list_bytes) {
        fatal_ = Fatal::header_overflow;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (!name.empty() && name[0] == ':') {
        if (name == ":method") s->pseudo_method = value;
        else if (name == ":scheme") s->pseudo_scheme = value;
        else if (name == ":authority") s->pseudo_authority = value;
        else if (name == ":path") s->pseudo_path = value;
        else if (name == ":status") s->pseudo_status = value;
        return 0;
    }
    s->block.add(name, value);
    return 0;
}

void Connection::finish_block(StreamState& s, const void*) {
    if (!s.head_received) {
        if (side_ == Side::server) {
            auto& r = s.request;
            r.method = std::move(s.pseudo_method);
            r.scheme = std::move(s.pseudo_scheme);
            r.path = std::move(s.pseudo_path);
            r.authority = std::move(s.pseudo_authority);
            if (r.authority.empty()) r.authority = s.block.get("host").value_or("");
            s.block.remove("host");
            r.headers = std::move(s.block);
            r.protocol = http::Protocol::http2;
            s.head_received = true;
            auto it = streams_.find(s.id);
            if (it != streams_.end()) spawn_handler(it->second);
        } else {
            uint32_t status = 0;
            const auto& st = s.pseudo_status;
            std::from_chars(st.data(), st.data() + st.size(), status);
            if (status >= 200) {  // 1xx heads are skipped; nghttp2 already validated :status
                s.response.status = status;
                s.response.headers = std::move(s.block);
                s.head_received = true;
            }
        }
    } else {
        s.trailers = std::move(s.block);
    }
    s.block.clear();
    s.block_bytes = 0;
    s.signal.notify();
}

int Connection::on_frame_recv(const void* p) {
    const auto& f = *static_cast<const nghttp2_frame*>(p);
    int32_t id = f.hd.stream_id;
    bool end_stream = f.hd.flags & NGHTTP2_FLAG_END_STREAM;
    switch (f.hd.type) {
        case NGHTTP2_DATA:
            if (f.hd.length == 0 && !end_stream) {
                if (++consecutive_empty_ > limits_.max_consecutive_empty_frames) {
                    fatal_ = Fatal::empty_frame_flood;
                    return NGHTTP2_ERR_CALLBACK_FAILURE;
                }
            } else {
                consecutive_empty_ = 0;
            }
            if (end_stream)
                if (auto* s = find(id)) {
                    s->recv_end = true;
                    s->signal.notify();
                }
            break;
        case NGHTTP2_HEADERS:
            if (f.hd.length > 0) consecutive_empty_ = 0;
            if (auto* s = find(id)) {
                finish_block(*s, p);
                if (end_stream) s->recv_end = true;
            }
            break;
        case NGHTTP2_RST_STREAM:
            ++stats_->streams_reset_by_peer;
            if (auto* s = find(id)) {
                s->reset_by_peer = true;
                s->h2_error = f.rst_stream.error_code;
            }
            break;
        case NGHTTP2_GOAWAY:
            goaway_received_ = true;
            if (on_capacity_) on_capacity_();
            ++stats_->goaway_received;
            break;
        default: break;
    }
    return 0;
}

int Connection::on_data_chunk(uint8_t, int32_t stream_id, const uint8_t* data, std::size_t len) {
    auto* s = find(stream_id);
    if (!s || s->abandoned) {
        nghttp2_session_consume(session_, stream_id, len);  // nobody reads it: window back now
        return 0;
    }
    const char* chars = reinterpret_cast<const char*>(data);
    if (!s->body.empty() && s->body.back().size() + len <= limits_.read_chunk_bytes)
        s->body.back().append(chars, len);
    else
        s->body.emplace_back(chars, len);
    s->body_bytes += len;
    inbound_bytes_ += len;
    note_buffered();
    if (buffered_bytes() > limits_.max_buffered_bytes) {
        fatal_ = Fatal::buffer_overflow;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    s->signal.notify();
    return 0;
}

int Connection::on_stream_close(int32_t stream_id, uint32_t code) {
    auto it = streams_.find(stream_id);
    if (it == streams_.end()) return 0;
    auto s = it->second;
    streams_.erase(it);
    if (on_capacity_) on_capacity_();
    s->closed = true;
    if (!s->h2_error) s->h2_error = code;
    bool clean = code == NGHTTP2_NO_ERROR && s->recv_end;
    if (!clean) {
        if (side_ == Side::client && (code == NGHTTP2_REFUSED_STREAM || !s->headers_sent)) {
            s->close_error = make_error_code(Http2Error::refused_stream);
            ++stats_->streams_refused;
        } else if (s->reset_by_peer || code != NGHTTP2_NO_ERROR) {
            s->close_error = make_error_code(Http2Error::stream_reset);
        } else {
            s->close_error = make_error_code(Http2Error::connection_closed);
        }
    }
    if (s->abandoned && s->body_bytes > 0) {
        nghttp2_session_consume_connection(session_, s->body_bytes);
        inbound_bytes_ -= s->body_bytes;
        s->body_bytes = 0;
        s->body.clear();
    }
    s->signal.notify();
    if (side_ == Side::server) {
        ++streams_closed_;
        if (s->reset_by_peer && !s->end_requested) ++premature_resets_;
        // Rapid reset: most streams the client opens, it resets before we could answer.
        if (premature_resets_ * 2 > std::max(streams_closed_, limits_.premature_reset_min_streams)) {
            fatal_ = Fatal::rapid_reset;
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
    }
    return 0;
}

int Connection::on_frame_send(const void* p) {
    const auto& f = *static_cast<const nghttp2_frame*>(p);
    auto* s = find(f.hd.stream_id);
    switch (f.hd.type) {
        case NGHTTP2_HEADERS:
        case NGHTTP2_DATA:
            if (!s) break;
            if (f.hd.type == NGHTTP2_HEADERS) s->headers_sent = true;
            if (f.hd.flags & NGHTTP2_FLAG_END_STREAM) {
                s->end_sent = true;
                if (side_ == Side::server && s->abandoned && !s->recv_end)
                    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s->id,
                                              NGHTTP2_NO_ERROR);
            }
            break;
        case NGHTTP2_RST_STREAM:
            if (f.rst_stream.error_code == NGHTTP2_REFUSED_STREAM) ++stats_->streams_refused_sent;
            break;
        case NGHTTP2_GOAWAY:
            goaway_sent_ = true;
            ++stats_->goaway_sent;
            // nghttp2 closed the connection on its own (a protocol error it detected).
            if (f.goaway.error_code != NGHTTP2_NO_ERROR && !terminated_by_us_)
                ++stats_->protocol_errors;
            break;
        default: break;
    }
    return 0;
}

int Connection::on_frame_not_send(const void*, int) {
    // A HEADERS that never left closes its stream with headers_sent still false: refused_stream.
    return 0;
}

}  // namespace remora::proxy::http2::detail
