// AdmissionReview handling for POST /inject: the injected pod as a JSONPatch against the one the
// API server sent.
#include "control/kube/webhook.h"

#include "control/kube/base64.h"

#include <boost/json.hpp>

namespace remora::control::kube {

namespace json = boost::json;

namespace {

std::string answer(const std::string& uid, json::object response_fields) {
    json::object response = {{"uid", uid}, {"allowed", true}};
    for (auto& kv : response_fields)
        response[kv.key()] = kv.value();
    return json::serialize(json::object{{"apiVersion", "admission.k8s.io/v1"},
                                        {"kind", "AdmissionReview"},
                                        {"response", response}});
}

const json::value* member(const json::value& v, const char* key) {
    return v.is_object() ? v.as_object().if_contains(key) : nullptr;
}

}  // namespace

WebhookAnswer review_admission(const std::string& request_body, const InjectOptions& options) {
    WebhookAnswer out;
    auto malformed = [&](const std::string& uid, const std::string& why) {
        out.malformed = true;
        out.outcome = InjectOutcome::not_a_workload;
        out.body = answer(uid, {{"warnings",
                                 {"remora sidecar injector: malformed AdmissionReview (" + why +
                                  "); the pod is admitted without a sidecar"}}});
        return out;
    };
    boost::system::error_code ec;
    json::value review = json::parse(request_body, ec);
    if (ec) return malformed("", "not JSON: " + ec.message());
    const json::value* request = member(review, "request");
    if (!request || !request->is_object()) return malformed("", "no request");
    const json::value* uid_v = member(*request, "uid");
    std::string uid = uid_v && uid_v->is_string() ? std::string(uid_v->get_string()) : "";
    if (uid.empty()) return malformed("", "request.uid is missing");
    const json::value* kind = member(*request, "kind");
    const json::value* kind_name = kind ? member(*kind, "kind") : nullptr;
    if (!kind_name || !kind_name->is_string() || kind_name->get_string() != "Pod") {
        out.outcome = InjectOutcome::not_a_workload;
        out.body = answer(uid, {});
        return out;
    }
    const json::value* object = member(*request, "object");
    if (!object || !object->is_object() || !member(*object, "spec") ||
        !member(*object, "spec")->is_object())
        return malformed(uid, "request.object is not a pod");
    const json::value* ns_v = member(*request, "namespace");
    std::string ns = ns_v && ns_v->is_string() ? std::string(ns_v->get_string()) : "";

    json::value pod = *object;
    pod.as_object()["kind"] = "Pod";  // the API server may leave TypeMeta out of the object
    if (!pod.as_object().contains("apiVersion")) pod.as_object()["apiVersion"] = "v1";
    try {
        out.outcome = inject_object(pod, options, ns);
    } catch (const InjectError& e) {
        out.outcome = InjectOutcome::opted_out;
        out.body = answer(uid, {{"warnings",
                                 {std::string("remora sidecar injector: ") + e.what() +
                                  "; the pod is admitted without a sidecar"}}});
        return out;
    } catch (const std::exception& e) {
        // A pod shape the injector did not foresee: admitted as it came, never a 500 that the
        // API server would count as a failure under failurePolicy: Fail.
        return malformed(uid, std::string("the injector could not handle this pod: ") + e.what());
    }
    if (out.outcome != InjectOutcome::injected) {
        out.body = answer(uid, {});
        return out;
    }
    // "add" replaces a member that exists and creates one that does not (RFC 6902 4.1).
    json::array patch;
    const json::object& meta = pod.as_object().at("metadata").as_object();
    const json::object& spec = pod.as_object().at("spec").as_object();
    if (!member(*object, "metadata"))
        patch.push_back(
            json::object{{"op", "add"}, {"path", "/metadata"}, {"value", json::object{}}});
    for (const char* f : {"labels", "annotations"})
        if (const json::value* v = meta.if_contains(f))
            patch.push_back(json::object{
                {"op", "add"}, {"path", std::string("/metadata/") + f}, {"value", *v}});
    for (const char* f : {"initContainers", "containers", "volumes"})
        if (const json::value* v = spec.if_contains(f))
            patch.push_back(
                json::object{{"op", "add"}, {"path", std::string("/spec/") + f}, {"value", *v}});
    out.body = answer(uid, {{"patchType", "JSONPatch"}, {"patch", base64(json::serialize(patch))}});
    return out;
}

}  // namespace remora::control::kube
