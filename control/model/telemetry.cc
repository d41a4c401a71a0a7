// Telemetry (telemetry.istio.io) and ProxyConfig (networking.istio.io): parsing with Istio's
// validation rules (pkg/config/validation ValidateTelemetry, ValidateProxyConfig). Remora's own
// telemetry is configured by MeshConfig and proxy flags; these resources are read and validated.
#include "control/model/checks.h"
#include "control/model/parsers.h"

namespace remora::control::model::detail {

namespace {

// validateTelemetryProviders: the first provider without a name, once.
void providers(Obj& o, std::vector<std::string>& out) {
    Reporter& r = o.reporter();
    bool reported = false;
    o.list("providers", [&](const Value& v, std::size_t) {
        std::string name;
        if (!v.node.IsNull()) {
            Obj p(r, v);
            p.str("name", name);
        }
        if (name.empty() && !reported) {
            r.error(v.mark(), v.path, "providers.name may not be empty");
            reported = true;
        }
        out.push_back(name);
    });
}

void match_mode(Obj& o) {
    o.object("match", [&](Obj& m) {
        std::string mode;
        m.enumeration("mode", mode, {"CLIENT_AND_SERVER", "CLIENT", "SERVER"});
    });
}

}  // namespace

void parse_telemetry(Obj& spec, Telemetry& t) {
    Reporter& r = spec.reporter();
    parse_selector(spec, "selector", t.selector);
    parse_target_refs(spec, spec.has("selector"));
    auto tracing = spec.get("tracing");
    if (tracing && tracing->node.IsSequence() && tracing->node.size() > 1) {
        r.warning(tracing->mark(), tracing->path, "multiple tracing is not currently supported");
    }
    spec.objects("tracing", [&](Obj& o, std::size_t) {
        Telemetry::Tracing tr;
        providers(o, tr.providers);
        if (tr.providers.size() > 1) {
            auto v = o.get("providers");
            r.warning(v->mark(), v->path, "multiple providers is not currently supported");
        }
        match_mode(o);
        double pct = 0;
        if (auto v = o.get("randomSamplingPercentage")) {
            if (o.number("randomSamplingPercentage", pct)) {
                if (pct < 0 || pct > 100) {
                    r.error(v->mark(), v->path,
                            "randomSamplingPercentage must be in range [0.0, 100.0]");
                }
                tr.random_sampling_percentage = pct;
            }
        }
        o.boolean("disableSpanReporting", tr.disable_span_reporting);
        bool ignored = false;
        o.boolean("useRequestIdForTraceSampling", ignored);
        o.boolean("disableContextPropagation", ignored);
        o.boolean("enableIstioTags", ignored);
        o.entries("customTags", [&](const std::string& name, const YAML::Mark& at, const Value& v) {
            if (name.empty()) r.error(at, v.path, "tag name may not be empty");
            if (v.node.IsNull()) {
                r.error(at, v.path, "tag '" + name + "' may not have a nil value");
                return;
            }
            Obj tag(r, v);
            auto named = [&](const char* key, const char* field, const std::string& message) {
                tag.object(key, [&](Obj& x) {
                    std::string value, fallback;
                    x.str(field, value);
                    if (std::string(key) != "literal") x.str("defaultValue", fallback);
                    if (value.empty()) r.error(x.mark(), x.path(), message);
                });
            };
            named("literal", "value", "literal tag value may not be empty");
            named("header", "name", "header tag name may not be empty");
            named("environment", "name", "environment tag name may not be empty");
            tag.object("formatter", [&](Obj& x) {
                std::string value;
                x.str("value", value);
            });
        });
        t.tracing.push_back(std::move(tr));
    });
    spec.objects("metrics", [&](Obj& o, std::size_t) {
        Telemetry::Metrics m;
        providers(o, m.providers);
        std::optional<Duration> interval;
        o.duration("reportingInterval", interval);
        o.list("overrides", [&](const Value& v, std::size_t) {
            if (v.node.IsNull()) {
                r.error(v.mark(), v.path, "tagOverrides may not be null");
                return;
            }
            Obj ov(r, v);
            bool disabled = false;
            ov.boolean("disabled", disabled);
            ov.object("match", [&](Obj& mm) {
                std::string metric, mode, custom;
                mm.enumeration("metric", metric,
                               {"ALL_METRICS", "REQUEST_COUNT", "REQUEST_DURATION", "REQUEST_SIZE",
                                "RESPONSE_SIZE", "TCP_OPENED_CONNECTIONS", "TCP_CLOSED_CONNECTIONS",
                                "TCP_SENT_BYTES", "TCP_RECEIVED_BYTES", "GRPC_REQUEST_MESSAGES",
                                "GRPC_RESPONSE_MESSAGES"});
                mm.enumeration("mode", mode, {"CLIENT_AND_SERVER", "CLIENT", "SERVER"});
                if (auto c = mm.get("customMetric")) {
                    if (mm.str("customMetric", custom) && custom.empty())
                        r.error(c->mark(), c->path, "customMetric may not be empty");
                }
            });
            ov.entries("tagOverrides", [&](const std::string& name, const YAML::Mark& at,
                                           const Value& tv) {
                if (name.empty()) r.warning(at, tv.path, "tagOverrides.name may not be empty");
                if (tv.node.IsNull()) {
                    r.error(at, tv.path, "tagOverrides may not be null");
                    return;
                }
                Obj to(r, tv);
                std::string operation = "UPSERT", value;
                to.enumeration("operation", operation, {"UPSERT", "REMOVE"});
                to.str("value", value);
                if (operation == "UPSERT" && value.empty()) {
                    r.error(tv.mark(), tv.path,
                            "tagOverrides.value must be set when operation is UPSERT");
                } else if (operation == "REMOVE" && !value.empty()) {
                    r.error(tv.mark(), tv.path,
                            "tagOverrides.value may only be set when operation is UPSERT");
                }
            });
        });
        t.metrics.push_back(std::move(m));
    });
    spec.objects("accessLogging", [&](Obj& o, std::size_t) {
        Telemetry::AccessLogging a;
        providers(o, a.providers);
        match_mode(o);
        bool disabled = false;
        if (o.boolean("disabled", disabled)) a.disabled = disabled;
        o.object("filter", [&](Obj& f) {
            // Istio parses it as CEL (cel-go, syntax only); a filter without expression too.
            auto expression = f.get("expression");
            f.str("expression", a.filter);
            if (auto p = cel_syntax_problem(a.filter); !p.empty()) {
                r.error(expression ? expression->mark() : f.mark(),
                        expression ? expression->path : join(f.path(), "expression"),
                        "must be a valid CEL expression, " + p);
            }
        });
        t.access_logging.push_back(std::move(a));
    });
    r.unsupported(spec.mark(), spec.path().empty() ? "spec" : spec.path(),
                  "Remora's telemetry follows MeshConfig and proxy flags");
}

void parse_proxy_config(Obj& spec, ProxyConfig& pc) {
    Reporter& r = spec.reporter();
    parse_selector(spec, "selector", pc.selector);
    if (auto v = spec.get("concurrency")) {
        int32_t n = 0;
        if (spec.integer("concurrency", n, INT32_MIN, INT32_MAX)) {
            if (n < 0) {
                r.error(v->mark(), v->path, "concurrency must be greater than or equal to 0");
            }
            pc.concurrency = n;
        }
    }
    spec.string_map("environmentVariables", pc.environment_variables);
    spec.object("image", [&](Obj& i) { i.str("imageType", pc.image_type); });
    r.unsupported(spec.mark(), spec.path().empty() ? "spec" : spec.path(),
                  "proxies take defaultConfig from MeshConfig and their own flags");
}

}  // namespace remora::control::model::detail
