// Reading yaml-cpp nodes so that no input can throw: a missing key neither throws nor inserts.
#pragma once

#include <yaml-cpp/yaml.h>

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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

// The documents of a multi-document YAML text, split at document markers ("---" or "..." at the
// start of a line, where YAML allows them only outside every scalar), each with the line number
// of its first line. Parse each with YAML::Load, never the whole text with YAML::LoadAll: yaml-cpp
// 0.7's LoadAll loops forever, allocating, on some malformed input ("  - a:\n    b:\n , c:",
// jbeder/yaml-cpp#1040, fixed upstream in 0.8.1), while Load reads one document and returns.
inline std::vector<std::pair<int, std::string>> yaml_documents(const std::string& text) {
    auto is_marker = [](std::string_view line, std::string_view marker) {
        if (line.substr(0, 3) != marker) return false;
        return line.size() == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\r' ||
               line[3] == '\n';
    };
    std::vector<std::pair<int, std::string>> out;
    std::string cur;
    int cur_line = 1;
    int line_no = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t nl = text.find('\n', pos);
        std::size_t end = nl == std::string::npos ? text.size() : nl + 1;
        std::string_view line(text.data() + pos, end - pos);
        ++line_no;
        if (is_marker(line, "---")) {
            out.emplace_back(cur_line, std::move(cur));
            cur = std::string(line.substr(3));  // "--- {...}" keeps its content
            cur_line = line_no;
        } else if (is_marker(line, "...")) {
            out.emplace_back(cur_line, std::move(cur));
            cur.clear();
            cur_line = line_no + 1;
        } else {
            cur.append(line);
        }
        pos = end;
    }
    out.emplace_back(cur_line, std::move(cur));
    return out;
}

}  // namespace remora::control::model
