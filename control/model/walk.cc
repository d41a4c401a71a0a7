// Walking YAML mappings with field paths; diagnostics with file:line:col; unknown-field reports.
#include "control/model/walk.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <unordered_set>

#include "control/model/checks.h"
#include "control/model/yaml_read.h"

namespace remora::control::model::detail {

void Reporter::set_resource(std::string kind, std::string ns, std::string name, Location where) {
    kind_ = std::move(kind);
    ns_ = std::move(ns);
    name_ = std::move(name);
    resource_where_ = std::move(where);
}

Location Reporter::location(const YAML::Mark& at) const {
    Location l;
    l.file = file_;
    if (!at.is_null()) {
        l.line = at.line + 1 + line_offset_;
        l.column = at.column + 1;
    }
    return l;
}

void Reporter::add(Severity s, const YAML::Mark& at, const std::string& path, std::string message,
                   bool remora) {
    Diagnostic d;
    d.severity = s;
    d.remora = remora;
    d.where = location(at);
    d.kind = kind_;
    d.ns = ns_;
    d.name = name_;
    d.resource_where = resource_where_;
    d.path = path;
    d.message = std::move(message);
    out_.push_back(std::move(d));
    if (s == Severity::Error) ++errors_;
}

void Reporter::error(const YAML::Mark& at, const std::string& path, std::string message) {
    add(Severity::Error, at, path, std::move(message));
}

void Reporter::warning(const YAML::Mark& at, const std::string& path, std::string message,
                       bool remora) {
    add(Severity::Warning, at, path, std::move(message), remora);
}

void Reporter::note(const YAML::Mark& at, const std::string& path, std::string message) {
    add(Severity::Note, at, path, std::move(message));
}

void Reporter::unsupported(const YAML::Mark& at, const std::string& path, const std::string& why) {
    warning(at, path, "not supported by remora" + (why.empty() ? "" : " (" + why + ")"), true);
}

std::string join(const std::string& base, std::string_view key) {
    bool plain = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    });
    if (!plain) return base + "[\"" + std::string(key) + "\"]";
    return base.empty() ? std::string(key) : base + "." + std::string(key);
}

std::string at_index(const std::string& base, std::size_t i) {
    return base + "[" + std::to_string(i) + "]";
}

std::string in_quotes(std::string_view s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

Obj::Obj(Reporter& r, const yaml::Node& node, std::string path)
    : r_(r), node_(node), path_(std::move(path)) {
    if (!node_.IsMap()) {
        r_.error(node_.Mark(), path_.empty() ? "document" : path_, "must be a mapping");
        return;
    }
    is_map_ = true;
    entries_.reserve(node_.size());
    for (auto it = node_.begin(); it != node_.end(); ++it) {
        if (!it->first.IsScalar()) {
            r_.error(it->first.Mark(), path_, "field names must be strings");
            continue;
        }
        entries_.push_back({it->first, it->second, false});
    }
    // Duplicate keys: pairwise for the few fields a mapping has, through a set past that.
    auto duplicate = [this](std::size_t i) {
        r_.error(entries_[i].key.Mark(), join(path_, entries_[i].key.Scalar()), "duplicate field");
    };
    if (entries_.size() <= 16) {
        for (std::size_t i = 1; i < entries_.size(); ++i) {
            for (std::size_t j = 0; j < i; ++j) {
                if (entries_[j].key.Scalar() == entries_[i].key.Scalar()) {
                    duplicate(i);
                    break;
                }
            }
        }
    } else {
        std::unordered_set<std::string_view> seen;
        for (std::size_t i = 0; i < entries_.size(); ++i) {
            if (!seen.insert(entries_[i].key.Scalar()).second) duplicate(i);
        }
    }
}

yaml::Node Obj::lookup(const std::string& key) const {
    for (const Entry& e : entries_) {
        if (e.key.Scalar() == key) return e.value;
    }
    return yaml::Node();
}

void Obj::skip(const std::string& key) {
    for (Entry& e : entries_) {
        if (e.key.Scalar() == key) e.known = true;
    }
}

Obj::~Obj() {
    finish();
}

void Obj::finish() {
    if (!is_map_) return;
    for (const Entry& e : entries_) {
        if (!e.known) r_.error(e.key.Mark(), join(path_, e.key.Scalar()), "unknown field");
    }
    is_map_ = false;
}

bool Obj::has(const std::string& key) const {
    if (!is_map_) return false;
    yaml::Node v = lookup(key);
    return v.IsDefined() && !v.IsNull();
}

std::optional<Value> Obj::get(const std::string& key) {
    skip(key);
    if (!is_map_) return std::nullopt;
    yaml::Node v = lookup(key);
    std::string path = join(path_, key);
    r_.visit(v.IsDefined() ? v.Mark() : node_.Mark(), path);
    if (!v.IsDefined() || v.IsNull()) return std::nullopt;
    return Value{v, std::move(path)};
}

void Obj::unsupported(const std::string& key, const std::string& why) {
    if (auto v = get(key)) r_.unsupported(v->mark(), v->path, why);
}

void Obj::require(const std::string& key) {
    skip(key);
    if (!has(key)) r_.error(node_.Mark(), join(path_, key), "required");
}

namespace {

// In a flow collection, yaml-cpp takes a ':' before ',', ']' or '}' as a mapping indicator:
// [1.2.3.4, 2001:db8::] holds 1.2.3.4 and {"2001:db8:": null}. Kubernetes (go-yaml) takes a ':'
// as an indicator only before a blank, and reads the string "2001:db8::". The source text says
// which was written.
bool go_yaml_plain_scalar(const Reporter& r, const yaml::Node& n, std::string& out) {
    const std::string* text = r.text();
    if (!text || !n.IsMap() || n.size() != 1) return false;
    auto it = n.begin();
    if (!it->first.IsScalar() || it->first.Tag() != "?" || !it->second.IsNull()) return false;
    const std::string& key = it->first.Scalar();
    const YAML::Mark at = it->first.Mark();
    if (at.is_null() || at.pos < 0) return false;
    std::size_t colon = static_cast<std::size_t>(at.pos) + key.size();
    if (colon + 1 >= text->size() ||
        text->compare(static_cast<std::size_t>(at.pos), key.size(), key) != 0) {
        return false;
    }
    char next = (*text)[colon + 1];
    if ((*text)[colon] != ':' || (next != ',' && next != ']' && next != '}')) return false;
    out = key + ":";
    return true;
}

}  // namespace

bool scalar_string(Reporter& r, const Value& v, std::string& out) {
    if (go_yaml_plain_scalar(r, v.node, out)) return true;
    if (!v.node.IsScalar()) {
        r.error(v.mark(), v.path, "must be a string");
        return false;
    }
    out = v.node.Scalar();
    return true;
}

bool scalar_int(Reporter& r, const Value& v, int64_t& out, int64_t lo, int64_t hi) {
    std::string range = std::to_string(lo) + ".." + std::to_string(hi);
    if (!v.node.IsScalar()) {
        r.error(v.mark(), v.path, "must be an integer in " + range);
        return false;
    }
    const std::string& tag = v.node.Tag();
    const std::string& s = v.node.Scalar();
    if (tag != "?" && tag != "tag:yaml.org,2002:int") {
        r.error(v.mark(), v.path, "must be an integer, not the string " + in_quotes(s));
        return false;
    }
    int64_t n = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size()) {
        r.error(v.mark(), v.path, in_quotes(s) + " is not an integer");
        return false;
    }
    if (n < lo || n > hi) {
        r.error(v.mark(), v.path, std::to_string(n) + " is not in " + range);
        return false;
    }
    out = n;
    return true;
}

bool Obj::str(const std::string& key, std::string& out) {
    auto v = get(key);
    return v && scalar_string(r_, *v, out);
}

bool Obj::boolean(const std::string& key, bool& out) {
    auto v = get(key);
    if (!v) return false;
    const std::string& s = v->node.IsScalar() ? v->node.Scalar() : std::string();
    if (v->node.IsScalar() && v->node.Tag() == "?" && (s == "true" || s == "false")) {
        out = s == "true";
        return true;
    }
    r_.error(v->mark(), v->path, "must be true or false");
    return false;
}

bool Obj::i64(const std::string& key, int64_t& out, int64_t lo, int64_t hi) {
    auto v = get(key);
    return v && scalar_int(r_, *v, out, lo, hi);
}

bool Obj::number(const std::string& key, double& out) {
    auto v = get(key);
    if (!v) return false;
    if (v->node.IsScalar() && v->node.Tag() == "?") {
        const std::string& s = v->node.Scalar();
        double d = 0;
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
        if (!s.empty() && ec == std::errc() && end == s.data() + s.size() && std::isfinite(d)) {
            out = d;
            return true;
        }
    }
    r_.error(v->mark(), v->path, "must be a number");
    return false;
}

bool Obj::duration(const std::string& key, std::optional<Duration>& out, bool allow_zero) {
    auto v = get(key);
    std::string s;
    if (!v || !scalar_string(r_, *v, s)) return false;
    auto d = parse_duration(s);
    if (!d) {
        r_.error(v->mark(), v->path,
                 in_quotes(s) + " is not a duration (e.g. \"10ms\", \"1.5s\", \"1m\", \"1h\")");
        return false;
    }
    if (allow_zero && d->count() == 0) {
        out = *d;
        return true;
    }
    if (*d < std::chrono::milliseconds(1)) {
        r_.error(v->mark(), v->path, "duration must be greater than 1ms (is " + in_quotes(s) + ")");
        return false;
    }
    if (d->count() % 1000000 != 0) {
        r_.error(v->mark(), v->path,
                 "only durations to ms precision are supported (is " + in_quotes(s) + ")");
        return false;
    }
    out = *d;
    return true;
}

bool Obj::strings(const std::string& key, std::vector<std::string>& out) {
    auto v = get(key);
    if (!v) return false;
    if (!v->node.IsSequence()) {
        r_.error(v->mark(), v->path, "must be a list of strings");
        return false;
    }
    bool ok = true;
    for (std::size_t i = 0; i < v->node.size(); ++i) {
        std::string s;
        if (scalar_string(r_, Value{item(v->node, i), at_index(v->path, i)}, s)) {
            out.push_back(std::move(s));
        } else {
            ok = false;
        }
    }
    return ok;
}

bool Obj::string_map(const std::string& key, std::map<std::string, std::string>& out) {
    bool ok = true;
    bool present = false;
    entries(key, [&](const std::string& k, const YAML::Mark&, const Value& v) {
        present = true;
        std::string s;
        if (v.node.IsNull()) {
            out[k] = "";
        } else if (scalar_string(r_, v, s)) {
            out[k] = s;
        } else {
            ok = false;
        }
    });
    if (!present && has(key)) return true;  // empty mapping
    return ok && present;
}

bool Obj::enumeration(const std::string& key, std::string& out,
                      std::initializer_list<std::string_view> allowed) {
    auto v = get(key);
    std::string s;
    if (!v || !scalar_string(r_, *v, s)) return false;
    if (std::find(allowed.begin(), allowed.end(), s) == allowed.end()) {
        std::string list;
        for (auto a : allowed)
            list += (list.empty() ? "" : ", ") + std::string(a);
        r_.error(v->mark(), v->path, in_quotes(s) + " is not one of " + list);
        return false;
    }
    out = s;
    return true;
}

bool Obj::percent(const std::string& key, std::optional<double>& out) {
    bool ok = false;
    object(key, [&](Obj& p) {
        double d = 0;
        auto v = p.get("value");
        if (!v) {
            out = 0;  // {} is a zero Percent
            ok = true;
            return;
        }
        if (p.number("value", d)) {
            // Istio's validatePercentage: 0, or within [0.0001, 100].
            if (d < 0 || d > 100 || (d > 0 && d < 0.0001)) {
                r_.error(v->mark(), v->path,
                         "percentage " + v->node.Scalar() +
                             " is neither 0.0, nor in range [0.0001, 100.0]");
                return;
            }
            out = d;
            ok = true;
        }
    });
    return ok;
}

void Obj::object(const std::string& key, const std::function<void(Obj&)>& f) {
    auto v = get(key);
    if (!v) return;
    if (!v->node.IsMap()) {
        r_.error(v->mark(), v->path, "must be a mapping");
        return;
    }
    Obj o(r_, *v);
    f(o);
}

void Obj::objects(const std::string& key, const std::function<void(Obj&, std::size_t)>& f) {
    list(key, [&](const Value& item, std::size_t i) {
        if (!item.node.IsMap()) {
            r_.error(item.mark(), item.path, "must be a mapping");
            return;
        }
        Obj o(r_, item);
        f(o, i);
    });
}

void Obj::list(const std::string& key, const std::function<void(const Value&, std::size_t)>& f) {
    auto v = get(key);
    if (!v) return;
    if (!v->node.IsSequence()) {
        r_.error(v->mark(), v->path, "must be a list");
        return;
    }
    for (std::size_t i = 0; i < v->node.size(); ++i)
        f(Value{item(v->node, i), at_index(v->path, i)}, i);
}

void Obj::entries(
    const std::string& key,
    const std::function<void(const std::string&, const YAML::Mark&, const Value&)>& f) {
    auto v = get(key);
    if (!v) return;
    if (!v->node.IsMap()) {
        r_.error(v->mark(), v->path, "must be a mapping");
        return;
    }
    for (auto it = v->node.begin(); it != v->node.end(); ++it) {
        if (!it->first.IsScalar()) {
            r_.error(it->first.Mark(), v->path, "keys must be strings");
            continue;
        }
        const std::string& k = it->first.Scalar();
        f(k, it->first.Mark(), Value{it->second, join(v->path, k)});
    }
}

}  // namespace remora::control::model::detail
