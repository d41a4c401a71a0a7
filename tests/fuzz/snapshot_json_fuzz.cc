// libFuzzer target: any bytes as the snapshot JSON a proxy gets from remora-control (or reads
// with --snapshot): parsed, read into a Snapshot, written back and read again, which must agree.
#include <boost/json.hpp>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "proxy/snapshot/snapshot_json.h"

namespace snap = remora::proxy::snapshot;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    boost::json::error_code ec;
    boost::json::value doc =
        boost::json::parse(std::string_view(reinterpret_cast<const char*>(data), size), ec);
    if (ec) return 0;
    snap::Snapshot s;
    try {
        s = snap::from_json(doc);
    } catch (const snap::SnapshotFormatError&) {
        return 0;  // its documented answer to a document of the wrong shape
    }
    // What it wrote it reads back, to the same text.
    const boost::json::value again = snap::to_json(s);
    const snap::Snapshot s2 = snap::from_json(again);
    if (boost::json::serialize(snap::to_json(s2)) != boost::json::serialize(again)) __builtin_trap();
    (void)snap::version_of(s2);
    return 0;
}
