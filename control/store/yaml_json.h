// YAML documents as JSON values (for `GET /v1/config` and `remoractl get -o json`), with YAML 1.2
// core-schema typing of plain scalars: quoted "50" stays a string, plain 50 is a number.
#pragma once

#include <boost/json/value.hpp>

#include <string>

namespace remora::control::store {

// The first document of `yaml_text` as JSON; throws std::runtime_error on a YAML syntax error.
boost::json::value yaml_to_json(const std::string& yaml_text);

}  // namespace remora::control::store
