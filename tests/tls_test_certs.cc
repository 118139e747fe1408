#include "tests/tls_test_certs.h"

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace netloop::testing {
namespace {

bool Run(const std::string& command) {
  const std::string quiet = command + " 2>&1";
  FILE* p = popen(quiet.c_str(), "r");
  if (p == nullptr) return false;
  std::string output;
  char buf[512];
  while (fgets(buf, sizeof(buf), p) != nullptr) output += buf;
  const int rc = pclose(p);
  if (rc != 0) std::fprintf(stderr, "failed (%d): %s\n%s", rc, command.c_str(), output.c_str());
  return rc == 0;
}

// A CA: key and self-signed certificate.
bool MakeAuthority(const std::string& dir, const std::string& name) {
  return Run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
             " -subj /CN=" + name + " -keyout " + dir + "/" + name + ".key -out " + dir + "/" +
             name + ".crt");
}

// A leaf issued by `ca` for `alt_names` ("DNS:localhost,IP:127.0.0.1").
bool MakeLeaf(const std::string& dir, const std::string& name, const std::string& ca,
              const std::string& alt_names) {
  const std::string base = dir + "/" + name;
  {
    std::ofstream ext(base + ".ext");
    ext << "subjectAltName=" << alt_names << "\n"
        << "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
  }
  return Run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=" + name +
             " -keyout " + base + ".key -out " + base + ".csr") &&
         Run("openssl x509 -req -days 2 -in " + base + ".csr -CA " + dir + "/" + ca +
             ".crt -CAkey " + dir + "/" + ca + ".key -CAcreateserial -extfile " + base +
             ".ext -out " + base + ".crt");
}

std::optional<TestCertificates> Make() {
  const char* tmp = getenv("TEST_TMPDIR");
  std::string dir = std::string(tmp != nullptr ? tmp : "/tmp") + "/netloop-tls-XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) return std::nullopt;
  if (!MakeAuthority(dir, "ca") || !MakeAuthority(dir, "rogue_ca") ||
      !MakeLeaf(dir, "leaf", "ca", "DNS:localhost,IP:127.0.0.1") ||
      !MakeLeaf(dir, "other", "ca", "DNS:other.test") ||
      !MakeLeaf(dir, "rogue_leaf", "rogue_ca", "DNS:localhost,IP:127.0.0.1")) {
    return std::nullopt;
  }
  TestCertificates c;
  c.ca = dir + "/ca.crt";
  c.leaf = dir + "/leaf.crt";
  c.leaf_key = dir + "/leaf.key";
  c.other = dir + "/other.crt";
  c.other_key = dir + "/other.key";
  c.rogue_ca = dir + "/rogue_ca.crt";
  c.rogue_leaf = dir + "/rogue_leaf.crt";
  c.rogue_leaf_key = dir + "/rogue_leaf.key";
  return c;
}

}  // namespace

const std::optional<TestCertificates>& MakeTestCertificates() {
  static const std::optional<TestCertificates> certs = Make();
  return certs;
}

}  // namespace netloop::testing
