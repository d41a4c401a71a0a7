// YAML documents as JSON values (for `GET /v1/config` and `remoractl get -o json`), with YAML 1.2
// core-schema typing of plain scalars: quoted "50" stays a string, plain 50 is a number.
#pragma once

#include <boost/json/value.hpp>

#include <stdexcept>
#include <string>
#include <vector>

namespace remora::control::store {

// The first document of `yaml_text` as JSON; throws std::runtime_error on a YAML syntax error.
boost::json::value yaml_to_json(const std::string& yaml_text);

// A YAML syntax error with its 1-based line and column, for "FILE:LINE: ..." messages.
struct YamlSyntaxError : std::runtime_error {
    YamlSyntaxError(const std::string& what, int line_, int column_)
        : std::runtime_error(what), line(line_), column(column_) {}
    int line;
    int column;
};

// Every document of a YAML stream ("---"-separated) as JSON; empty documents become null.
std::vector<boost::json::value> yaml_documents_to_json(const std::string& yaml_text);

// JSON as block-style YAML that reads back to the same JSON (strings that would read back as
// numbers, booleans or null are quoted; multi-line strings become literal blocks).
std::string json_to_yaml(const boost::json::value& v);

}  // namespace remora::control::store
