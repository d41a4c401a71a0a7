// YAML → JSON with the core schema's scalar resolution (null, booleans, integers, floats).
#include "control/store/yaml_json.h"

#include <boost/json.hpp>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "control/model/yaml_read.h"

namespace remora::control::store {

namespace json = boost::json;

namespace {

json::value plain_scalar(const std::string& s) {
    if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
    // Integers: [-+]?[0-9]+ (and 0x / 0o forms).
    {
        const char* b = s.data();
        const char* e = s.data() + s.size();
        bool neg = false;
        if (*b == '-' || *b == '+') {
            neg = *b == '-';
            ++b;
        }
        int base = 10;
        if (e - b > 2 && b[0] == '0' && (b[1] == 'x' || b[1] == 'o')) {
            base = b[1] == 'x' ? 16 : 8;
            b += 2;
        }
        if (b != e) {
            uint64_t v = 0;
            auto [p, ec] = std::from_chars(b, e, v, base);
            if (ec == std::errc() && p == e) {
                if (!neg) return v;
                if (v <= static_cast<uint64_t>(INT64_MAX)) return -static_cast<int64_t>(v);
            }
        }
    }
    // Floats: digits, one '.', an exponent; from_chars below refuses anything malformed.
    bool floaty = s.find_first_not_of("0123456789.eE+-") == std::string::npos &&
                  s.find_first_of("0123456789") != std::string::npos;
    if (floaty) {
        double d = 0;
        auto [p, ec] = std::from_chars(s.data() + (s[0] == '+'), s.data() + s.size(), d);
        if (ec == std::errc() && p == s.data() + s.size()) return d;
    }
    if (s == ".inf" || s == "+.inf" || s == ".Inf") return std::numeric_limits<double>::max();
    return json::string(s);
}

// Only blank and comment lines: no document at all, as LoadAll reads a stream.
bool no_content(const std::string& text) {
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t nl = text.find('\n', pos);
        std::size_t end = nl == std::string::npos ? text.size() : nl;
        std::size_t first = text.find_first_not_of(" \t\r", pos);
        if (first < end && text[first] != '#') return false;
        pos = end + 1;
    }
    return true;
}

json::value convert(const YAML::Node& n) {
    switch (n.Type()) {
        case YAML::NodeType::Map: {
            json::object o;
            for (const auto& kv : n)
                o[kv.first.as<std::string>()] = convert(kv.second);
            return o;
        }
        case YAML::NodeType::Sequence: {
            json::array a;
            for (const auto& item : n)
                a.push_back(convert(item));
            return a;
        }
        case YAML::NodeType::Scalar:
            // yaml-cpp tags quoted scalars "!" and leaves plain ones "?".
            if (n.Tag() == "!") return json::string(n.Scalar());
            return plain_scalar(n.Scalar());
        default:
            return nullptr;
    }
}

}  // namespace

json::value yaml_to_json(const std::string& yaml_text) {
    try {
        return convert(model::load_document(yaml_text));
    } catch (const YAML::Exception& e) {
        throw std::runtime_error(std::string("YAML: ") + e.what());
    }
}

std::vector<json::value> yaml_documents_to_json(const std::string& yaml_text) {
    std::vector<json::value> out;
    // One document at a time (model::yaml_documents): yaml-cpp 0.7's LoadAll can loop forever.
    for (const auto& [first_line, text] : model::yaml_documents(yaml_text)) {
        try {
            YAML::Node doc = model::load_document(text);
            if (!doc.IsDefined() || (doc.IsNull() && no_content(text))) continue;
            out.push_back(convert(doc));
        } catch (const YAML::Exception& e) {
            throw YamlSyntaxError(e.msg, e.mark.line + first_line, e.mark.column + 1);
        }
    }
    return out;
}

namespace {

void emit(YAML::Emitter& out, const json::value& v) {
    switch (v.kind()) {
        case json::kind::object:
            if (v.get_object().empty()) {
                out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
                return;
            }
            out << YAML::BeginMap;
            for (const auto& kv : v.get_object()) {
                out << YAML::Key << std::string(kv.key());
                out << YAML::Value;
                emit(out, kv.value());
            }
            out << YAML::EndMap;
            return;
        case json::kind::array:
            if (v.get_array().empty()) {
                out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
                return;
            }
            out << YAML::BeginSeq;
            for (const auto& item : v.get_array())
                emit(out, item);
            out << YAML::EndSeq;
            return;
        case json::kind::string: {
            std::string s(v.get_string());
            if (s.find('\n') != std::string::npos) {
                out << YAML::Literal << s;
            } else if (!plain_scalar(s).is_string() || s.empty() ||
                       s.find_first_of(":#{}[],&*!|>'\"%@`") != std::string::npos ||
                       std::isspace(static_cast<unsigned char>(s.front())) ||
                       std::isspace(static_cast<unsigned char>(s.back())) || s.front() == '-' ||
                       s.front() == '?') {
                out << YAML::DoubleQuoted << s;
            } else {
                out << s;
            }
            return;
        }
        case json::kind::bool_:
            out << (v.get_bool() ? "true" : "false");
            return;
        case json::kind::int64:
            out << v.get_int64();
            return;
        case json::kind::uint64:
            out << v.get_uint64();
            return;
        case json::kind::double_:
            out << v.get_double();
            return;
        case json::kind::null:
            out << YAML::Null;
            return;
    }
}

}  // namespace

std::string json_to_yaml(const json::value& v) {
    YAML::Emitter out;
    out.SetIndent(2);
    out.SetSeqFormat(YAML::Block);
    emit(out, v);
    return std::string(out.c_str()) + "\n";
}

}  // namespace remora::control::store
