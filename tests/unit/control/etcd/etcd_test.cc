// control/etcd/: the JSON gateway's encoding (against answers captured from etcd 3.4), the sealed
// CA record's encryption, and the values the replicas share.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include <filesystem>
#include <fstream>

#include "control/etcd/etcd_client.h"
#include "control/etcd/etcd_json.h"
#include "control/etcd/etcd_state.h"
#include "control/etcd/secret_box.h"

using namespace remora::control;
using namespace remora::control::etcd;
namespace json = boost::json;

TEST_CASE("base64 as grpc-gateway writes bytes") {
    CHECK(base64_encode("") == "");
    CHECK(base64_encode("f") == "Zg==");
    CHECK(base64_encode("fo") == "Zm8=");
    CHECK(base64_encode("foo") == "Zm9v");
    CHECK(base64_encode(std::string("\0\xff\x10", 3)) == "AP8Q");
    CHECK(base64_decode("Zg==") == std::optional<std::string>("f"));
    CHECK(base64_decode("Zm8=") == std::optional<std::string>("fo"));
    CHECK(base64_decode("AP8Q") == std::optional<std::string>(std::string("\0\xff\x10", 3)));
    CHECK(base64_decode("") == std::optional<std::string>(""));
    CHECK_FALSE(base64_decode("Zm9"));    // not a multiple of 4
    CHECK_FALSE(base64_decode("Zm9v!!!!"));
    std::string all;
    for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
    CHECK(base64_decode(base64_encode(all)) == std::optional<std::string>(all));
}

TEST_CASE("prefix_end is etcd's --prefix range end") {
    CHECK(prefix_end("/remora/proxies/") == "/remora/proxies0");
    CHECK(prefix_end("a\xff") == "b");
    CHECK(prefix_end("\xff\xff") == std::string(1, '\0'));
    CHECK(prefix_end("") == std::string(1, '\0'));
}

TEST_CASE("requests: keys and values in base64, 64-bit numbers as strings") {
    CHECK(json::serialize(put_request("foo", "bar")) == R"({"key":"Zm9v","value":"YmFy"})");
    CHECK(json::serialize(put_request("foo", "bar", 7587862)) ==
          R"({"key":"Zm9v","value":"YmFy","lease":"7587862"})");
    CHECK(json::serialize(range_request("a", "b")) == R"({"key":"YQ==","range_end":"Yg=="})");
    CHECK(json::serialize(watch_request("foo", "", 12)) ==
          R"({"create_request":{"key":"Zm9v","start_revision":"12"}})");
    CHECK(json::serialize(lease_grant_request(5)) == R"({"TTL":"5"})");
    CHECK(json::serialize(lease_id_request(42)) == R"({"ID":"42"})");

    json::object t = txn_if_mod_revision("/r/config", 9, json::array{put_op("/r/config", "{}")});
    CHECK(json::serialize(t["compare"]) ==
          R"([{"key":"L3IvY29uZmln","result":"EQUAL","target":"MOD","mod_revision":"9"}])");
    CHECK(json::serialize(t["success"]) == R"([{"request_put":{"key":"L3IvY29uZmln","value":"e30="}}])");
    CHECK(json::serialize(t["failure"]) == R"([{"request_range":{"key":"L3IvY29uZmln"}}])");
    json::object c = put_if_absent("/r/ca", "x");
    CHECK(json::serialize(c["compare"]) ==
          R"([{"key":"L3IvY2E=","result":"EQUAL","target":"CREATE","create_revision":"0"}])");
}

TEST_CASE("answers captured from etcd 3.4's gateway") {
    RangeAnswer r = parse_range(json::parse(
        R"({"header":{"cluster_id":"3249","member_id":"3319","revision":"4","raft_term":"2"},)"
        R"("kvs":[{"key":"Zm9v","create_revision":"4","mod_revision":"4","version":"1","value":"YmFy",)"
        R"("lease":"2324035861825135625"}],"count":"1"})"));
    CHECK(r.revision == 4);
    REQUIRE(r.kvs.size() == 1);
    CHECK(r.kvs[0].key == "foo");
    CHECK(r.kvs[0].value == "bar");
    CHECK(r.kvs[0].mod_revision == 4);
    CHECK(r.kvs[0].lease == 2324035861825135625);
    // An empty range: no "kvs" at all (zero values are left out).
    CHECK(parse_range(json::parse(R"({"header":{"revision":"3"}})")).kvs.empty());

    TxnAnswer ok = parse_txn(json::parse(
        R"({"header":{"revision":"4"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"4"}}}]})"));
    CHECK(ok.succeeded);
    CHECK(ok.revision == 4);
    CHECK_FALSE(ok.current);
    TxnAnswer lost = parse_txn(json::parse(
        R"({"header":{"revision":"6"},"responses":[{"response_range":{"header":{"revision":"6"},)"
        R"("kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"5","version":"2","value":"YmF6"}],"count":"1"}}]})"));
    CHECK_FALSE(lost.succeeded);
    REQUIRE(lost.current);
    CHECK(lost.current->value == "baz");
    CHECK(lost.current->mod_revision == 5);

    WatchMessage created = parse_watch_message(
        R"({"result":{"header":{"cluster_id":"3249","revision":"2","raft_term":"2"},"created":true}})");
    CHECK(created.created);
    CHECK(created.events.empty());
    WatchMessage put = parse_watch_message(
        R"({"result":{"header":{"revision":"2"},"events":[{"kv":{"key":"Zm9v","create_revision":"2",)"
        R"("mod_revision":"2","version":"1","value":"YmFy"}}]}})");
    REQUIRE(put.events.size() == 1);
    CHECK_FALSE(put.events[0].deleted);
    CHECK(put.events[0].kv.value == "bar");
    WatchMessage del = parse_watch_message(
        R"({"result":{"header":{"revision":"3"},"events":[{"type":"DELETE","kv":{"key":"Zm9v","mod_revision":"3"}}]}})");
    REQUIRE(del.events.size() == 1);
    CHECK(del.events[0].deleted);
    CHECK(del.events[0].kv.key == "foo");
    CHECK(del.events[0].kv.mod_revision == 3);
    WatchMessage compacted = parse_watch_message(
        R"({"result":{"header":{"revision":"90"},"canceled":true,"compact_revision":"50"}})");
    CHECK(compacted.canceled);
    CHECK(compacted.compact_revision == 50);

    LeaseAnswer grant = parse_lease(json::parse(R"({"header":{"revision":"4"},"ID":"2324035861825135625","TTL":"5"})"));
    CHECK(grant.id == 2324035861825135625);
    CHECK(grant.ttl == 5);
    LeaseAnswer alive = parse_lease(json::parse(R"({"result":{"header":{"revision":"4"},"ID":"77","TTL":"5"}})"));
    CHECK(alive.ttl == 5);
    // A keepalive on a lease that expired: no TTL.
    LeaseAnswer gone = parse_lease(json::parse(R"({"result":{"header":{"revision":"4"},"ID":"77"}})"));
    CHECK(gone.ttl == 0);
}

TEST_CASE("etcd's errors become EtcdAnswerError with the gRPC code") {
    try {
        parse_range(json::parse(R"({"error":"etcdserver: requested lease not found","message":"x","code":5})"));
        FAIL("no error");
    } catch (const EtcdAnswerError& e) {
        CHECK(std::string(e.what()) == "etcdserver: requested lease not found");
        CHECK(e.code() == 5);
    }
    CHECK_THROWS_AS(parse_watch_message("not json"), EtcdAnswerError);
    CHECK_THROWS_AS(parse_range(json::parse(R"({"kvs":[{"key":"***"}]})")), EtcdAnswerError);
    CHECK_THROWS_AS(parse_range(json::parse(R"({"header":{"revision":"x"}})")), EtcdAnswerError);
}

TEST_CASE("--etcd-endpoints") {
    auto eps = parse_endpoints("127.0.0.1:2379,https://etcd-1:2379,http://[::1]:2381/", false);
    REQUIRE(eps.size() == 3);
    CHECK(eps[0].str() == "http://127.0.0.1:2379");
    CHECK(eps[1].tls);
    CHECK(eps[1].host == "etcd-1");
    CHECK(eps[2].host == "::1");
    CHECK(eps[2].port == "2381");
    CHECK(parse_endpoints("a:1", true)[0].tls);
    CHECK_THROWS_WITH_AS(parse_endpoints("a:1,b", false), "etcd endpoint \"b\": expected HOST:PORT",
                         std::invalid_argument);
    CHECK_THROWS_AS(parse_endpoints(",", false), std::invalid_argument);
}

namespace {

struct TmpFile {
    std::filesystem::path path;
    explicit TmpFile(const std::string& content) {
        path = std::filesystem::temp_directory_path() /
               ("remora-etcd-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
        std::ofstream(path, std::ios::binary) << content;
    }
    ~TmpFile() { std::filesystem::remove(path); }
    static int& counter() {
        static int n = 0;
        return n;
    }
};

}  // namespace

TEST_CASE("SecretBox: AES-256-GCM; the key and the purpose must match, changes are caught") {
    SecretBox box(std::string(32, 'k'));
    const std::string secret = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG...\n";
    std::string sealed = box.seal(secret, "remora-ca /remora/ca");
    CHECK(sealed.find("MIGHAgEAMBMG") == std::string::npos);  // never in the clear
    CHECK(sealed.find(base64_encode(secret)) == std::string::npos);
    json::value v = json::parse(sealed);
    CHECK(v.at("alg") == "AES-256-GCM");
    CHECK(base64_decode(v.at("nonce").as_string())->size() == 12);
    CHECK(base64_decode(v.at("tag").as_string())->size() == 16);
    CHECK(box.open(sealed, "remora-ca /remora/ca") == secret);
    // A fresh nonce each time.
    CHECK(box.seal(secret, "p") != box.seal(secret, "p"));

    SecretBox other(std::string(32, 'x'));
    CHECK_THROWS_AS(other.open(sealed, "remora-ca /remora/ca"), SecretBoxError);
    CHECK_THROWS_AS(box.open(sealed, "remora-ca /other/ca"), SecretBoxError);
    json::object changed = v.as_object();
    std::string ct = *base64_decode(changed["ciphertext"].as_string());
    ct[0] = static_cast<char>(ct[0] ^ 1);
    changed["ciphertext"] = base64_encode(ct);
    CHECK_THROWS_WITH_AS(box.open(json::serialize(changed), "remora-ca /remora/ca"),
                         doctest::Contains("does not open with this key"), SecretBoxError);
    CHECK_THROWS_WITH_AS(box.open("{\"alg\":\"none\"}", "p"), doctest::Contains("not a sealed value"),
                         SecretBoxError);
    CHECK_THROWS_AS(SecretBox(std::string(16, 'k')), SecretBoxError);
}

TEST_CASE("SecretBox::from_file: hex, base64 or raw 32 bytes") {
    const std::string hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    std::string raw;
    for (int i = 0; i < 32; ++i) raw.push_back(static_cast<char>(i));
    TmpFile hex_file(hex + "\n"), b64_file(base64_encode(raw)), raw_file(raw), bad(hex.substr(2));
    std::string sealed = SecretBox(raw).seal("x", "p");
    CHECK(SecretBox::from_file(hex_file.path).open(sealed, "p") == "x");
    CHECK(SecretBox::from_file(b64_file.path).open(sealed, "p") == "x");
    CHECK(SecretBox::from_file(raw_file.path).open(sealed, "p") == "x");
    CHECK_THROWS_WITH_AS(SecretBox::from_file(bad.path), doctest::Contains("expected a 256-bit key"),
                         SecretBoxError);
    CHECK_THROWS_WITH_AS(SecretBox::from_file("/nonexistent/key"),
                         doctest::Contains("--ca-key-encryption-key-file /nonexistent/key"),
                         SecretBoxError);
}

TEST_CASE("the stored config: a key per resource; a watch's events become one update") {
    EtcdOptions options;
    options.endpoints = parse_endpoints("127.0.0.1:1", false);
    EtcdClient client(options);
    std::vector<std::string> logs;
    EtcdConfigBackend backend(client, "/remora", [&](const std::string& m) { logs.push_back(m); });
    const store::ResourceKey a_key{store::Kind::VirtualService, "default", "reviews"};
    const store::ResourceKey b_key{store::Kind::DestinationRule, "shop", "reviews.v1"};
    CHECK(backend.resource_key(a_key) == "/remora/config/resources/VirtualService/default/reviews");
    CHECK(backend.key_of(backend.resource_key(b_key)) == b_key);
    CHECK_FALSE(backend.key_of("/remora/config/version"));
    CHECK_FALSE(backend.key_of("/remora/config/resources/virtualservice/default/reviews"));
    CHECK_FALSE(backend.key_of("/remora/config/resources/VirtualService/default"));
    CHECK_FALSE(backend.key_of("/other/config/resources/VirtualService/default/reviews"));
    CHECK(backend.version_key() == "/remora/config/version");

    store::Resource a;
    a.key = a_key;
    a.yaml = "kind: VirtualService\n";
    a.source = "reviews.yaml";
    a.created = 100;
    a.updated = 200;
    // A value written by a change carries no version: the key's mod_revision is its version.
    store::Resource back = store::decode_resource(store::encode_resource(a), 42, "k");
    CHECK(back.key == a_key);
    CHECK(back.yaml == a.yaml);
    CHECK(back.source == "reviews.yaml");
    CHECK(back.created == 100);
    CHECK(back.updated == 200);
    CHECK(back.resource_version == 42);
    CHECK_THROWS_WITH_AS(store::decode_resource("{\"kind\": \"VirtualService\"}", 1, "etcd key k"),
                         doctest::Contains("etcd key k: damaged config store: namespace: missing"),
                         std::runtime_error);

    auto put = [&](const std::string& key, const std::string& value, int64_t rev) {
        WatchEvent e;
        e.kv.key = key;
        e.kv.value = value;
        e.kv.mod_revision = rev;
        return e;
    };
    auto del = [&](const std::string& key, int64_t rev) {
        WatchEvent e = put(key, "", rev);
        e.deleted = true;
        return e;
    };
    store::Resource b = a;
    b.key = b_key;
    const std::string c_key = "/remora/config/resources/VirtualService/default/c";
    std::vector<WatchEvent> events = {
        put(backend.resource_key(a_key), store::encode_resource(a), 10),
        put(backend.resource_key(b_key), store::encode_resource(b), 10),
        put("/remora/config/version", "2", 10),
        del(backend.resource_key(a_key), 11),
        put(c_key, "{", 11),  // damaged: logged, skipped
        put("/remora/config/version", "1", 11),
    };
    store::StoredUpdate u = backend.update_from(events);
    CHECK_FALSE(u.whole);
    CHECK(u.version == 11);
    REQUIRE(u.resources.size() == 1);
    CHECK(u.resources.at(b_key).resource_version == 10);
    CHECK(u.deleted == std::vector<store::ResourceKey>{a_key});
    REQUIRE(logs.size() == 1);
    CHECK(logs[0].find("etcd key " + c_key + ": damaged config store") != std::string::npos);
}

TEST_CASE("a proxy's shared registration round-trips; other values are not one") {
    registry::ProxyRecord r;
    r.id = "reviews-v1-0.default";
    r.ns = "default";
    r.service_account = "bookinfo-reviews";
    r.reg.pod_name = "reviews-v1-0";
    r.reg.workload_name = "reviews-v1";
    r.reg.pod_ip = "198.18.0.7";
    r.reg.labels = {{"app", "reviews"}, {"version", "v1"}};
    r.reg.ports = {9080};
    auto d = RegistrySync::decode(RegistrySync::encode("replica-a", r));
    REQUIRE(d);
    CHECK(d->first == "replica-a");
    CHECK(d->second.id == r.id);
    CHECK(d->second.ns == "default");
    CHECK(d->second.service_account == "bookinfo-reviews");
    CHECK(d->second.reg == r.reg);
    CHECK_FALSE(RegistrySync::decode("{}"));
    CHECK_FALSE(RegistrySync::decode("nope"));
}

// ---- Against a real etcd (Debian's etcd-server), one member on loopback; skipped without it. ----

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mutex>
#include <set>
#include <thread>

extern char** environ;

namespace {

struct LocalEtcd {
    pid_t pid = -1;
    std::filesystem::path dir;
    std::string client;

    // `tls_dir`: serve https with server.pem/server.key and ask for a client certificate from ca.pem.
    explicit LocalEtcd(const std::string& tls_dir = "", const std::vector<std::string>& extra = {}) {
        if (access("/usr/bin/etcd", X_OK) != 0) return;
        dir = std::filesystem::temp_directory_path() /
              ("remora-etcd-unit-" + std::to_string(::getpid()) + (tls_dir.empty() ? "" : "-tls"));
        std::filesystem::remove_all(dir);
        std::filesystem::create_directories(dir);
        // Four ports per process (plain and TLS, client and peer), all below 60000.
        int base = 20000 + static_cast<int>(::getpid() % 10000) * 4 + (tls_dir.empty() ? 0 : 2);
        const std::string scheme = tls_dir.empty() ? "http://" : "https://";
        client = "127.0.0.1:" + std::to_string(base);
        std::string peer = "http://127.0.0.1:" + std::to_string(base + 1);
        std::string log = (dir / "etcd.log").string();
        std::vector<std::string> args = {"/usr/bin/etcd", "--name", "u", "--data-dir", (dir / "data").string(),
                                         "--listen-client-urls", scheme + client,
                                         "--advertise-client-urls", scheme + client,
                                         "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                                         "--initial-cluster", "u=" + peer};
        if (!tls_dir.empty()) {
            std::vector<std::string> tls = {"--cert-file", tls_dir + "/server.pem", "--key-file",
                                            tls_dir + "/server.key", "--trusted-ca-file", tls_dir + "/ca.pem",
                                            "--client-cert-auth"};
            args.insert(args.end(), tls.begin(), tls.end());
        }
        args.insert(args.end(), extra.begin(), extra.end());
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t io;
        posix_spawn_file_actions_init(&io);
        posix_spawn_file_actions_addopen(&io, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_adddup2(&io, 1, 2);
        if (posix_spawn(&pid, argv[0], &io, nullptr, argv.data(), environ) != 0) pid = -1;
        posix_spawn_file_actions_destroy(&io);
    }
    ~LocalEtcd() {
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
        }
        if (!dir.empty()) std::filesystem::remove_all(dir);
    }
    bool up() const { return pid > 0; }
    EtcdOptions options() const {
        EtcdOptions o;
        o.endpoints = parse_endpoints(client, false);
        o.timeout = std::chrono::milliseconds(2000);
        return o;
    }
};

bool eventually(const std::function<bool()>& fn) {
    for (int i = 0; i < 400; ++i) {  // etcd's start on a busy machine
        if (fn()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
}

// Ends the test case, saying so, when Debian's etcd-server is not installed.
#define SKIP_WITHOUT_ETCD(etcd)                                                     \
    if (!(etcd).up()) {                                                             \
        MESSAGE("etcd is not installed (apt-get install etcd-server): skipped");   \
        return;                                                                     \
    }

// The local etcd answers (it takes a while to start on a busy machine).
bool answers(EtcdClient& client) {
    return eventually([&] {
        try {
            client.range("/probe");
            return true;
        } catch (const std::exception&) {
            return false;
        }
    });
}

const char* kVs = R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: %s}}]
)";

std::string vs(const char* subset) {
    char buf[512];
    std::snprintf(buf, sizeof buf, kVs, subset);
    return buf;
}

}  // namespace

TEST_CASE("two config stores on one etcd: the same versions, changes seen through the watch, no lost write") {
    LocalEtcd etcd;
    SKIP_WITHOUT_ETCD(etcd);
    EtcdClient client(etcd.options());
    REQUIRE(answers(client));
    auto clock = [] { return std::chrono::system_clock::now(); };
    auto quiet = [](const std::string&) {};
    EtcdClient client2(etcd.options());
    store::ConfigStore one(std::make_unique<EtcdConfigBackend>(client, "/t", quiet), clock, quiet);
    store::ConfigStore two(std::make_unique<EtcdConfigBackend>(client2, "/t", quiet), clock, quiet);
    CHECK(one.version() == 0);

    store::ChangeResult r = one.apply(vs("v1"), "vs.yaml");
    REQUIRE(r.ok());
    KeyValue stored = client.range("/t/config/version").kvs.at(0);
    CHECK(r.version == static_cast<uint64_t>(stored.mod_revision));  // the version is the revision
    CHECK(client.range("/t/config/resources/VirtualService/default/reviews").kvs.size() == 1);
    CHECK(eventually([&] { return two.version() == r.version; }));  // through the watch
    CHECK(two.snapshot()->config.virtual_services.size() == 1);

    // Two changes on the same old state, through the two stores: both end up stored.
    std::thread t([&] { CHECK(two.apply(vs("v2"), "a.yaml").ok()); });
    std::string other = vs("v1");
    other.replace(other.find("name: reviews"), 13, "name: ratings");
    CHECK(one.apply(other, "b.yaml").ok());
    t.join();
    CHECK(eventually([&] { return one.version() == two.version(); }));
    CHECK(one.snapshot()->resources.size() == 2);
    CHECK(two.snapshot()->resources.size() == 2);
    CHECK(one.snapshot()->resources.begin()->second.resource_version > 0);

    // A store started later reads the same state at the same version.
    store::ConfigStore three(std::make_unique<EtcdConfigBackend>(client, "/t", quiet), clock, quiet);
    CHECK(three.version() == one.version());

    // A change writes only its own keys; a delete reaches the other store as a delete.
    const std::string ratings_key = "/t/config/resources/VirtualService/default/ratings";
    const int64_t ratings_rev = client.range(ratings_key).kvs.at(0).mod_revision;
    store::ChangeResult v4 = two.apply(vs("v4"), "d.yaml");
    REQUIRE(v4.ok());
    CHECK(client.range(ratings_key).kvs.at(0).mod_revision == ratings_rev);
    CHECK(eventually([&] { return one.version() == v4.version; }));
    CHECK(one.snapshot()->resources.at({store::Kind::VirtualService, "default", "ratings"})
              .resource_version == static_cast<uint64_t>(ratings_rev));
    CHECK(one.snapshot()->config.virtual_services.at(1).http.at(0).route.at(0).destination.subset ==
          "v4");
    store::ChangeResult gone = one.remove(other, "b.yaml");
    REQUIRE(gone.ok());
    CHECK(client.range(ratings_key).kvs.empty());
    CHECK(eventually([&] { return two.version() == gone.version; }));
    CHECK(two.snapshot()->resources.size() == 1);
    CHECK(two.snapshot()->config.virtual_services.size() == 1);

    // etcd gone: a change is refused with 503 and nothing changes.
    kill(etcd.pid, SIGKILL);
    waitpid(etcd.pid, nullptr, 0);
    etcd.pid = -1;
    uint64_t before = one.version();
    store::ChangeResult down = one.apply(vs("v3"), "c.yaml");
    CHECK(down.status == 503);
    CHECK(down.error.find("cannot take writes") != std::string::npos);
    CHECK(one.version() == before);
}

// One change is one etcd transaction: past etcd's --max-request-bytes or --max-txn-ops an apply
// is refused, nothing changes, and the error says what to raise (docs/replicas.md). The config as
// a whole is not bounded by either.
TEST_CASE("a change larger than etcd takes in one transaction is refused, saying why") {
    LocalEtcd etcd("", {"--max-request-bytes", "8192", "--max-txn-ops", "16"});
    SKIP_WITHOUT_ETCD(etcd);
    EtcdClient client(etcd.options());
    REQUIRE(answers(client));
    auto clock = [] { return std::chrono::system_clock::now(); };
    auto quiet = [](const std::string&) {};
    store::ConfigStore store(std::make_unique<EtcdConfigBackend>(client, "/big", quiet), clock, quiet);
    // Documents of about 1 KB each (an annotation pads them).
    auto docs = [](int from, int count) {
        std::string out;
        for (int i = from; i < from + count; ++i) {
            std::string doc = vs("v1");
            doc.replace(doc.find("name: reviews"), 13,
                        "name: reviews-" + std::to_string(i) + ", annotations: {pad: " +
                            std::string(1000, 'x') + "}");
            out += (out.empty() ? "" : "---\n") + doc;
        }
        return out;
    };
    // Five changes of five: 25 KB stored, three times etcd's request limit.
    for (int i = 0; i < 25; i += 5) {
        store::ChangeResult r = store.apply(docs(i, 5), "batch.yaml");
        REQUIRE_MESSAGE(r.ok(), r.error);
    }
    const uint64_t before = store.version();
    CHECK(store.snapshot()->resources.size() == 25);

    store::ChangeResult big = store.apply(docs(100, 10), "big.yaml");
    CHECK_FALSE(big.ok());
    INFO(big.error);
    CHECK(big.error.find("request is too large") != std::string::npos);
    CHECK(big.error.find("writes 10 resource(s)") != std::string::npos);
    CHECK(big.error.find("--max-request-bytes") != std::string::npos);

    std::string many;
    for (int i = 0; i < 20; ++i) {
        std::string doc = vs("v1");
        doc.replace(doc.find("name: reviews"), 13, "name: small-" + std::to_string(i));
        many += (many.empty() ? "" : "---\n") + doc;
    }
    store::ChangeResult ops = store.apply(many, "many.yaml");
    CHECK_FALSE(ops.ok());
    INFO(ops.error);
    CHECK(ops.error.find("too many operations") != std::string::npos);
    CHECK(ops.error.find("--max-txn-ops") != std::string::npos);
    CHECK(store.version() == before);
    CHECK(store.snapshot()->resources.size() == 25);

    // An older version's one-value config too large to move in one transaction: the replica does
    // not start, saying why, and the value stays.
    std::map<store::ResourceKey, store::Resource> old;
    for (int i = 0; i < 20; ++i) {
        store::Resource r;
        r.key = {store::Kind::VirtualService, "default", "old-" + std::to_string(i)};
        r.yaml = vs("v1");
        old.emplace(r.key, r);
    }
    client.put("/mig/config", store::encode_resources(0, old));
    try {
        store::ConfigStore upgraded(std::make_unique<EtcdConfigBackend>(client, "/mig", quiet), clock, quiet);
        FAIL("a replica started on a config it could not move");
    } catch (const std::exception& e) {
        const std::string what = e.what();
        INFO(what);
        CHECK(what.find("moving the config of /mig/config (20 resource(s), one value)") != std::string::npos);
        CHECK(what.find("22 operations") != std::string::npos);
        CHECK(what.find("--max-txn-ops") != std::string::npos);
    }
    CHECK(client.range("/mig/config").kvs.size() == 1);
}

// An older remora-control kept the whole config in one value, <prefix>/config: a replica that
// finds it moves it to a key per resource, once, losing nothing.
TEST_CASE("the one-value config of an older version is moved to a key per resource") {
    LocalEtcd etcd;
    SKIP_WITHOUT_ETCD(etcd);
    EtcdClient client(etcd.options());
    REQUIRE(answers(client));
    store::Resource a;
    a.key = {store::Kind::VirtualService, "default", "reviews"};
    a.yaml = vs("v2");
    a.source = "old.yaml";
    a.resource_version = 0;
    std::map<store::ResourceKey, store::Resource> old{{a.key, a}};
    const int64_t old_rev = client.put("/m/config", store::encode_resources(0, old));
    std::vector<std::string> logs;
    auto clock = [] { return std::chrono::system_clock::now(); };
    auto log = [&](const std::string& m) { logs.push_back(m); };
    store::ConfigStore store(std::make_unique<EtcdConfigBackend>(client, "/m", log), clock, log);
    REQUIRE(store.snapshot()->resources.size() == 1);
    CHECK(store.snapshot()->resources.begin()->second.resource_version ==
          static_cast<uint64_t>(old_rev));
    CHECK(store.snapshot()->config.virtual_services.at(0).http.at(0).route.at(0).destination.subset ==
          "v2");
    CHECK(client.range("/m/config").kvs.empty());
    CHECK(store.version() == static_cast<uint64_t>(client.range("/m/config/version").kvs.at(0).mod_revision));
    CHECK(std::any_of(logs.begin(), logs.end(), [](const std::string& m) {
        return m.find("moved the config of /m/config (1 resource(s), one value)") != std::string::npos;
    }));
    // A second replica finds nothing left to move.
    store::ConfigStore again(std::make_unique<EtcdConfigBackend>(client, "/m", log), clock, log);
    CHECK(again.version() == store.version());
    CHECK(again.snapshot()->resources.size() == 1);
}

// A replica publishes its proxies in transactions of up to RegistrySync::kBatch, under one lease:
// a put per proxy (333 of them under a loaded etcd) took longer than the lease's TTL.
TEST_CASE("a replica's proxies are published in batches under one lease") {
    LocalEtcd etcd;
    SKIP_WITHOUT_ETCD(etcd);
    EtcdClient client(etcd.options());
    REQUIRE(answers(client));
    registry::ProxyRegistry reg([] { return std::chrono::steady_clock::now(); },
                                [] { return std::chrono::system_clock::now(); },
                                std::chrono::seconds(30));
    for (int i = 0; i < 250; ++i) {
        registry::Registration r;
        r.pod_name = "p-" + std::to_string(i);
        r.pod_ip = "127.18.0." + std::to_string(i % 250 + 1);
        reg.poll_started("ns", "default", r, {});
    }
    const int64_t before = client.range("/probe").revision;
    std::vector<std::string> logs;
    std::mutex logs_mu;
    RegistrySync sync(client, "/r", reg, std::chrono::seconds(5), [&](const std::string& m) {
        std::lock_guard lock(logs_mu);
        logs.push_back(m);
    });
    sync.start();
    REQUIRE(eventually([&] { return client.range("/r/proxies/", prefix_end("/r/proxies/")).kvs.size() == 250; }));
    RangeAnswer a = client.range("/r/proxies/", prefix_end("/r/proxies/"));
    std::set<int64_t> leases, revisions;
    for (const KeyValue& kv : a.kvs) {
        leases.insert(kv.lease);
        revisions.insert(kv.mod_revision);
    }
    CHECK(leases.size() == 1);
    CHECK(*leases.begin() != 0);
    std::string log_text;
    {
        std::lock_guard lock(logs_mu);
        for (const auto& l : logs) log_text += l + "\n";
    }
    INFO(log_text);
    CHECK(revisions.size() == 3);  // 100 + 100 + 50
    CHECK(a.revision - before <= 4);
    sync.stop();
    CHECK(eventually([&] { return client.range("/r/proxies/", prefix_end("/r/proxies/")).kvs.empty(); }));
}

// Each replica publishes itself (id and advertised address) under its lease, and knows the
// others: proxy-status through one replica asks them for their proxies.
TEST_CASE("replicas know each other's addresses while they live") {
    LocalEtcd etcd;
    SKIP_WITHOUT_ETCD(etcd);
    EtcdClient client(etcd.options());
    REQUIRE(answers(client));
    auto registry = [] {
        return std::make_unique<registry::ProxyRegistry>([] { return std::chrono::steady_clock::now(); },
                                                         [] { return std::chrono::system_clock::now(); },
                                                         std::chrono::seconds(30));
    };
    auto reg_a = registry(), reg_b = registry();
    auto quiet = [](const std::string&) {};
    RegistrySync a(client, "/p", *reg_a, std::chrono::seconds(5), quiet, "10.0.0.1:15012");
    RegistrySync b(client, "/p", *reg_b, std::chrono::seconds(5), quiet, "");
    a.start();
    b.start();
    REQUIRE(eventually([&] { return a.peers().size() == 1 && b.peers().size() == 1; }));
    CHECK(a.peers() == std::vector<RegistrySync::Peer>{{b.replica_id(), ""}});
    CHECK(b.peers() == std::vector<RegistrySync::Peer>{{a.replica_id(), "10.0.0.1:15012"}});
    // The record is held by the replica's lease: gone when it stops.
    a.stop();
    CHECK(eventually([&] { return b.peers().empty(); }));
    b.stop();
    CHECK(client.range("/p/replicas/", prefix_end("/p/replicas/")).kvs.empty());
}

// A watch stopped at any point of its start (resolving, connecting, sending, waiting for the
// answer's header, streaming) ends: a cancel landing between two steps was lost, and stop() then
// waited on a stream that never ended (a replica's shutdown, a store destroyed just after it
// opened).
TEST_CASE("a watch stopped as it starts ends") {
    LocalEtcd etcd;
    SKIP_WITHOUT_ETCD(etcd);
    EtcdClient client(etcd.options());
    REQUIRE(answers(client));
    for (int i = 0; i < 60; ++i) {
        Watcher w(client, "/s/", prefix_end("/s/"), 0, [](const std::vector<WatchEvent>&, int64_t) {},
                  [] { return int64_t{0}; }, [](const std::string&) {});
        w.start();
        std::this_thread::sleep_for(std::chrono::microseconds(50 * (i % 20)));
        const auto t0 = std::chrono::steady_clock::now();
        w.stop();
        CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3));
    }
}

TEST_CASE("a watch on a member that stops answering is given up and resumed when it is back") {
    LocalEtcd etcd;
    if (!etcd.up()) {
        MESSAGE("etcd is not installed: skipped");
        return;
    }
    EtcdOptions options = etcd.options();
    options.timeout = std::chrono::milliseconds(1000);
    options.watch_check_interval = std::chrono::milliseconds(300);
    EtcdClient client(options);
    REQUIRE(answers(client));
    std::mutex mu;
    std::vector<std::string> keys, logs;
    auto seen = [&](const std::string& what, const std::vector<std::string>& in) {
        std::lock_guard lock(mu);
        for (const auto& k : in) {
            if (k.find(what) != std::string::npos) return true;
        }
        return false;
    };
    Watcher w(
        client, "/w/", prefix_end("/w/"), client.range("/w/", prefix_end("/w/")).revision,
        [&](const std::vector<WatchEvent>& events, int64_t) {
            std::lock_guard lock(mu);
            for (const auto& e : events) keys.push_back(e.kv.key);
        },
        [&] { return client.range("/w/", prefix_end("/w/")).revision; },
        [&](const std::string& line) {
            std::lock_guard lock(mu);
            logs.push_back(line);
        });
    w.start();
    client.put("/w/a", "1");
    CHECK(eventually([&] { return seen("/w/a", keys); }));
    // Quiet for several check intervals while the member serves: the watch stays.
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    CHECK_FALSE(seen("given up", logs));

    // The member stops (SIGSTOP: its sockets stay open, so the stream only goes silent).
    kill(etcd.pid, SIGSTOP);
    bool given_up = eventually([&] { return seen("given up", logs); });
    kill(etcd.pid, SIGCONT);
    CHECK_MESSAGE(given_up, "a silent watch on a stopped member was never given up");
    {
        std::lock_guard lock(mu);
        for (const auto& l : logs) MESSAGE(l);
    }
    // Back: a change made now arrives through the resumed watch.
    REQUIRE(eventually([&] {
        try {
            client.put("/w/b", "2");
            return true;
        } catch (const std::exception&) {
            return false;
        }
    }));
    CHECK(eventually([&] { return seen("/w/b", keys); }));
    w.stop();
}

TEST_CASE("the CA record: created once, the same for every replica, sealed in etcd") {
    LocalEtcd etcd;
    if (!etcd.up()) {
        MESSAGE("etcd is not installed: skipped");
        return;
    }
    EtcdClient client(etcd.options());
    SecretBox box(std::string(32, 'k'));
    auto dir = etcd.dir / "state";
    auto quiet = [](const std::string&) {};
    SharedCa a = load_or_create_shared_ca(client, "/t", box, dir / "a", "cluster.local", std::nullopt,
                                          std::chrono::system_clock::now(), std::chrono::seconds(20), quiet);
    SharedCa b = load_or_create_shared_ca(client, "/t", box, dir / "b", "cluster.local", std::nullopt,
                                          std::chrono::system_clock::now(), std::chrono::seconds(20), quiet);
    CHECK(a.state.created);
    CHECK_FALSE(b.state.created);
    CHECK(a.state.signer.root().to_pem() == b.state.signer.root().to_pem());
    CHECK(a.admin_token == b.admin_token);
    CHECK(a.state.jwt_key.to_pem() == b.state.jwt_key.to_pem());
    std::string value = client.range("/t/ca").kvs.at(0).value;
    CHECK(value.find("PRIVATE KEY") == std::string::npos);
    CHECK(value.find(a.admin_token) == std::string::npos);
    CHECK_FALSE(std::filesystem::exists(dir / "b" / "root-key.pem"));  // the CA key stays in memory
    CHECK(std::filesystem::exists(dir / "b" / "root-cert.pem"));
    SecretBox wrong(std::string(32, 'w'));
    CHECK_THROWS_WITH_AS(load_or_create_shared_ca(client, "/t", wrong, dir / "c", "cluster.local", std::nullopt,
                                                  std::chrono::system_clock::now(), std::chrono::seconds(20), quiet),
                         doctest::Contains("does not open with this key"), std::runtime_error);
}

TEST_CASE("TLS to etcd: etcd's CA verifies the server, a client certificate gets in") {
    if (access("/usr/bin/etcd", X_OK) != 0 || access("/usr/bin/openssl", X_OK) != 0) {
        MESSAGE("etcd or openssl is not installed: skipped");
        return;
    }
    auto pki = std::filesystem::temp_directory_path() / ("remora-etcd-pki-" + std::to_string(::getpid()));
    std::filesystem::create_directories(pki);
    const std::string d = pki.string();
    const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes ";
    std::string script =
        "cd " + d + " && openssl req -x509" + ec + "-keyout ca.key -out ca.pem -days 1 -subj /CN=etcd-ca"
        " && openssl req -x509" + ec + "-keyout other.key -out other.pem -days 1 -subj /CN=other-ca"
        " && openssl req" + ec + "-keyout server.key -out server.csr -subj /CN=etcd"
        " && printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth\\n' > server.ext"
        " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile server.ext"
        " && openssl req" + ec + "-keyout client.key -out client.csr -subj /CN=remora-control"
        " && printf 'extendedKeyUsage=clientAuth\\n' > client.ext"
        " && openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 1 -extfile client.ext"
        " >/dev/null 2>&1";
    REQUIRE(std::system(script.c_str()) == 0);
    LocalEtcd etcd(d);
    REQUIRE(etcd.up());
    EtcdOptions o;
    o.endpoints = parse_endpoints(etcd.client, true);
    o.ca_file = d + "/ca.pem";
    o.cert_file = d + "/client.pem";
    o.key_file = d + "/client.key";
    o.timeout = std::chrono::milliseconds(2000);
    EtcdClient client(o);
    REQUIRE(eventually([&] {
        try {
            client.put("/tls", "works");
            return true;
        } catch (const std::exception&) {
            return false;
        }
    }));
    CHECK(client.range("/tls").kvs.at(0).value == "works");

    EtcdOptions no_cert = o;
    no_cert.cert_file.clear();
    no_cert.key_file.clear();
    CHECK_THROWS_AS(EtcdClient(no_cert).range("/tls"), EtcdUnavailable);  // etcd wants a client cert
    EtcdOptions wrong_ca = o;
    wrong_ca.ca_file = d + "/other.pem";
    CHECK_THROWS_WITH_AS(EtcdClient(wrong_ca).range("/tls"), doctest::Contains("TLS handshake failed"),
                         EtcdUnavailable);
    std::filesystem::remove_all(pki);
}
