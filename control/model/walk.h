// Internal to control/model: walking a YAML mapping with field paths, collecting diagnostics that
// point at file:line:col, and reporting fields nobody read as unknown.
#pragma once

#include <yaml-cpp/yaml.h>

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "control/model/model.h"
#include "control/model/yaml_dom.h"
#include "control/model/yaml_read.h"

namespace remora::control::model::detail {

// Collects diagnostics for one resource of one file.
class Reporter {
  public:
    // line_offset: the line of the file where the parsed text starts, less one (a document
    // parsed alone has its marks counted from its own first line).
    Reporter(std::vector<Diagnostic>& out, std::string file, int line_offset = 0)
        : out_(out), file_(std::move(file)), line_offset_(line_offset) {}

    void set_resource(std::string kind, std::string ns, std::string name, Location where);
    void error(const YAML::Mark& at, const std::string& path, std::string message);
    void warning(const YAML::Mark& at, const std::string& path, std::string message,
                 bool remora = false);
    void note(const YAML::Mark& at, const std::string& path, std::string message);
    // "<path>: not supported by remora (<why>)" as a warning.
    void unsupported(const YAML::Mark& at, const std::string& path, const std::string& why = "");

    Location location(const YAML::Mark& at) const;
    std::size_t error_count() const { return errors_; }

    // The field being read, so that an unexpected exception can still name file, line and field.
    void visit(const YAML::Mark& at, const std::string& path) {
        visited_mark_ = at;
        visited_path_ = path;
    }
    const YAML::Mark& visited_mark() const { return visited_mark_; }

    // The text the marks point into, to read a scalar as Kubernetes (go-yaml) does where
    // yaml-cpp reads it differently.
    void set_text(const std::string* text) { text_ = text; }
    const std::string* text() const { return text_; }
    const std::string& visited_path() const { return visited_path_; }
    const std::string& file() const { return file_; }

  private:
    void add(Severity s, const YAML::Mark& at, const std::string& path, std::string message,
             bool remora = false);

    std::vector<Diagnostic>& out_;
    std::string file_;
    int line_offset_ = 0;
    std::string kind_, ns_, name_;
    Location resource_where_;
    std::size_t errors_ = 0;
    YAML::Mark visited_mark_ = YAML::Mark::null_mark();
    const std::string* text_ = nullptr;
    std::string visited_path_;
};

// "a.b" for plain keys, a["x.y/z"] for keys with other characters (label keys, header names).
std::string join(const std::string& base, std::string_view key);
std::string at_index(const std::string& base, std::size_t i);
std::string in_quotes(std::string_view s);

// A YAML node with its field path.
struct Value {
    yaml::Node node;
    std::string path;
    YAML::Mark mark() const { return node.Mark(); }
};

// A mapping being read. Every accessor marks the key as known; finish() reports the others.
class Obj {
  public:
    // When `node` is not a mapping, reports it and behaves as an empty mapping.
    Obj(Reporter& r, const yaml::Node& node, std::string path);
    Obj(Reporter& r, const Value& v) : Obj(r, v.node, v.path) {}
    Obj(const Obj&) = delete;
    ~Obj();

    Reporter& reporter() const { return r_; }
    const std::string& path() const { return path_; }
    YAML::Mark mark() const { return node_.Mark(); }
    bool has(const std::string& key) const;  // present and not null

    // The field unless absent or null (null means unset, as in JSON).
    std::optional<Value> get(const std::string& key);
    // A known field this model does not keep; still marked as known.
    void skip(const std::string& key);
    // A valid Istio field Remora does not implement: a warning when present.
    void unsupported(const std::string& key, const std::string& why = "");
    void require(const std::string& key);  // error when absent

    // Typed readers: true when present and well-typed (errors are reported otherwise).
    bool str(const std::string& key, std::string& out);
    bool boolean(const std::string& key, bool& out);
    bool i64(const std::string& key, int64_t& out, int64_t lo, int64_t hi);
    template <class T>
    bool integer(const std::string& key, T& out, int64_t lo, int64_t hi) {
        int64_t v = 0;
        if (!i64(key, v, lo, hi)) return false;
        out = static_cast<T>(v);
        return true;
    }
    template <class T>
    bool integer(const std::string& key, std::optional<T>& out, int64_t lo, int64_t hi) {
        int64_t v = 0;
        if (!i64(key, v, lo, hi)) return false;
        out = static_cast<T>(v);
        return true;
    }
    bool number(const std::string& key, double& out);
    // Istio's ValidateDuration: >= 1ms, millisecond precision (unless allow_zero and "0s").
    bool duration(const std::string& key, std::optional<Duration>& out, bool allow_zero = false);
    bool strings(const std::string& key, std::vector<std::string>& out);
    bool string_map(const std::string& key, std::map<std::string, std::string>& out);
    // Enum as a string; the value must be one of `allowed`.
    bool enumeration(const std::string& key, std::string& out,
                     std::initializer_list<std::string_view> allowed);
    // Percent message {value: double}; 0..100.
    bool percent(const std::string& key, std::optional<double>& out);

    void object(const std::string& key, const std::function<void(Obj&)>& f);
    // A list of mappings.
    void objects(const std::string& key, const std::function<void(Obj&, std::size_t)>& f);
    void list(const std::string& key, const std::function<void(const Value&, std::size_t)>& f);
    // A mapping with free-form keys.
    void entries(const std::string& key,
                 const std::function<void(const std::string&, const YAML::Mark&, const Value&)>& f);

  private:
    void finish();
    // The value of `key` (the first, if written twice), or an undefined node.
    yaml::Node lookup(const std::string& key) const;

    // The mapping's entries with string keys, read once; `known` once an accessor asked for it.
    struct Entry {
        yaml::Node key;
        yaml::Node value;
        bool known = false;
    };

    Reporter& r_;
    yaml::Node node_;
    std::string path_;
    bool is_map_ = false;
    std::vector<Entry> entries_;
};

// Scalar readers for list items and map values.
bool scalar_string(Reporter& r, const Value& v, std::string& out);
bool scalar_int(Reporter& r, const Value& v, int64_t& out, int64_t lo, int64_t hi);

}  // namespace remora::control::model::detail
