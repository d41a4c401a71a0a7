// MeshConfig: the fields Remora reads, Istio's defaults, the ConfigMap form, precise errors.
#include <doctest/doctest.h>

#include "proxy/meshconfig/mesh_config.h"

using namespace remora::proxy;

TEST_CASE("defaults are Istio's") {
    MeshConfig m = MeshConfig::parse("", "mesh.yaml");
    CHECK(m.trust_domain == "cluster.local");
    CHECK(m.root_namespace == "remora-system");
    CHECK(m.access_log_file.empty());
    CHECK(m.access_log_encoding == "TEXT");
    CHECK(m.tracing_sampling == 1.0);
    CHECK(m.outbound_traffic_policy == "ALLOW_ANY");
    CHECK(m.enable_auto_mtls);
    CHECK(m.h2_upgrade_policy.empty());  // unset: remora-proxy's own default (UPGRADE) applies
}

TEST_CASE("h2UpgradePolicy: UPGRADE or DO_NOT_UPGRADE, anything else names the field") {
    CHECK(MeshConfig::parse("h2UpgradePolicy: DO_NOT_UPGRADE\n", "m.yaml").h2_upgrade_policy == "DO_NOT_UPGRADE");
    CHECK(MeshConfig::parse("h2UpgradePolicy: UPGRADE\n", "m.yaml").h2_upgrade_policy == "UPGRADE");
    CHECK_THROWS_WITH_AS(MeshConfig::parse("h2UpgradePolicy: SOMETIMES\n", "m.yaml"),
                         "m.yaml:1:18: h2UpgradePolicy: \"SOMETIMES\" is not one of UPGRADE, DO_NOT_UPGRADE",
                         MeshConfigError);
}

TEST_CASE("every field remora reads; others are noted, not errors") {
    MeshConfig m = MeshConfig::parse(R"(accessLogFile: /dev/stdout
accessLogEncoding: JSON
trustDomain: example.org
rootNamespace: istio-system
enableAutoMtls: false
outboundTrafficPolicy:
  mode: REGISTRY_ONLY
defaultConfig:
  concurrency: 4
  terminationDrainDuration: 9s
  discoveryAddress: istiod.istio-system.svc:15012
  tracing:
    sampling: 12.5
    zipkin:
      address: zipkin.istio-system:9411
enablePrometheusMerge: true
)", "mesh.yaml");
    CHECK(m.access_log_file == "/dev/stdout");
    CHECK(m.access_log_encoding == "JSON");
    CHECK(m.trust_domain == "example.org");
    CHECK(m.root_namespace == "istio-system");
    CHECK_FALSE(m.enable_auto_mtls);
    CHECK(m.outbound_traffic_policy == "REGISTRY_ONLY");
    CHECK(m.concurrency == 4);
    CHECK(m.termination_drain_seconds == 9);
    CHECK(m.tracing_sampling == 12.5);
    CHECK(m.zipkin_address == "zipkin.istio-system:9411");
    REQUIRE(m.notes.size() == 2);
    CHECK(m.notes[0] == "defaultConfig.discoveryAddress: not supported by remora (ignored)");
    CHECK(m.notes[1] == "enablePrometheusMerge: not supported by remora (ignored)");
}

TEST_CASE("the istio ConfigMap form: data.mesh holds the MeshConfig") {
    MeshConfig m = MeshConfig::parse(R"(apiVersion: v1
kind: ConfigMap
metadata:
  name: istio
data:
  mesh: |-
    accessLogFile: /dev/stdout
    defaultConfig:
      tracing:
        sampling: 100
)", "cm.yaml");
    CHECK(m.access_log_file == "/dev/stdout");
    CHECK(m.tracing_sampling == 100);
}

TEST_CASE("the stream timeouts (Remora's ProxyConfig extensions): durations, 0s turns the request timeout off") {
    MeshConfig m = MeshConfig::parse("defaultConfig:\n  streamIdleTimeout: 2m\n  requestTimeout: 30s\n", "m.yaml");
    CHECK(m.stream_idle_seconds == 120);
    CHECK(m.request_timeout_seconds == 30);
    CHECK(m.notes.empty());
    CHECK(MeshConfig::parse("defaultConfig:\n  requestTimeout: 0s\n", "m.yaml").request_timeout_seconds == 0);
    CHECK_FALSE(MeshConfig::parse("trustDomain: x\n", "m.yaml").stream_idle_seconds.has_value());
    CHECK_THROWS_WITH_AS(MeshConfig::parse("defaultConfig:\n  streamIdleTimeout: 0s\n", "m.yaml"),
                         "m.yaml:2:22: defaultConfig.streamIdleTimeout: must be a positive duration", MeshConfigError);
    CHECK_THROWS_AS(MeshConfig::parse("defaultConfig:\n  requestTimeout: soon\n", "m.yaml"), MeshConfigError);
}

TEST_CASE("errors name file, line, column and field") {
    CHECK_THROWS_WITH_AS(MeshConfig::parse("accessLogEncoding: XML\n", "m.yaml"),
                         "m.yaml:1:20: accessLogEncoding: \"XML\" is not one of TEXT, JSON", MeshConfigError);
    CHECK_THROWS_WITH_AS(MeshConfig::parse("defaultConfig:\n  tracing:\n    sampling: 150\n", "m.yaml"),
                         "m.yaml:3:15: defaultConfig.tracing.sampling: 150 is out of range [0, 100]",
                         MeshConfigError);
    CHECK_THROWS_WITH_AS(MeshConfig::parse("defaultConfig:\n  tracing:\n    zipkin:\n      address: zipkin\n", "m.yaml"),
                         "m.yaml:4:16: defaultConfig.tracing.zipkin.address: expected HOST:PORT", MeshConfigError);
    CHECK_THROWS_WITH_AS(MeshConfig::parse("enableAutoMtls: yes\n", "m.yaml"),
                         "m.yaml:1:17: enableAutoMtls: expected true or false, not \"yes\"", MeshConfigError);
    CHECK_THROWS_WITH_AS(MeshConfig::parse("outboundTrafficPolicy:\n  mod: ALLOW_ANY\n", "m.yaml"),
                         "m.yaml:2:3: outboundTrafficPolicy.mod: unknown field", MeshConfigError);
    CHECK_THROWS_AS(MeshConfig::parse("a: [1,\n", "m.yaml"), MeshConfigError);
    CHECK_THROWS_WITH_AS(MeshConfig::load_file("/nonexistent/mesh.yaml"), "/nonexistent/mesh.yaml: cannot read",
                         MeshConfigError);
}
