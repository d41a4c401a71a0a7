// libFuzzer target: bytes as remora-init's arguments (split at NUL or newline): parsed as
// istio-iptables' flags, and when valid turned into the iptables-restore text, the plan over an
// empty nat table and the clean-up text; then the same bytes as `iptables-save` output.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/init/capture_rules.h"

namespace init = remora::init;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    std::vector<std::string> args;
    std::string cur;
    for (char c : text) {
        if (c == '\0' || c == '\n') {
            args.push_back(std::move(cur));
            cur.clear();
        } else {
            cur.push_back(c);
        }
    }
    if (!cur.empty()) args.push_back(std::move(cur));
    try {
        init::InitCommand cmd = init::parse_init_args(args);
        init::NatRules rules = init::build_capture_rules(cmd.options);
        (void)init::render_restore_text(rules);
        (void)init::build_apply_text(rules, init::parse_iptables_save(""));
        (void)init::describe(cmd.options);
        (void)init::option_notes(cmd.options);
    } catch (const init::UsageError&) {
        // Its documented answer to a bad flag.
    }
    try {
        init::NatState state = init::parse_iptables_save(text);
        (void)init::build_clean_text(state);
    } catch (const std::exception&) {
        // A refusal of text that is not iptables-save output, if it throws one.
    }
    return 0;
}
