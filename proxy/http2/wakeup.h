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
    void notify() noexcept {
        if (waiters_ > 0) timer_.cancel();
    }
    boost::asio::awaitable<void> wait() {
        ++waiters_;
        co_await timer_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
        --waiters_;
    }
    std::size_t waiters() const noexcept { return waiters_; }

private:
    boost::asio::steady_timer timer_;
    std::size_t waiters_ = 0;
};

}  // namespace remora::proxy::http2
