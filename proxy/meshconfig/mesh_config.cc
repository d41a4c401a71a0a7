// MeshConfig YAML → struct, every error with file, line, column and field.
#include "proxy/meshconfig/mesh_config.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>

#include "common/args.h"
#include "control/model/yaml_read.h"

namespace remora::proxy {

namespace {

struct Reader {
    const std::string& file;

    [[noreturn]] void fail(const YAML::Node& n, const std::string& field, const std::string& what) const {
        const YAML::Mark m = n.Mark();
        throw MeshConfigError(file + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1) +
                              ": " + field + ": " + what);
    }
    std::string str(const YAML::Node& n, const std::string& field) const {
        if (!n.IsScalar()) fail(n, field, "expected a string");
        return n.Scalar();
    }
    bool boolean(const YAML::Node& n, const std::string& field) const {
        std::string v = str(n, field);
        if (v == "true") return true;
        if (v == "false") return false;
        fail(n, field, "expected true or false, not \"" + v + "\"");
    }
    double number(const YAML::Node& n, const std::string& field, double lo, double hi) const {
        std::string v = str(n, field);
        double d = 0;
        size_t used = 0;
        try {
            d = std::stod(v, &used);
        } catch (...) {
            used = 0;
        }
        if (used != v.size() || v.empty()) fail(n, field, "expected a number, not \"" + v + "\"");
        if (d < lo || d > hi) {
            fail(n, field, v + " is out of range [" + std::to_string(static_cast<int>(lo)) + ", " +
                               std::to_string(static_cast<int>(hi)) + "]");
        }
        return d;
    }
    std::string one_of(const YAML::Node& n, const std::string& field, std::initializer_list<const char*> allowed) const {
        std::string v = str(n, field);
        std::string list;
        for (const char* a : allowed) {
            if (v == a) return v;
            list += std::string(list.empty() ? "" : ", ") + a;
        }
        fail(n, field, "\"" + v + "\" is not one of " + list);
    }
};

}  // namespace

MeshConfig MeshConfig::parse(const std::string& text, const std::string& file) {
    MeshConfig mc;
    Reader r{file};
    YAML::Node root;
    try {
        root = control::model::load_document(text);
    } catch (const YAML::Exception& e) {
        throw MeshConfigError(file + ":" + std::to_string(e.mark.line + 1) + ":" +
                              std::to_string(e.mark.column + 1) + ": " + e.msg);
    }
    if (root.IsNull()) return mc;
    if (!root.IsMap()) r.fail(root, "(top level)", "expected a mapping of MeshConfig fields");
    // The istio ConfigMap form: data.mesh holds the MeshConfig as a string.
    // model::field: root["data"]["mesh"] throws when data is a string.
    if (control::model::field(root, "kind") &&
        control::model::field(root, {"data", "mesh"}).IsDefined()) {
        YAML::Node mesh = control::model::field(root, {"data", "mesh"});
        return parse(r.str(mesh, "data.mesh"), file + " (data.mesh)");
    }
    for (const auto& kv : root) {
        const std::string key = kv.first.Scalar();
        const YAML::Node& v = kv.second;
        if (key == "trustDomain") {
            mc.trust_domain = r.str(v, key);
        } else if (key == "rootNamespace") {
            mc.root_namespace = r.str(v, key);
        } else if (key == "accessLogFile") {
            mc.access_log_file = r.str(v, key);
        } else if (key == "accessLogEncoding") {
            mc.access_log_encoding = r.one_of(v, key, {"TEXT", "JSON"});
        } else if (key == "outboundTrafficPolicy") {
            if (!v.IsMap()) r.fail(v, key, "expected a mapping with `mode`");
            for (const auto& p : v) {
                std::string k2 = p.first.Scalar();
                if (k2 != "mode") r.fail(p.first, key + "." + k2, "unknown field");
                mc.outbound_traffic_policy = r.one_of(p.second, key + ".mode", {"ALLOW_ANY", "REGISTRY_ONLY"});
            }
        } else if (key == "h2UpgradePolicy") {
            mc.h2_upgrade_policy = r.one_of(v, key, {"UPGRADE", "DO_NOT_UPGRADE"});
        } else if (key == "enableAutoMtls") {
            mc.enable_auto_mtls = r.boolean(v, key);
        } else if (key == "defaultConfig") {
            if (!v.IsMap()) r.fail(v, key, "expected a mapping (ProxyConfig)");
            for (const auto& p : v) {
                const std::string k2 = p.first.Scalar();
                const std::string f2 = key + "." + k2;
                const YAML::Node& v2 = p.second;
                if (k2 == "concurrency") {
                    mc.concurrency = static_cast<int>(r.number(v2, f2, 0, 64));
                } else if (k2 == "terminationDrainDuration") {
                    try {
                        mc.termination_drain_seconds =
                            static_cast<int>(common::parse_duration_seconds(f2, r.str(v2, f2)));
                    } catch (const std::exception& e) {
                        r.fail(v2, f2, e.what());
                    }
                } else if (k2 == "streamIdleTimeout" || k2 == "requestTimeout") {
                    const std::string text = r.str(v2, f2);
                    try {
                        const int s = text == "0" || text == "0s"
                                          ? 0
                                          : static_cast<int>(common::parse_duration_seconds(f2, text));
                        if (k2 == "streamIdleTimeout") {
                            if (s == 0) r.fail(v2, f2, "must be a positive duration");
                            mc.stream_idle_seconds = s;
                        } else {
                            mc.request_timeout_seconds = s;
                        }
                    } catch (const MeshConfigError&) {
                        throw;
                    } catch (const std::exception& e) {
                        r.fail(v2, f2, e.what());
                    }
                } else if (k2 == "tracing") {
                    if (!v2.IsMap()) r.fail(v2, f2, "expected a mapping");
                    for (const auto& t : v2) {
                        const std::string k3 = t.first.Scalar();
                        const std::string f3 = f2 + "." + k3;
                        if (k3 == "sampling") {
                            mc.tracing_sampling = r.number(t.second, f3, 0, 100);
                        } else if (k3 == "zipkin") {
                            if (!t.second.IsMap()) r.fail(t.second, f3, "expected a mapping with `address`");
                            for (const auto& z : t.second) {
                                if (z.first.Scalar() != "address") r.fail(z.first, f3 + "." + z.first.Scalar(), "unknown field");
                                mc.zipkin_address = r.str(z.second, f3 + ".address");
                                if (mc.zipkin_address.rfind(':') == std::string::npos) {
                                    r.fail(z.second, f3 + ".address", "expected HOST:PORT");
                                }
                            }
                        } else {
                            mc.notes.push_back(f3 + ": not supported by remora (ignored)");
                        }
                    }
                } else {
                    mc.notes.push_back(f2 + ": not supported by remora (ignored)");
                }
            }
        } else {
            mc.notes.push_back(key + ": not supported by remora (ignored)");
        }
    }
    return mc;
}

MeshConfig MeshConfig::load_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw MeshConfigError(path + ": cannot read");
    std::stringstream ss;
    ss << in.rdbuf();
    return parse(ss.str(), path);
}

}  // namespace remora::proxy
