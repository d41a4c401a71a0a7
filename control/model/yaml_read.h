// Reading yaml-cpp nodes so that no input can throw: a missing key neither throws nor inserts.
#pragma once

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <sstream>
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

// Bounds on what one YAML document may expand to. yaml-cpp shares an aliased node instead of
// copying it, so a few hundred bytes of anchors and aliases (the "billion laughs" bomb: nine
// levels of eight aliases) parse into a small graph that every walk over it (YAML to JSON, the
// emitter, a recursive reader) materialises as 8^9 nodes, or never finishes when an alias sits
// inside its own anchor. Documents are measured as their nodes would be materialised and refused
// past these limits, with the line of the alias that crosses one.
struct YamlLimits {
    uint64_t max_alias_nodes = 10'000;             // nodes one alias stands for
    uint64_t max_expanded_nodes = 1'000'000;       // nodes in the document, aliases expanded
    uint64_t max_expanded_bytes = 16 * 1024 * 1024;  // scalar bytes, aliases expanded
};

// A document refused by YamlLimits; a YAML::ParserException, so it carries the mark (line and
// column) and every caller's existing YAML error path reports it.
class YamlLimitError : public YAML::ParserException {
  public:
    using YAML::ParserException::ParserException;
};

namespace detail {

// The arithmetic of YamlLimits, shared by the two YAML readers (yaml-cpp's events below, libyaml's
// in yaml_dom.cc): nodes and scalar bytes of the document and of each collection still open, as
// if every alias were a copy of its anchored node; throws YamlLimitError past a limit.
class ExpansionTally {
  public:
    struct Size {
        uint64_t nodes = 0;
        uint64_t bytes = 0;
    };

    explicit ExpansionTally(const YamlLimits& limits) : limits_(limits) {}

    // A scalar or null; its size (for its anchor).
    Size leaf(const YAML::Mark& mark, uint64_t bytes) {
        add(mark, {1, bytes});
        return {1, bytes};
    }
    // A collection starts: its own node counts in its parent and in the document.
    void open(const YAML::Mark& mark) {
        add(mark, {1, 0});
        open_.push_back({});
    }
    // The innermost collection ends; its size with its own node (for its anchor).
    Size close() {
        if (open_.empty()) return {};
        const Size done = open_.back();
        open_.pop_back();
        if (!open_.empty()) {
            open_.back().nodes += done.nodes;
            open_.back().bytes += done.bytes;
        }
        return {done.nodes + 1, done.bytes};
    }
    // An alias to a node of size `anchored`; null when that node is still open (a cycle).
    void alias(const YAML::Mark& mark, const Size* anchored) {
        if (!anchored) {
            throw YamlLimitError(mark, "alias refers to a node that contains it (a cycle)");
        }
        if (anchored->nodes > limits_.max_alias_nodes) {
            throw YamlLimitError(mark, "alias expands to " + std::to_string(anchored->nodes) +
                                           " nodes, more than the limit of " +
                                           std::to_string(limits_.max_alias_nodes) +
                                           " nodes per alias expansion");
        }
        add(mark, *anchored);
    }

  private:
    // `s` more nodes and bytes in the innermost open collection and in the document.
    void add(const YAML::Mark& mark, Size s) {
        total_.nodes += s.nodes;
        total_.bytes += s.bytes;
        if (total_.nodes > limits_.max_expanded_nodes) {
            throw YamlLimitError(mark, "document expands to more than " +
                                           std::to_string(limits_.max_expanded_nodes) +
                                           " nodes (aliases expanded), the limit");
        }
        if (total_.bytes > limits_.max_expanded_bytes) {
            throw YamlLimitError(mark, "document expands to more than " +
                                           std::to_string(limits_.max_expanded_bytes) +
                                           " bytes (aliases expanded), the limit");
        }
        if (!open_.empty()) {
            open_.back().nodes += s.nodes;
            open_.back().bytes += s.bytes;
        }
    }

    const YamlLimits& limits_;
    std::vector<Size> open_;
    Size total_;
};

// Counts a document's nodes and scalar bytes from yaml-cpp's parser events, as if every alias
// were replaced by a copy of its anchored node; never builds the nodes themselves.
class ExpansionCounter final : public YAML::EventHandler {
  public:
    explicit ExpansionCounter(const YamlLimits& limits) : tally_(limits) {}

    void OnDocumentStart(const YAML::Mark&) override {}
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { leaf(mark, anchor, 0); }
    void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  const std::string& value) override {
        leaf(mark, anchor, value.size());
    }
    void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
        const bool closed = anchor < anchors_.size() && anchors_[anchor].closed;
        tally_.alias(mark, closed ? &anchors_[anchor].size : nullptr);
    }
    void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                         YAML::EmitterStyle::value) override {
        open(mark, anchor);
    }
    void OnSequenceEnd() override { close(); }
    void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                    YAML::EmitterStyle::value) override {
        open(mark, anchor);
    }
    void OnMapEnd() override { close(); }

  private:
    struct Anchor {
        ExpansionTally::Size size;
        bool closed = false;
    };

    void leaf(const YAML::Mark& mark, YAML::anchor_t anchor, uint64_t bytes) {
        const auto s = tally_.leaf(mark, bytes);
        if (anchor != YAML::NullAnchor) anchor_at(anchor) = {s, true};
    }
    void open(const YAML::Mark& mark, YAML::anchor_t anchor) {
        if (anchor != YAML::NullAnchor) anchor_at(anchor) = {};  // open: aliases to it are cycles
        tally_.open(mark);
        open_anchors_.push_back(anchor);
    }
    void close() {
        if (open_anchors_.empty()) return;
        const YAML::anchor_t anchor = open_anchors_.back();
        open_anchors_.pop_back();
        const auto s = tally_.close();
        if (anchor != YAML::NullAnchor) anchor_at(anchor) = {s, true};
    }
    Anchor& anchor_at(YAML::anchor_t anchor) {
        if (anchor >= anchors_.size()) anchors_.resize(anchor + 1);
        return anchors_[anchor];
    }

    ExpansionTally tally_;
    std::vector<Anchor> anchors_;  // by yaml-cpp's anchor id, 1, 2, ... in order of appearance
    std::vector<YAML::anchor_t> open_anchors_;
};

}  // namespace detail

// YAML::Load for one document, refused (YamlLimitError, with the mark) when its aliases would
// expand past `limits`. Every YAML that comes from outside is read through this. Without an
// alias ('*') a document is no bigger than its text, and only yaml-cpp's parse runs.
inline YAML::Node load_document(const std::string& text, const YamlLimits& limits = {}) {
    if (text.find('*') != std::string::npos) {
        std::istringstream in(text);
        YAML::Parser parser(in);
        detail::ExpansionCounter counter(limits);
        parser.HandleNextDocument(counter);
    }
    return YAML::Load(text);
}

}  // namespace remora::control::model
