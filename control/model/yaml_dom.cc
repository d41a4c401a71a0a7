// yaml::Document from libyaml's events (Builder), or from a yaml-cpp tree where libyaml refuses
// the text (Copier); the Node accessors.
#include "control/model/yaml_dom.h"

#include <yaml-cpp/yaml.h>
#include <yaml.h>

#include <new>
#include <tuple>
#include <unordered_map>

namespace remora::control::model::yaml {

namespace {

const std::string kEmpty;
const std::string kPlainTag = "?";
const std::string kQuotedTag = "!";

using Kind = NodeData::Kind;

bool is_null_text(std::string_view s) {
    return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

const NodeData& empty_map_data() {
    static const NodeData d = [] {
        NodeData n;
        n.kind = Kind::map;
        n.mark = YAML::Mark::null_mark();
        n.tag = &kPlainTag;
        return n;
    }();
    return d;
}

}  // namespace

bool Node::IsNull() const {
    return d_ && d_->kind == Kind::null;
}
bool Node::IsScalar() const {
    return d_ && d_->kind == Kind::scalar;
}
bool Node::IsSequence() const {
    return d_ && d_->kind == Kind::sequence;
}
bool Node::IsMap() const {
    return d_ && d_->kind == Kind::map;
}
const std::string& Node::Scalar() const {
    return IsScalar() ? d_->scalar : kEmpty;
}
const std::string& Node::Tag() const {
    return d_ && d_->tag ? *d_->tag : kEmpty;
}
YAML::Mark Node::Mark() const {
    return d_ ? d_->mark : YAML::Mark::null_mark();
}

std::size_t Node::size() const {
    if (IsSequence()) return d_->children.size();
    if (IsMap()) return d_->children.size() / 2;
    return 0;
}

Node Node::item(std::size_t i) const {
    return IsSequence() && i < d_->children.size() ? Node(d_->children[i]) : Node();
}

std::pair<Node, Node> Node::entry(std::size_t i) const {
    if (!IsMap() || 2 * i + 1 >= d_->children.size()) return {Node(), Node()};
    return {Node(d_->children[2 * i]), Node(d_->children[2 * i + 1])};
}

Node::IterValue Node::iterator::operator*() const {
    Node n(d_);
    if (n.IsMap()) {
        IterValue v;
        std::tie(v.first, v.second) = n.entry(i_);
        return v;
    }
    return IterValue(n.item(i_).data());
}

Node Node::empty_map() {
    return Node(&empty_map_data());
}

Node field(const Node& node, std::string_view key) {
    if (!node.IsMap()) return {};
    const auto& c = node.data()->children;
    for (std::size_t i = 0; i + 1 < c.size(); i += 2) {
        if (c[i]->kind == Kind::scalar && c[i]->scalar == key) return Node(c[i + 1]);
    }
    return {};
}

Node field(const Node& node, std::initializer_list<std::string_view> path) {
    Node cur = node;
    for (std::string_view key : path)
        cur = field(cur, key);
    return cur;
}

// Turns libyaml's events into a Document, counting what aliases expand to as it goes.
class Builder {
  public:
    Builder(std::string_view text, const YamlLimits& limits)
        : text_(text), tally_(limits), ascii_(is_ascii(text)) {}

    Document build() {
        yaml_parser_t parser;
        if (!yaml_parser_initialize(&parser)) throw std::bad_alloc();
        struct Closer {
            yaml_parser_t* p;
            ~Closer() { yaml_parser_delete(p); }
        } closer{&parser};
        yaml_parser_set_input_string(&parser, reinterpret_cast<const unsigned char*>(text_.data()),
                                     text_.size());
        bool done = false;
        while (!done) {
            yaml_event_t event;
            if (!yaml_parser_parse(&parser, &event)) syntax_error(parser);
            struct Deleter {
                yaml_event_t* e;
                ~Deleter() { yaml_event_delete(e); }
            } deleter{&event};
            done = on_event(event);
        }
        return std::move(doc_);
    }

  private:
    struct Anchor {
        const NodeData* node = nullptr;
        detail::ExpansionTally::Size size;
        bool closed = false;
    };
    struct Open {
        NodeData* node;
        std::string anchor;
        std::vector<const NodeData*> children;
    };

    static bool is_ascii(std::string_view s) {
        for (char c : s) {
            if (static_cast<unsigned char>(c) >= 0x80) return false;
        }
        return true;
    }

    // libyaml counts characters; YAML::Mark::pos (as yaml-cpp) counts bytes of the UTF-8 text.
    YAML::Mark mark_of(const yaml_mark_t& m) {
        YAML::Mark out;
        out.line = static_cast<int>(m.line);
        out.column = static_cast<int>(m.column);
        if (ascii_) {
            out.pos = static_cast<int>(m.index);
            return out;
        }
        if (m.index < char_at_) char_at_ = byte_at_ = 0;
        while (char_at_ < m.index && byte_at_ < text_.size()) {
            const auto c = static_cast<unsigned char>(text_[byte_at_]);
            byte_at_ += c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            ++char_at_;
        }
        out.pos = static_cast<int>(std::min(byte_at_, text_.size()));
        return out;
    }

    [[noreturn]] void syntax_error(const yaml_parser_t& p) {
        if (p.error == YAML_MEMORY_ERROR) throw std::bad_alloc();
        std::string msg = p.problem ? p.problem : "cannot be parsed";
        if (p.context) msg += std::string(" (") + p.context + ")";
        throw YAML::ParserException(mark_of(p.problem_mark), msg);
    }

    static std::string anchor_of(const yaml_char_t* a) {
        return a ? std::string(reinterpret_cast<const char*>(a)) : std::string();
    }

    const std::string* tag_of(const yaml_char_t* tag, bool plain) {
        if (!tag) return plain ? &kPlainTag : &kQuotedTag;
        std::string_view t(reinterpret_cast<const char*>(tag));
        if (t == "?") return &kPlainTag;
        if (t == "!") return &kQuotedTag;
        return &doc_.tags_.emplace_back(t);
    }

    // Returns true at the end of the (first) document.
    bool on_event(const yaml_event_t& e) {
        switch (e.type) {
            case YAML_STREAM_START_EVENT:
            case YAML_DOCUMENT_START_EVENT:
            case YAML_NO_EVENT:
                return false;
            case YAML_STREAM_END_EVENT:
            case YAML_DOCUMENT_END_EVENT:
                return true;
            case YAML_ALIAS_EVENT: {
                const YAML::Mark mark = mark_of(e.start_mark);
                auto it = anchors_.find(anchor_of(e.data.alias.anchor));
                if (it == anchors_.end()) {
                    throw YAML::ParserException(mark, "the referenced anchor is not defined");
                }
                tally_.alias(mark, it->second.closed ? &it->second.size : nullptr);
                attach(it->second.node);
                return false;
            }
            case YAML_SCALAR_EVENT: {
                NodeData& n = doc_.nodes_.emplace_back();
                n.mark = mark_of(e.start_mark);
                const auto& s = e.data.scalar;
                const bool plain = s.style == YAML_PLAIN_SCALAR_STYLE;
                n.scalar.assign(reinterpret_cast<const char*>(s.value), s.length);
                n.kind = plain && !s.tag && is_null_text(n.scalar) ? Kind::null : Kind::scalar;
                if (n.kind == Kind::null) n.scalar.clear();
                n.tag = tag_of(s.tag, plain);
                const auto size = tally_.leaf(n.mark, s.length);
                if (s.anchor) anchors_[anchor_of(s.anchor)] = {&n, size, true};
                attach(&n);
                return false;
            }
            case YAML_SEQUENCE_START_EVENT:
            case YAML_MAPPING_START_EVENT: {
                const bool seq = e.type == YAML_SEQUENCE_START_EVENT;
                NodeData& n = doc_.nodes_.emplace_back();
                n.mark = mark_of(e.start_mark);
                n.kind = seq ? Kind::sequence : Kind::map;
                const yaml_char_t* tag = seq ? e.data.sequence_start.tag : e.data.mapping_start.tag;
                const yaml_char_t* anchor =
                    seq ? e.data.sequence_start.anchor : e.data.mapping_start.anchor;
                n.tag = tag_of(tag, true);
                std::string name = anchor_of(anchor);
                if (anchor) anchors_[name] = {&n, {}, false};  // open: an alias to it is a cycle
                tally_.open(n.mark);
                open_.push_back({&n, std::move(name), {}});
                return false;
            }
            case YAML_SEQUENCE_END_EVENT:
            case YAML_MAPPING_END_EVENT: {
                if (open_.empty()) return false;
                Open done = std::move(open_.back());
                open_.pop_back();
                done.node->children.assign(done.children.begin(), done.children.end());
                const auto size = tally_.close();
                if (!done.anchor.empty()) anchors_[done.anchor] = {done.node, size, true};
                attach(done.node);
                return false;
            }
        }
        return false;
    }

    void attach(const NodeData* n) {
        if (open_.empty()) {
            if (!doc_.root_) doc_.root_ = n;
        } else {
            open_.back().children.push_back(n);
        }
    }

    std::string_view text_;
    detail::ExpansionTally tally_;
    bool ascii_;
    std::size_t char_at_ = 0, byte_at_ = 0;
    Document doc_;
    std::unordered_map<std::string, Anchor> anchors_;
    std::vector<Open> open_;
};

Document parse(std::string_view text, const YamlLimits& limits) {
    return Builder(text, limits).build();
}

// Copies a yaml-cpp tree into a Document.
class Copier {
  public:
    Document copy(const YAML::Node& root) {
        if (root.IsDefined()) doc_.root_ = node(root);
        return std::move(doc_);
    }

  private:
    const NodeData* node(const YAML::Node& y) {
        NodeData& n = doc_.nodes_.emplace_back();
        n.mark = y.Mark();
        const std::string& tag = y.Tag();
        n.tag = tag == "?" || tag.empty() ? &kPlainTag
                : tag == "!"              ? &kQuotedTag
                                          : &doc_.tags_.emplace_back(tag);
        switch (y.Type()) {
            case YAML::NodeType::Scalar:
                n.kind = Kind::scalar;
                n.scalar = y.Scalar();
                break;
            case YAML::NodeType::Sequence:
                n.kind = Kind::sequence;
                n.children.reserve(y.size());
                for (const auto& item : y)
                    n.children.push_back(node(item));
                break;
            case YAML::NodeType::Map:
                n.kind = Kind::map;
                n.children.reserve(2 * y.size());
                for (auto it = y.begin(); it != y.end(); ++it) {
                    n.children.push_back(node(it->first));
                    n.children.push_back(node(it->second));
                }
                break;
            default:
                n.kind = Kind::null;
                break;
        }
        return &n;
    }

    Document doc_;
};

Document from_yaml_cpp(const YAML::Node& root) {
    return Copier().copy(root);
}

Document load(const std::string& text, const YamlLimits& limits) {
    try {
        return parse(text, limits);
    } catch (const YamlLimitError&) {
        throw;
    } catch (const YAML::ParserException&) {
        // Refused by libyaml: yaml-cpp's reading (or its error) instead.
        return from_yaml_cpp(load_document(text, limits));
    }
}

}  // namespace remora::control::model::yaml
