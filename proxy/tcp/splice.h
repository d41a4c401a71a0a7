// Copying bytes both ways between two connected streams (plain or TLS) until both directions
// end, with half-closes passed on and an idle timeout: the TCP proxy's core, and what an HTTP/1.1
// Upgrade (WebSocket) becomes after its 101.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/stream_traits.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <span>

#include "proxy/server/context.h"

namespace remora::proxy::splice_detail {

inline boost::asio::ip::tcp::socket& socket_of(boost::asio::ip::tcp::socket& s) { return s; }
template <class Stream>
boost::asio::ip::tcp::socket& socket_of(Stream& s) {
    return boost::beast::get_lowest_layer(s).socket();
}

// One direction, byte for byte. At the end of what `from` sends, `to` is half-closed: a FIN on
// the TCP connection (over TLS too: no close_notify, so the other direction stays open; the peer
// sidecar reads the FIN as the end of this direction).
template <class From, class To>
boost::asio::awaitable<void> copy_one_way(From& from, To& to, std::span<char> buf, bool& activity,
                                          std::atomic<uint64_t>* counted,
                                          std::atomic<uint64_t>* also) {
    namespace asio = boost::asio;
    constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
    for (;;) {
        activity = true;
        auto [ec, n] = co_await from.async_read_some(asio::buffer(buf.data(), buf.size()), nothrow);
        if (n > 0) {
            auto [wec, wn] = co_await asio::async_write(to, asio::buffer(buf.data(), n), nothrow);
            if (wec) break;
            if (counted) counted->fetch_add(n, std::memory_order_relaxed);
            if (also) also->fetch_add(n, std::memory_order_relaxed);
        }
        if (ec) break;
    }
    boost::system::error_code ignored;
    socket_of(to).shutdown(boost::asio::ip::tcp::socket::shutdown_send, ignored);
}

// Closes both sides after a whole `idle` period without a byte either way.
template <class A, class B>
boost::asio::awaitable<void> idle_watchdog(std::chrono::steady_clock::duration idle, bool& activity, A& a, B& b) {
    namespace asio = boost::asio;
    asio::steady_timer timer(co_await asio::this_coro::executor);
    do {
        activity = false;
        timer.expires_after(idle);
        co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    } while (activity);
    boost::system::error_code ignored;
    socket_of(a).close(ignored);
    socket_of(b).close(ignored);
}

}  // namespace remora::proxy::splice_detail

namespace remora::proxy {

// Both directions until both have ended, or `idle` passes without a byte; true when the idle
// timeout closed it. `received` counts bytes from `down`, `sent` bytes to it (Istio's
// istio_tcp_received/sent_bytes_total), and `received_also`/`sent_also` count them again (the
// connection's access-log line); any may be null.
template <class Down, class Up>
boost::asio::awaitable<bool> splice(Down& down, Up& up, std::chrono::steady_clock::duration idle,
                                    std::atomic<uint64_t>* received, std::atomic<uint64_t>* sent,
                                    std::atomic<uint64_t>* received_also = nullptr,
                                    std::atomic<uint64_t>* sent_also = nullptr) {
    using namespace boost::asio::experimental::awaitable_operators;
    auto storage = std::make_unique_for_overwrite<char[]>(2 * kRelayChunk);
    std::span<char> to_up(storage.get(), kRelayChunk), to_down(storage.get() + kRelayChunk, kRelayChunk);
    bool activity = true;
    auto r = co_await (
        (splice_detail::copy_one_way(down, up, to_up, activity, received, received_also) &&
         splice_detail::copy_one_way(up, down, to_down, activity, sent, sent_also)) ||
        splice_detail::idle_watchdog(idle, activity, down, up));
    co_return r.index() == 1;
}

}  // namespace remora::proxy
