// A small posix_spawn wrapper: pipes for stdin, stdout and stderr, one poll loop so a helper that
// prints a lot while we still write its input cannot deadlock us.
#include "proxy/init/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <system_error>

extern char** environ;

namespace remora::init {

namespace {

// Closes a descriptor once, on every path out.
class Fd {
  public:
    Fd() = default;
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { reset(); }
    int get() const { return fd_; }
    void reset(int fd = -1) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

  private:
    int fd_ = -1;
};

struct Pipe {
    Fd read;
    Fd write;
};

void open_pipe(Pipe& p) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        throw std::system_error(errno, std::generic_category(), "pipe");
    }
    p.read.reset(fds[0]);
    p.write.reset(fds[1]);
}

// Ignores SIGPIPE while we write to a helper that may exit without reading all of its input.
class IgnoreSigpipe {
  public:
    IgnoreSigpipe() {
        struct sigaction ignore {};
        ignore.sa_handler = SIG_IGN;
        ::sigemptyset(&ignore.sa_mask);
        ::sigaction(SIGPIPE, &ignore, &old_);
    }
    ~IgnoreSigpipe() { ::sigaction(SIGPIPE, &old_, nullptr); }
    IgnoreSigpipe(const IgnoreSigpipe&) = delete;
    IgnoreSigpipe& operator=(const IgnoreSigpipe&) = delete;

  private:
    struct sigaction old_ {};
};

int wait_for(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) throw std::system_error(errno, std::generic_category(), "waitpid");
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

}  // namespace

ProcessResult run_process(const std::vector<std::string>& argv, std::string_view input) {
    if (argv.empty()) throw std::invalid_argument("run_process: empty argv");
    Pipe in, out, err;
    open_pipe(in);
    open_pipe(out);
    open_pipe(err);

    posix_spawn_file_actions_t actions;
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawn_file_actions_adddup2(&actions, in.read.get(), 0);
    ::posix_spawn_file_actions_adddup2(&actions, out.write.get(), 1);
    ::posix_spawn_file_actions_adddup2(&actions, err.write.get(), 2);
    std::vector<char*> cargv;
    for (const std::string& a : argv)
        cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, cargv.data(), environ);
    ::posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::system_error(rc, std::generic_category(), "cannot run " + argv[0]);
    in.read.reset();
    out.write.reset();
    err.write.reset();

    IgnoreSigpipe ignore_sigpipe;
    ::fcntl(in.write.get(), F_SETFL, ::fcntl(in.write.get(), F_GETFL) | O_NONBLOCK);
    if (input.empty()) in.write.reset();

    ProcessResult result;
    size_t written = 0;
    bool too_much = false;
    while ((out.read.get() >= 0 || err.read.get() >= 0) && !too_much) {
        pollfd fds[3] = {
            {in.write.get(), POLLOUT, 0}, {out.read.get(), POLLIN, 0}, {err.read.get(), POLLIN, 0}};
        if (::poll(fds, 3, -1) < 0) {
            if (errno == EINTR) continue;
            throw std::system_error(errno, std::generic_category(), "poll");
        }
        if (fds[0].revents & (POLLOUT | POLLERR | POLLHUP)) {
            ssize_t n = ::write(in.write.get(), input.data() + written, input.size() - written);
            if (n > 0) written += static_cast<size_t>(n);
            // EPIPE: the helper stopped reading; its exit status and stderr will say why.
            if ((n < 0 && errno != EAGAIN && errno != EINTR) || written == input.size()) {
                in.write.reset();
            }
        }
        for (int i = 1; i < 3; ++i) {
            if (!(fds[i].revents & (POLLIN | POLLERR | POLLHUP))) continue;
            Fd& fd = i == 1 ? out.read : err.read;
            std::string& sink = i == 1 ? result.out : result.err;
            char buf[65536];
            ssize_t n = ::read(fd.get(), buf, sizeof buf);
            if (n > 0) {
                sink.append(buf, static_cast<size_t>(n));
                too_much = sink.size() > kMaxProcessOutputBytes;
            } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                fd.reset();
            }
        }
    }
    in.write.reset();
    if (too_much) {
        ::kill(pid, SIGKILL);
        wait_for(pid);
        throw std::runtime_error(argv[0] + " printed more than " +
                                 std::to_string(kMaxProcessOutputBytes >> 20) + " MiB");
    }
    result.exit_code = wait_for(pid);
    return result;
}

std::string find_program(std::string_view name, std::string_view path_list) {
    while (true) {
        size_t colon = path_list.find(':');
        std::string_view dir = path_list.substr(0, colon);
        if (!dir.empty()) {
            std::string candidate = std::string(dir) + "/" + std::string(name);
            struct stat st {};
            if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
                ::access(candidate.c_str(), X_OK) == 0) {
                return candidate;
            }
        }
        if (colon == std::string_view::npos) return "";
        path_list.remove_prefix(colon + 1);
    }
}

}  // namespace remora::init
