// Background writers for telemetry that must never slow a request: the access-log writer and the
// Zipkin span exporter. Each owns one thread and a bounded queue.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "proxy/telemetry/bounded_queue.h"
#include "proxy/telemetry/tracing.h"

namespace remora::proxy {

// Appends lines to a file ("/dev/stdout" as Istio's accessLogFile usually says).
class AccessLogWriter {
public:
    // Opens `path` for appending; throws std::runtime_error naming it.
    AccessLogWriter(const std::string& path, size_t capacity = 8192);
    ~AccessLogWriter();
    bool submit(std::string line) { return queue_.push(std::move(line)); }
    uint64_t dropped() const { return queue_.dropped(); }
    uint64_t written() const { return written_.load(std::memory_order_relaxed); }

private:
    void run();
    int fd_ = -1;
    BoundedQueue<std::string> queue_;
    std::atomic<uint64_t> written_{0};
    std::thread thread_;
};

struct ZipkinOptions {
    std::string host = "127.0.0.1";
    std::string port = "9411";
    std::string path = "/api/v2/spans";
    size_t capacity = 4096;                          // spans waiting; more are dropped
    std::chrono::milliseconds flush_interval{1000};  // a batch at least this often
    std::chrono::milliseconds timeout{2000};         // per POST
    int attempts = 3;                                // per batch, with backoff between
};

// Posts batches of spans as Zipkin v2 JSON.
class ZipkinExporter {
public:
    using LogFn = std::function<void(const std::string&)>;
    ZipkinExporter(ZipkinOptions options, LogFn log);
    ~ZipkinExporter();
    bool submit(Span span) { return queue_.push(std::move(span)); }
    uint64_t dropped() const { return queue_.dropped(); }
    uint64_t sent() const { return sent_.load(std::memory_order_relaxed); }
    uint64_t failed_posts() const { return failed_posts_.load(std::memory_order_relaxed); }
    const ZipkinOptions& options() const { return options_; }

private:
    void run();
    bool post(const std::string& body, std::string& why);
    ZipkinOptions options_;
    LogFn log_;
    BoundedQueue<Span> queue_;
    std::atomic<bool> stopping_{false};
    std::atomic<uint64_t> sent_{0}, failed_posts_{0};
    std::thread thread_;
};

}  // namespace remora::proxy
