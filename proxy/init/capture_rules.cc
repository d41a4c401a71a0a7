// remora-init's flags and rules; pure functions, so every rule can be tested without root.
#include "proxy/init/capture_rules.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <optional>
#include <set>

namespace remora::init {

namespace {

enum class Flag {
    OutboundPort,
    InboundPort,
    ProxyUid,
    ProxyGid,
    Mode,
    OutboundInclude,
    OutboundExclude,
    InboundPorts,
    InboundExcludePorts,
    OutboundExcludePorts,
    OutboundIncludePorts,
    DryRun,
    Clean,
    Help,
};

struct FlagDef {
    char short_name;  // 0: long form only
    std::string_view long_name;
    Flag flag;
    bool takes_value;
};

// istio-iptables' spelling of each flag, so an existing istio-init command line works unchanged.
constexpr FlagDef kFlags[] = {
    {'p', "envoy-port", Flag::OutboundPort, true},
    {'z', "inbound-capture-port", Flag::InboundPort, true},
    {'u', "proxy-uid", Flag::ProxyUid, true},
    {'g', "proxy-gid", Flag::ProxyGid, true},
    {'m', "istio-inbound-interception-mode", Flag::Mode, true},
    {'i', "istio-service-cidr", Flag::OutboundInclude, true},
    {'x', "istio-service-exclude-cidr", Flag::OutboundExclude, true},
    {'b', "istio-inbound-ports", Flag::InboundPorts, true},
    {'d', "istio-local-exclude-ports", Flag::InboundExcludePorts, true},
    {'o', "istio-local-outbound-ports-exclude", Flag::OutboundExcludePorts, true},
    {'q', "istio-local-outbound-ports-include", Flag::OutboundIncludePorts, true},
    {'n', "dry-run", Flag::DryRun, false},
    {0, "clean", Flag::Clean, false},
    {'h', "help", Flag::Help, false},
};

std::string label(const FlagDef& def) {
    std::string long_form = "--" + std::string(def.long_name);
    if (def.short_name == 0) return long_form;
    return std::string("-") + def.short_name + " (" + long_form + ")";
}

[[noreturn]] void bad_value(const FlagDef& def, std::string_view value, std::string_view why) {
    throw UsageError(label(def) + " \"" + std::string(value) + "\": " + std::string(why));
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

// "a,b,c" into its trimmed items; "" is no items; an empty item ("80,,81") is an error.
std::vector<std::string_view> split_list(const FlagDef& def, std::string_view text) {
    std::vector<std::string_view> items;
    if (trim(text).empty()) return items;
    size_t start = 0;
    while (true) {
        size_t comma = text.find(',', start);
        std::string_view item =
            trim(text.substr(start, comma == std::string_view::npos ? comma : comma - start));
        if (item.empty()) bad_value(def, text, "empty entry in the comma-separated list");
        items.push_back(item);
        if (comma == std::string_view::npos) break;
        start = comma + 1;
    }
    return items;
}

std::optional<std::uint64_t> parse_decimal(std::string_view s) {
    if (s.empty() || s.size() > 10) return std::nullopt;
    std::uint64_t n = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return n;
}

std::uint16_t parse_port(const FlagDef& def, std::string_view item, std::string_view whole) {
    auto n = parse_decimal(item);
    if (!n || *n < 1 || *n > 65535) {
        bad_value(def, whole, "\"" + std::string(item) + "\" is not a port (expected 1-65535)");
    }
    return static_cast<std::uint16_t>(*n);
}

std::vector<std::uint16_t> parse_port_list(const FlagDef& def, std::string_view text) {
    std::vector<std::uint16_t> ports;
    for (std::string_view item : split_list(def, text))
        ports.push_back(parse_port(def, item, text));
    return ports;
}

std::vector<std::uint32_t> parse_id_list(const FlagDef& def, std::string_view text) {
    std::vector<std::uint32_t> ids;
    for (std::string_view item : split_list(def, text)) {
        auto n = parse_decimal(item);
        // 4294967295 is (uid_t)-1, "no change" to the kernel, never a real owner.
        if (!n || *n >= 4294967295ULL) {
            bad_value(def, text, "\"" + std::string(item) + "\" is not a numeric id");
        }
        ids.push_back(static_cast<std::uint32_t>(*n));
    }
    if (ids.empty()) bad_value(def, text, "a numeric id is required");
    return ids;
}

Cidr parse_cidr(const FlagDef& def, std::string_view item, std::string_view whole) {
    auto fail = [&](std::string_view why) {
        bad_value(def, whole, "\"" + std::string(item) + "\" " + std::string(why));
    };
    size_t slash = item.find('/');
    if (slash == std::string_view::npos) {
        fail("is not a CIDR (expected ADDRESS/LENGTH, e.g. 10.0.0.0/8)");
    }
    std::string addr(item.substr(0, slash));
    Cidr cidr;
    unsigned char buf[16] = {};
    int max_len = 32;
    if (::inet_pton(AF_INET, addr.c_str(), buf) == 1) {
        cidr.loopback = buf[0] == 127;
    } else if (::inet_pton(AF_INET6, addr.c_str(), buf) == 1) {
        cidr.ipv6 = true;
        max_len = 128;
        static const unsigned char kLoopback6[16] = {0, 0, 0, 0, 0, 0, 0, 0,
                                                     0, 0, 0, 0, 0, 0, 0, 1};
        cidr.loopback = std::equal(buf, buf + 16, kLoopback6);
    } else {
        fail("is not a CIDR: \"" + addr + "\" is not an IPv4 or IPv6 address");
    }
    auto len = parse_decimal(item.substr(slash + 1));
    if (!len || *len > static_cast<std::uint64_t>(max_len)) {
        fail("has a bad prefix length (expected 0-" + std::to_string(max_len) + ")");
    }
    char text[INET6_ADDRSTRLEN] = {};
    ::inet_ntop(cidr.ipv6 ? AF_INET6 : AF_INET, buf, text, sizeof text);
    cidr.text = std::string(text) + "/" + std::to_string(*len);
    return cidr;
}

// "*" sets `all`; otherwise a list of CIDRs ("" = none).
std::vector<Cidr> parse_cidr_list(const FlagDef& def, std::string_view text, bool& all) {
    all = trim(text) == "*";
    std::vector<Cidr> cidrs;
    if (all) return cidrs;
    for (std::string_view item : split_list(def, text)) {
        if (item == "*") bad_value(def, text, "'*' cannot be combined with other ranges");
        cidrs.push_back(parse_cidr(def, item, text));
    }
    return cidrs;
}

const FlagDef* find_long(std::string_view name) {
    for (const FlagDef& def : kFlags) {
        if (def.long_name == name) return &def;
    }
    return nullptr;
}

const FlagDef* find_short(char name) {
    for (const FlagDef& def : kFlags) {
        if (def.short_name == name) return &def;
    }
    return nullptr;
}

void apply_flag(InitCommand& cmd, const FlagDef& def, const std::string& value, bool& gid_given) {
    CaptureOptions& o = cmd.options;
    switch (def.flag) {
        case Flag::OutboundPort:
            o.outbound_port = parse_port(def, trim(value), value);
            break;
        case Flag::InboundPort:
            o.inbound_port = parse_port(def, trim(value), value);
            break;
        case Flag::ProxyUid:
            o.proxy_uids = parse_id_list(def, value);
            break;
        case Flag::ProxyGid:
            o.proxy_gids = parse_id_list(def, value);
            gid_given = true;
            break;
        case Flag::Mode: {
            std::string mode(trim(value));
            std::transform(mode.begin(), mode.end(), mode.begin(),
                           [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
            if (mode == "TPROXY") {
                bad_value(def, value,
                          "TPROXY interception is not supported by remora-init; use REDIRECT");
            }
            if (mode != "REDIRECT") bad_value(def, value, "expected REDIRECT");
            break;
        }
        case Flag::OutboundInclude:
            o.outbound_include = parse_cidr_list(def, value, o.outbound_all);
            break;
        case Flag::OutboundExclude: {
            bool all = false;
            o.outbound_exclude = parse_cidr_list(def, value, all);
            if (all) {
                bad_value(def, value,
                          "'*' is not allowed: to capture nothing outbound use -i \"\"");
            }
            break;
        }
        case Flag::InboundPorts:
            o.inbound_all = trim(value) == "*";
            o.inbound_ports.clear();
            if (!o.inbound_all) o.inbound_ports = parse_port_list(def, value);
            break;
        case Flag::InboundExcludePorts:
            o.inbound_exclude_ports = parse_port_list(def, value);
            break;
        case Flag::OutboundExcludePorts:
            o.outbound_exclude_ports = parse_port_list(def, value);
            break;
        case Flag::OutboundIncludePorts:
            o.outbound_include_ports = parse_port_list(def, value);
            break;
        case Flag::DryRun:
            cmd.dry_run = true;
            break;
        case Flag::Clean:
            cmd.clean = true;
            break;
        case Flag::Help:
            cmd.help = true;
            break;
    }
}

std::string join_ports(const std::vector<std::uint16_t>& ports) {
    std::string out;
    for (std::uint16_t p : ports)
        out += (out.empty() ? "" : ",") + std::to_string(p);
    return out;
}

std::string join_ids(const std::vector<std::uint32_t>& ids) {
    std::string out;
    for (std::uint32_t id : ids)
        out += (out.empty() ? "" : ",") + std::to_string(id);
    return out;
}

bool is_ours(std::string_view chain) {
    return chain.starts_with(kChainPrefix);
}

// iptables-save's words: blank-separated, with "..." quoting (and \" inside) for comments.
std::vector<std::string> split_words(std::string_view spec) {
    std::vector<std::string> words;
    size_t i = 0;
    while (i < spec.size()) {
        if (spec[i] == ' ' || spec[i] == '\t') {
            ++i;
            continue;
        }
        std::string word;
        bool quoted = false;
        for (; i < spec.size(); ++i) {
            char c = spec[i];
            if (quoted && c == '\\' && i + 1 < spec.size()) {
                word += spec[++i];
            } else if (c == '"') {
                quoted = !quoted;
            } else if (!quoted && (c == ' ' || c == '\t')) {
                break;
            } else {
                word += c;
            }
        }
        words.push_back(std::move(word));
    }
    return words;
}

// Rules outside our chains that jump into them, in table order.
std::vector<const NatRule*> jumps_into_ours(const NatState& current) {
    std::vector<const NatRule*> jumps;
    for (const NatRule& rule : current.rules) {
        if (!is_ours(rule.chain) && is_ours(jump_target(rule.spec))) jumps.push_back(&rule);
    }
    return jumps;
}

std::vector<std::string> our_chains(const NatState& current) {
    std::vector<std::string> chains;
    for (const std::string& chain : current.chains) {
        if (is_ours(chain)) chains.push_back(chain);
    }
    return chains;
}

}  // namespace

InitCommand parse_init_args(const std::vector<std::string>& args) {
    InitCommand cmd;
    bool gid_given = false;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& arg = args[i];
        const FlagDef* def = nullptr;
        std::optional<std::string> value;
        if (arg.starts_with("--") && arg.size() > 2) {
            std::string name = arg.substr(2);
            if (size_t eq = name.find('='); eq != std::string::npos) {
                value = name.substr(eq + 1);
                name.resize(eq);
            }
            def = find_long(name);
            if (!def) {
                throw UsageError("unknown flag --" + name +
                                 " (istio-iptables flags remora-init does not support are "
                                 "rejected rather than ignored)");
            }
        } else if (arg.size() >= 2 && arg[0] == '-' && arg[1] != '-') {
            def = find_short(arg[1]);
            if (!def) {
                throw UsageError(std::string("unknown flag -") + arg[1] +
                                 " (istio-iptables flags remora-init does not support are "
                                 "rejected rather than ignored)");
            }
            if (arg.size() > 2) value = arg.substr(arg[2] == '=' ? 3 : 2);
        } else {
            throw UsageError("unexpected argument \"" + arg + "\" (remora-init takes only flags)");
        }
        if (!def->takes_value) {
            if (value) throw UsageError(label(*def) + " takes no value");
            value = "";
        } else if (!value) {
            if (i + 1 >= args.size()) throw UsageError(label(*def) + " needs a value");
            value = args[++i];  // may be "" (-x "") or start with '-', as istio-iptables allows
        }
        apply_flag(cmd, *def, *value, gid_given);
    }
    if (!gid_given) cmd.options.proxy_gids = cmd.options.proxy_uids;
    return cmd;
}

NatRules build_capture_rules(const CaptureOptions& o) {
    NatRules out;
    out.chains = {kInboundChain, kRedirectChain, kInRedirectChain, kOutputChain};
    auto add = [&out](std::string chain, std::string spec) {
        out.rules.push_back({std::move(chain), std::move(spec)});
    };
    const std::string in_redirect = std::string(" -j ") + kInRedirectChain;
    const std::string redirect = std::string(" -j ") + kRedirectChain;
    const std::string tunnel = std::to_string(kInboundTunnelPort);

    add(kInboundChain, "-p tcp --dport " + tunnel + " -j RETURN");
    add(kRedirectChain, "-p tcp -j REDIRECT --to-ports " + std::to_string(o.outbound_port));
    add(kInRedirectChain, "-p tcp -j REDIRECT --to-ports " + std::to_string(o.inbound_port));

    // Inbound: -b '*' captures every port but the -d ones; a -b list captures only those (and -d
    // is then moot); -b "" captures nothing, so PREROUTING is left alone.
    if (o.inbound_all || !o.inbound_ports.empty()) {
        add("PREROUTING", std::string("-p tcp -j ") + kInboundChain);
        if (o.inbound_all) {
            for (std::uint16_t port : o.inbound_exclude_ports) {
                add(kInboundChain, "-p tcp --dport " + std::to_string(port) + " -j RETURN");
            }
            add(kInboundChain, "-p tcp" + in_redirect);
        } else {
            for (std::uint16_t port : o.inbound_ports) {
                add(kInboundChain, "-p tcp --dport " + std::to_string(port) + in_redirect);
            }
        }
    }

    add("OUTPUT", std::string("-j ") + kOutputChain);
    // Port exclusions come first: they must win over the redirect of calls back to the pod.
    for (std::uint16_t port : o.outbound_exclude_ports) {
        add(kOutputChain, "-p tcp --dport " + std::to_string(port) + " -j RETURN");
    }
    // 127.0.0.6 is the source the inbound passthrough binds to, so it is not captured again.
    add(kOutputChain, "-o lo -s 127.0.0.6/32 -j RETURN");

    // A loopback range in -i means the user wants app-to-localhost traffic captured.
    bool loopback_included = std::any_of(o.outbound_include.begin(), o.outbound_include.end(),
                                         [](const Cidr& c) { return c.loopback; });
    auto owner_rules = [&](const char* match, std::uint32_t id) {
        const std::string owner =
            std::string("-m owner --") + match + "-owner " + std::to_string(id);
        // The proxy calling the pod's own address over lo (app -> proxy -> proxy -> app) goes to
        // the inbound side.
        add(kOutputChain,
            "-o lo ! -d 127.0.0.1/32 -p tcp ! --dport " + tunnel + " " + owner + in_redirect);
        // Anyone else talking over lo talks to a local process, not through the proxy.
        if (!loopback_included) {
            add(kOutputChain, std::string("-o lo -m owner ! --") + match + "-owner " +
                                  std::to_string(id) + " -j RETURN");
        }
        // The proxy's own outbound traffic is never captured, or it would loop.
        add(kOutputChain, owner + " -j RETURN");
    };
    for (std::uint32_t uid : o.proxy_uids)
        owner_rules("uid", uid);
    for (std::uint32_t gid : o.proxy_gids)
        owner_rules("gid", gid);

    add(kOutputChain, "-d 127.0.0.1/32 -j RETURN");
    for (const Cidr& cidr : o.outbound_exclude) {
        if (!cidr.ipv6) add(kOutputChain, "-d " + cidr.text + " -j RETURN");
    }
    for (std::uint16_t port : o.outbound_include_ports) {
        add(kOutputChain, "-p tcp --dport " + std::to_string(port) + redirect);
    }
    if (o.outbound_all) {
        add(kOutputChain, std::string("-j ") + kRedirectChain);
    } else {
        for (const Cidr& cidr : o.outbound_include) {
            if (!cidr.ipv6) add(kOutputChain, "-d " + cidr.text + redirect);
        }
    }
    return out;
}

std::string render_restore_text(const NatRules& rules) {
    return build_apply_text(rules, NatState{});
}

NatState parse_iptables_save(std::string_view text) {
    NatState state;
    bool in_nat = false;
    while (!text.empty()) {
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.starts_with("*")) {
            in_nat = trim(line.substr(1)) == "nat";
        } else if (!in_nat) {
            continue;
        } else if (line == "COMMIT") {
            in_nat = false;
        } else if (line.starts_with(":")) {
            state.chains.emplace_back(line.substr(1, line.find(' ') - 1));
        } else if (line.starts_with("-A ")) {
            std::string_view rest = trim(line.substr(3));
            size_t sp = rest.find(' ');
            std::string chain(rest.substr(0, sp));
            std::string spec(sp == std::string_view::npos ? "" : trim(rest.substr(sp + 1)));
            state.rules.push_back({std::move(chain), std::move(spec)});
        }
    }
    return state;
}

std::string jump_target(std::string_view spec) {
    std::vector<std::string> words = split_words(spec);
    for (size_t i = 0; i + 1 < words.size(); ++i) {
        const std::string& w = words[i];
        if (w == "-j" || w == "--jump" || w == "-g" || w == "--goto") return words[i + 1];
    }
    return "";
}

std::string build_apply_text(const NatRules& wanted, const NatState& current) {
    std::string out = "* nat\n";
    // Jumps that are already exactly right stay in place; any other jump into our chains goes.
    std::vector<bool> kept(wanted.rules.size(), false);
    for (const NatRule* jump : jumps_into_ours(current)) {
        bool keep = false;
        for (size_t i = 0; i < wanted.rules.size() && !keep; ++i) {
            if (!kept[i] && wanted.rules[i] == *jump) kept[i] = keep = true;
        }
        if (!keep) out += "-D " + jump->chain + " " + jump->spec + "\n";
    }
    std::vector<std::string> existing = our_chains(current);
    std::set<std::string> existing_set(existing.begin(), existing.end());
    std::set<std::string> wanted_set(wanted.chains.begin(), wanted.chains.end());
    for (const std::string& chain : existing)
        out += "-F " + chain + "\n";
    for (const std::string& chain : existing) {
        if (!wanted_set.count(chain)) out += "-X " + chain + "\n";
    }
    for (const std::string& chain : wanted.chains) {
        if (!existing_set.count(chain)) out += "-N " + chain + "\n";
    }
    for (size_t i = 0; i < wanted.rules.size(); ++i) {
        if (!kept[i]) out += "-A " + wanted.rules[i].chain + " " + wanted.rules[i].spec + "\n";
    }
    out += "COMMIT\n";
    return out;
}

std::string build_clean_text(const NatState& current) {
    std::vector<const NatRule*> jumps = jumps_into_ours(current);
    std::vector<std::string> chains = our_chains(current);
    if (jumps.empty() && chains.empty()) return "";
    std::string out = "* nat\n";
    for (const NatRule* jump : jumps)
        out += "-D " + jump->chain + " " + jump->spec + "\n";
    for (const std::string& chain : chains)
        out += "-F " + chain + "\n";
    for (const std::string& chain : chains)
        out += "-X " + chain + "\n";
    out += "COMMIT\n";
    return out;
}

std::vector<std::string> option_notes(const CaptureOptions& o) {
    std::vector<std::string> notes;
    auto note_v6 = [&notes](const std::vector<Cidr>& cidrs, const char* flag) {
        std::string v6;
        for (const Cidr& c : cidrs) {
            if (c.ipv6) v6 += (v6.empty() ? "" : ",") + c.text;
        }
        if (!v6.empty()) {
            notes.push_back(std::string("IPv6 ranges in ") + flag + " are ignored (remora-init " +
                            "programs IPv4 iptables only): " + v6);
        }
    };
    note_v6(o.outbound_include, "-i");
    note_v6(o.outbound_exclude, "-x");
    return notes;
}

std::string describe(const CaptureOptions& o) {
    std::string out = "outbound TCP ";
    if (o.outbound_all) {
        out += "to any address";
    } else {
        std::string ranges;
        for (const Cidr& c : o.outbound_include) {
            if (!c.ipv6) ranges += (ranges.empty() ? "" : ",") + c.text;
        }
        out += ranges.empty() ? "to no address" : "to " + ranges;
    }
    if (!o.outbound_include_ports.empty()) {
        out += " or to port " + join_ports(o.outbound_include_ports);
    }
    if (!o.outbound_exclude_ports.empty()) {
        out += " (not port " + join_ports(o.outbound_exclude_ports) + ")";
    }
    out += " -> " + std::to_string(o.outbound_port) + "; inbound TCP ";
    if (o.inbound_all) {
        out += "to any port";
        if (!o.inbound_exclude_ports.empty()) {
            out += " but " + join_ports(o.inbound_exclude_ports);
        }
    } else if (o.inbound_ports.empty()) {
        out += "to no port";
    } else {
        out += "to port " + join_ports(o.inbound_ports);
    }
    out += " -> " + std::to_string(o.inbound_port) + "; uid " + join_ids(o.proxy_uids) +
           " and gid " + join_ids(o.proxy_gids) + " not captured";
    return out;
}

}  // namespace remora::init
