// A bounded hand-off from worker threads to one background thread (access-log writer, span
// exporter). Pushing never waits: when the queue is full the item is dropped and counted. The
// lock is held only to append or to swap the contents out.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <vector>

namespace remora::proxy {

template <class T>
class BoundedQueue {
public:
    explicit BoundedQueue(size_t capacity) : capacity_(capacity) {}

    bool push(T item) {
        {
            std::lock_guard lock(mu_);
            if (closed_ || items_.size() >= capacity_) {
                dropped_.fetch_add(1, std::memory_order_relaxed);
                return false;
            }
            items_.push_back(std::move(item));
        }
        cv_.notify_one();
        return true;
    }

    // Waits up to `wait` for at least one item, then takes all of them. False once closed and
    // empty.
    bool drain(std::vector<T>& out, std::chrono::milliseconds wait) {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, wait, [&] { return closed_ || !items_.empty(); });
        out.clear();
        out.swap(items_);
        return !(closed_ && out.empty());
    }

    void close() {
        {
            std::lock_guard lock(mu_);
            closed_ = true;
        }
        cv_.notify_all();
    }

    void count_dropped(uint64_t n) { dropped_.fetch_add(n, std::memory_order_relaxed); }
    uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
    size_t capacity() const { return capacity_; }

private:
    size_t capacity_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<T> items_;
    bool closed_ = false;
    std::atomic<uint64_t> dropped_{0};
};

}  // namespace remora::proxy
