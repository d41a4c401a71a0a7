// The proxy's subscription against a fake remora-control (a real TLS server on loopback): what
// each poll says (held version, ACK, NACK with the reason), what it keeps when a snapshot is
// refused, that it rides out a control plane that answers errors, and that stop() ends a
// long-poll in flight at once instead of waiting for the answer. The polls ride one kept-alive
// connection: the tests count the server's connections across a server that closes an idle one,
// restarts with a poll in flight, a renewed SVID, a drain and a failover.
#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>

#include <condition_variable>
#include <array>
#include <deque>
#include <future>
#include <set>
#include <thread>

#include "../../certs/test_pki.h"
#include "common/http_server.h"
#include "proxy/snapshot/snapshot_json.h"
#include "proxy/subscription/subscriber.h"

using namespace remora;
namespace json = boost::json;
namespace asio = boost::asio;

namespace {

struct Identity {
    std::vector<certs::Certificate> chain;
    certs::PrivateKey key;
};

Identity issue(const certs::Signer& ca, const std::string& id) {
    certs::PrivateKey key = certs::PrivateKey::generate_p256();
    auto leaf = certs::issue_svid(ca, key.public_key(), *certs::SpiffeId::parse(id),
                                  std::chrono::system_clock::now());
    REQUIRE(leaf);
    return {certs::chain_for(ca, *leaf), std::move(key)};
}

// A fake control plane: answers each subscription from a script, and records the requests.
struct FakeControl {
    using Answer = std::optional<common::HttpResponse>;  // nullopt: hold the poll
    asio::io_context io;
    common::TlsContextSlot slot;
    std::unique_ptr<common::HttpServer> server;
    std::thread thread;
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Answer> script;
    std::vector<json::object> requests;
    std::vector<std::shared_ptr<common::Responder>> held;

    explicit FakeControl(const Identity& id, unsigned short port = 0,
                         common::HttpLimits limits = {}) {
        slot.set(common::make_server_tls_context(id.chain, id.key));
        server = std::make_unique<common::HttpServer>(
            io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
            [](const common::HttpRequest& r, const common::PeerInfo&) {
                return common::json_response(404, "{}", r.version());
            },
            &slot, limits, [](const std::string&) {});
        server->defer("/v1/proxies/subscribe", [this](const common::HttpRequest& req, const common::PeerInfo& peer,
                                                      std::shared_ptr<common::Responder> responder) {
            std::lock_guard lock(mu);
            json::object body = json::parse(req.body()).as_object();
            body["hasClientCert"] = !peer.peer_chain.empty();
            body["conn"] = peer.connection_id;
            body["serial"] = peer.peer_chain.empty() ? std::string() : peer.peer_chain.front().serial_hex();
            requests.push_back(std::move(body));
            Answer a = script.empty() ? Answer{} : script.front();
            if (!script.empty()) script.pop_front();
            if (a) responder->respond(*a);
            else held.push_back(responder);
            cv.notify_all();
        });
        server->start();
        thread = std::thread([this] { io.run(); });
    }
    ~FakeControl() {
        server->stop();
        io.stop();
        thread.join();
    }
    std::string port() const { return std::to_string(server->local_endpoint().port()); }
    // The distinct connections the polls came on.
    std::set<uint64_t> connections() {
        std::lock_guard lock(mu);
        std::set<uint64_t> out;
        for (const auto& r : requests) out.insert(r.at("conn").as_uint64());
        return out;
    }
    // Answers the oldest held poll.
    void answer_held(common::HttpResponse res) {
        std::lock_guard lock(mu);
        REQUIRE_FALSE(held.empty());
        held.front()->respond(std::move(res));
        held.erase(held.begin());
    }
    void wait_requests(size_t n) {
        std::unique_lock lock(mu);
        REQUIRE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return requests.size() >= n; }));
    }
};

common::HttpResponse snapshot_answer(const std::string& version, const std::string& cluster) {
    proxy::snapshot::Snapshot s;
    s.clusters.emplace_back();
    s.clusters.back().name = cluster;
    std::string body = "{\"version\":\"" + version + "\",\"configVersion\":7,\"snapshot\":" +
                       json::serialize(proxy::snapshot::to_json(s)) + "}";
    return common::json_response(200, body);
}

common::HttpResponse status_answer(unsigned status) {
    common::HttpResponse r{static_cast<boost::beast::http::status>(status), 11};
    r.body() = status == 304 ? "" : "{\"error\":\"not now\"}";
    return r;
}

// A TCP relay between the subscriber and a fake control plane, which can reset the client's
// side of every connection it carries (SO_LINGER 0, then close: an RST), as a middlebox or a
// crashed host's kernel does in the middle of a poll.
struct Relay {
    asio::io_context io;
    asio::ip::tcp::acceptor acceptor{io, {asio::ip::make_address("127.0.0.1"), 0}};
    asio::ip::tcp::endpoint upstream;
    std::vector<std::shared_ptr<asio::ip::tcp::socket>> clients;  // io thread only
    std::atomic<int> accepted{0};
    std::thread thread;

    explicit Relay(unsigned short upstream_port)
        : upstream(asio::ip::make_address("127.0.0.1"), upstream_port) {
        accept();
        thread = std::thread([this] { io.run(); });
    }
    ~Relay() {
        io.stop();
        thread.join();
    }
    std::string port() const { return std::to_string(acceptor.local_endpoint().port()); }
    static void pump(std::shared_ptr<asio::ip::tcp::socket> from,
                     std::shared_ptr<asio::ip::tcp::socket> to) {
        auto buf = std::make_shared<std::array<char, 16384>>();
        from->async_read_some(asio::buffer(*buf), [from, to, buf](boost::system::error_code ec, std::size_t n) {
            if (ec) {
                boost::system::error_code ignored;
                to->shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
                return;
            }
            asio::async_write(*to, asio::buffer(buf->data(), n),
                              [from, to, buf](boost::system::error_code wec, std::size_t) {
                                  if (!wec) pump(from, to);
                              });
        });
    }
    void accept() {
        acceptor.async_accept([this](boost::system::error_code ec, asio::ip::tcp::socket sock) {
            if (ec) return;
            auto client = std::make_shared<asio::ip::tcp::socket>(std::move(sock));
            auto server = std::make_shared<asio::ip::tcp::socket>(io);
            server->connect(upstream);
            clients.push_back(client);
            accepted += 1;
            pump(client, server);
            pump(server, client);
            accept();
        });
    }
    void reset_all() {
        std::promise<void> done;
        asio::post(io, [this, &done] {
            for (auto& c : clients) {
                boost::system::error_code ignored;
                c->set_option(asio::socket_base::linger(true, 0), ignored);
                c->close(ignored);
            }
            clients.clear();
            done.set_value();
        });
        done.get_future().wait();
    }
};

struct Fixture {
    certs::Signer ca = certs::testing::make_root_signer("cluster.local", std::chrono::system_clock::now());
    Identity control = issue(ca, "spiffe://cluster.local/ns/remora-system/sa/remora-control");
    Identity workload = issue(ca, "spiffe://cluster.local/ns/default/sa/reviews");
    proxy::TlsStore tls;
    std::mutex mu;
    std::vector<std::string> applied;  // cluster names of the snapshots applied

    Fixture() {
        tls.publish(proxy::make_tls_snapshot(workload.chain, workload.key, certs::TrustBundle({ca.root()}),
                                             "cluster.local", [] { return std::chrono::system_clock::now(); }));
    }
    std::unique_ptr<proxy::ConfigSubscriber> subscriber(
        const FakeControl& fake, std::vector<certs::ControlAddress> more = {},
        std::chrono::milliseconds backoff = std::chrono::milliseconds(10)) {
        proxy::SubscriptionOptions o;
        o.control_host = "127.0.0.1";
        o.control_port = fake.port();
        o.more_controls = std::move(more);
        o.pod_name = "reviews-v1-0";
        o.pod_ip = "127.0.0.1";
        o.labels = {{"app", "reviews"}, {"version", "v1"}};
        o.backoff_initial = backoff;
        o.backoff_max = backoff * 4;
        return std::make_unique<proxy::ConfigSubscriber>(
            o, tls,
            [this](proxy::snapshot::Snapshot s, const std::string&) -> std::string {
                std::string name = s.clusters.empty() ? "" : s.clusters[0].name;
                if (name == "bad") return "route reviews:9080: regex \"(\": missing )";
                std::lock_guard lock(mu);
                applied.push_back(name);
                return "";
            },
            [](const std::string&) {}, 42);
    }
};

std::string str(const json::object& o, const char* k) {
    const json::value* v = o.if_contains(k);
    return v && v->is_string() ? std::string(v->as_string()) : std::string("<none>");
}

}  // namespace

TEST_CASE("each poll holds the last version; ACK and NACK ride on the next poll; stop ends a held poll") {
    Fixture f;
    FakeControl fake(f.control);
    fake.script = {snapshot_answer("v1", "good"), snapshot_answer("v2", "bad"), status_answer(304),
                   std::nullopt};
    auto sub = f.subscriber(fake);
    sub->start();
    fake.wait_requests(4);
    {
        std::lock_guard lock(fake.mu);
        const auto& r = fake.requests;
        CHECK(r[0].at("hasClientCert").as_bool());
        CHECK(str(r[0], "version").empty());
        CHECK_FALSE(r[0].contains("applied"));
        CHECK(str(r[0].at("node").as_object(), "podName") == "reviews-v1-0");
        CHECK(r[0].at("node").at("labels").at("version").as_string() == "v1");
        // ACK of v1.
        CHECK(str(r[1], "version") == "v1");
        CHECK(str(r[1].at("applied").as_object(), "version") == "v1");
        CHECK(str(r[1].at("applied").as_object(), "error").empty());
        // NACK of v2, with the reason; v2 is held so the same snapshot is not sent again.
        CHECK(str(r[2], "version") == "v2");
        CHECK(str(r[2].at("applied").as_object(), "version") == "v2");
        CHECK(str(r[2].at("applied").as_object(), "error").find("missing )") != std::string::npos);
        // After a 304 the report is repeated (a restarted control plane learns it).
        CHECK(str(r[3].at("applied").as_object(), "version") == "v2");
    }
    auto st = sub->status();
    CHECK(st.connected);
    CHECK(st.applied_version == "v1");
    CHECK(st.config_version == 7);
    CHECK(st.rejected_version == "v2");
    CHECK(st.updates == 1);
    CHECK(st.rejections == 1);
    CHECK(f.applied == std::vector<std::string>{"good"});
    // The fourth poll is held by the server: stop() must not wait for its answer.
    sub->stop();
    CHECK_FALSE(sub->status().applied_version.empty());
}

TEST_CASE("errors from the control plane: the last snapshot stays, polls go on with backoff") {
    Fixture f;
    FakeControl fake(f.control);
    fake.script = {snapshot_answer("v1", "good"), status_answer(503), status_answer(503),
                   snapshot_answer("v3", "better"), std::nullopt};
    auto sub = f.subscriber(fake);
    sub->start();
    fake.wait_requests(5);
    auto st = sub->status();
    CHECK(st.failures == 2);
    CHECK(st.applied_version == "v3");
    CHECK(f.applied == std::vector<std::string>{"good", "better"});
    {
        std::lock_guard lock(fake.mu);
        // The polls after the errors still hold v1 until v3 arrives.
        CHECK(str(fake.requests[2], "version") == "v1");
        CHECK(str(fake.requests[3], "version") == "v1");
        CHECK(str(fake.requests[4], "version") == "v3");
    }
    sub->stop();
}

TEST_CASE("a control plane that is not there: failures counted, nothing applied, stop is prompt") {
    Fixture f;
    proxy::SubscriptionOptions o;
    o.control_host = "127.0.0.1";
    o.control_port = "1";  // nothing listens there
    o.backoff_initial = std::chrono::milliseconds(5);
    o.backoff_max = std::chrono::milliseconds(20);
    proxy::ConfigSubscriber sub(o, f.tls, [](proxy::snapshot::Snapshot, const std::string&) { return std::string(); },
                                [](const std::string&) {}, 1);
    sub.start();
    for (int i = 0; i < 400 && sub.status().failures < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    auto st = sub.status();
    CHECK(st.failures >= 3);
    CHECK_FALSE(st.connected);
    CHECK(st.last_error.find("cannot connect") != std::string::npos);
    CHECK(st.applied_version.empty());
    sub.stop();
}

TEST_CASE("several control-plane replicas: when one goes away the poll moves on, holding its snapshot") {
    Fixture f;
    auto first = std::make_unique<FakeControl>(f.control);
    FakeControl second(f.control);
    first->script = {snapshot_answer("v1", "one")};  // then holds the next poll
    second.script = {snapshot_answer("v2", "two")};
    // The replica in the middle is not there at all.
    auto sub = f.subscriber(*first, {{"127.0.0.1", "1"}, {"127.0.0.1", second.port()}});
    sub->start();
    first->wait_requests(2);
    first.reset();  // the replica dies with a poll in flight
    second.wait_requests(1);
    for (int i = 0; i < 400 && sub->status().applied_version != "v2"; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    {
        std::lock_guard lock(second.mu);
        // It tells the new replica what it holds, so an unchanged config costs nothing.
        CHECK(str(second.requests[0], "version") == "v1");
    }
    std::lock_guard lock(f.mu);
    CHECK(f.applied == std::vector<std::string>{"one", "two"});
    CHECK(sub->status().applied_version == "v2");
    sub->stop();
}

namespace {

template <class Pred>
bool eventually(Pred pred) {
    for (int i = 0; i < 2000; ++i) {
        if (pred()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return pred();
}

}  // namespace

TEST_CASE("polls ride one kept-alive connection") {
    Fixture f;
    FakeControl fake(f.control);
    fake.script = {snapshot_answer("v1", "one"), status_answer(304), status_answer(304),
                   snapshot_answer("v2", "two"), status_answer(304), std::nullopt};
    auto sub = f.subscriber(fake);
    sub->start();
    fake.wait_requests(6);
    CHECK(fake.connections().size() == 1);
    CHECK(eventually([&] { return sub->status().polls == 5; }));
    auto st = sub->status();
    CHECK(st.connections_opened == 1);
    CHECK(st.connections_closed_by_server == 0);
    CHECK(st.failures == 0);
    CHECK(st.applied_version == "v2");
    sub->stop();
}

TEST_CASE("the server closed the kept connection between polls: a new one at once, no failure") {
    Fixture f;
    common::HttpLimits limits;
    limits.read_timeout = std::chrono::seconds(1);  // the server's keep-alive idle timeout
    FakeControl fake(f.control, 0, limits);
    // The 503 is a failure: the subscriber backs off 2 to 4 s, longer than the server keeps an
    // idle connection, so the next poll finds its connection closed.
    fake.script = {snapshot_answer("v1", "one"), status_answer(503), snapshot_answer("v2", "two"),
                   std::nullopt};
    auto sub = f.subscriber(fake, {}, std::chrono::milliseconds(4000));
    sub->start();
    fake.wait_requests(4);
    auto st = sub->status();
    CHECK(st.connections_closed_by_server == 1);
    CHECK(st.connections_opened == 2);
    CHECK(st.failures == 1);  // the 503 only: the closed connection was not one
    CHECK(st.last_error.empty());
    CHECK(st.applied_version == "v2");
    CHECK(fake.connections().size() == 2);
    sub->stop();
}

TEST_CASE("the control plane restarts with a poll in flight: the subscriber reconnects") {
    Fixture f;
    auto fake = std::make_unique<FakeControl>(f.control);
    const auto port = static_cast<unsigned short>(std::stoi(fake->port()));
    fake->script = {snapshot_answer("v1", "one"), std::nullopt};
    auto sub = f.subscriber(*fake);
    sub->start();
    fake->wait_requests(2);
    fake.reset();  // gone with the poll held: its connection ends mid-poll
    CHECK(eventually([&] { return sub->status().failures >= 1; }));
    FakeControl again(f.control, port);
    again.script = {snapshot_answer("v2", "two"), std::nullopt};
    again.wait_requests(2);
    CHECK(again.connections().size() == 1);
    CHECK(eventually([&] { return sub->status().applied_version == "v2"; }));
    {
        std::lock_guard lock(again.mu);
        CHECK(str(again.requests[0], "version") == "v1");
    }
    CHECK(sub->status().connections_opened == 2);
    sub->stop();
}

TEST_CASE("a reset in the middle of a poll: one new connection at once, no failure") {
    Fixture f;
    FakeControl fake(f.control);
    Relay relay(static_cast<unsigned short>(std::stoi(fake.port())));
    fake.script = {snapshot_answer("v1", "one"), std::nullopt, snapshot_answer("v2", "two"),
                   std::nullopt};
    std::unique_ptr<proxy::ConfigSubscriber> sub;
    {  // through the relay
        proxy::SubscriptionOptions so;
        so.control_host = "127.0.0.1";
        so.control_port = relay.port();
        so.pod_name = "reviews-v1-0";
        so.pod_ip = "127.0.0.1";
        so.backoff_initial = std::chrono::milliseconds(10);
        so.backoff_max = std::chrono::milliseconds(40);
        sub = std::make_unique<proxy::ConfigSubscriber>(
            so, f.tls, [](proxy::snapshot::Snapshot, const std::string&) { return std::string(); },
            [](const std::string&) {}, 7);
    }
    sub->start();
    fake.wait_requests(2);  // the second poll is held
    relay.reset_all();      // the client's side is reset mid-poll
    fake.wait_requests(3);  // polled again, on a new connection, with what it holds
    CHECK(eventually([&] { return sub->status().applied_version == "v2"; }));
    {
        std::lock_guard lock(fake.mu);
        CHECK(str(fake.requests[2], "version") == "v1");
    }
    auto st = sub->status();
    CHECK(relay.accepted.load() == 2);
    CHECK(st.connections_opened == 2);
    CHECK(st.connections_closed_by_server == 1);
    CHECK(st.failures == 0);
    sub->stop();
}

TEST_CASE("a renewed SVID: the next poll presents it, on a new connection") {
    Fixture f;
    FakeControl fake(f.control);
    fake.script = {snapshot_answer("v1", "one"), std::nullopt, std::nullopt};
    auto sub = f.subscriber(fake);
    sub->start();
    fake.wait_requests(2);  // the second is held
    std::string first_serial;
    {
        std::lock_guard lock(fake.mu);
        first_serial = str(fake.requests[1], "serial");
    }
    Identity renewed = issue(f.ca, "spiffe://cluster.local/ns/default/sa/reviews");
    f.tls.publish(proxy::make_tls_snapshot(renewed.chain, renewed.key, certs::TrustBundle({f.ca.root()}),
                                           "cluster.local", [] { return std::chrono::system_clock::now(); }));
    fake.answer_held(status_answer(304));
    fake.wait_requests(3);
    {
        std::lock_guard lock(fake.mu);
        CHECK(str(fake.requests[2], "serial") == renewed.chain.front().serial_hex());
        CHECK(str(fake.requests[2], "serial") != first_serial);
        CHECK(fake.requests[2].at("conn") != fake.requests[1].at("conn"));
    }
    CHECK(sub->status().connections_opened == 2);
    CHECK(sub->status().failures == 0);
    sub->stop();
}

TEST_CASE("draining ends the poll in flight; the next says so, on a new connection") {
    Fixture f;
    FakeControl fake(f.control);
    fake.script = {snapshot_answer("v1", "one"), std::nullopt, std::nullopt};
    auto sub = f.subscriber(fake);
    sub->start();
    fake.wait_requests(2);  // held
    sub->set_draining();
    fake.wait_requests(3);
    {
        std::lock_guard lock(fake.mu);
        CHECK_FALSE(fake.requests[1].at("node").as_object().contains("draining"));
        CHECK(fake.requests[2].at("node").at("draining").as_bool());
        CHECK(str(fake.requests[2], "version") == "v1");
    }
    CHECK(fake.connections().size() == 2);  // the abandoned poll's connection is not reused
    CHECK(sub->status().failures == 0);
    sub->stop();
}

TEST_CASE("--control a:p,b:p") {
    auto a = certs::parse_control_addresses("remora-control-0:15012,10.0.0.2:15012,[::1]:15012");
    REQUIRE(a.size() == 3);
    CHECK(a[0].str() == "remora-control-0:15012");
    CHECK(a[2].host == "::1");
    CHECK_THROWS_AS(certs::parse_control_addresses("a:15012,b"), std::invalid_argument);
    certs::ControlFailover f("a", "1", {{"b", "1"}, {"a", "1"}, {"c", "1"}});
    CHECK(f.size() == 3);  // the first address is not repeated
    CHECK(f.current().host == "a");
    CHECK_FALSE(f.failed());
    CHECK(f.current().host == "b");
    f.succeeded();  // b works: stay there
    CHECK(f.current().host == "b");
    CHECK_FALSE(f.failed());
    CHECK_FALSE(f.failed());
    CHECK(f.failed());  // every replica failed once: back off
    CHECK(f.current().host == "b");  // round the ring once
}
