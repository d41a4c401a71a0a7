// The snapshot as JSON: how remora-control sends a proxy its configuration and how remoractl
// proxy-config reads it back. Field names are the struct members'; durations are milliseconds.
#pragma once

#include <boost/json/value.hpp>

#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include "proxy/snapshot/snapshot.h"

namespace remora::proxy::snapshot {

boost::json::value to_json(const Snapshot& snap);

// The same as boost::json::serialize(to_json(snap)), byte for byte, written a cluster and a
// virtual host at a time: the whole tree of a snapshot with 40,000 endpoints was most of a
// class's translation time on the control plane (building, serializing and freeing it).
std::string to_json_text(const Snapshot& snap);
// One cluster's text in it.
std::string cluster_json_text(const Cluster& cluster);
// The text of `snap` with `clusters` (cluster_json_text of each, in order) in place of
// snap.clusters: clusters serialized once and shared by several snapshots.
std::string to_json_text(const Snapshot& snap, std::span<const std::string_view> clusters);

// Thrown by from_json for a document that is not a snapshot; what() names the field path
// ("clusters[2].endpoints[0].port: expected an unsigned integer").
class SnapshotFormatError : public std::invalid_argument {
  public:
    using std::invalid_argument::invalid_argument;
};

// Strict: every field must have the right type; fields may be missing (defaults apply) so an
// older control plane's snapshot still loads; unknown fields are ignored for the same reason.
Snapshot from_json(const boost::json::value& doc);

// A short, stable version for a snapshot: 16 hex digits of a hash of its canonical JSON.
std::string version_of(const Snapshot& snap);
// The same from the text (to_json_text's), without serializing again.
std::string version_of_text(std::string_view json_text);

}  // namespace remora::proxy::snapshot
