// remora-init: installs (or removes) the iptables rules that send a pod's TCP traffic through
// remora-proxy, as istio-iptables does for Envoy; one iptables-restore transaction per run.
#include <unistd.h>

#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "proxy/init/capture_rules.h"
#include "proxy/init/process.h"

namespace {

using namespace remora::init;

constexpr const char* kUsage = R"(usage: remora-init [flags]

Captures the pod's TCP traffic for remora-proxy with iptables (nat table, REDIRECT), taking
istio-iptables' flags. Defaults are those of Istio's injected sidecar.

  -p, --envoy-port PORT                 outbound capture port (default 15001)
  -z, --inbound-capture-port PORT       inbound capture port (default 15006)
  -u, --proxy-uid UID[,UID...]          the proxy's uid, never captured (default 1337)
  -g, --proxy-gid GID[,GID...]          the proxy's gid, never captured (default: -u)
  -m, --istio-inbound-interception-mode REDIRECT
                                        only REDIRECT is supported (TPROXY is not)
  -i, --istio-service-cidr '*'|CIDR,... outbound destinations to capture: '*' all (default),
                                        a list only those, "" none
  -x, --istio-service-exclude-cidr CIDR,...
                                        outbound destinations never captured (default "")
  -b, --istio-inbound-ports '*'|PORT,...
                                        inbound ports to capture: '*' all (default), a list
                                        only those, "" none
  -d, --istio-local-exclude-ports PORT,...
                                        inbound ports not captured with -b '*'
                                        (default 15090,15021,15020)
  -o, --istio-local-outbound-ports-exclude PORT,...
                                        outbound ports never captured (default "")
  -q, --istio-local-outbound-ports-include PORT,...
                                        outbound ports captured whatever -i says (default "")
  -n, --dry-run                         print the iptables-restore text; change nothing
      --clean                           remove remora-init's REMORA_* chains and the rules that
                                        jump to them, nothing else
  -h, --help                            this text

Exit status: 0 done, 1 could not apply (nothing changed), 2 bad flags.
)";

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

void error_line(const std::string& message) {
    std::cerr << "remora-init: " << message << "\n";
}

void indented(const std::string& text) {
    size_t start = 0;
    while (start < text.size()) {
        size_t nl = text.find('\n', start);
        if (nl == std::string::npos) nl = text.size();
        std::cerr << "    " << text.substr(start, nl - start) << "\n";
        start = nl + 1;
    }
}

bool permission_problem(const std::string& err) {
    for (const char* sign : {"Permission denied", "you must be root", "Operation not permitted"}) {
        if (err.find(sign) != std::string::npos) return true;
    }
    return false;
}

// Reports a failed helper run; the nat table is as it was, since iptables-restore commits a table
// whole or not at all.
int helper_failed(const std::string& what, const ProcessResult& r) {
    if (permission_problem(r.err)) {
        error_line(
            "permission denied: changing iptables rules needs root (CAP_NET_ADMIN) in the "
            "pod's network namespace" +
            std::string(::geteuid() != 0 ? " and this runs as uid " + std::to_string(::geteuid())
                                         : "") +
            "; nothing was changed");
    } else {
        error_line(what + " failed with exit " + std::to_string(r.exit_code) +
                   "; nothing was changed");
    }
    indented(what + ": " + r.err);
    return kExitFailed;
}

struct Tools {
    std::string restore;
    std::string save;
};

// iptables-save is taken from iptables-restore's directory, so both use the same backend (nft or
// legacy).
bool find_tools(Tools& tools) {
    const char* path = std::getenv("PATH");
    tools.restore = find_program("iptables-restore", path ? path : "");
    if (tools.restore.empty()) {
        error_line(
            "iptables-restore was not found in PATH (install the iptables package); "
            "nothing was changed");
        return false;
    }
    std::string dir = tools.restore.substr(0, tools.restore.rfind('/'));
    tools.save = find_program("iptables-save", dir);
    if (tools.save.empty()) tools.save = find_program("iptables-save", path ? path : "");
    if (tools.save.empty()) {
        error_line("iptables-save was not found next to " + tools.restore +
                   " nor in PATH (install the iptables package); nothing was changed");
        return false;
    }
    return true;
}

int run(const InitCommand& cmd) {
    for (const std::string& note : option_notes(cmd.options))
        error_line("note: " + note);
    NatRules wanted = build_capture_rules(cmd.options);
    if (cmd.dry_run && !cmd.clean) {
        std::cout << render_restore_text(wanted);
        return 0;
    }

    Tools tools;
    if (!find_tools(tools)) return kExitFailed;
    ProcessResult saved = run_process({tools.save, "-t", "nat"}, "");
    if (saved.exit_code != 0) return helper_failed("iptables-save", saved);
    NatState current = parse_iptables_save(saved.out);

    std::string text = cmd.clean ? build_clean_text(current) : build_apply_text(wanted, current);
    if (cmd.dry_run) {
        std::cout << text;
        return 0;
    }
    if (text.empty()) return 0;  // --clean with nothing installed

    ProcessResult restored = run_process({tools.restore, "--noflush"}, text);
    if (restored.exit_code != 0) {
        int rc = helper_failed("iptables-restore", restored);
        std::cerr << "  the transaction it refused:\n";
        indented(text);
        return rc;
    }
    if (cmd.clean) {
        std::cout << "remora-init: removed the REMORA_ chains and the rules jumping to them\n";
    } else {
        std::cout << "remora-init: capture rules in place: " << describe(cmd.options) << "\n";
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    InitCommand cmd;
    try {
        cmd = parse_init_args(args);
    } catch (const UsageError& e) {
        error_line(e.what());
        std::cerr << "run remora-init --help for the flags\n";
        return kExitUsage;
    }
    if (cmd.help) {
        std::cout << kUsage;
        return 0;
    }
    try {
        return run(cmd);
    } catch (const std::exception& e) {
        error_line(std::string(e.what()) + "; nothing was changed");
        return kExitFailed;
    }
}
