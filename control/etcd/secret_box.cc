// AES-256-GCM through OpenSSL's EVP interface; the context is held by a unique_ptr so no path
// leaks it.
#include "control/etcd/secret_box.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <boost/json.hpp>

#include <cctype>
#include <memory>

#include "common/files.h"
#include "control/etcd/etcd_json.h"

namespace remora::control::etcd {

namespace json = boost::json;

namespace {

constexpr int kNonceBytes = 12;
constexpr int kTagBytes = 16;

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

CipherCtx new_ctx() {
    CipherCtx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
    if (!ctx) throw SecretBoxError("out of memory for a cipher context");
    return ctx;
}

const unsigned char* bytes(std::string_view s) {
    return reinterpret_cast<const unsigned char*>(s.data());
}

std::string trim(std::string s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    std::size_t start = 0;
    while (start < s.size() && std::isspace(static_cast<unsigned char>(s[start]))) ++start;
    return s.substr(start);
}

}  // namespace

SecretBox SecretBox::from_file(const std::filesystem::path& file) {
    std::string raw;
    try {
        raw = common::read_file(file);
    } catch (const std::exception& e) {
        throw SecretBoxError("--ca-key-encryption-key-file " + file.string() + ": " + e.what());
    }
    if (raw.size() == kKeyBytes) return SecretBox(raw);
    std::string text = trim(raw);
    if (text.size() == 2 * kKeyBytes &&
        text.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos) {
        std::string key;
        for (std::size_t i = 0; i < text.size(); i += 2) {
            key.push_back(static_cast<char>(std::stoi(text.substr(i, 2), nullptr, 16)));
        }
        return SecretBox(key);
    }
    if (auto d = base64_decode(text); d && d->size() == kKeyBytes) return SecretBox(*d);
    throw SecretBoxError("--ca-key-encryption-key-file " + file.string() +
                         ": expected a 256-bit key: 32 bytes, 64 hex digits or 44 base64 "
                         "characters (e.g. openssl rand -hex 32)");
}

SecretBox::SecretBox(std::string key) : key_(std::move(key)) {
    if (key_.size() != kKeyBytes) throw SecretBoxError("an AES-256 key is 32 bytes");
}

std::string SecretBox::seal(std::string_view plaintext, std::string_view purpose) const {
    std::string nonce(kNonceBytes, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), kNonceBytes) != 1) {
        throw SecretBoxError("no random bytes for a nonce");
    }
    CipherCtx ctx = new_ctx();
    std::string out(plaintext.size() + 16, '\0');
    std::string tag(kTagBytes, '\0');
    int n = 0, m = 0;
    if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) != 1 ||
        EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, bytes(key_), bytes(nonce)) != 1 ||
        EVP_EncryptUpdate(ctx.get(), nullptr, &n, bytes(purpose), static_cast<int>(purpose.size())) != 1 ||
        EVP_EncryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &n, bytes(plaintext),
                          static_cast<int>(plaintext.size())) != 1 ||
        EVP_EncryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + n, &m) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, tag.data()) != 1) {
        throw SecretBoxError("AES-256-GCM encryption failed");
    }
    out.resize(static_cast<std::size_t>(n + m));
    json::object o;
    o["alg"] = "AES-256-GCM";
    o["nonce"] = base64_encode(nonce);
    o["ciphertext"] = base64_encode(out);
    o["tag"] = base64_encode(tag);
    return json::serialize(o);
}

std::string SecretBox::open(std::string_view sealed, std::string_view purpose) const {
    json::error_code jec;
    json::value v = json::parse(sealed, jec);
    const json::object* o = jec ? nullptr : v.if_object();
    auto field = [&](const char* name) -> std::string {
        const json::value* f = o ? o->if_contains(name) : nullptr;
        if (!f || !f->is_string()) throw SecretBoxError(std::string("not a sealed value: no \"") + name + "\"");
        auto d = base64_decode(f->get_string());
        if (!d) throw SecretBoxError(std::string("not a sealed value: \"") + name + "\" is not base64");
        return *d;
    };
    if (!o || !o->if_contains("alg") || o->at("alg") != "AES-256-GCM") {
        throw SecretBoxError("not a sealed value (expected {\"alg\":\"AES-256-GCM\",...})");
    }
    std::string nonce = field("nonce"), ciphertext = field("ciphertext"), tag = field("tag");
    if (nonce.size() != kNonceBytes || tag.size() != kTagBytes) {
        throw SecretBoxError("not a sealed value: nonce or tag of the wrong size");
    }
    CipherCtx ctx = new_ctx();
    std::string out(ciphertext.size() + 16, '\0');
    int n = 0, m = 0;
    bool ok =
        EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) == 1 &&
        EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, bytes(key_), bytes(nonce)) == 1 &&
        EVP_DecryptUpdate(ctx.get(), nullptr, &n, bytes(purpose), static_cast<int>(purpose.size())) == 1 &&
        EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &n, bytes(ciphertext),
                          static_cast<int>(ciphertext.size())) == 1 &&
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) == 1 &&
        EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + n, &m) == 1;
    if (!ok) {
        throw SecretBoxError("the sealed value does not open with this key (wrong "
                             "--ca-key-encryption-key-file, or the value was changed)");
    }
    out.resize(static_cast<std::size_t>(n + m));
    return out;
}

}  // namespace remora::control::etcd
