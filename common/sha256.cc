#include "common/sha256.h"

#include <openssl/evp.h>

#include <cstdio>
#include <memory>

#include "absl/strings/escaping.h"
#include "common/logging.h"
#include "common/os_error.h"

namespace prl {
namespace {

struct DigestDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using Digest = std::unique_ptr<EVP_MD_CTX, DigestDeleter>;

Digest NewDigest() {
  Digest ctx(EVP_MD_CTX_new());
  PRL_CHECK(ctx != nullptr && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1)
      << "OpenSSL cannot start a SHA-256 digest";
  return ctx;
}

std::string Finish(EVP_MD_CTX* ctx) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  PRL_CHECK(EVP_DigestFinal_ex(ctx, out, &size) == 1 && size == 32);
  return "sha256:" +
         absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(out), size));
}

}  // namespace

std::string Sha256(absl::string_view bytes) {
  Digest ctx = NewDigest();
  PRL_CHECK(EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size()) == 1);
  return Finish(ctx.get());
}

absl::StatusOr<std::string> Sha256File(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (file == nullptr) return OsError("cannot open", path);
  Digest ctx = NewDigest();
  std::string buffer(1 << 20, '\0');
  while (true) {
    const size_t n = std::fread(buffer.data(), 1, buffer.size(), file.get());
    if (n > 0) PRL_CHECK(EVP_DigestUpdate(ctx.get(), buffer.data(), n) == 1);
    if (n < buffer.size()) {
      if (std::ferror(file.get())) return OsError("cannot read", path);
      break;
    }
  }
  return Finish(ctx.get());
}

}  // namespace prl
