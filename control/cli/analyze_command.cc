// `remoractl analyze`: loads files and directories into the resource model, runs the analyzers and
// prints istioctl's lines, then Remora's own "not supported by remora" warnings.
#include "control/cli/analyze_command.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <optional>
#include <string_view>

#include "common/args.h"
#include "control/analyze/analyzer.h"
#include "control/model/model.h"
#include "control/model/yaml_read.h"

namespace remora::control::cli {

namespace {

std::optional<analyze::Analyzer> analyzer_by_name(const std::string& name) {
    for (auto a : analyze::all_analyzers()) {
        std::string full = analyze::analyzer_name(a);
        if (name == full || name == full.substr(full.find('.') + 1)) return a;
    }
    return std::nullopt;
}

std::string remora_warning(const model::Diagnostic& d) {
    std::string origin;
    if (!d.kind.empty()) origin = d.kind + " " + d.ns + "/" + d.name + " ";
    origin += d.resource_where.file.empty() ? d.where.file : d.resource_where.file;
    int line = d.resource_where.line > 0 ? d.resource_where.line : d.where.line;
    if (line > 0) origin += ":" + std::to_string(line);
    return "Warning [remora] (" + origin + ") " + d.where.file + ":" +
           std::to_string(d.where.line) + ":" + std::to_string(d.where.column) + ": " +
           (d.path.empty() ? "" : d.path + ": ") + d.message;
}

// istioctl's short flags, as the long ones Args knows.
std::vector<std::string> long_flags(const std::vector<std::string>& argv) {
    std::vector<std::string> out;
    for (const auto& a : argv) {
        if (a == "-A") {
            out.push_back("--all-namespaces");
        } else if (a == "-o") {
            out.push_back("--output");
        } else if (a == "-n") {
            out.push_back("--namespace");
        } else if (a == "-L") {
            out.push_back("--list-analyzers");
        } else {
            out.push_back(a);
        }
    }
    return out;
}

// '*' matches any run of characters (istioctl --suppress wildcards).
bool glob(std::string_view pattern, std::string_view text) {
    if (pattern.empty()) return text.empty();
    if (pattern[0] == '*') {
        for (std::size_t i = 0; i <= text.size(); ++i) {
            if (glob(pattern.substr(1), text.substr(i))) return true;
        }
        return false;
    }
    return !text.empty() && pattern[0] == text[0] && glob(pattern.substr(1), text.substr(1));
}

struct Suppression {
    std::string code, resource;  // resource: "Kind name.namespace" (or "Kind name")
};

bool suppressed(const std::vector<Suppression>& list, const analyze::Message& m) {
    std::string resource = m.kind + " " + m.name + (m.ns.empty() ? "" : "." + m.ns);
    return std::any_of(list.begin(), list.end(), [&](const Suppression& s) {
        return glob(s.code, m.code) && glob(s.resource, resource);
    });
}

std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out += c;
                }
        }
    }
    return out + "\"";
}

// istioctl's structured fields (diag.Message.Unstructured), keys in Go's sorted order.
std::vector<std::pair<std::string, std::string>> fields(const analyze::Message& m) {
    std::string code = m.code;
    for (char& c : code)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::vector<std::pair<std::string, std::string>> f = {
        {"code", m.code},
        {"documentationUrl",
         "https://istio.io/latest/docs/reference/config/analysis/" + code + "/"},
        {"level", analyze::level_name(m.level)},
        {"message", m.text}};
    if (!m.kind.empty()) f.emplace_back("origin", m.origin());
    std::string reference = m.where.file;
    if (m.where.line > 0) reference += ":" + std::to_string(m.where.line);
    if (!reference.empty()) f.emplace_back("reference", reference);
    return f;
}

void print_json(const std::vector<analyze::Message>& messages, std::ostream& out) {
    if (messages.empty()) {
        out << "[]\n";
        return;
    }
    out << "[\n";
    for (std::size_t i = 0; i < messages.size(); ++i) {
        out << "\t{\n";
        auto f = fields(messages[i]);
        for (std::size_t j = 0; j < f.size(); ++j) {
            out << "\t\t" << json_string(f[j].first) << ": " << json_string(f[j].second)
                << (j + 1 < f.size() ? ",\n" : "\n");
        }
        out << "\t}" << (i + 1 < messages.size() ? ",\n" : "\n");
    }
    out << "]\n";
}

void print_yaml(const std::vector<analyze::Message>& messages, std::ostream& out) {
    if (messages.empty()) {
        out << "[]\n";
        return;
    }
    YAML::Emitter e;
    e << YAML::BeginSeq;
    for (const auto& m : messages) {
        e << YAML::BeginMap;
        for (const auto& [k, v] : fields(m))
            e << YAML::Key << k << YAML::Value << v;
        e << YAML::EndMap;
    }
    e << YAML::EndSeq;
    out << e.c_str() << "\n";
}

const char* kUsage =
    "usage: remoractl analyze [-o|--output log|json|yaml] [--failure-threshold LEVEL]\n"
    "         [--output-threshold LEVEL] [--suppress CODE=RESOURCE]... [-A|--all-namespaces]\n"
    "         [-n|--namespace NS] [--meshConfigFile FILE] [--analyzers NAME,...]\n"
    "         [--no-remora-warnings] FILE|DIR...\n"
    "       remoractl analyze -L|--list-analyzers";

}  // namespace

int analyze_command(const std::vector<std::string>& argv_in, std::ostream& out) {
    common::Args args(long_flags(argv_in),
                      {"analyzers", "output", "failure-threshold", "output-threshold", "suppress",
                       "namespace", "meshConfigFile"},
                      {"no-remora-warnings", "all-namespaces", "list-analyzers"});
    if (args.has("list-analyzers")) {
        out << "Available analyzers:\n";
        for (auto a : analyze::all_analyzers()) {
            out << "* " << analyze::analyzer_name(a) << ":\n    "
                << analyze::analyzer_description(a) << "\n";
        }
        return 0;
    }
    const auto& paths = args.positional();
    if (paths.empty()) throw common::UsageError(kUsage);
    const std::string output = args.get_or("output", "log");
    if (output != "log" && output != "json" && output != "yaml") {
        throw common::UsageError("--output: \"" + output + "\" is not one of log, json, yaml");
    }
    auto threshold = [&](const char* flag, analyze::Level fallback) {
        auto v = args.get(flag);
        if (!v) return fallback;
        auto level = analyze::level_from_name(*v);
        if (!level) {
            throw common::UsageError(std::string("--") + flag + ": \"" + *v +
                                     "\" is not one of Info, Warning, Error");
        }
        return *level;
    };
    const analyze::Level failure = threshold("failure-threshold", analyze::Level::Error);
    const analyze::Level shown = threshold("output-threshold", analyze::Level::Info);
    std::vector<Suppression> suppressions;
    for (const auto& s : args.all("suppress")) {
        auto eq = s.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == s.size()) {
            throw common::UsageError("--suppress: \"" + s +
                                     "\" is not CODE=RESOURCE (e.g. \"IST0102=Namespace foo\")");
        }
        suppressions.push_back({s.substr(0, eq), s.substr(eq + 1)});
    }
    if (args.has("all-namespaces") && args.has("namespace")) {
        throw common::UsageError("--all-namespaces and --namespace exclude each other");
    }
    analyze::Options options;
    if (auto list = args.get("analyzers")) {
        std::size_t start = 0;
        while (start <= list->size()) {
            std::size_t comma = list->find(',', start);
            std::string name =
                list->substr(start, comma == std::string::npos ? std::string::npos : comma - start);
            auto a = analyzer_by_name(name);
            if (!a) throw common::UsageError("--analyzers: unknown analyzer \"" + name + "\"");
            options.only.insert(*a);
            if (comma == std::string::npos) break;
            start = comma + 1;
        }
    }
    if (auto mesh_file = args.get("meshConfigFile")) {
        YAML::Node mesh;
        try {
            std::ifstream in(*mesh_file, std::ios::binary);
            if (!in) throw YAML::BadFile(*mesh_file);
            std::ostringstream text;
            text << in.rdbuf();
            mesh = model::load_document(text.str());
        } catch (const YAML::Exception& e) {
            throw common::UsageError("--meshConfigFile " + *mesh_file + ": " + e.what());
        }
        std::string root = model::scalar_text(model::field(mesh, "rootNamespace"));
        if (!root.empty()) options.root_namespace = root;
        YAML::Node md = model::field(mesh, {"defaultConfig", "proxyMetadata"});
        for (auto it = md.begin(); md.IsMap() && it != md.end(); ++it) {
            if (it->first.IsScalar())
                options.proxy_metadata[it->first.Scalar()] = model::scalar_text(it->second);
        }
    }
    // Offline there is no current context: every namespace is analyzed unless --namespace names
    // one, which also becomes the namespace of resources that name none (as istioctl does).
    std::optional<std::string> only_ns = args.get("namespace");
    model::Config config;
    if (only_ns) config.default_namespace = *only_ns;
    for (const auto& p : paths) {
        if (!std::filesystem::exists(p))
            throw common::UsageError(p + ": no such file or directory");
        model::load_path(config, p);
    }
    std::vector<analyze::Message> messages;
    bool failed = false;
    for (auto& m : analyze::analyze(config, options)) {
        // Cluster-scoped resources (Namespaces) are in no namespace: always reported.
        if (only_ns && !m.kind.empty() && !m.ns.empty() && m.ns != *only_ns) continue;
        if (suppressed(suppressions, m)) continue;
        if (analyze::severity(m.level) >= analyze::severity(failure)) failed = true;
        if (analyze::severity(m.level) >= analyze::severity(shown))
            messages.push_back(std::move(m));
    }
    if (output == "json") {
        print_json(messages, out);
    } else if (output == "yaml") {
        print_yaml(messages, out);
    } else {
        for (const auto& m : messages)
            out << m.str() << "\n";
        std::size_t remora_warnings = 0;
        if (!args.has("no-remora-warnings") && analyze::severity(shown) <= 1) {
            for (const auto* d : config.warnings()) {
                if (!d->remora) continue;
                if (only_ns && !d->kind.empty() && d->ns != *only_ns) continue;
                out << remora_warning(*d) << "\n";
                ++remora_warnings;
            }
        }
        if (messages.empty() && remora_warnings == 0) {
            std::string what;
            for (const auto& p : paths)
                what += (what.empty() ? "" : ", ") + p;
            out << "\u2714 No validation issues found when analyzing " << what << ".\n";
        }
    }
    return failed ? kAnalyzeFoundIssues : 0;
}

}  // namespace remora::control::cli
