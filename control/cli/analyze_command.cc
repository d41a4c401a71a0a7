// `remoractl analyze`: loads files and directories into the resource model, runs the analyzers and
// prints istioctl's lines, then Remora's own "not supported by remora" warnings.
#include "control/cli/analyze_command.h"

#include <filesystem>

#include "common/args.h"
#include "control/analyze/analyzer.h"
#include "control/model/model.h"

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

}  // namespace

int analyze_command(const std::vector<std::string>& argv, std::ostream& out) {
    common::Args args(argv, {"analyzers"}, {"no-remora-warnings"});
    const auto& paths = args.positional();
    if (paths.empty()) {
        throw common::UsageError(
            "usage: remoractl analyze [--analyzers NAME,...] [--no-remora-warnings] FILE|DIR...");
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
    model::Config config;
    for (const auto& p : paths) {
        if (!std::filesystem::exists(p))
            throw common::UsageError(p + ": no such file or directory");
        model::load_path(config, p);
    }
    auto messages = analyze::analyze(config, options);
    for (const auto& m : messages)
        out << m.str() << "\n";
    std::size_t remora_warnings = 0;
    if (!args.has("no-remora-warnings")) {
        for (const auto* d : config.warnings()) {
            if (!d->remora) continue;
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
    return analyze::has_errors(messages) ? kAnalyzeFoundIssues : 0;
}

}  // namespace remora::control::cli
