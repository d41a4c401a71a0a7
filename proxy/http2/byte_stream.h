// A small type-erased byte stream, so the HTTP/2 codec is compiled once and runs over
// beast::tcp_stream (h2c), beast::ssl_stream<tcp_stream> (mTLS between sidecars) or a raw socket.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <memory>
#include <utility>

namespace remora::proxy::http2 {

// One read and one write may be outstanding at once (the codec's reader and writer); close()
// cancels both. Every operation reports errors as codes, never by throwing.
class ByteStream {
public:
    using IoResult = std::pair<boost::system::error_code, std::size_t>;
    virtual ~ByteStream() = default;
    virtual boost::asio::any_io_executor get_executor() = 0;
    virtual boost::asio::awaitable<IoResult> read_some(boost::asio::mutable_buffer buffer) = 0;
    // Writes the whole buffer.
    virtual boost::asio::awaitable<IoResult> write(boost::asio::const_buffer buffer) = 0;
    virtual void close() noexcept = 0;
};

template <class Stream>
class ByteStreamOf final : public ByteStream {
public:
    explicit ByteStreamOf(Stream stream) : stream_(std::move(stream)) {}
    Stream& next_layer() noexcept { return stream_; }

    boost::asio::any_io_executor get_executor() override { return stream_.get_executor(); }

    boost::asio::awaitable<IoResult> read_some(boost::asio::mutable_buffer buffer) override {
        auto [ec, n] = co_await stream_.async_read_some(
            buffer, boost::asio::as_tuple(boost::asio::use_awaitable));
        co_return IoResult{ec, n};
    }

    boost::asio::awaitable<IoResult> write(boost::asio::const_buffer buffer) override {
        auto [ec, n] = co_await boost::asio::async_write(
            stream_, buffer, boost::asio::as_tuple(boost::asio::use_awaitable));
        co_return IoResult{ec, n};
    }

    // Closes the TCP socket under any TLS layer: the codec has already sent its GOAWAY, and a
    // close_notify would need a write the peer may never let complete.
    void close() noexcept override {
        auto& lowest = boost::beast::get_lowest_layer(stream_);
        boost::system::error_code ec;
        if constexpr (requires { lowest.socket(); }) {
            lowest.socket().shutdown(lowest.socket().shutdown_both, ec);
            lowest.socket().close(ec);
        } else {
            lowest.shutdown(lowest.shutdown_both, ec);
            lowest.close(ec);
        }
    }

private:
    Stream stream_;
};

template <class Stream>
std::unique_ptr<ByteStream> make_byte_stream(Stream stream) {
    return std::make_unique<ByteStreamOf<Stream>>(std::move(stream));
}

}  // namespace remora::proxy::http2
