// Sealing the CA's signing material before it leaves the process for etcd: AES-256-GCM (OpenSSL
// EVP) with a key that etcd never sees (--ca-key-encryption-key-file), a fresh 96-bit nonce per
// seal, and the purpose as associated data, so a sealed value cannot be moved to another key.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

namespace remora::control::etcd {

// The key could not be read, or a sealed value does not open with it (wrong key, or changed).
class SecretBoxError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

class SecretBox {
  public:
    static constexpr std::size_t kKeyBytes = 32;
    // The key as 32 raw bytes, 64 hex digits or 44 base64 characters (surrounding whitespace
    // ignored; `openssl rand -hex 32 > key` makes one). Throws SecretBoxError naming the file.
    static SecretBox from_file(const std::filesystem::path& file);
    explicit SecretBox(std::string key);  // exactly kKeyBytes bytes

    // JSON text {"alg":"AES-256-GCM","nonce":"<b64>","ciphertext":"<b64>","tag":"<b64>"}.
    std::string seal(std::string_view plaintext, std::string_view purpose) const;
    // Throws SecretBoxError when the value is not a sealed box, or does not authenticate.
    std::string open(std::string_view sealed, std::string_view purpose) const;

  private:
    std::string key_;
};

}  // namespace remora::control::etcd
