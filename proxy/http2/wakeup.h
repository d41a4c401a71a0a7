// A wake-up for coroutines of one io_context thread: waiters re-check their condition after
// wait(), so a notify with no waiter is never lost (nothing runs between the check and the wait).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace remora::proxy::http2 {

class Signal {
public:
    explicit Signal(boost::asio::any_io_executor ex) : timer_(ex) {
        timer_.expires_at(boost::asio::steady_timer::time_point::max());
    }
    // Wakes every current waiter. cancel() keeps the expiry at max, so later waits block again.
    void notify() noexcept { timer_.cancel(); }
    boost::asio::awaitable<void> wait() {
        co_await timer_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    }

private:
    boost::asio::steady_timer timer_;
};

}  // namespace remora::proxy::http2
