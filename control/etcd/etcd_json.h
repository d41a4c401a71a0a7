// etcd v3's JSON gateway as data: request bodies for /v3/kv/*, /v3/watch and /v3/lease/*, and the
// answers parsed into plain structs (keys and values are base64 in JSON; 64-bit numbers are
// strings). No I/O here, so every encoding is unit-tested without an etcd.
#pragma once

#include <boost/json.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace remora::control::etcd {

// Standard base64 with padding (RFC 4648 section 4), as grpc-gateway writes `bytes` fields.
std::string base64_encode(std::string_view data);
// nullopt when `text` is not base64.
std::optional<std::string> base64_decode(std::string_view text);

// The end of the range holding every key that starts with `prefix` (etcd's `--prefix`): the
// prefix with its last byte below 0xff incremented; "\0" (every key) for an empty prefix.
std::string prefix_end(std::string_view prefix);

struct KeyValue {
    std::string key, value;
    int64_t create_revision = 0, mod_revision = 0, version = 0, lease = 0;
};

// etcd answered, but not with what was asked (or with {"error": ...}).
class EtcdAnswerError : public std::runtime_error {
  public:
    EtcdAnswerError(const std::string& what, int code = 0)
        : std::runtime_error(what), code_(code) {}
    int code() const { return code_; }  // gRPC status code from {"code": N}; 0 when none

  private:
    int code_;
};

// The header's revision: the store's revision when etcd answered.
int64_t header_revision(const boost::json::object& answer);
// Throws EtcdAnswerError for {"error": "...", "code": N}.
void check_error(const boost::json::value& answer);

boost::json::object range_request(std::string_view key, std::string_view range_end = {});
struct RangeAnswer {
    int64_t revision = 0;
    std::vector<KeyValue> kvs;
};
RangeAnswer parse_range(const boost::json::value& answer);

boost::json::object put_request(std::string_view key, std::string_view value, int64_t lease = 0);
boost::json::object delete_request(std::string_view key, std::string_view range_end = {});

// Operations of a transaction's branch.
boost::json::object put_op(std::string_view key, std::string_view value, int64_t lease = 0);
boost::json::object delete_op(std::string_view key);
// A transaction without a comparison: every operation, at one revision.
boost::json::object txn_all(boost::json::array ops);
// `if <key>'s mod_revision == expected (0: the key does not exist) then <ops>, else read the
// key`: several keys changed at one revision, or none.
boost::json::object txn_if_mod_revision(std::string_view key, int64_t expected_mod_revision,
                                        boost::json::array ops);
// `if <key> does not exist then put, else read it` (create-if-absent).
boost::json::object put_if_absent(std::string_view key, std::string_view value);
struct TxnAnswer {
    bool succeeded = false;
    int64_t revision = 0;            // the header's: after the put when it succeeded
    std::optional<KeyValue> current;  // the failure branch's read of the key
};
TxnAnswer parse_txn(const boost::json::value& answer);

boost::json::object watch_request(std::string_view key, std::string_view range_end,
                                  int64_t start_revision);
struct WatchEvent {
    bool deleted = false;
    KeyValue kv;
};
// One message of the watch stream (a line of the chunked answer).
struct WatchMessage {
    int64_t revision = 0;
    bool created = false, canceled = false;
    int64_t compact_revision = 0;  // > 0: the asked start revision was compacted away
    std::string cancel_reason;
    std::vector<WatchEvent> events;
};
WatchMessage parse_watch_message(std::string_view line);

boost::json::object lease_grant_request(int64_t ttl_seconds);
boost::json::object lease_id_request(int64_t id);  // keepalive, revoke
struct LeaseAnswer {
    int64_t id = 0, ttl = 0;  // ttl 0 from a keepalive: the lease is gone
};
// A grant, or a keepalive answer (wrapped in {"result": ...} as the stream sends it).
LeaseAnswer parse_lease(const boost::json::value& answer);

}  // namespace remora::control::etcd
