// libFuzzer target: any bytes through the resource model's loader, its validation and every
// analyzer, and the store's YAML-to-JSON view. Nothing may throw, crash or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "control/analyze/analyzer.h"
#include "control/model/model.h"
#include "control/store/yaml_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    remora::control::model::Config config;
    remora::control::model::load_yaml(config, text, "fuzz.yaml");
    for (const auto& m : remora::control::analyze::analyze(config))
        (void)m.str();
    for (const auto& d : config.diagnostics)
        (void)d.str();
    try {
        (void)remora::control::store::yaml_to_json(text);
    } catch (const std::runtime_error&) {
        // Its documented answer to text that is not YAML.
    }
    return 0;
}
