// Install manifests: the objects each profile produces, --set and its errors, and the MeshConfig
// they carry, read back by the proxy's own MeshConfig reader.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include <map>
#include <set>
#include <string>

#include "control/kube/base64.h"
#include "control/kube/manifests.h"
#include "proxy/meshconfig/mesh_config.h"

namespace json = boost::json;
using namespace remora::control::kube;

namespace {

InstallCa test_ca() {
    return {"-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----\n",
            "-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n", ""};
}

std::multimap<std::string, json::object> by_kind(const InstallValues& v, InstallCa ca = test_ca()) {
    std::multimap<std::string, json::object> out;
    for (const json::value& d : generate_manifests(v, ca))
        out.emplace(std::string(d.at("kind").as_string()), d.as_object());
    return out;
}

const json::object& one(const std::multimap<std::string, json::object>& m, const char* kind) {
    REQUIRE_MESSAGE(m.count(kind) == 1, kind);
    return m.find(kind)->second;
}

bool has_arg(const json::object& deployment, const std::string& arg) {
    const json::array& args = deployment.at("spec")
                                  .at("template")
                                  .at("spec")
                                  .at("containers")
                                  .as_array()[0]
                                  .at("args")
                                  .as_array();
    for (const json::value& a : args)
        if (a.as_string() == arg) return true;
    return false;
}

}  // namespace

TEST_CASE("base64 as RFC 4648's test vectors") {
    CHECK(base64("") == "");
    CHECK(base64("f") == "Zg==");
    CHECK(base64("fo") == "Zm8=");
    CHECK(base64("foo") == "Zm9v");
    CHECK(base64("foob") == "Zm9vYg==");
    CHECK(base64("fooba") == "Zm9vYmE=");
    CHECK(base64("foobar") == "Zm9vYmFy");
}

TEST_CASE("the default profile: everything the issue lists, the injector as Istio's") {
    InstallValues v("default");
    auto m = by_kind(v);
    CHECK(one(m, "Namespace").at("metadata").at("name") == "remora-system");
    CHECK(m.count("CustomResourceDefinition") == 10);
    std::set<std::string> crds;
    for (auto [it, end] = m.equal_range("CustomResourceDefinition"); it != end; ++it)
        crds.insert(std::string(it->second.at("metadata").at("name").as_string()));
    for (const char* n :
         {"virtualservices.networking.istio.io", "destinationrules.networking.istio.io",
          "serviceentries.networking.istio.io", "workloadentries.networking.istio.io",
          "peerauthentications.security.istio.io", "authorizationpolicies.security.istio.io"})
        CHECK_MESSAGE(crds.count(n) == 1, n);
    CHECK(one(m, "ServiceAccount").at("metadata").at("namespace") == "remora-system");
    CHECK(one(m, "ClusterRoleBinding").at("subjects").as_array()[0].at("name") == "remora-control");
    // The mesh ConfigMap, the CA Secret, and the root certificate in remora-system and default.
    std::set<std::string> root_ns;
    std::string mesh;
    for (auto [it, end] = m.equal_range("ConfigMap"); it != end; ++it) {
        const json::object& meta = it->second.at("metadata").as_object();
        if (meta.at("name") == "remora-ca-root-cert") {
            root_ns.insert(std::string(meta.at("namespace").as_string()));
            CHECK(it->second.at("data").at("root-cert.pem").as_string() == test_ca().root_cert_pem);
        }
        if (meta.at("name") == "remora")
            mesh = std::string(it->second.at("data").at("mesh").as_string());
    }
    CHECK(root_ns == std::set<std::string>{"remora-system", "default"});
    remora::proxy::MeshConfig mc = remora::proxy::MeshConfig::parse(mesh, "mesh");
    CHECK(mc.trust_domain == "cluster.local");
    CHECK(mc.root_namespace == "remora-system");
    CHECK(one(m, "Secret").at("stringData").at("ca-key.pem").as_string() == test_ca().ca_key_pem);

    const json::object& dep = one(m, "Deployment");
    CHECK(dep.at("spec").at("replicas") == 1);
    CHECK(has_arg(dep, "--webhook"));
    CHECK(has_arg(dep, "--ca-cert"));
    CHECK(has_arg(dep, "localhost/remora-proxy:0.1.0"));
    // remora-control watches the API server, with the ClusterRole to list and watch what it reads.
    CHECK(has_arg(dep, "--kube"));
    std::string rules = json::serialize(one(m, "ClusterRole").at("rules"));
    for (const char* r : {"\"services\"", "\"pods\"", "\"namespaces\"", "\"endpointslices\"",
                          "\"networking.istio.io\"", "\"security.istio.io\"", "\"watch\"",
                          "\"list\""}) {
        CHECK_MESSAGE(rules.find(r) != std::string::npos, r);
    }
    InstallValues no_kube;
    no_kube.set("control.kubeApi=false");
    CHECK(!has_arg(one(by_kind(no_kube), "Deployment"), "--kube"));
    std::set<long long> ports;
    for (const json::value& p : one(m, "Service").at("spec").at("ports").as_array())
        ports.insert(p.at("port").to_number<long long>());
    CHECK(ports == std::set<long long>{15012, 15014, 443});

    const json::object& mwc = one(m, "MutatingWebhookConfiguration");
    const json::array& hooks = mwc.at("webhooks").as_array();
    REQUIRE(hooks.size() == 3);
    std::string selectors;
    for (const json::value& h : hooks) {
        CHECK(h.at("failurePolicy") == "Fail");
        CHECK(h.at("reinvocationPolicy") == "Never");
        CHECK(h.at("clientConfig").at("service").at("path") == "/inject");
        CHECK(h.at("clientConfig").at("service").at("port") == 443);
        CHECK(h.at("clientConfig").at("caBundle").as_string() == base64(test_ca().root_cert_pem));
        selectors +=
            json::serialize(h.at("namespaceSelector")) + json::serialize(h.at("objectSelector"));
    }
    for (const char* s : {"istio-injection", "remora-injection", "sidecar.istio.io/inject"})
        CHECK_MESSAGE(selectors.find(s) != std::string::npos, s);
}

TEST_CASE("minimal has no injector; demo logs and traces everything") {
    auto minimal = by_kind(InstallValues("minimal"));
    CHECK(minimal.count("MutatingWebhookConfiguration") == 0);
    CHECK(!has_arg(one(minimal, "Deployment"), "--webhook"));
    CHECK(one(minimal, "Service").at("spec").at("ports").as_array().size() == 2);

    InstallValues demo("demo");
    remora::proxy::MeshConfig mc = remora::proxy::MeshConfig::parse(mesh_config_yaml(demo), "mesh");
    CHECK(mc.access_log_file == "/dev/stdout");
    CHECK(mc.tracing_sampling == doctest::Approx(100.0));

    CHECK_THROWS_AS(InstallValues("huge"), ValuesError);
}

TEST_CASE("--set overrides values, Istio's spellings included, and refuses what it cannot use") {
    InstallValues v("default");
    v.set("control.replicas=3");
    v.set("injector.failurePolicy=Ignore");
    v.set("values.global.hub=registry.example/mesh");
    v.set("tag=1.2.3");
    v.set("rootCertNamespaces=default,shop");
    v.set("meshConfig.accessLogFile=/dev/stdout");
    v.set("meshConfig.accessLogEncoding=JSON");
    v.set("meshConfig.defaultConfig.concurrency=4");
    auto m = by_kind(v);
    CHECK(one(m, "Deployment").at("spec").at("replicas") == 3);
    CHECK(one(m, "Deployment")
              .at("spec")
              .at("template")
              .at("spec")
              .at("containers")
              .as_array()[0]
              .at("image") == "registry.example/mesh/remora-control:1.2.3");
    CHECK(has_arg(one(m, "Deployment"), "registry.example/mesh/remora-proxy:1.2.3"));
    CHECK(one(m, "MutatingWebhookConfiguration").at("webhooks").as_array()[0].at("failurePolicy") ==
          "Ignore");
    int roots = 0;
    for (auto [it, end] = m.equal_range("ConfigMap"); it != end; ++it)
        roots += it->second.at("metadata").at("name") == "remora-ca-root-cert";
    CHECK(roots == 3);
    remora::proxy::MeshConfig mc = remora::proxy::MeshConfig::parse(mesh_config_yaml(v), "mesh");
    CHECK(mc.access_log_file == "/dev/stdout");
    CHECK(mc.concurrency == 4);
    v.set("values.pilot.replicaCount=2");
    CHECK(v.number("control.replicas") == 2);

    for (const char* bad : {"control.replica=3", "control.replicas=three", "injector.enabled=yes",
                            "injector.failurePolicy=Maybe", "namespace=Remora_System", "novalue",
                            "rootCertNamespaces=ok,Not_OK", "components.pilot.enabled=true"}) {
        CAPTURE(bad);
        CHECK_THROWS_AS(v.set(bad), ValuesError);
    }
    try {
        v.set("control.replica=3");
    } catch (const ValuesError& e) {
        CHECK(std::string(e.what()).find("control.replicas") !=
              std::string::npos);  // the known keys
    }
}
