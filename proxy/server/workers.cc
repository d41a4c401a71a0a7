// Worker threads and their accept loops.
#include "proxy/server/workers.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <future>

namespace remora::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

const char* listener_name(ListenerKind kind) {
    switch (kind) {
        case ListenerKind::outbound_capture: return "outbound";
        case ListenerKind::inbound_capture: return "inbound";
        case ListenerKind::outbound_explicit: return "outbound-explicit";
        case ListenerKind::inbound_explicit: return "inbound-explicit";
    }
    return "?";
}

namespace {

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, ListenerKind kind, WorkerContext& ctx) {
    constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);
    for (;;) {
        auto [ec, sock] = co_await acceptor.async_accept(use_nothrow);
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
        if (ec) {
            // EMFILE and friends: pause so a full descriptor table does not spin the worker.
            ctx.log(std::string("accept on ") + listener_name(kind) + " failed: " + ec.message());
            asio::steady_timer t(acceptor.get_executor(), std::chrono::milliseconds(50));
            co_await t.async_wait(use_nothrow);
            continue;
        }
        asio::co_spawn(acceptor.get_executor(), serve_connection(std::move(sock), kind, ctx),
                       asio::detached);
    }
}

// Asio re-arms its timerfd (a syscall) whenever a new timer becomes the earliest pending one, and
// the per-operation deadlines on the request path (seconds to minutes long) often are: that was a
// timerfd_settime for every second request. A timer that is always due within a second keeps them
// from ever being the earliest: one wake-up a second replaces a syscall per request.
asio::awaitable<void> timer_anchor() {
    constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);
    asio::steady_timer t(co_await asio::this_coro::executor);
    for (;;) {
        t.expires_after(std::chrono::seconds(1));
        auto [ec] = co_await t.async_wait(use_nothrow);
        if (ec == asio::error::operation_aborted) co_return;
    }
}

}  // namespace

Worker::Worker(const TlsStore& tls, const ConfigStore& config, const std::atomic<bool>& draining,
               LogFn log, std::shared_ptr<const TelemetryConfig> telemetry, uint64_t seed)
    : telemetry_(std::move(telemetry), seed),
      ctx_{tls, config, stats_, telemetry_, draining, std::move(log), UpstreamPool{}, WorkerBalancer{}, 1, 0, std::make_shared<http2::Http2Stats>(), {}, nullptr, {}, std::nullopt} {
    ctx_.pool.set_stats(&stats_);
    ctx_.h2pool = std::make_unique<http2::Http2Pool>(io_->get_executor(), ctx_.h2limits, ctx_.h2stats);
}

void Worker::bind(const std::vector<ListenerSpec>& listeners) {
    for (const ListenerSpec& l : listeners) {
        auto acc = std::make_unique<tcp::acceptor>(*io_);
        boost::system::error_code ec;
        acc->open(l.address.protocol(), ec);
        if (!ec) acc->set_option(asio::socket_base::reuse_address(true), ec);
        if (!ec) acc->set_option(asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>(true), ec);
        if (!ec) acc->bind(l.address, ec);
        if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
        if (ec) {
            throw std::runtime_error(std::string(listener_name(l.kind)) + " listener " +
                                     l.address.address().to_string() + ":" +
                                     std::to_string(l.address.port()) + ": " + ec.message());
        }
        acceptors_.emplace_back(l.kind, std::move(acc));
    }
}

void Worker::start() {
    for (auto& [kind, acc] : acceptors_) {
        asio::co_spawn(*io_, accept_loop(*acc, kind, ctx_), asio::detached);
    }
    asio::co_spawn(*io_, timer_anchor(), asio::detached);
    thread_ = std::thread([this] { io_->run(); });
}

void Worker::stop_accepting() {
    asio::post(*io_, [this] {
        for (auto& [kind, acc] : acceptors_) {
            boost::system::error_code ec;
            acc->close(ec);
        }
    });
}

void Worker::stop() { io_->stop(); }

http2::Http2Stats Worker::http2_stats() const {
    auto result = std::make_shared<std::promise<http2::Http2Stats>>();
    auto done = result->get_future();
    asio::post(*io_, [result, stats = ctx_.h2stats] { result->set_value(*stats); });
    if (done.wait_for(std::chrono::seconds(1)) != std::future_status::ready) return {};
    return done.get();
}

Worker::~Worker() {
    io_->stop();
    join();
    acceptors_.clear();
    ctx_.pool.clear();
    ctx_.h2pool.reset();  // its connections' sockets belong to io_
    io_.reset();
}

void Worker::join() {
    if (thread_.joinable()) thread_.join();
}

}  // namespace remora::proxy
