// The YAML the model reads: one document parsed by libyaml into a compact, read-only tree.
//
// Why not yaml-cpp here: reading 40,000 resources (15 MB) spent most of its time in yaml-cpp 0.7's
// scanner (regular expressions per character, about 4 MB/s) and in its nodes (several shared
// allocations each). libyaml's event parser reads the same text about ten times faster, and the
// tree below is one small allocation per node. The rest of the project (the store's YAML to
// JSON, MeshConfig, --registry) still reads yaml-cpp nodes; the two agree on what a document
// means (the unit tests read the same documents through both), and the marks are yaml-cpp's
// YAML::Mark (0-based line, column and byte offset), so diagnostics read the same.
//
// The subset of yaml-cpp's Node interface the model uses is kept, with yaml-cpp's meanings: a
// plain scalar ~, null, Null, NULL or nothing is a null node; Tag() is "?" for a plain scalar
// without a tag, "!" for a quoted one, the resolved tag ("tag:yaml.org,2002:str") otherwise; an
// alias is the anchored node itself (shared, never copied).
#pragma once

#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/node/node.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "control/model/yaml_read.h"

namespace remora::control::model::yaml {

struct NodeData;

// A node of a Document, or undefined (IsDefined() false: every Is*() false, Scalar() "", safe to
// ask anything). A view: valid while its Document lives.
class Node {
  public:
    Node() = default;
    explicit Node(const NodeData* d) : d_(d) {}

    bool IsDefined() const { return d_ != nullptr; }
    bool IsNull() const;
    bool IsScalar() const;
    bool IsSequence() const;
    bool IsMap() const;
    // The scalar's text; "" when not a scalar.
    const std::string& Scalar() const;
    const std::string& Tag() const;
    // Where the node starts (0-based); the null mark when undefined.
    YAML::Mark Mark() const;
    // Items of a sequence, entries of a mapping; 0 otherwise.
    std::size_t size() const;

    // The item at `i` of a sequence; undefined past the end or when not a sequence.
    Node item(std::size_t i) const;
    // A mapping's entry `i` (key, value); both undefined past the end or when not a mapping.
    std::pair<Node, Node> entry(std::size_t i) const;

    // Iteration, as yaml-cpp's: over a mapping, entries with `first` (the key) and `second` (the
    // value); over a sequence, the items themselves.
    struct IterValue;
    class iterator;
    iterator begin() const;
    iterator end() const;

    const NodeData* data() const { return d_; }

    // A node that is an empty mapping (lives for the program).
    static Node empty_map();

  private:
    const NodeData* d_ = nullptr;
};

struct Node::IterValue : Node {
    using Node::Node;
    Node first, second;
};

class Node::iterator {
  public:
    iterator(const NodeData* d, std::size_t i) : d_(d), i_(i) {}
    IterValue operator*() const;
    struct Arrow {
        IterValue v;
        const IterValue* operator->() const { return &v; }
    };
    Arrow operator->() const { return {**this}; }
    iterator& operator++() {
        ++i_;
        return *this;
    }
    bool operator==(const iterator& o) const { return i_ == o.i_ && d_ == o.d_; }
    bool operator!=(const iterator& o) const { return !(*this == o); }

  private:
    const NodeData* d_;
    std::size_t i_;
};
inline Node::iterator Node::begin() const {
    return {d_, 0};
}
inline Node::iterator Node::end() const {
    return {d_, size()};
}

struct NodeData {
    enum class Kind : uint8_t { null, scalar, sequence, map };
    Kind kind = Kind::null;
    YAML::Mark mark;
    std::string scalar;
    const std::string* tag = nullptr;  // "?" / "!" (static) or the document's resolved tag
    // A sequence's items; a mapping's keys and values, alternating.
    std::vector<const NodeData*> children;
};

// One parsed document; owns its nodes.
class Document {
  public:
    Document() = default;
    Document(Document&&) = default;
    Document& operator=(Document&&) = default;
    Document(const Document&) = delete;

    // The root; undefined for an empty text (yaml-cpp's YAML::Load("") is a null node: callers
    // treat both as "no document").
    Node root() const { return Node(root_); }

  private:
    friend class Builder;
    friend class Copier;
    std::deque<NodeData> nodes_;
    std::deque<std::string> tags_;
    const NodeData* root_ = nullptr;
};

// Parses one document (the text of one yaml_documents() entry) with libyaml. Throws
// YAML::ParserException with the mark of a syntax error, and YamlLimitError (a ParserException)
// when aliases would expand the document past `limits` or an alias refers to a node that contains
// it.
Document parse(std::string_view text, const YamlLimits& limits = {});

// The same tree from a yaml-cpp node (an alias becomes a copy of its anchored node).
Document from_yaml_cpp(const YAML::Node& root);

// One document as the model reads it: parse(), and where libyaml refuses the text, yaml-cpp's
// reading of it (load_document, with the same limits). libyaml follows YAML 1.1 where Kubernetes'
// go-yaml and yaml-cpp are more lenient: `[1.2.3.4, 2001:db8::]` (a ':' before ']' in a flow
// collection) is an error for libyaml and a valid address list for Kubernetes. When both refuse
// it, yaml-cpp's error is thrown.
Document load(const std::string& text, const YamlLimits& limits = {});

// The value of `key` in a mapping, undefined when absent or not a mapping.
Node field(const Node& node, std::string_view key);
Node field(const Node& node, std::initializer_list<std::string_view> path);
inline Node item(const Node& node, std::size_t index) {
    return node.item(index);
}
inline std::string scalar_text(const Node& node) {
    return node.Scalar();
}
inline YAML::Mark mark_of(const Node& node) {
    return node.Mark();
}

}  // namespace remora::control::model::yaml
