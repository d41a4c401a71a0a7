// --config-dir: keeps the store's directory-owned resources equal to a directory of Istio YAML
// (a mounted ConfigMap on Kubernetes), rescanning on inotify events and once in a while.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "control/store/store.h"

namespace remora::control::store {

// Every *.yaml and *.yml file under `dir` (sorted, recursive, following symlinks), skipping
// names that start with "." (a ConfigMap mount's ..data and ..<timestamp> directories hold the
// same files again). Throws std::runtime_error when `dir` cannot be read.
std::vector<SourceFile> read_config_dir(const std::filesystem::path& dir);

class ConfigDirWatcher {
  public:
    using Logger = std::function<void(const std::string&)>;

    // `rescan_every` is the safety net for events inotify cannot see (a directory replaced
    // under its watch, network filesystems).
    ConfigDirWatcher(std::filesystem::path dir, ConfigStore& store, Logger log,
                     std::chrono::milliseconds rescan_every = std::chrono::seconds(5));
    ~ConfigDirWatcher();
    ConfigDirWatcher(const ConfigDirWatcher&) = delete;
    ConfigDirWatcher& operator=(const ConfigDirWatcher&) = delete;

    // Loads the directory into the store now (true when it is in the store, changed or not),
    // then watches it from a thread of its own.
    bool start();
    void stop();
    // Reads the directory and, if it differs from what was last read, hands it to the store.
    // Logs refusals with their file:line:col messages. True when the store holds this state.
    bool sync_now();

  private:
    void run();
    void add_watches();

    std::filesystem::path dir_;
    ConfigStore& store_;
    Logger log_;
    std::chrono::milliseconds rescan_every_;
    int inotify_fd_ = -1;
    int wake_fd_ = -1;  // eventfd: stop() wakes the thread
    std::atomic<bool> stopping_{false};
    std::thread thread_;
    std::vector<SourceFile> last_read_;
    bool last_ok_ = false;
    bool have_read_ = false;
};

}  // namespace remora::control::store
