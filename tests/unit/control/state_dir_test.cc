// The state dir: created once with private files 0600, reloaded unchanged, operator CAs checked.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <filesystem>

#include "../certs/test_pki.h"
#include "control/ca/state_dir.h"
#include "common/args.h"

using namespace remora;
using namespace remora::certs;
using namespace remora::control;
using namespace remora::common;
namespace fs = std::filesystem;
using remora::certs::testing::fixed_now;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        char tmpl[] = "/tmp/remora-test-XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path); }
};

unsigned mode_of(const fs::path& p) {
    struct stat st {};
    ::stat(p.c_str(), &st);
    return st.st_mode & 07777;
}

}  // namespace

TEST_CASE("first start creates the root and keys; a restart keeps them") {
    TempDir tmp;
    fs::path dir = tmp.path / "state";
    CaState first = load_or_create_ca(dir, "cluster.local", std::nullopt, fixed_now());
    CHECK(first.created);
    CHECK(first.signer.cert.subject() == "O=cluster.local");
    CHECK(mode_of(dir / kRootKeyFile) == 0600);
    CHECK(mode_of(dir / kJwtKeyFile) == 0600);
    CHECK(mode_of(dir) == 0700);
    CHECK(fs::exists(dir / kJwksFile));
    for (const auto& entry : fs::directory_iterator(dir)) {
        CHECK(entry.path().filename().string().find(".tmp.") == std::string::npos);
    }

    CaState second = load_or_create_ca(dir, "cluster.local", std::nullopt, fixed_now());
    CHECK_FALSE(second.created);
    CHECK(second.signer.cert.to_pem() == first.signer.cert.to_pem());
    CHECK(second.jwt_key.public_key() == first.jwt_key.public_key());
    CHECK(load_jwt_key(dir).public_key() == first.jwt_key.public_key());
}

TEST_CASE("a damaged state dir is an error naming the file, not a new root") {
    TempDir tmp;
    load_or_create_ca(tmp.path, "cluster.local", std::nullopt, fixed_now());
    write_file_atomic(tmp.path / kRootKeyFile, "garbage", 0600);
    try {
        load_or_create_ca(tmp.path, "cluster.local", std::nullopt, fixed_now());
        FAIL("expected an error");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()).find("root-key.pem") != std::string::npos);
    }
    CHECK_THROWS_WITH_AS(load_or_create_ca(tmp.path, "Bad_TD!", std::nullopt, fixed_now()),
                         doctest::Contains("--trust-domain"), std::runtime_error);
}

TEST_CASE("an operator CA signs, and its root is kept for remoractl ca root") {
    TempDir tmp;
    Signer root = testing::make_root_signer("cluster.local", fixed_now());
    PrivateKey int_key = PrivateKey::generate_p256();
    Certificate inter = testing::build_cert({"corp intermediate",
                                             {{NID_basic_constraints, "critical,CA:TRUE"},
                                              {NID_key_usage, "critical,keyCertSign,cRLSign"}},
                                             fixed_now() - std::chrono::hours(1),
                                             fixed_now() + std::chrono::hours(100)},
                                            int_key, root.key, &root.cert);
    write_file_atomic(tmp.path / "ca-cert.pem", to_pem({inter, root.cert}), 0644);
    write_file_atomic(tmp.path / "ca-key.pem", int_key.to_pem(), 0600);
    OperatorCa op{(tmp.path / "ca-cert.pem").string(), (tmp.path / "ca-key.pem").string(), ""};
    CaState state = load_or_create_ca(tmp.path / "state", "cluster.local", op, fixed_now());
    CHECK(state.signer.cert.subject() == "O=corp intermediate");
    CHECK(state.signer.chain.size() == 2);
    CHECK(read_file(tmp.path / "state" / kRootCertFile) == root.cert.to_pem());
    CHECK_FALSE(fs::exists(tmp.path / "state" / kRootKeyFile));

    write_file_atomic(tmp.path / "wrong-key.pem", PrivateKey::generate_p256().to_pem(), 0600);
    OperatorCa wrong{op.cert_file, (tmp.path / "wrong-key.pem").string(), ""};
    CHECK_THROWS_WITH_AS(load_or_create_ca(tmp.path / "s2", "cluster.local", wrong, fixed_now()),
                         doctest::Contains("does not match"), std::runtime_error);
}

TEST_CASE("atomic writes set the exact mode and replace the whole file") {
    TempDir tmp;
    ::umask(022);
    write_file_atomic(tmp.path / "f", "one", 0600);
    CHECK(mode_of(tmp.path / "f") == 0600);
    write_file_atomic(tmp.path / "f", "two", 0644);
    CHECK(read_file(tmp.path / "f") == "two");
    CHECK(mode_of(tmp.path / "f") == 0644);
    CHECK_THROWS_WITH_AS(read_file(tmp.path / "missing"), doctest::Contains("missing"),
                         std::runtime_error);
    CHECK_THROWS(write_file_atomic(tmp.path / "no-such-dir" / "f", "x", 0600));
}

TEST_CASE("flags, durations and endpoints parse or say what is wrong") {
    Args a({"--listen", "127.0.0.1:1", "--jwks=a", "--jwks", "b", "pos", "--help"},
           {"listen", "jwks"}, {"help"});
    CHECK(a.get("listen") == "127.0.0.1:1");
    CHECK(a.all("jwks") == std::vector<std::string>{"a", "b"});
    CHECK(a.positional() == std::vector<std::string>{"pos"});
    CHECK(a.has("help"));
    CHECK_THROWS_WITH_AS(Args({"--bogus"}, {}), doctest::Contains("unknown flag --bogus"),
                         UsageError);
    CHECK_THROWS_WITH_AS(Args({"--listen"}, {"listen"}), doctest::Contains("needs a value"),
                         UsageError);
    CHECK_THROWS_WITH_AS(a.require("other"), doctest::Contains("--other is required"), UsageError);

    CHECK(parse_duration_seconds("ttl", "90d") == 90 * 86400);
    CHECK(parse_duration_seconds("ttl", "1h") == 3600);
    CHECK(parse_duration_seconds("ttl", "30m") == 1800);
    CHECK(parse_duration_seconds("ttl", "45") == 45);
    CHECK_THROWS_AS(parse_duration_seconds("ttl", "0"), UsageError);
    CHECK_THROWS_AS(parse_duration_seconds("ttl", "1w"), UsageError);
    CHECK_THROWS_AS(parse_duration_seconds("ttl", "h"), UsageError);

    CHECK(format_endpoint(parse_endpoint("l", "127.0.0.1:15012")) == "127.0.0.1:15012");
    CHECK(format_endpoint(parse_endpoint("l", "[::1]:80")) == "[::1]:80");
    CHECK(parse_endpoint("l", ":15014").address().to_string() == "0.0.0.0");
    CHECK_THROWS_AS(parse_endpoint("l", "localhost:1"), UsageError);
    CHECK_THROWS_AS(parse_endpoint("l", "127.0.0.1:70000"), UsageError);
    CHECK_THROWS_AS(parse_endpoint("l", "127.0.0.1"), UsageError);
}

TEST_CASE("--labels parses KEY=VALUE pairs and names a bad one") {
    auto l = parse_label_list("app=reviews,version=v1,empty=");
    CHECK(l.size() == 3);
    CHECK(l["app"] == "reviews");
    CHECK(l["empty"] == "");
    CHECK_THROWS_WITH_AS(parse_label_list("app=x,oops"), "label \"oops\": expected KEY=VALUE",
                         std::invalid_argument);
    CHECK_THROWS_AS(parse_label_list("=v"), std::invalid_argument);
}
