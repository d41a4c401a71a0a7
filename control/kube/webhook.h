// The sidecar injector as a Kubernetes mutating admission webhook: AdmissionReview v1 in, the
// AdmissionReview with a JSONPatch out. It never refuses a pod: a review it cannot read, or a pod
// whose annotations it cannot use, is allowed unchanged with a warning, so that a failure here
// never blocks pod creation under failurePolicy: Fail.
#pragma once

#include <string>

#include "control/kube/inject.h"

namespace remora::control::kube {

struct WebhookAnswer {
    std::string body;         // the AdmissionReview JSON to send back (always with status 200)
    InjectOutcome outcome{};  // what happened to the pod, for logs and counters
    bool malformed = false;   // the review could not be read
};

WebhookAnswer review_admission(const std::string& request_body, const InjectOptions& options);

}  // namespace remora::control::kube
