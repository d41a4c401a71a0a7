// The injection webhook: an AdmissionReview's pod comes back as a JSONPatch that, applied, gives
// the injected pod; opted-out, injected and non-pod objects get no patch; a malformed review is
// admitted with a warning, never refused.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include <string>

#include "control/kube/inject.h"
#include "control/kube/webhook.h"

namespace json = boost::json;
using namespace remora::control::kube;

namespace {

std::string unbase64(const std::string& in) {
    static const std::string tbl =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    unsigned val = 0;
    int bits = -8;
    for (char c : in) {
        if (c == '=') break;
        size_t i = tbl.find(c);
        REQUIRE(i != std::string::npos);
        val = (val << 6) + static_cast<unsigned>(i);
        bits += 6;
        if (bits >= 0) {
            out += static_cast<char>((val >> bits) & 0xff);
            bits -= 8;
        }
    }
    return out;
}

// RFC 6902 "add" with object members only: what the injector's patches use.
void apply_patch(json::value& doc, const json::array& patch) {
    for (const json::value& op : patch) {
        REQUIRE(op.at("op") == "add");
        std::string path(op.at("path").as_string());
        REQUIRE(path.front() == '/');
        json::value* cur = &doc;
        size_t start = 1;
        for (;;) {
            size_t slash = path.find('/', start);
            std::string key =
                path.substr(start, slash == std::string::npos ? slash : slash - start);
            REQUIRE(cur->is_object());
            if (slash == std::string::npos) {
                cur->as_object()[key] = op.at("value");
                break;
            }
            cur = &cur->as_object().at(key);
            start = slash + 1;
        }
    }
}

const char* kPod = R"({"apiVersion": "v1", "kind": "Pod",
  "metadata": {"generateName": "web-7d9f8c6b5-", "namespace": "shop",
               "labels": {"app": "web"},
               "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                    "name": "web-7d9f8c6b5", "uid": "u"}]},
  "spec": {"containers": [{"name": "web", "image": "web:1", "ports": [{"containerPort": 80}]}]}})";

std::string review(const std::string& pod, const std::string& kind = "Pod") {
    return R"({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
      "request": {"uid": "0df28fbd-5f5f-11e8-bc74-36e6bb280816",
                  "kind": {"group": "", "version": "v1", "kind": ")" +
           kind + R"("},
                  "resource": {"group": "", "version": "v1", "resource": "pods"},
                  "namespace": "shop", "operation": "CREATE", "object": )" +
           pod + "}}";
}

json::object response_of(const WebhookAnswer& a) {
    json::value v = json::parse(a.body);
    CHECK(v.at("apiVersion") == "admission.k8s.io/v1");
    CHECK(v.at("kind") == "AdmissionReview");
    CHECK(v.at("response").at("allowed") == true);
    return v.at("response").as_object();
}

}  // namespace

TEST_CASE("a pod comes back as a JSONPatch that gives exactly the injected pod") {
    WebhookAnswer a = review_admission(review(kPod), {});
    CHECK(a.outcome == InjectOutcome::injected);
    json::object r = response_of(a);
    CHECK(r.at("uid") == "0df28fbd-5f5f-11e8-bc74-36e6bb280816");
    CHECK(r.at("patchType") == "JSONPatch");
    json::value patch = json::parse(unbase64(std::string(r.at("patch").as_string())));

    json::value pod = json::parse(kPod);
    json::value expected = pod;
    REQUIRE(inject_object(expected, {}, "shop") == InjectOutcome::injected);
    apply_patch(pod, patch.as_array());
    CHECK(pod == expected);
    // The workload is the Deployment behind the ReplicaSet.
    std::string env = json::serialize(pod.at("spec").at("containers").as_array()[0].at("env"));
    CHECK(env.find("kubernetes://apis/apps/v1/namespaces/shop/deployments/web") !=
          std::string::npos);
    CHECK(env.find(R"("ISTIO_META_WORKLOAD_NAME","value":"web")") != std::string::npos);

    // Injecting the result again is a no-op.
    WebhookAnswer again = review_admission(review(json::serialize(pod)), {});
    CHECK(again.outcome == InjectOutcome::already_injected);
    CHECK(!response_of(again).contains("patch"));
}

TEST_CASE("opted-out pods and other kinds are admitted unchanged") {
    json::value pod = json::parse(kPod);
    pod.at("metadata").as_object()["annotations"] = {{"sidecar.istio.io/inject", "false"}};
    WebhookAnswer a = review_admission(review(json::serialize(pod)), {});
    CHECK(a.outcome == InjectOutcome::opted_out);
    CHECK(!response_of(a).contains("patch"));

    WebhookAnswer svc = review_admission(review(R"({"spec": {"ports": []}})", "Service"), {});
    CHECK(!response_of(svc).contains("patch"));
}

TEST_CASE("a malformed review is admitted with a warning, never refused") {
    for (const std::string& body :
         {std::string("not json at all"), std::string("{}"), std::string(R"({"request": {}})"),
          std::string(R"({"request": {"uid": 7}})"), std::string("[1,2]"),
          review(R"("a string, not a pod")"), review(R"({"metadata": {}})")}) {
        CAPTURE(body);
        WebhookAnswer a = review_admission(body, {});
        CHECK(a.malformed);
        json::object r = response_of(a);
        CHECK(!r.contains("patch"));
        REQUIRE(r.contains("warnings"));
        CHECK(r.at("warnings").as_array()[0].as_string().find("malformed") != std::string::npos);
    }
    // A pod whose own annotation is unusable is admitted, with the reason.
    json::value pod = json::parse(kPod);
    pod.at("metadata").as_object()["annotations"] = {{"proxy.istio.io/config", "concurrency: [1"}};
    WebhookAnswer bad = review_admission(review(json::serialize(pod)), {});
    json::object r = response_of(bad);
    CHECK(!r.contains("patch"));
    CHECK(r.at("warnings").as_array()[0].as_string().find("proxy.istio.io/config") !=
          std::string::npos);

    // Pod shapes the API server would not send, or annotations with odd values: always a 200
    // with allowed: true (a throw here would be a 500, which failurePolicy: Fail turns into a
    // refused pod).
    for (
        const char* odd :
        {R"({"metadata": {"annotations": {"proxy.istio.io/config": "concurrency: 1.5"}},
              "spec": {"containers": [{"name": "a"}]}})",
         R"({"metadata": {"annotations": {"proxy.istio.io/config": "holdApplicationUntilProxyStarts: maybe"}},
              "spec": {"containers": [{"name": "a"}]}})",
         R"({"metadata": [], "spec": {"containers": [{"name": "a"}]}})",
         R"({"metadata": {"labels": [1], "annotations": "x"}, "spec": {"containers": 5}})",
         R"({"spec": {"containers": [5, null, {"name": 7, "ports": "x",
              "livenessProbe": {"httpGet": {"port": 1.5}},
              "readinessProbe": {"grpc": {"port": "grpc"}},
              "startupProbe": {"tcpSocket": 8080}}]}})",
         R"({"spec": {"containers": [{"name": "a", "livenessProbe": {"httpGet": {"port": "http"}},
              "ports": [{"name": "http", "containerPort": 80.5}]}]}})"}) {
        CAPTURE(odd);
        WebhookAnswer w;
        CHECK_NOTHROW(w = review_admission(review(odd), {}));
        CHECK(response_of(w).at("allowed") == true);
    }
}
