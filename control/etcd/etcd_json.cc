// etcd's JSON gateway encoding: grpc-gateway's mapping of etcdserverpb (bytes as base64, int64 as
// strings, enum values by name, fields at their default value left out).
#include "control/etcd/etcd_json.h"

#include <openssl/evp.h>

#include <charconv>

namespace remora::control::etcd {

namespace json = boost::json;

std::string base64_encode(std::string_view data) {
    std::string out(4 * ((data.size() + 2) / 3), '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(data.data()),
                            static_cast<int>(data.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
    if (text.size() % 4 != 0) return std::nullopt;
    if (text.empty()) return std::string();
    std::string out(text.size() / 4 * 3, '\0');
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(text.data()),
                            static_cast<int>(text.size()));
    if (n < 0) return std::nullopt;
    // EVP_DecodeBlock counts the padding's bytes as zeros.
    std::size_t pad = 0;
    if (text.back() == '=') ++pad;
    if (text.size() >= 2 && text[text.size() - 2] == '=') ++pad;
    out.resize(static_cast<std::size_t>(n) - pad);
    return out;
}

std::string prefix_end(std::string_view prefix) {
    std::string end(prefix);
    while (!end.empty()) {
        unsigned char last = static_cast<unsigned char>(end.back());
        if (last < 0xff) {
            end.back() = static_cast<char>(last + 1);
            return end;
        }
        end.pop_back();
    }
    return std::string(1, '\0');
}

namespace {

int64_t int_field(const json::object& o, const char* name) {
    const json::value* v = o.if_contains(name);
    if (!v) return 0;  // grpc-gateway leaves zero values out
    if (v->is_int64()) return v->get_int64();
    if (v->is_uint64()) return static_cast<int64_t>(v->get_uint64());
    if (v->is_string()) {
        const json::string& s = v->get_string();
        int64_t out = 0;
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
        if (ec == std::errc() && p == s.data() + s.size()) return out;
    }
    throw EtcdAnswerError(std::string("etcd's answer: \"") + name + "\" is not a number");
}

std::string bytes_field(const json::object& o, const char* name) {
    const json::value* v = o.if_contains(name);
    if (!v) return {};
    if (!v->is_string()) throw EtcdAnswerError(std::string("etcd's answer: \"") + name + "\" is not base64");
    auto d = base64_decode(v->get_string());
    if (!d) throw EtcdAnswerError(std::string("etcd's answer: \"") + name + "\" is not base64");
    return std::move(*d);
}

const json::object& as_object(const json::value& v, const char* what) {
    const json::object* o = v.if_object();
    if (!o) throw EtcdAnswerError(std::string("etcd's answer: ") + what + " is not an object");
    return *o;
}

KeyValue parse_kv(const json::value& v) {
    const json::object& o = as_object(v, "kv");
    KeyValue kv;
    kv.key = bytes_field(o, "key");
    kv.value = bytes_field(o, "value");
    kv.create_revision = int_field(o, "create_revision");
    kv.mod_revision = int_field(o, "mod_revision");
    kv.version = int_field(o, "version");
    kv.lease = int_field(o, "lease");
    return kv;
}

json::string num(int64_t v) {
    return json::string(std::to_string(v));
}

}  // namespace

void check_error(const json::value& answer) {
    const json::object* o = answer.if_object();
    if (!o) throw EtcdAnswerError("etcd's answer is not a JSON object");
    const json::value* e = o->if_contains("error");
    if (!e) return;
    std::string why = e->is_string() ? std::string(e->get_string()) : json::serialize(*e);
    int code = 0;
    if (const json::value* c = o->if_contains("code"); c && c->is_int64()) {
        code = static_cast<int>(c->get_int64());
    }
    throw EtcdAnswerError(why, code);
}

int64_t header_revision(const json::object& answer) {
    const json::value* h = answer.if_contains("header");
    if (!h) return 0;
    return int_field(as_object(*h, "header"), "revision");
}

json::object range_request(std::string_view key, std::string_view range_end) {
    json::object o;
    o["key"] = base64_encode(key);
    if (!range_end.empty()) o["range_end"] = base64_encode(range_end);
    return o;
}

RangeAnswer parse_range(const json::value& answer) {
    check_error(answer);
    const json::object& o = as_object(answer, "range");
    RangeAnswer out;
    out.revision = header_revision(o);
    if (const json::value* kvs = o.if_contains("kvs")) {
        if (!kvs->is_array()) throw EtcdAnswerError("etcd's answer: \"kvs\" is not an array");
        for (const json::value& kv : kvs->get_array()) out.kvs.push_back(parse_kv(kv));
    }
    return out;
}

json::object put_request(std::string_view key, std::string_view value, int64_t lease) {
    json::object o;
    o["key"] = base64_encode(key);
    o["value"] = base64_encode(value);
    if (lease) o["lease"] = num(lease);
    return o;
}

json::object delete_request(std::string_view key, std::string_view range_end) {
    return range_request(key, range_end);
}

namespace {

// `if <key>'s <target> revision == <revision> then <ops>, else read <key>`; target "MOD" or
// "CREATE" (field mod_revision or create_revision).
json::object txn_if(std::string_view key, const char* target, const char* field, int64_t revision,
                    json::array ops) {
    json::object compare;
    compare["key"] = base64_encode(key);
    compare["result"] = "EQUAL";
    compare["target"] = target;
    compare[field] = num(revision);
    json::object t;
    t["compare"] = json::array{std::move(compare)};
    t["success"] = std::move(ops);
    t["failure"] = json::array{json::object{{"request_range", range_request(key)}}};
    return t;
}

}  // namespace

json::object put_op(std::string_view key, std::string_view value, int64_t lease) {
    return json::object{{"request_put", put_request(key, value, lease)}};
}

json::object delete_op(std::string_view key) {
    return json::object{{"request_delete_range", delete_request(key)}};
}

json::object txn_all(json::array ops) {
    json::object t;
    t["success"] = std::move(ops);
    return t;
}

json::object txn_if_mod_revision(std::string_view key, int64_t expected, json::array ops) {
    return txn_if(key, "MOD", "mod_revision", expected, std::move(ops));
}

json::object put_if_absent(std::string_view key, std::string_view value) {
    return txn_if(key, "CREATE", "create_revision", 0, json::array{put_op(key, value)});
}

TxnAnswer parse_txn(const json::value& answer) {
    check_error(answer);
    const json::object& o = as_object(answer, "txn");
    TxnAnswer out;
    out.revision = header_revision(o);
    const json::value* s = o.if_contains("succeeded");
    out.succeeded = s && s->is_bool() && s->get_bool();
    if (const json::value* rs = o.if_contains("responses"); rs && rs->is_array()) {
        for (const json::value& r : rs->get_array()) {
            const json::object& ro = as_object(r, "responses[]");
            if (const json::value* range = ro.if_contains("response_range")) {
                RangeAnswer ra = parse_range(*range);
                if (!ra.kvs.empty()) out.current = std::move(ra.kvs.front());
            }
        }
    }
    return out;
}

json::object watch_request(std::string_view key, std::string_view range_end,
                           int64_t start_revision) {
    json::object c = range_request(key, range_end);
    if (start_revision > 0) c["start_revision"] = num(start_revision);
    return json::object{{"create_request", std::move(c)}};
}

WatchMessage parse_watch_message(std::string_view line) {
    json::error_code ec;
    json::value v = json::parse(line, ec);
    if (ec) throw EtcdAnswerError("etcd's watch stream: not JSON: " + ec.message());
    check_error(v);
    const json::object& top = as_object(v, "watch message");
    const json::value* r = top.if_contains("result");
    if (!r) throw EtcdAnswerError("etcd's watch stream: a message without \"result\"");
    const json::object& o = as_object(*r, "result");
    WatchMessage m;
    m.revision = header_revision(o);
    auto flag = [&](const char* name) {
        const json::value* f = o.if_contains(name);
        return f && f->is_bool() && f->get_bool();
    };
    m.created = flag("created");
    m.canceled = flag("canceled");
    m.compact_revision = int_field(o, "compact_revision");
    if (const json::value* cr = o.if_contains("cancel_reason"); cr && cr->is_string()) {
        m.cancel_reason = std::string(cr->get_string());
    }
    if (const json::value* evs = o.if_contains("events")) {
        if (!evs->is_array()) throw EtcdAnswerError("etcd's watch stream: \"events\" is not an array");
        for (const json::value& e : evs->get_array()) {
            const json::object& eo = as_object(e, "event");
            WatchEvent ev;
            if (const json::value* t = eo.if_contains("type")) {
                ev.deleted = t->is_string() ? t->get_string() == "DELETE" : (t->is_int64() && t->get_int64() == 1);
            }
            if (const json::value* kv = eo.if_contains("kv")) ev.kv = parse_kv(*kv);
            m.events.push_back(std::move(ev));
        }
    }
    return m;
}

json::object lease_grant_request(int64_t ttl_seconds) {
    return json::object{{"TTL", num(ttl_seconds)}};
}

json::object lease_id_request(int64_t id) {
    return json::object{{"ID", num(id)}};
}

LeaseAnswer parse_lease(const json::value& answer) {
    check_error(answer);
    const json::object* o = &as_object(answer, "lease");
    if (const json::value* r = o->if_contains("result")) o = &as_object(*r, "result");
    LeaseAnswer out;
    out.id = int_field(*o, "ID");
    out.ttl = int_field(*o, "TTL");
    if (const json::value* e = o->if_contains("error"); e && e->is_string() && !e->get_string().empty()) {
        throw EtcdAnswerError(std::string(e->get_string()));
    }
    return out;
}

}  // namespace remora::control::etcd
