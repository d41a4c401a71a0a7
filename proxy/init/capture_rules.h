// remora-init's rules: istio-iptables' flags in, iptables-restore text for the nat table out, and
// the plan that installs (or removes) them over whatever the nat table already holds.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/args.h"

namespace remora::init {

using common::UsageError;

// Every chain remora-init owns starts with this; --clean removes exactly these chains and the
// rules elsewhere that jump to them.
inline constexpr std::string_view kChainPrefix = "REMORA_";
inline constexpr const char* kInboundChain = "REMORA_INBOUND";
inline constexpr const char* kRedirectChain = "REMORA_REDIRECT";
inline constexpr const char* kInRedirectChain = "REMORA_IN_REDIRECT";
inline constexpr const char* kOutputChain = "REMORA_OUTPUT";
// The proxy's HBONE tunnel port in Istio: never redirected, as istio-iptables' -e default.
inline constexpr std::uint16_t kInboundTunnelPort = 15008;

struct Cidr {
    std::string text;  // normalised "address/length"
    bool ipv6 = false;
    bool loopback = false;  // the address is in 127.0.0.0/8 or is ::1
};

// The flags, parsed and validated. Defaults are those of Istio's injected sidecar
// (`-p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x "" -b '*' -d 15090,15021,15020`).
struct CaptureOptions {
    std::uint16_t outbound_port = 15001;          // -p
    std::uint16_t inbound_port = 15006;           // -z
    std::vector<std::uint32_t> proxy_uids{1337};  // -u
    std::vector<std::uint32_t> proxy_gids{1337};  // -g (defaults to -u)
    bool outbound_all = true;                     // -i '*'
    std::vector<Cidr> outbound_include;           // -i CIDR,... (when not '*'; empty = none)
    std::vector<Cidr> outbound_exclude;           // -x
    bool inbound_all = true;                      // -b '*'
    std::vector<std::uint16_t> inbound_ports;     // -b PORT,... (when not '*'; empty = none)
    std::vector<std::uint16_t> inbound_exclude_ports{15090, 15021, 15020};  // -d
    std::vector<std::uint16_t> outbound_exclude_ports;                      // -o
    std::vector<std::uint16_t> outbound_include_ports;                      // -q
};

struct InitCommand {
    bool help = false;
    bool dry_run = false;
    bool clean = false;
    CaptureOptions options;
};

// Parses remora-init's arguments (without the program name): short flags (`-p 15001`,
// `-p15001`), long flags (`--envoy-port 15001`, `--envoy-port=15001`). Throws UsageError naming
// the flag for an unknown flag, a missing value or an invalid value.
InitCommand parse_init_args(const std::vector<std::string>& args);

// One rule of the nat table: `-A <chain> <spec>`.
struct NatRule {
    std::string chain;
    std::string spec;
    bool operator==(const NatRule&) const = default;
};

struct NatRules {
    std::vector<std::string> chains;  // chains to create, in order
    std::vector<NatRule> rules;       // rules to append, in order
};

// The rules istio-iptables (tools/istio-iptables/pkg/capture/run.go) emits for these options in
// REDIRECT mode, IPv4, with REMORA_ chains.
NatRules build_capture_rules(const CaptureOptions& options);

// The iptables-restore text that installs `rules` on a nat table holding none of them: what
// --dry-run prints.
std::string render_restore_text(const NatRules& rules);

// The nat table as `iptables-save -t nat` prints it (other tables are skipped).
struct NatState {
    std::vector<std::string> chains;  // every chain declared, built-in ones included
    std::vector<NatRule> rules;
};
NatState parse_iptables_save(std::string_view text);

// The target of a rule's `-j`/`-g`, or "" when it has none.
std::string jump_target(std::string_view spec);

// One iptables-restore --noflush transaction that leaves exactly `wanted` in place of whatever
// REMORA_ chains and jumps `current` has: our chains are flushed and refilled, jumps that are
// already right stay where they are (so rules a user added around them keep their order), other
// jumps to our chains are deleted. Running it twice leaves the same table. On a table without our
// rules it equals render_restore_text(wanted).
std::string build_apply_text(const NatRules& wanted, const NatState& current);

// The transaction that removes every REMORA_ chain and every rule that jumps to one, touching
// nothing else; "" when there is nothing to remove.
std::string build_clean_text(const NatState& current);

// Notes about accepted values that have no effect (IPv6 ranges: remora-init programs IPv4 only).
std::vector<std::string> option_notes(const CaptureOptions& options);

// One line on what the rules capture, for the log.
std::string describe(const CaptureOptions& options);

}  // namespace remora::init
