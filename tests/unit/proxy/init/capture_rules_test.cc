// remora-init's rules: Istio's own goldens for the default sidecar flags, each non-default flag,
// flag validation, and the install/remove plans over an existing nat table.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "proxy/init/capture_rules.h"

using namespace remora::init;

namespace {

const std::vector<std::string> kSidecarFlags = {
    "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT",
    "-i", "*",     "-x", "",      "-b", "*",    "-d", "15090,15021,15020"};

std::string dry_run(const std::vector<std::string>& args) {
    return render_restore_text(build_capture_rules(parse_init_args(args).options));
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        lines.push_back(line);
    return lines;
}

// The iptables-restore lines of an Istio sample ("* nat" .. "COMMIT"), ISTIO_ renamed REMORA_;
// comments and the command log lines Istio's goldens carry around them are dropped.
std::vector<std::string> sample_rules(const std::string& file) {
    const char* dir = std::getenv("REMORA_ISTIO_SAMPLES");
    if (dir == nullptr || *dir == '\0') {
        FAIL(
            "REMORA_ISTIO_SAMPLES is not set: run this test through meson, which points it at "
            "../shared/istio-samples");
    }
    std::string path = std::string(dir) + "/" + file;
    std::ifstream in(path);
    if (!in) FAIL("cannot read the Istio sample " << path);
    std::vector<std::string> rules;
    bool inside = false;
    for (std::string line; std::getline(in, line);) {
        if (line.starts_with("#")) continue;
        if (line == "* nat" || line == "*nat") inside = true;
        if (!inside) continue;
        for (size_t at; (at = line.find("ISTIO_")) != std::string::npos;) {
            line.replace(at, 6, "REMORA_");
        }
        rules.push_back(line);
        if (line == "COMMIT") break;
    }
    if (rules.empty() || rules.back() != "COMMIT") FAIL("no \"* nat\" .. COMMIT block in " << path);
    return rules;
}

std::string joined(const std::vector<std::string>& lines) {
    std::string out;
    for (const std::string& line : lines)
        out += line + "\n";
    return out;
}

void check_same_lines(const std::vector<std::string>& got, const std::vector<std::string>& want) {
    INFO("got:\n" << joined(got) << "want:\n" << joined(want));
    CHECK(got.size() == want.size());
    for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
        CAPTURE(i);
        CHECK(got[i] == want[i]);
    }
}

std::string usage_error(const std::vector<std::string>& args) {
    try {
        parse_init_args(args);
    } catch (const UsageError& e) {
        return e.what();
    }
    return "(no error)";
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// The REMORA_OUTPUT rules after the fixed proxy-owner block of the default flags.
std::vector<std::string> output_tail(const std::vector<std::string>& args) {
    std::vector<std::string> tail;
    bool after = false;
    for (const std::string& line : lines_of(dry_run(args))) {
        if (line == "-A REMORA_OUTPUT -d 127.0.0.1/32 -j RETURN") {
            after = true;
            continue;
        }
        if (after && line != "COMMIT") tail.push_back(line);
    }
    return tail;
}

}  // namespace

TEST_CASE("the default sidecar flags give istio-iptables' rules, rule by rule") {
    std::vector<std::string> want = sample_rules("istio-iptables-default-sidecar.rules");
    check_same_lines(lines_of(dry_run(kSidecarFlags)), want);
    // The defaults are the sidecar's, so no flags at all give the same rules.
    check_same_lines(lines_of(dry_run({})), want);
}

TEST_CASE("Istio's goldens for no capture and for all inbound ports") {
    check_same_lines(lines_of(dry_run({"-i", "", "-b", ""})), sample_rules("empty.golden"));
    check_same_lines(lines_of(dry_run({"-i", "", "-b", "*", "-d", ""})),
                     sample_rules("inbound-ports-wildcard.golden"));
}

TEST_CASE("-b with a port list captures only those ports, and -d no longer matters") {
    std::string text = dry_run({"-b", "9080,8443", "-d", "15090"});
    CHECK(contains(text,
                   "-A PREROUTING -p tcp -j REMORA_INBOUND\n"
                   "-A REMORA_INBOUND -p tcp --dport 9080 -j REMORA_IN_REDIRECT\n"
                   "-A REMORA_INBOUND -p tcp --dport 8443 -j REMORA_IN_REDIRECT\n"
                   "-A OUTPUT -j REMORA_OUTPUT\n"));
    CHECK_FALSE(contains(text, "--dport 15090"));
    CHECK_FALSE(contains(text, "-A REMORA_INBOUND -p tcp -j REMORA_IN_REDIRECT"));
}

TEST_CASE("-b \"\" leaves PREROUTING alone but still creates the chains") {
    std::string text = dry_run({"-b", ""});
    CHECK_FALSE(contains(text, "PREROUTING"));
    CHECK(contains(text, "-N REMORA_INBOUND\n"));
    CHECK(contains(text, "-A REMORA_INBOUND -p tcp --dport 15008 -j RETURN\n"));
}

TEST_CASE("-i with ranges redirects only those; -x ranges return first; -q ports redirect") {
    CHECK(output_tail({"-i", "10.0.0.0/8,172.16.0.0/12"}) ==
          std::vector<std::string>{"-A REMORA_OUTPUT -d 10.0.0.0/8 -j REMORA_REDIRECT",
                                   "-A REMORA_OUTPUT -d 172.16.0.0/12 -j REMORA_REDIRECT"});
    CHECK(output_tail({"-x", "10.96.0.0/12,169.254.169.254/32"}) ==
          std::vector<std::string>{"-A REMORA_OUTPUT -d 10.96.0.0/12 -j RETURN",
                                   "-A REMORA_OUTPUT -d 169.254.169.254/32 -j RETURN",
                                   "-A REMORA_OUTPUT -j REMORA_REDIRECT"});
    CHECK(output_tail({"-i", "10.0.0.0/8", "-x", "10.1.0.0/16", "-q", "3306,5432"}) ==
          std::vector<std::string>{"-A REMORA_OUTPUT -d 10.1.0.0/16 -j RETURN",
                                   "-A REMORA_OUTPUT -p tcp --dport 3306 -j REMORA_REDIRECT",
                                   "-A REMORA_OUTPUT -p tcp --dport 5432 -j REMORA_REDIRECT",
                                   "-A REMORA_OUTPUT -d 10.0.0.0/8 -j REMORA_REDIRECT"});
    CHECK(output_tail({"-i", ""}).empty());
    CHECK(output_tail({"-i", "", "-q", "80"}) ==
          std::vector<std::string>{"-A REMORA_OUTPUT -p tcp --dport 80 -j REMORA_REDIRECT"});
}

TEST_CASE("-o ports return before anything else in REMORA_OUTPUT") {
    std::string text = dry_run({"-o", "22,6379"});
    CHECK(contains(text,
                   "-A OUTPUT -j REMORA_OUTPUT\n"
                   "-A REMORA_OUTPUT -p tcp --dport 22 -j RETURN\n"
                   "-A REMORA_OUTPUT -p tcp --dport 6379 -j RETURN\n"
                   "-A REMORA_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN\n"));
}

TEST_CASE("-u and -g: gid defaults to uid; lists give one block per id") {
    std::string text = dry_run({"-u", "2000"});
    CHECK(contains(text, "-A REMORA_OUTPUT -m owner --uid-owner 2000 -j RETURN\n"));
    CHECK(contains(text, "-A REMORA_OUTPUT -m owner --gid-owner 2000 -j RETURN\n"));
    CHECK_FALSE(contains(text, "1337"));

    text = dry_run({"-u", "2000", "-g", "3000,3001"});
    CHECK(contains(text, "-m owner --uid-owner 2000 -j RETURN\n"));
    CHECK(contains(text,
                   "-o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner "
                   "--gid-owner 3001 -j REMORA_IN_REDIRECT\n"
                   "-A REMORA_OUTPUT -o lo -m owner ! --gid-owner 3001 -j RETURN\n"
                   "-A REMORA_OUTPUT -m owner --gid-owner 3001 -j RETURN\n"));
    CHECK_FALSE(contains(text, "--gid-owner 2000"));
}

TEST_CASE("a loopback range in -i captures app-to-localhost traffic, as istio-iptables does") {
    std::string text = dry_run({"-i", "127.1.2.3/32"});
    CHECK_FALSE(contains(text, "-o lo -m owner !"));
    CHECK(contains(text, "-A REMORA_OUTPUT -d 127.1.2.3/32 -j REMORA_REDIRECT\n"));
}

TEST_CASE("ports and uids change the redirect targets") {
    std::string text = dry_run({"-p", "16001", "-z", "16006"});
    CHECK(contains(text, "-A REMORA_REDIRECT -p tcp -j REDIRECT --to-ports 16001\n"));
    CHECK(contains(text, "-A REMORA_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006\n"));
}

TEST_CASE("long flags, --flag=value and -pVALUE mean the same as the short flags") {
    std::string short_form =
        dry_run({"-p", "16001",      "-z", "16006",       "-u", "7",       "-g", "8",
                 "-i", "10.0.0.0/8", "-x", "10.1.0.0/16", "-b", "80",      "-d", "81",
                 "-o", "22",         "-q", "3306",        "-m", "REDIRECT"});
    std::string long_form = dry_run(
        {"--envoy-port", "16001", "--inbound-capture-port=16006", "--proxy-uid", "7",
         "--proxy-gid=8", "--istio-service-cidr", "10.0.0.0/8", "--istio-service-exclude-cidr",
         "10.1.0.0/16", "--istio-inbound-ports=80", "--istio-local-exclude-ports", "81",
         "--istio-local-outbound-ports-exclude", "22", "--istio-local-outbound-ports-include",
         "3306", "--istio-inbound-interception-mode", "REDIRECT"});
    std::string attached = dry_run({"-p16001", "-z=16006", "-u7", "-g8", "-i10.0.0.0/8",
                                    "-x10.1.0.0/16", "-b80", "-d81", "-o22", "-q3306"});
    CHECK(long_form == short_form);
    CHECK(attached == short_form);
}

TEST_CASE("--dry-run, --clean and --help are recognised") {
    CHECK(parse_init_args({"--dry-run"}).dry_run);
    CHECK(parse_init_args({"-n"}).dry_run);
    CHECK(parse_init_args({"--clean"}).clean);
    CHECK(parse_init_args({"-h"}).help);
    InitCommand none = parse_init_args({});
    CHECK_FALSE(none.dry_run);
    CHECK_FALSE(none.clean);
}

TEST_CASE("bad values are usage errors naming the flag") {
    CHECK(contains(usage_error({"-m", "TPROXY"}), "not supported"));
    CHECK(contains(usage_error({"-m", "TPROXY"}), "-m (--istio-inbound-interception-mode)"));
    CHECK(contains(usage_error({"-m", "BOGUS"}), "expected REDIRECT"));
    CHECK(contains(usage_error({"-p", "0"}), "-p (--envoy-port) \"0\""));
    CHECK(contains(usage_error({"-p", "65536"}), "1-65535"));
    CHECK(contains(usage_error({"-z", "abc"}), "-z (--inbound-capture-port)"));
    CHECK(contains(usage_error({"-p", "-1"}), "-p"));
    CHECK(contains(usage_error({"-p", ""}), "-p"));
    CHECK(contains(usage_error({"-d", "15090,,15021"}), "empty entry"));
    CHECK(contains(usage_error({"-b", "80,http"}), "\"http\" is not a port"));
    CHECK(contains(usage_error({"-o", "99999"}), "-o (--istio-local-outbound-ports-exclude)"));
    CHECK(contains(usage_error({"-q", "0"}), "-q (--istio-local-outbound-ports-include)"));
    CHECK(contains(usage_error({"-u", "abc"}), "-u (--proxy-uid) \"abc\""));
    CHECK(contains(usage_error({"-u", ""}), "numeric id is required"));
    CHECK(contains(usage_error({"-g", "-5"}), "-g (--proxy-gid)"));
    CHECK(contains(usage_error({"-u", "4294967295"}), "not a numeric id"));
    CHECK(contains(usage_error({"-i", "10.0.0.0/33"}), "prefix length"));
    CHECK(contains(usage_error({"-i", "10.0.0.0"}), "not a CIDR"));
    CHECK(contains(usage_error({"-i", "300.1.1.1/8"}), "not an IPv4 or IPv6 address"));
    CHECK(contains(usage_error({"-i", "*,10.0.0.0/8"}), "cannot be combined"));
    CHECK(contains(usage_error({"-x", "*"}), "-x (--istio-service-exclude-cidr)"));
    CHECK(contains(usage_error({"-x", "fd00::/129"}), "0-128"));
    CHECK(contains(usage_error({"-k", "eth0"}), "unknown flag -k"));
    CHECK(contains(usage_error({"--bogus"}), "unknown flag --bogus"));
    CHECK(contains(usage_error({"-p"}), "-p (--envoy-port) needs a value"));
    CHECK(contains(usage_error({"--clean=yes"}), "--clean takes no value"));
    CHECK(contains(usage_error({"extra"}), "unexpected argument \"extra\""));
}

TEST_CASE("IPv6 ranges are accepted, left out of the IPv4 rules, and noted") {
    InitCommand cmd = parse_init_args({"-i", "10.0.0.0/8,fd00::/8", "-x", "::1/128"});
    std::string text = render_restore_text(build_capture_rules(cmd.options));
    CHECK_FALSE(contains(text, "fd00"));
    CHECK(contains(text, "-d 10.0.0.0/8 -j REMORA_REDIRECT"));
    std::vector<std::string> notes = option_notes(cmd.options);
    REQUIRE(notes.size() == 2);
    CHECK(contains(notes[0], "-i"));
    CHECK(contains(notes[0], "fd00::/8"));
    CHECK(option_notes(parse_init_args({}).options).empty());
}

TEST_CASE("describe says what is captured") {
    CHECK(describe(parse_init_args({}).options) ==
          "outbound TCP to any address -> 15001; inbound TCP to any port but 15090,15021,15020 "
          "-> 15006; uid 1337 and gid 1337 not captured");
    CHECK(contains(describe(parse_init_args({"-i", "", "-b", ""}).options), "to no address"));
}

// What `iptables-save -t nat` prints after the default rules are in place and a user added a
// rule of their own after our jump in OUTPUT.
const char* kInstalledSave = R"(# Generated by iptables-save v1.8.9 (nf_tables)
*mangle
:PREROUTING ACCEPT [0:0]
-A PREROUTING -j REMORA_NOT_NAT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:REMORA_INBOUND - [0:0]
:REMORA_IN_REDIRECT - [0:0]
:REMORA_OUTPUT - [0:0]
:REMORA_REDIRECT - [0:0]
:USER_CHAIN - [0:0]
-A PREROUTING -p tcp -j REMORA_INBOUND
-A OUTPUT -j REMORA_OUTPUT
-A OUTPUT -p udp -m comment --comment "keep -j REMORA_OUTPUT" -j ACCEPT
-A REMORA_INBOUND -p tcp -m tcp --dport 15008 -j RETURN
-A REMORA_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A REMORA_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN
-A REMORA_OUTPUT -j REMORA_REDIRECT
-A REMORA_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A USER_CHAIN -d 10.0.0.1/32 -j RETURN
COMMIT
# Completed
)";

TEST_CASE("iptables-save's nat table is read; other tables are skipped") {
    NatState state = parse_iptables_save(kInstalledSave);
    CHECK(state.chains == std::vector<std::string>{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING",
                                                   "REMORA_INBOUND", "REMORA_IN_REDIRECT",
                                                   "REMORA_OUTPUT", "REMORA_REDIRECT",
                                                   "USER_CHAIN"});
    REQUIRE(state.rules.size() == 9);
    CHECK(state.rules[0] == NatRule{"PREROUTING", "-p tcp -j REMORA_INBOUND"});
    CHECK(state.rules[2].spec == "-p udp -m comment --comment \"keep -j REMORA_OUTPUT\" -j ACCEPT");
    CHECK(parse_iptables_save("").chains.empty());
}

TEST_CASE("jump_target reads -j and -g, and is not fooled by quoted comments") {
    CHECK(jump_target("-p tcp -j REMORA_INBOUND") == "REMORA_INBOUND");
    CHECK(jump_target("-g REMORA_OUTPUT") == "REMORA_OUTPUT");
    CHECK(jump_target("-m comment --comment \"a \\\"-j X\\\" b\" -j ACCEPT") == "ACCEPT");
    CHECK(jump_target("-m comment --comment \"-j REMORA_OUTPUT\" -j ACCEPT") == "ACCEPT");
    CHECK(jump_target("-p tcp") == "");
}

TEST_CASE("on a table without our rules, applying is exactly the dry-run text") {
    NatRules wanted = build_capture_rules(CaptureOptions{});
    NatState bare = parse_iptables_save(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -j ACCEPT\nCOMMIT\n");
    CHECK(build_apply_text(wanted, bare) == render_restore_text(wanted));
    CHECK(build_clean_text(bare).empty());
    CHECK(build_clean_text(NatState{}).empty());
}

TEST_CASE("re-applying flushes our chains, keeps correct jumps in place, touches nothing else") {
    NatRules wanted = build_capture_rules(CaptureOptions{});
    std::string text = build_apply_text(wanted, parse_iptables_save(kInstalledSave));
    std::vector<std::string> lines = lines_of(text);
    REQUIRE(lines.size() > 8);
    CHECK(lines[0] == "* nat");
    CHECK(lines[1] == "-F REMORA_INBOUND");
    CHECK(lines[2] == "-F REMORA_IN_REDIRECT");
    CHECK(lines[3] == "-F REMORA_OUTPUT");
    CHECK(lines[4] == "-F REMORA_REDIRECT");
    CHECK(lines.back() == "COMMIT");
    CHECK_FALSE(contains(text, "-N "));
    CHECK_FALSE(contains(text, "-X "));
    CHECK_FALSE(contains(text, "-D "));
    // The two jumps already there are kept where they are, not appended again.
    CHECK_FALSE(contains(text, "-A PREROUTING"));
    CHECK_FALSE(contains(text, "-A OUTPUT "));
    CHECK_FALSE(contains(text, "USER_CHAIN"));
    CHECK(contains(text, "-A REMORA_OUTPUT -j REMORA_REDIRECT\n"));
    // Every rule of our own chains is there again.
    for (const NatRule& rule : wanted.rules) {
        if (rule.chain.starts_with("REMORA_")) {
            CHECK(contains(text, "-A " + rule.chain + " " + rule.spec + "\n"));
        }
    }
}

TEST_CASE("re-applying with other flags moves jumps that are no longer right") {
    // -b "" wants no PREROUTING jump; a stale REMORA_OLD chain (an older layout) goes too.
    NatState state = parse_iptables_save(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:REMORA_OLD - [0:0]\n"
        ":REMORA_OUTPUT - [0:0]\n-A PREROUTING -p tcp -j REMORA_INBOUND\n"
        "-A OUTPUT -p tcp -j REMORA_OUTPUT\n-A OUTPUT -j REMORA_OLD\n"
        "-A REMORA_OUTPUT -j REMORA_OLD\nCOMMIT\n");
    NatRules wanted = build_capture_rules(parse_init_args({"-b", ""}).options);
    std::string text = build_apply_text(wanted, state);
    CHECK(
        text.starts_with("* nat\n"
                         "-D PREROUTING -p tcp -j REMORA_INBOUND\n"
                         "-D OUTPUT -p tcp -j REMORA_OUTPUT\n"
                         "-D OUTPUT -j REMORA_OLD\n"
                         "-F REMORA_OLD\n"
                         "-F REMORA_OUTPUT\n"
                         "-X REMORA_OLD\n"
                         "-N REMORA_INBOUND\n"
                         "-N REMORA_REDIRECT\n"
                         "-N REMORA_IN_REDIRECT\n"));
    CHECK_FALSE(contains(text, "-N REMORA_OUTPUT"));
    CHECK(contains(text, "-A OUTPUT -j REMORA_OUTPUT\n"));
}

TEST_CASE("--clean removes our chains and the jumps into them, and nothing else") {
    std::string text = build_clean_text(parse_iptables_save(kInstalledSave));
    CHECK(text ==
          "* nat\n"
          "-D PREROUTING -p tcp -j REMORA_INBOUND\n"
          "-D OUTPUT -j REMORA_OUTPUT\n"
          "-F REMORA_INBOUND\n-F REMORA_IN_REDIRECT\n-F REMORA_OUTPUT\n-F REMORA_REDIRECT\n"
          "-X REMORA_INBOUND\n-X REMORA_IN_REDIRECT\n-X REMORA_OUTPUT\n-X REMORA_REDIRECT\n"
          "COMMIT\n");
}
