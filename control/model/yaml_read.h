// Reading yaml-cpp nodes so that no input can throw: a missing key neither throws nor inserts.
#pragma once

#include <yaml-cpp/yaml.h>

#include <initializer_list>
#include <string>
#include <string_view>

namespace remora::control::model {

// The value of `key` in the mapping `node`, or an undefined node (IsDefined() false, every
// Is*() false, safe to ask anything) when `node` is not a mapping or has no such key.
//
// Why not node[key]: yaml-cpp's non-const operator[] inserts the key into the document (and
// throws BadSubscript on a scalar), and its const operator[] returns a "zombie" node whose
// IsMap(), IsScalar(), Mark() and as<>() throw InvalidNode ("invalid node; first invalid key").
// A Service with `spec: {}` took remora-control down that way.
inline YAML::Node field(const YAML::Node& node, std::string_view key) {
    if (node.IsDefined() && node.IsMap()) {
        for (auto it = node.begin(); it != node.end(); ++it) {
            if (it->first.IsScalar() && it->first.Scalar() == key) return it->second;
        }
    }
    return YAML::Node(YAML::NodeType::Undefined);
}

// field() along a path of keys.
inline YAML::Node field(const YAML::Node& node, std::initializer_list<std::string_view> path) {
    YAML::Node cur = node;
    for (std::string_view key : path) {
        YAML::Node next = field(cur, key);
        cur.reset(next);  // reset, not =: assignment would write into the document
    }
    return cur;
}

// The item at `index` of a sequence, or an undefined node.
inline YAML::Node item(const YAML::Node& node, std::size_t index) {
    if (node.IsDefined() && node.IsSequence() && index < node.size()) {
        const YAML::Node& seq = node;  // const operator[]: never grows the sequence
        return seq[index];
    }
    return YAML::Node(YAML::NodeType::Undefined);
}

// The scalar's text; "" when absent or not a scalar.
inline std::string scalar_text(const YAML::Node& node) {
    return node.IsDefined() && node.IsScalar() ? node.Scalar() : std::string();
}

// Where a node starts; the null mark for an undefined node (whose Mark() would throw).
inline YAML::Mark mark_of(const YAML::Node& node) {
    return node.IsDefined() ? node.Mark() : YAML::Mark::null_mark();
}

}  // namespace remora::control::model
