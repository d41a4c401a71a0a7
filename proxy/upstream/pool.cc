// Idle-connection pool with a liveness peek before reuse.
#include "proxy/upstream/pool.h"

#include <sys/socket.h>

#include <cerrno>

namespace remora::proxy {

namespace {

int native_fd(UpstreamConn& c) {
    if (auto* p = std::get_if<PlainStream>(&c.stream)) return p->socket().native_handle();
    if (auto* t = std::get_if<TlsStream>(&c.stream)) return t->next_layer().socket().native_handle();
    return -1;
}

enum class Idle { alive, closed, stray_bytes };

// An idle keep-alive connection must have nothing to read: EOF or stray bytes mean it is unusable.
Idle idle_state(UpstreamConn& c) {
    int fd = native_fd(c);
    if (fd < 0) return Idle::closed;
    char byte;
    ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Idle::alive;
    // For TLS a pending record may be a session ticket or close_notify; only a ticket is harmless,
    // and telling them apart costs a read, so treat any pending data as a reason to drop it.
    if (n > 0 && std::holds_alternative<PlainStream>(c.stream)) return Idle::stray_bytes;
    return Idle::closed;
}

}  // namespace

std::unique_ptr<UpstreamConn> UpstreamPool::take(const std::string& key) {
    auto it = idle_.find(key);
    if (it == idle_.end()) return nullptr;
    auto& list = it->second;
    while (!list.empty()) {
        std::unique_ptr<UpstreamConn> c = std::move(list.back());
        list.pop_back();
        idle_count_.fetch_sub(1, std::memory_order_relaxed);
        switch (idle_state(*c)) {
            case Idle::alive: return c;
            case Idle::stray_bytes: count_dirty(); break;  // the answer to nothing: never read it
            case Idle::closed: break;
        }
    }
    return nullptr;
}

void UpstreamPool::put(std::unique_ptr<UpstreamConn> conn) {
    auto& list = idle_[conn->key];
    if (list.size() >= max_idle_) return;  // dropping closes it
    list.push_back(std::move(conn));
    idle_count_.fetch_add(1, std::memory_order_relaxed);
}

size_t UpstreamPool::idle() const {
    size_t n = 0;
    for (const auto& [k, v] : idle_) n += v.size();
    return n;
}

}  // namespace remora::proxy
