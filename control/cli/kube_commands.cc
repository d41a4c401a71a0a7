// remoractl's Kubernetes commands: flag handling around control/kube.
#include "control/cli/kube_commands.h"

#include "common/args.h"
#include "common/files.h"
#include "control/ca/state_dir.h"
#include "control/kube/inject.h"
#include "control/kube/manifests.h"
#include "control/store/yaml_json.h"

#include <fstream>
#include <sstream>

namespace remora::control::cli {

using common::Args;
using common::UsageError;

namespace {

std::vector<std::string> short_flags(const std::vector<std::string>& argv) {
    std::vector<std::string> out;
    for (const std::string& a : argv) {
        if (a == "-f")
            out.push_back("--filename");
        else if (a == "-o")
            out.push_back("--output");
        else
            out.push_back(a);
    }
    return out;
}

kube::InjectOptions inject_options(const Args& args) {
    kube::InjectOptions o;
    o.proxy_image = args.get_or("image", o.proxy_image);
    o.control_address = args.get_or("control-address", o.control_address);
    o.trust_domain = args.get_or("trust-domain", o.trust_domain);
    o.native_sidecar = args.has("native-sidecar");
    return o;
}

}  // namespace

int kube_inject_command(const std::vector<std::string>& argv, std::istream& in, std::ostream& out,
                        std::ostream& err) {
    (void)err;
    Args args(short_flags(argv), {"filename", "output", "image", "control-address", "trust-domain"},
              {"native-sidecar"});
    if (!args.positional().empty())
        throw UsageError("unexpected argument " + args.positional().front() + " (give -f FILE)");
    std::string name = args.require("filename");
    std::string text;
    if (name == "-") {
        std::ostringstream s;
        s << in.rdbuf();
        text = s.str();
    } else {
        text = common::read_file(name);
    }
    std::string injected;
    try {
        injected = kube::inject_yaml(text, name == "-" ? "<stdin>" : name, inject_options(args));
    } catch (const kube::InjectError& e) {
        throw std::runtime_error(e.what());
    }
    if (auto file = args.get("output")) {
        common::write_file_atomic(*file, injected, 0644);
    } else {
        out << injected;
    }
    return 0;
}

int manifest_generate_command(const std::vector<std::string>& argv, bool install, std::ostream& out,
                              std::ostream& err) {
    Args args(short_flags(argv), {"profile", "set", "state-dir", "cluster-jwks", "output"});
    if (!args.positional().empty())
        throw UsageError("unexpected argument " + args.positional().front());
    kube::InstallValues values = [&] {
        try {
            kube::InstallValues v(args.get_or("profile", "default"));
            for (const std::string& s : args.all("set"))
                v.set(s);
            return v;
        } catch (const kube::ValuesError& e) {
            throw UsageError(e.what());
        }
    }();
    std::filesystem::path dir = args.get_or("state-dir", "./remora-state");
    std::string td = values.get("trustDomain");
    CaState state = load_or_create_ca(dir, td, std::nullopt, std::chrono::system_clock::now());
    if (state.created) err << "remoractl: created the mesh CA in " << dir.string() << "\n";
    kube::InstallCa ca;
    ca.root_cert_pem = common::read_file(dir / kRootCertFile);
    ca.ca_cert_pem = ca.root_cert_pem;
    ca.ca_key_pem = common::read_file(dir / kRootKeyFile);
    if (auto jwks = args.get("cluster-jwks")) ca.cluster_jwks = common::read_file(*jwks);

    std::string text;
    for (const auto& doc : kube::generate_manifests(values, ca))
        text += "---\n" + store::json_to_yaml(doc);
    if (auto file = args.get("output")) {
        common::write_file_atomic(*file, text, 0600);  // holds the CA key
    } else {
        out << text;
    }
    if (install) {
        err << "remoractl: apply with `remoractl install ... | kubectl apply -f -`, then label a "
               "namespace: kubectl label namespace NS istio-injection=enabled\n";
    }
    return 0;
}

}  // namespace remora::control::cli
