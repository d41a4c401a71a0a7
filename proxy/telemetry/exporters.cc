// The access-log writer thread and the Zipkin exporter thread.
#include "proxy/telemetry/exporters.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace remora::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

AccessLogWriter::AccessLogWriter(const std::string& path, size_t capacity) : queue_(capacity) {
    // The process's own streams are used as they are (Istio's usual accessLogFile is /dev/stdout):
    // reopening /dev/stdout checks the permissions of whatever file it points at, which a proxy
    // running as uid 1337 may not have although it can write to the descriptor it was given.
    if (path == "/dev/stdout" || path == "/dev/stderr") {
        fd_ = ::fcntl(path == "/dev/stdout" ? 1 : 2, F_DUPFD_CLOEXEC, 3);
    } else {
        fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    }
    if (fd_ < 0) {
        throw std::runtime_error("access log \"" + path + "\": " + std::strerror(errno));
    }
    thread_ = std::thread([this] { run(); });
}

AccessLogWriter::~AccessLogWriter() {
    queue_.close();
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
}

void AccessLogWriter::run() {
    std::vector<std::string> lines;
    std::string chunk;
    while (queue_.drain(lines, std::chrono::milliseconds(200))) {
        if (lines.empty()) continue;
        chunk.clear();
        for (const std::string& l : lines) chunk += l;
        size_t off = 0;
        while (off < chunk.size()) {
            ssize_t n = ::write(fd_, chunk.data() + off, chunk.size() - off);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;  // a full disk or closed pipe: these lines are lost, not retried
            off += static_cast<size_t>(n);
        }
        written_.fetch_add(lines.size(), std::memory_order_relaxed);
    }
}

ZipkinExporter::ZipkinExporter(ZipkinOptions options, LogFn log)
    : options_(std::move(options)), log_(std::move(log)), queue_(options_.capacity) {
    thread_ = std::thread([this] { run(); });
}

ZipkinExporter::~ZipkinExporter() {
    stopping_ = true;
    queue_.close();
    if (thread_.joinable()) thread_.join();
}

void ZipkinExporter::run() {
    constexpr size_t kMaxBatch = 512;  // spans per POST
    std::vector<Span> batch;
    auto last_flush = std::chrono::steady_clock::now();
    std::vector<Span> pending;
    for (;;) {
        bool open = queue_.drain(batch, options_.flush_interval);
        for (Span& s : batch) pending.push_back(std::move(s));
        batch.clear();
        auto now = std::chrono::steady_clock::now();
        bool due = now - last_flush >= options_.flush_interval || pending.size() >= 256 || !open;
        if (!pending.empty() && due) {
            last_flush = now;
            for (size_t first = 0; first < pending.size(); first += kMaxBatch) {
                size_t n = std::min(kMaxBatch, pending.size() - first);
                std::string body = zipkin_json(pending, first, n);
                std::string why;
                bool ok = false;
                for (int attempt = 0; attempt < options_.attempts && !ok; ++attempt) {
                    if (attempt > 0) {
                        if (stopping_) break;
                        std::this_thread::sleep_for(std::chrono::milliseconds(100 << attempt));
                    }
                    ok = post(body, why);
                    if (!ok) failed_posts_.fetch_add(1, std::memory_order_relaxed);
                }
                if (ok) {
                    sent_.fetch_add(n, std::memory_order_relaxed);
                } else {
                    queue_.count_dropped(n);
                    if (log_) log_("zipkin: dropped " + std::to_string(n) + " span(s): " + why);
                }
            }
            pending.clear();
            pending.shrink_to_fit();  // a burst's worth of spans is not kept around
        }
        if (!open) return;
    }
}

bool ZipkinExporter::post(const std::string& body, std::string& why) {
    asio::io_context io;
    bool ok = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
            auto exec = co_await asio::this_coro::executor;
            asio::ip::tcp::resolver resolver(exec);
            auto [rec, results] = co_await resolver.async_resolve(options_.host, options_.port, nothrow);
            if (rec) {
                why = "resolve " + options_.host + ": " + rec.message();
                co_return;
            }
            beast::tcp_stream stream(exec);
            stream.expires_after(options_.timeout);
            auto [cec, ep] = co_await stream.async_connect(results, nothrow);
            if (cec) {
                why = "connect " + options_.host + ":" + options_.port + ": " + cec.message();
                co_return;
            }
            http::request<http::string_body> req{http::verb::post, options_.path, 11};
            req.set(http::field::host, options_.host + ":" + options_.port);
            req.set(http::field::content_type, "application/json");
            req.set(http::field::user_agent, "remora-proxy");
            req.body() = body;
            req.prepare_payload();
            auto [wec, wn] = co_await http::async_write(stream, req, nothrow);
            if (wec) {
                why = "send: " + wec.message();
                co_return;
            }
            beast::flat_buffer buf;
            http::response<http::string_body> res;
            auto [rdec, rn] = co_await http::async_read(stream, buf, res, nothrow);
            if (rdec) {
                why = "response: " + rdec.message();
                co_return;
            }
            if (res.result_int() / 100 != 2) {
                why = "collector answered " + std::to_string(res.result_int());
                co_return;
            }
            ok = true;
            beast::error_code ignored;
            stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
        },
        asio::detached);
    io.run();
    return ok;
}

}  // namespace remora::proxy
