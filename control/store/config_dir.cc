// The --config-dir watcher: inotify on the directory (and its subdirectories) wakes a thread that
// waits for the burst of events to settle, reads every YAML file and hands the set to the store.
#include "control/store/config_dir.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>

#include "common/files.h"

namespace remora::control::store {

namespace fs = std::filesystem;

namespace {

bool hidden(const fs::path& p) {
    std::string name = p.filename().string();
    return !name.empty() && name.front() == '.';
}

constexpr uint32_t kWatchMask = IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE |
                                IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF |
                                IN_MOVE_SELF;

}  // namespace

std::vector<SourceFile> read_config_dir(const fs::path& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw std::runtime_error(dir.string() + ": not a directory");
    std::vector<fs::path> paths;
    auto it = fs::recursive_directory_iterator(dir, fs::directory_options::follow_directory_symlink,
                                               ec);
    for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (hidden(it->path())) {
            if (it->is_directory(ec)) it.disable_recursion_pending();
            continue;
        }
        auto ext = it->path().extension();
        if ((ext == ".yaml" || ext == ".yml") && it->is_regular_file(ec)) {
            paths.push_back(it->path());
        }
    }
    if (ec) throw std::runtime_error(dir.string() + ": " + ec.message());
    std::sort(paths.begin(), paths.end());
    std::vector<SourceFile> files;
    for (const fs::path& p : paths)
        files.push_back({p.string(), common::read_file(p)});
    return files;
}

ConfigDirWatcher::ConfigDirWatcher(fs::path dir, ConfigStore& store, Logger log,
                                   std::chrono::milliseconds rescan_every)
    : dir_(std::move(dir)), store_(store), log_(std::move(log)), rescan_every_(rescan_every) {}

ConfigDirWatcher::~ConfigDirWatcher() {
    stop();
}

bool ConfigDirWatcher::start() {
    inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (inotify_fd_ < 0 || wake_fd_ < 0) {
        throw std::runtime_error("--config-dir: cannot watch " + dir_.string() +
                                 ": inotify/eventfd failed");
    }
    add_watches();
    bool ok = sync_now();
    thread_ = std::thread([this] { run(); });
    return ok;
}

void ConfigDirWatcher::stop() {
    if (thread_.joinable()) {
        stopping_ = true;
        uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
        thread_.join();
    }
    if (inotify_fd_ >= 0) ::close(inotify_fd_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
    inotify_fd_ = wake_fd_ = -1;
}

void ConfigDirWatcher::add_watches() {
    // Adding a watch that exists is harmless (same descriptor); watches of removed directories
    // disappear by themselves. A replaced top directory is picked up here on the next rescan.
    inotify_add_watch(inotify_fd_, dir_.c_str(), kWatchMask);
    std::error_code ec;
    auto it = fs::recursive_directory_iterator(dir_, ec);
    for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (!it->is_directory(ec)) continue;
        if (hidden(it->path())) {
            it.disable_recursion_pending();
            continue;
        }
        inotify_add_watch(inotify_fd_, it->path().c_str(), kWatchMask);
    }
}

bool ConfigDirWatcher::sync_now() {
    std::vector<SourceFile> files;
    try {
        files = read_config_dir(dir_);
    } catch (const std::exception& e) {
        log_(std::string("--config-dir: ") + e.what() + "; keeping the last good configuration");
        return false;
    }
    if (have_read_ && files == last_read_) return last_ok_;
    have_read_ = true;
    last_read_ = files;
    ChangeResult r;
    try {
        r = store_.set_config_dir(files);
    } catch (const std::exception& e) {
        // Never the watcher thread's end (an escaped exception there is std::terminate).
        r.status = 500;
        r.error = std::string("internal error: ") + e.what();
    }
    last_ok_ = r.ok();
    if (!r.ok()) {
        log_("--config-dir " + dir_.string() + ": " + r.error +
             "; keeping the last good configuration");
        for (const std::string& m : r.messages)
            log_("  " + m);
        return false;
    }
    for (const std::string& w : r.warnings)
        log_("--config-dir: " + w);
    if (!r.items.empty()) {
        std::string what;
        for (const auto& item : r.items) {
            what += (what.empty() ? "" : ", ") + item.key.str() + " " + item.action;
        }
        log_("--config-dir " + dir_.string() + ": " + what + "; version " +
             std::to_string(r.version));
    }
    return true;
}

void ConfigDirWatcher::run() {
    alignas(inotify_event) char buf[8192];
    auto drain = [&] {
        while (::read(inotify_fd_, buf, sizeof buf) > 0) {
        }
    };
    while (!stopping_) {
        pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
        int n = ::poll(fds, 2, static_cast<int>(rescan_every_.count()));
        if (stopping_) break;
        if (n > 0 && (fds[0].revents & POLLIN)) {
            // An editor or a ConfigMap update is several events; read once they settle (100 ms
            // of quiet, at most 1 s after the first).
            drain();
            for (int i = 0; i < 10 && !stopping_; ++i) {
                pollfd again{inotify_fd_, POLLIN, 0};
                if (::poll(&again, 1, 100) <= 0) break;
                drain();
            }
        }
        if (stopping_) break;
        add_watches();
        sync_now();
    }
}

}  // namespace remora::control::store
