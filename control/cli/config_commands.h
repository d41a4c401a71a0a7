// `remoractl apply -f`, `get KIND [NAME]`, `delete -f`: the control plane's config store over the
// 15012 API, authenticated by the admin token (state dir) or remoractl's client certificate.
#pragma once

#include <chrono>
#include <filesystem>
#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "certs/ca_client.h"
#include "common/args.h"

namespace remora::control::cli {

// --control "HOST:PORT" (or "[::1]:PORT") into options.host and .port; UsageError otherwise.
void set_control_address(certs::CaClientOptions& options, const std::string& control);
// DIR's cert-chain.pem and key.pem as the client certificate (mTLS); throws naming the file.
void load_client_cert(certs::CaClientOptions& options, const std::filesystem::path& dir);

// argv: the words after the command name. Results go to `out`, refusals and warnings to `err`;
// returns the exit code (1 when the control plane refused).
int apply_command(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err);
int delete_command(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err);
int get_command(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err);
// `proxy-status [NAME]`: subscribed proxies with SYNCED / STALE / NACK, versions, certificates.
int proxy_status_command(const std::vector<std::string>& argv, std::ostream& out,
                         std::ostream& err);
// `proxy-config clusters|routes|endpoints|listeners|secret|all NAME`: the snapshot the control
// plane sent that proxy, as istioctl's tables.
int proxy_config_command(const std::vector<std::string>& argv, std::ostream& out,
                         std::ostream& err);

// For commands that talk to the control plane: `flags` plus --control, --trust-bundle,
// --state-dir, --cert-dir and --trust-domain; the connection those flags describe (the admin
// token in the state dir, or a client certificate); a query value percent-encoded; and a refusal
// printed as kubectl prints it (returns 1).
std::set<std::string> connection_flags_with(std::set<std::string> flags);
certs::CaClientOptions control_connection(const common::Args& args);
std::string url_encode(std::string_view s);
int print_control_refusal(int status, const std::string& body, std::ostream& err);

// kubectl's AGE column: "45s", "12m", "5h", "3d".
std::string format_age(std::chrono::seconds age);

}  // namespace remora::control::cli
