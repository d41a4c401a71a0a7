// libFuzzer target: bytes as the x-remora-peer-metadata header a peer sidecar sends (decoded,
// and what decodes must encode and decode to the same workload), and as a --labels list.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "common/args.h"
#include "proxy/telemetry/workload.h"

namespace proxy = remora::proxy;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    if (auto w = proxy::decode_peer_metadata(text)) {
        const std::string encoded = proxy::encode_peer_metadata(*w);
        // The encoding names every field, so a short header with a long value may encode past
        // the decoder's 2 KiB bound: no round trip to compare then.
        if (encoded.size() > 2048) return 0;
        auto again = proxy::decode_peer_metadata(encoded);
        if (!again || again->name != w->name || again->ns != w->ns || again->app != w->app ||
            again->version != w->version || again->canonical_service != w->canonical_service ||
            again->canonical_revision != w->canonical_revision || again->cluster != w->cluster) {
            __builtin_trap();
        }
    }
    try {
        (void)remora::common::parse_label_list(text);
    } catch (const std::invalid_argument&) {
        // Its documented answer to a bad pair.
    }
    return 0;
}
